"""Content-addressed blobs: training datasets clients upload, and the weights and loss curves miners return.

A blob is stored once under its sha256 (``BLOB_DIR/ab/abcdef…``); ``put`` streams the body to a temporary file
while hashing it, refuses it (413, nothing kept) past ``max_bytes``, and moves it into place only when it is
complete, so a reader never sees half a blob. Each owner (an API key, a miner) holds at most its quota
(``aitbc.coordinator.blob_quota``; 413 ``blob_quota_exceeded`` past it, nothing kept), uploads of one owner
run one at a time so two cannot both spend the same room, and ``sweep`` deletes blobs nobody uploaded for
``blob_retention_s`` (docs/training.md), with the records of re-sealed datasets (``put_resealed``) naming them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from aitbc.coordinator.blob_quota import (
    BlobQuota,
    Holdings,
    compute_upload_allowance,
    is_blob_expired,
    is_within_quota,
)
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.protocol.errors import AitbcError, Conflict, InputTooLarge, NotFound

BLOB_HASH: Final = re.compile(r"^[0-9a-f]{64}$")


class BlobTimeout(AitbcError):
    """A blob's body that did not all arrive in time (HTTP 408)."""

    reason = "body_timeout"
    http_status = 408


OWNERS_DIR: Final = ".owners"
RESEALED_DIR: Final = ".resealed"
MAX_RESEALED: Final = 16
"""Re-sealed copies of one job's dataset: its auditor and referees."""
UNLIMITED: Final = BlobQuota(max_bytes=2**62, max_count=2**62)


