"""Who may read a blob through a job (``aitbc.coordinator.blob_access``), and how a sealed dataset pins a
training job to its miner (``aitbc.coordinator.audits.stored_constraints``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest

from aitbc.coordinator.audits import stored_constraints
from aitbc.coordinator.blob_access import get_blob_namer, is_job_party
from aitbc.coordinator.blobs import MAX_RESEALED, BlobStore
from aitbc.coordinator.db.records import JobRecord, StoredConstraints
from aitbc.market.lifecycle import JobState
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import Conflict, InvalidInput
from aitbc.protocol.job import JobInput, JobOutput
from aitbc.protocol.job_messages import JobConstraints
from aitbc.protocol.training import SealedDataset, TrainingCommitment, TrainingOutput
from support.training_data import make_spec

MINER = KeyPair.from_seed(b"\x21" * 32).address
PLAIN = make_spec(b"plain dataset", "npz")
SEALED = msgspec.structs.replace(PLAIN, sealed_dataset=SealedDataset(miner=MINER, blob="cc" * 32))
OUTPUT = TrainingOutput(
    commitment=TrainingCommitment(
        spec_hash="00" * 32,
        dataset_hash=PLAIN.dataset_hash,
        runtime_build="test",
        steps=12,
        checkpoint_every=4,
        checkpoint_hashes=["01" * 32] * 4,
    ),
    weights_blob="aa" * 32,
    losses_blob="bb" * 32,
    checkpoint_blobs=["d0" * 32, "d1" * 32],
)


def job(spec: object = PLAIN, **changes: object) -> JobRecord:
    record = JobRecord(
        id="job_1",
        api_key_id="key_alice",
        client="key_alice",
        type="training",
        model="mlp",
        model_digest=None,
        input=JobInput(type="training", model="mlp", training=spec),  # type: ignore[arg-type]
        input_hash="ab" * 32,
        max_price=None,
        constraints=StoredConstraints(),
        state=JobState.COMPLETED.value,
        attempts=1,
        max_attempts=3,
        expires_at_ms=2_000,
        created_at_ms=1_000,
        miner=MINER,
    )
    return replace(record, **changes)  # type: ignore[arg-type]


def test_a_job_names_its_dataset_for_its_client_and_its_results_for_its_miner() -> None:
    plain = job(result=JobOutput(training=OUTPUT))
    assert get_blob_namer(plain, PLAIN.dataset_hash) == "key_alice"
    for blob in ("aa" * 32, "bb" * 32, "d0" * 32, "d1" * 32):
        assert get_blob_namer(plain, blob) == MINER
    assert get_blob_namer(plain, "ee" * 32) is None
    assert get_blob_namer(job(), "aa" * 32) is None  # no result yet


def test_a_sealed_job_names_the_ciphertext_not_the_plaintext_hash() -> None:
    sealed = job(SEALED)
    assert get_blob_namer(sealed, "cc" * 32) == "key_alice"
    assert get_blob_namer(sealed, SEALED.dataset_hash) is None


def test_the_parties_are_the_client_key_and_the_miner_that_ran_it() -> None:
    assert is_job_party(job(), "key_alice") and is_job_party(job(), MINER)
    assert not is_job_party(job(), "key_mallory")
    assert not is_job_party(job(miner=None), KeyPair.from_seed(b"\x22" * 32).address)


def test_a_resealed_copy_is_named_by_the_client_of_a_sealed_job() -> None:
    sealed = job(SEALED)
    assert get_blob_namer(sealed, "c1" * 32, resealed=["c1" * 32]) == "key_alice"
    assert get_blob_namer(sealed, "c1" * 32) is None


def test_a_sealed_dataset_pins_the_job_to_its_miner_and_may_be_audited_on_chain() -> None:
    sealed_input = JobInput(type="training", model="mlp", training=SEALED)
    assert stored_constraints(JobConstraints(), sealed_input, False, True).miner == MINER
    audited = stored_constraints(JobConstraints(audited=True), sealed_input, False, True)
    assert audited.miner == MINER and audited.audited  # the client re-seals to the drawn auditor
    plain_input = JobInput(type="training", model="mlp", training=PLAIN)
    assert stored_constraints(JobConstraints(), plain_input, False, True).miner is None
    with pytest.raises(InvalidInput, match="no node"):
        stored_constraints(JobConstraints(audited=True), sealed_input, False, False)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_holds_is_per_uploader(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100, timeout_s=5.0)
    blob, _ = asyncio.run(store.put(_chunks(b"alice's data"), owner="key_alice"))
    assert store.holds("key_alice", blob) and not store.holds("key_bob", blob)
    asyncio.run(store.put(_chunks(b"alice's data"), owner="key_bob"))  # bob uploads the same bytes: he knows them
    assert store.holds("key_bob", blob)
    store.path_of(blob).unlink()
    assert not store.holds("key_alice", blob)  # swept


def test_resealed_copies_are_kept_per_job_and_miner_and_bounded(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100, timeout_s=5.0)
    store.put_resealed("job_1", MINER, "c1" * 32)
    store.put_resealed("job_1", MINER, "c2" * 32)  # a new copy for the same miner replaces the old one
    assert store.resealed("job_1") == {MINER: "c2" * 32} and store.resealed("job_2") == {}
    for i in range(MAX_RESEALED - 1):
        store.put_resealed("job_1", KeyPair.from_seed(bytes([i + 1]) * 32).address, "c3" * 32)
    with pytest.raises(Conflict):
        store.put_resealed("job_1", KeyPair.from_seed(b"\xff" * 32).address, "c3" * 32)
    assert len(store.resealed("job_1")) == MAX_RESEALED


def test_a_sweep_drops_resealed_records_whose_blob_is_gone(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100, timeout_s=5.0, retention_s=60.0)
    kept, _ = asyncio.run(store.put(_chunks(b"kept copy"), owner="key_alice"))
    gone, _ = asyncio.run(store.put(_chunks(b"old copy"), owner="key_alice"))
    store.put_resealed("job_1", MINER, kept)
    store.put_resealed("job_2", MINER, gone)
    store.path_of(gone).unlink()
    store.sweep(0.0)
    assert store.resealed("job_1") == {MINER: kept} and store.resealed("job_2") == {}
    assert not (tmp_path / "blobs" / ".resealed" / "job_2").exists()
