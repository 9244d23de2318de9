"""Job inputs and outputs: shape rules, size limits, and hashes that both sides compute identically."""

from __future__ import annotations

import math
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol.errors import InputTooLarge, InvalidInput
from aitbc.protocol.job import (
    MAX_EMBED_TEXTS,
    MAX_MESSAGES,
    MAX_PROMPT_CHARS,
    JobInput,
    JobOutput,
    Message,
    Params,
    check_job_input,
    compute_input_hash,
    compute_output_hash,
    pack_vectors,
    unpack_vectors,
)


def inference(**kw: object) -> JobInput:
    fields: dict[str, object] = {"type": "inference", "model": "llama3.2", "prompt": "Hello, AITBC!"}
    fields.update(kw)
    return JobInput(**fields)  # type: ignore[arg-type]


# -- shape rules ----------------------------------------------------------------------------


def test_valid_inputs_pass() -> None:
    check_job_input(inference())
    check_job_input(inference(prompt=None, messages=[Message("user", "hi")]))
    check_job_input(JobInput(type="embedding", model="minilm", texts=["a", "b"]))
    check_job_input(inference(prompt="x" * MAX_PROMPT_CHARS))


@pytest.mark.parametrize(
    ("job", "needle"),
    [
        (inference(prompt=None), "exactly one"),
        (inference(messages=[Message("user", "hi")]), "exactly one"),
        (inference(texts=["a"]), "only for embedding"),
        (inference(prompt="   \n"), "empty"),
        (inference(prompt=None, messages=[]), "messages"),
        (inference(prompt=None, messages=[Message("user", "m")] * (MAX_MESSAGES + 1)), "messages"),
        (JobInput(type="embedding", model="minilm"), "texts"),
        (JobInput(type="embedding", model="minilm", texts=["a"], prompt="p"), "texts"),
        (JobInput(type="embedding", model="minilm", texts=[]), "texts"),
        (JobInput(type="embedding", model="minilm", texts=["a"] * (MAX_EMBED_TEXTS + 1)), "texts"),
    ],
)
def test_bad_shapes_are_invalid_input(job: JobInput, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle) as info:
        check_job_input(job)
    assert info.value.reason == "invalid_input"


@pytest.mark.parametrize(
    "job",
    [
        inference(prompt="x" * (MAX_PROMPT_CHARS + 1)),
        inference(prompt=None, messages=[Message("user", "x" * (MAX_PROMPT_CHARS // 2 + 1))] * 2),
        JobInput(type="embedding", model="minilm", texts=["x" * 1000] * 33),
    ],
)
def test_oversized_input_is_input_too_large(job: JobInput) -> None:
    with pytest.raises(InputTooLarge, match=str(MAX_PROMPT_CHARS)):
        check_job_input(job)


def test_wire_validation_of_fields() -> None:
    for bad in (
        {"type": "fine-tuning", "model": "m", "prompt": "p"},
        {"type": "inference", "model": "bad model name", "prompt": "p"},
        {"type": "inference", "model": "m", "prompt": "p", "params": {"max_tokens": 0}},
        {"type": "inference", "model": "m", "prompt": "p", "params": {"temperature_milli": 2001}},
        {"type": "inference", "model": "m", "prompt": "p", "surprise": 1},
        {"type": "inference", "model": "m", "messages": [{"role": "robot", "content": "x"}]},
    ):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(bad, JobInput)


# -- input hash ------------------------------------------------------------------------------


def test_input_hash_is_stable_and_survives_json() -> None:
    job = inference(params=Params(max_tokens=64, temperature_milli=700, seed=42, stop=["\n"]))
    again = msgspec.convert(msgspec.json.decode(msgspec.json.encode(job)), JobInput)
    assert compute_input_hash(again) == compute_input_hash(job)
    assert len(compute_input_hash(job)) == 64
    assert compute_input_hash(job) == compute_input_hash(
        inference(params=Params(max_tokens=64, temperature_milli=700, seed=42, stop=["\n"]))
    )


@pytest.mark.parametrize(
    "other",
    [
        inference(prompt="Hello, AITBC?"),
        inference(model="llama3.1"),
        inference(params=Params(max_tokens=65, temperature_milli=700, seed=42, stop=["\n"])),
        inference(params=Params(max_tokens=64, temperature_milli=701, seed=42, stop=["\n"])),
        inference(params=Params(max_tokens=64, temperature_milli=700, seed=43, stop=["\n"])),
        inference(params=Params(max_tokens=64, temperature_milli=700, seed=None, stop=["\n"])),
        inference(params=Params(max_tokens=64, temperature_milli=700, seed=42, stop=[])),
        inference(prompt=None, messages=[Message("user", "Hello, AITBC!")]),
        JobInput(type="embedding", model="llama3.2", texts=["Hello, AITBC!"]),
    ],
)
def test_any_change_of_the_input_changes_its_hash(other: JobInput) -> None:
    job = inference(params=Params(max_tokens=64, temperature_milli=700, seed=42, stop=["\n"]))
    assert compute_input_hash(other) != compute_input_hash(job)


def test_message_boundaries_are_part_of_the_hash() -> None:
    a = inference(prompt=None, messages=[Message("user", "ab"), Message("user", "c")])
    b = inference(prompt=None, messages=[Message("user", "a"), Message("user", "bc")])
    assert compute_input_hash(a) != compute_input_hash(b)


# -- output hash and vectors -------------------------------------------------------------------


def test_output_hash_distinguishes_texts_and_vectors() -> None:
    assert compute_output_hash(JobOutput(text="a")) != compute_output_hash(JobOutput(text="b"))
    assert compute_output_hash(JobOutput(text="")) != compute_output_hash(JobOutput())
    dims, packed = pack_vectors([[0.5, -1.0]])
    flipped_dims, flipped = pack_vectors([[-1.0, 0.5]])
    assert compute_output_hash(JobOutput(dimensions=dims, vectors_f32=packed)) != compute_output_hash(
        JobOutput(dimensions=flipped_dims, vectors_f32=flipped)
    )


def test_vectors_pack_as_little_endian_float32() -> None:
    dims, packed = pack_vectors([[1.0, 2.0], [3.0, -0.5]])
    assert dims == 2
    assert bytes.fromhex(packed) == struct.pack("<4f", 1.0, 2.0, 3.0, -0.5)
    assert unpack_vectors(dims, packed) == [[1.0, 2.0], [3.0, -0.5]]
    assert pack_vectors([]) == (0, "")
    assert unpack_vectors(0, "") == []
    with pytest.raises(ValueError, match="same dimension"):
        pack_vectors([[1.0], [1.0, 2.0]])


@settings(max_examples=100, deadline=None)
@given(
    st.integers(1, 16).flatmap(
        lambda d: st.lists(
            st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=d, max_size=d), min_size=1, max_size=8
        )
    )
)
def test_vectors_round_trip_and_hash_identically(vectors: list[list[float]]) -> None:
    dims, packed = pack_vectors(vectors)
    back = unpack_vectors(dims, packed)
    assert len(back) == len(vectors)
    assert all(
        math.isclose(a, b, rel_tol=0, abs_tol=0)
        for va, vb in zip(back, vectors, strict=True)
        for a, b in zip(va, vb, strict=True)
    )
    # The receiver re-packs what it unpacked and gets the same output hash the miner signed.
    assert pack_vectors(back) == (dims, packed)
    out = JobOutput(dimensions=dims, vectors_f32=packed)
    assert compute_output_hash(msgspec.convert(msgspec.to_builtins(out), JobOutput)) == compute_output_hash(out)
