"""Sealed job inputs, outputs and datasets: only the chosen miner opens the input or the dataset, only the
client the output."""

from __future__ import annotations

import pytest

from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.job import JobInput, JobOutput, compute_input_hash, compute_output_hash
from aitbc.protocol.sealed import (
    MAX_SEALED_BYTES,
    SealedBoxError,
    new_reply_key,
    open_dataset,
    open_job_input,
    open_job_output,
    seal_dataset,
    seal_job_input,
    seal_job_output,
)

MINER = KeyPair.from_seed(b"\x11" * 32)
OTHER_MINER = KeyPair.from_seed(b"\x12" * 32)
JOB = JobInput(type="inference", model="echo", prompt="the secret prompt")


def test_the_chosen_miner_opens_the_input_and_the_hash_is_of_the_plaintext() -> None:
    ciphertext, input_hash = seal_job_input(JOB, MINER.address)
    assert input_hash == compute_input_hash(JOB)
    assert b"secret" not in bytes.fromhex(ciphertext)
    assert open_job_input(MINER, ciphertext, input_hash) == JOB


def test_another_miner_cannot_open_the_input() -> None:
    ciphertext, input_hash = seal_job_input(JOB, MINER.address)
    with pytest.raises(SealedBoxError):
        open_job_input(OTHER_MINER, ciphertext, input_hash)


def test_tampered_ciphertext_or_wrong_hash_is_refused() -> None:
    ciphertext, input_hash = seal_job_input(JOB, MINER.address)
    raw = bytearray(bytes.fromhex(ciphertext))
    raw[-1] ^= 1
    with pytest.raises(SealedBoxError):
        open_job_input(MINER, raw.hex(), input_hash)
    with pytest.raises(SealedBoxError, match="input_hash"):
        open_job_input(MINER, ciphertext, "00" * 32)


def test_sealing_is_randomized() -> None:
    assert seal_job_input(JOB, MINER.address)[0] != seal_job_input(JOB, MINER.address)[0]


def test_the_client_opens_the_output_and_checks_the_receipt_hash() -> None:
    secret, public = new_reply_key()
    output = JobOutput(text="the secret answer")
    sealed = seal_job_output(output, public)
    assert open_job_output(secret, sealed, compute_output_hash(output)) == output
    with pytest.raises(SealedBoxError, match="output_hash"):
        open_job_output(secret, sealed, "00" * 32)
    other_secret, _ = new_reply_key()
    with pytest.raises(SealedBoxError):
        open_job_output(other_secret, sealed, compute_output_hash(output))


DATASET = b"x,y\n" + b"".join(b"%d,%d\n" % (i, i % 2) for i in range(3000))


def test_a_sealed_dataset_opens_only_for_its_miner_and_only_as_the_named_dataset() -> None:
    ciphertext = seal_dataset(DATASET, MINER.address)
    assert b"2999,1" not in ciphertext and len(ciphertext) == len(DATASET) + 48  # sealed box overhead
    assert open_dataset(MINER, ciphertext, sha256(DATASET).hex()) == DATASET
    with pytest.raises(SealedBoxError, match="not the recipient"):
        open_dataset(OTHER_MINER, ciphertext, sha256(DATASET).hex())
    with pytest.raises(SealedBoxError, match="dataset_hash"):
        open_dataset(MINER, ciphertext, sha256(b"another dataset").hex())
    tampered = bytearray(ciphertext)
    tampered[100] ^= 1
    with pytest.raises(SealedBoxError):
        open_dataset(MINER, bytes(tampered), sha256(DATASET).hex())


def test_a_dataset_past_the_input_cap_still_opens() -> None:
    big = b"\x01" * (MAX_SEALED_BYTES + 1)
    assert open_dataset(MINER, seal_dataset(big, MINER.address), sha256(big).hex()) == big
