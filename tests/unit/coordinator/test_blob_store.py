"""The coordinator's blob store: content-addressed, limited on the stream, nothing half-written."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aitbc.coordinator.blob_quota import BlobQuota, Holdings, compute_upload_allowance, is_within_quota
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


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and ".owners" not in p.parts)


def test_an_owner_past_its_quota_is_refused_and_nothing_is_kept(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "blobs", max_bytes=100, timeout_s=5.0, quota=BlobQuota(max_bytes=25, max_count=3))
    first, _ = asyncio.run(store.put(_chunks(b"a" * 10), owner="key-a"))
    asyncio.run(store.put(_chunks(b"a" * 10), owner="key-a"))  # the same bytes again: held once, charged once
    assert store.holdings("key-a").total_bytes == 10
    asyncio.run(store.put(_chunks(b"b" * 10), owner="key-a"))
    before = _files(tmp_path / "blobs")
    with pytest.raises(InputTooLarge, match="blob_quota_bytes") as refused:  # 20 held, 10 more would be 30 > 25
        asyncio.run(store.put(_chunks(b"c" * 6, b"c" * 4), owner="key-a"))
    assert refused.value.reason == "blob_quota_exceeded"
    with pytest.raises(InputTooLarge, match="blob_quota_bytes"):  # refused from the declared length alone
        asyncio.run(store.put(_chunks(b"d"), declared=16, owner="key-a"))  # 20 held + 16 > 25 + largest held 10
    assert _files(tmp_path / "blobs") == before  # nothing half-written, no stray upload file
    assert asyncio.run(store.put(_chunks(b"e" * 5), owner="key-a"))[1] == 5  # what is left still fits
    with pytest.raises(InputTooLarge):  # three blobs held: the count is spent too
        asyncio.run(store.put(_chunks(b"f"), owner="key-a"))
    assert asyncio.run(store.put(_chunks(b"c" * 10), owner="key-b"))[1] == 10  # another owner has its own quota
    assert store.has(first)


def test_retention_deletes_old_blobs_and_frees_their_owners_quota(tmp_path: Path) -> None:
    store = BlobStore(
        tmp_path / "blobs", max_bytes=100, timeout_s=5.0, quota=BlobQuota(max_bytes=15, max_count=9), retention_s=60
    )
    old, _ = asyncio.run(store.put(_chunks(b"o" * 10), owner="miner"))
    fresh, _ = asyncio.run(store.put(_chunks(b"n" * 5), owner="miner"))
    now = store.path_of(fresh).stat().st_mtime
    os.utime(store.path_of(old), (now - 120, now - 120))
    assert store.sweep(now) == 1
    assert not store.has(old) and store.has(fresh)
    assert store.holdings("miner").sizes == {fresh: 5}
    assert asyncio.run(store.put(_chunks(b"x" * 10), owner="miner"))[1] == 10  # the freed room is usable again
    assert store.sweep(now) == 0


@given(
    sizes=st.lists(st.integers(0, 1_000), max_size=20),
    size=st.integers(0, 3_000),
    again=st.booleans(),
    quota_bytes=st.integers(0, 5_000),
    quota_count=st.integers(1, 25),
    max_blob=st.integers(1, 2_000),
)
def test_an_owner_never_holds_more_than_its_quota(
    sizes: list[int], size: int, again: bool, quota_bytes: int, quota_count: int, max_blob: int
) -> None:
    quota = BlobQuota(quota_bytes, quota_count)
    held = {f"{i:064x}": n for i, n in enumerate(sizes)}
    holdings = Holdings(held)
    assert 0 <= compute_upload_allowance(holdings, quota, max_blob) <= max_blob
    blob_hash = next(iter(held)) if again and held else "f" * 64
    if again and held:
        size = held[blob_hash]
        assert is_within_quota(holdings, blob_hash, size, quota)  # holding a blob again costs nothing
    if is_within_quota(holdings, blob_hash, size, quota) and blob_hash not in held:
        assert holdings.total_bytes + size <= quota_bytes and len(held) + 1 <= quota_count
