"""The coordinator's blob store: content-addressed, limited on the stream, nothing half-written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from aitbc.coordinator.blobs import BlobStore, BlobTimeout
from aitbc.protocol.crypto import sha256
from aitbc.protocol.errors import InputTooLarge, NotFound


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def test_put_names_a_blob_by_its_hash_and_gets_it_back(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=10, timeout_s=5.0)
    blob_hash, size = asyncio.run(store.put(_chunks(b"hello ", b"blob")))
    assert (blob_hash, size) == (sha256(b"hello blob").hex(), 10)
    assert store.has(blob_hash) and store.path_of(blob_hash).read_bytes() == b"hello blob"
    assert asyncio.run(store.put(_chunks(b"hello blob")))[0] == blob_hash  # stored once
    with pytest.raises(NotFound):
        store.path_of("0" * 64)
    with pytest.raises(NotFound, match="64 hex"):
        store.path_of("../../etc/passwd")
    assert not store.has("../x")


def test_a_blob_past_the_limit_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=10, timeout_s=5.0)
    with pytest.raises(InputTooLarge, match="blob_max_bytes"):
        asyncio.run(store.put(_chunks(b"123456", b"78901")))
    with pytest.raises(InputTooLarge):
        asyncio.run(store.put(_chunks(b"1"), declared=11))
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []


def test_a_slow_blob_times_out_and_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100, timeout_s=0.05)

    async def slow() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(5)
        yield b"b"

    with pytest.raises(BlobTimeout, match="blob_timeout_s"):
        asyncio.run(store.put(slow()))
    assert [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == []
