"""Content-addressed blobs: training datasets clients upload, and the weights and loss curves miners return.

A blob is stored once under its sha256 (``BLOB_DIR/ab/abcdef…``); ``put`` streams the body to a temporary file
while hashing it, refuses it (413, nothing kept) past ``max_bytes``, and moves it into place only when it is
complete, so a reader never sees half a blob. Blobs are not deleted by the coordinator (docs/training.md).
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

from aitbc.coordinator.config import CoordinatorSettings
from aitbc.protocol.errors import AitbcError, InputTooLarge, NotFound

BLOB_HASH: Final = re.compile(r"^[0-9a-f]{64}$")


class BlobTimeout(AitbcError):
    """A blob's body that did not all arrive in time (HTTP 408)."""

    reason = "body_timeout"
    http_status = 408


class BlobStore:
    def __init__(self, root: Path, max_bytes: int, timeout_s: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    @classmethod
    def at(cls, settings: CoordinatorSettings) -> BlobStore:
        """The store a coordinator's settings name."""
        return cls(settings.blob_dir, settings.blob_max_bytes, settings.blob_timeout_s)

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

    async def put(self, chunks: AsyncIterator[bytes], declared: int | None = None) -> tuple[str, int]:
        """Store the streamed body; returns (sha256 hex, size). ``InputTooLarge`` past ``max_bytes``."""
        if declared is not None and declared > self.max_bytes:
            raise self._too_large()
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
                            if size > self.max_bytes:
                                raise self._too_large()
                            digest.update(chunk)
                            out.write(chunk)
                except TimeoutError:
                    raise BlobTimeout(f"the blob did not arrive within {self.timeout_s:g} s (blob_timeout_s)") from None
            blob_hash = digest.hexdigest()
            target = self.root / blob_hash[:2] / blob_hash
            target.parent.mkdir(exist_ok=True)
            Path(tmp).replace(target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                Path(tmp).unlink()
            raise
        return blob_hash, size

    def _too_large(self) -> InputTooLarge:
        return InputTooLarge(f"a blob holds at most {self.max_bytes} bytes (blob_max_bytes)", reason="blob_too_large")