class BlobStore:
    def __init__(
        self,
        root: Path,
        max_bytes: int,
        timeout_s: float,
        quota: BlobQuota = UNLIMITED,
        retention_s: float = float("inf"),
    ) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.quota = quota
        self.retention_s = retention_s
        self._owner_locks: dict[str, asyncio.Lock] = {}

    @classmethod
    def at(cls, settings: CoordinatorSettings) -> BlobStore:
        """The store a coordinator's settings name."""
        quota = BlobQuota(max_bytes=settings.blob_quota_bytes, max_count=settings.blob_quota_count)
        return cls(
            settings.blob_dir, settings.blob_max_bytes, settings.blob_timeout_s, quota, settings.blob_retention_s
        )

    def _owner_dir(self, owner: str) -> Path:
        return self.root / OWNERS_DIR / hashlib.sha256(owner.encode()).hexdigest()[:32]

    def holdings(self, owner: str) -> Holdings:
        """The blobs ``owner`` holds (its marker files name each blob and its size)."""
        folder = self._owner_dir(owner)
        sizes: dict[str, int] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(folder):
                blob_hash, _, size = entry.name.partition(".")
                if BLOB_HASH.match(blob_hash) and size.isdigit():
                    sizes[blob_hash] = int(size)
        return Holdings(sizes)

    def put_resealed(self, job_id: str, miner: str, blob_hash: str) -> None:
        """Record that ``blob_hash`` is the job's sealed dataset re-sealed to ``miner`` (an auditor or referee)."""
        folder = self.root / RESEALED_DIR / job_id
        folder.mkdir(parents=True, exist_ok=True)
        if len(list(folder.iterdir())) >= MAX_RESEALED and not (folder / miner).exists():
            raise Conflict(f"job {job_id} already has {MAX_RESEALED} re-sealed datasets")
        (folder / miner).write_text(blob_hash)

    def resealed(self, job_id: str) -> dict[str, str]:
        """miner → the blob holding the job's dataset re-sealed to it."""
        found: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self.root / RESEALED_DIR / job_id):
                found[entry.name] = Path(entry.path).read_text()
        return found

    def holds(self, owner: str, blob_hash: str) -> bool:
        """Whether ``owner`` uploaded ``blob_hash`` (and it is still stored)."""
        return blob_hash in self.holdings(owner).sizes and self.has(blob_hash)

    async def holds_async(self, owner: str, blob_hash: str) -> bool:
        return await asyncio.to_thread(self.holds, owner, blob_hash)

    def path_of(self, blob_hash: str) -> Path:
        """Where a blob lives (``NotFound`` for a malformed hash or one not stored)."""
        if not BLOB_HASH.match(blob_hash):
            raise NotFound(f"no blob {blob_hash[:80]!r}: a blob is named by its sha256 (64 hex digits)")
        path = self.root / blob_hash[:2] / blob_hash
        if not path.is_file():
            raise NotFound(f"no blob {blob_hash}", reason="blob_not_found")
        return path

    def has(self, blob_hash: str) -> bool:
        return bool(BLOB_HASH.match(blob_hash)) and (self.root / blob_hash[:2] / blob_hash).is_file()

    async def put(self, chunks: AsyncIterator[bytes], declared: int | None = None, owner: str = "") -> tuple[str, int]:
        """Store the streamed body as one of ``owner``'s holdings; returns (sha256 hex, size).
        ``InputTooLarge`` past ``max_bytes`` (``blob_too_large``) or past what the owner's quota leaves
        (``blob_quota_exceeded``); nothing is kept either way."""
        if declared is not None and declared > self.max_bytes:
            raise self._too_large()
        lock = self._owner_locks.setdefault(owner, asyncio.Lock())
        async with lock:
            holdings = await asyncio.to_thread(self.holdings, owner)
            allowance = compute_upload_allowance(holdings, self.quota, self.max_bytes)
            if declared is not None and declared > allowance:
                raise self._over_quota(holdings)
            blob_hash, size = await self._store(chunks, allowance, holdings)
            await asyncio.to_thread(self._record, owner, blob_hash, size)
        if not lock.locked() and self._owner_locks.get(owner) is lock:
            del self._owner_locks[owner]  # no other upload of this owner waits on it
        return blob_hash, size

    def _record(self, owner: str, blob_hash: str, size: int) -> None:
        folder = self._owner_dir(owner)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{blob_hash}.{size}").touch()

    async def _store(self, chunks: AsyncIterator[bytes], allowance: int, holdings: Holdings) -> tuple[str, int]:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".upload-")
        digest = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    async with asyncio.timeout(self.timeout_s):
                        async for chunk in chunks:
                            size += len(chunk)
                            if size > allowance:
                                raise self._too_large() if size > self.max_bytes else self._over_quota(holdings)
                            digest.update(chunk)
                            out.write(chunk)
                except TimeoutError:
                    raise BlobTimeout(f"the blob did not arrive within {self.timeout_s:g} s (blob_timeout_s)") from None
            blob_hash = digest.hexdigest()
            if not is_within_quota(holdings, blob_hash, size, self.quota):
                raise self._over_quota(holdings)
            target = self.root / blob_hash[:2] / blob_hash
            target.parent.mkdir(exist_ok=True)
            Path(tmp).replace(target)  # a new upload of the same bytes renews the blob's retention
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp).unlink()
            raise
        return blob_hash, size

    def sweep(self, now_s: float) -> int:
        """Delete blobs nobody uploaded for ``retention_s`` and drop them from their owners' holdings;
        returns how many blobs were deleted."""
        deleted = 0
        with contextlib.suppress(FileNotFoundError):
            for shard in os.scandir(self.root):
                if not shard.is_dir() or shard.name == OWNERS_DIR or len(shard.name) != 2:
                    continue
                for blob in os.scandir(shard.path):
                    if BLOB_HASH.match(blob.name) and is_blob_expired(blob.stat().st_mtime, now_s, self.retention_s):
                        with contextlib.suppress(FileNotFoundError):
                            Path(blob.path).unlink()
                            deleted += 1
        with contextlib.suppress(FileNotFoundError):
            for folder in os.scandir(self.root / OWNERS_DIR):
                for marker in os.scandir(folder.path):
                    if not self.has(marker.name.partition(".")[0]):
                        with contextlib.suppress(FileNotFoundError):
                            Path(marker.path).unlink()
        with contextlib.suppress(FileNotFoundError):
            for job in os.scandir(self.root / RESEALED_DIR):  # re-sealed copies whose blob is gone
                for entry in os.scandir(job.path):
                    with contextlib.suppress(FileNotFoundError):
                        if not self.has(Path(entry.path).read_text()):
                            Path(entry.path).unlink()
                with contextlib.suppress(OSError):
                    Path(job.path).rmdir()  # only once empty
        return deleted

    def _over_quota(self, holdings: Holdings) -> InputTooLarge:
        return InputTooLarge(
            f"this uploader holds {holdings.total_bytes} bytes in {len(holdings.sizes)} blobs; the quota is "
            f"{self.quota.max_bytes} bytes and {self.quota.max_count} blobs (blob_quota_bytes, blob_quota_count)",
            reason="blob_quota_exceeded",
        )

    def _too_large(self) -> InputTooLarge:
        return InputTooLarge(f"a blob holds at most {self.max_bytes} bytes (blob_max_bytes)", reason="blob_too_large")
