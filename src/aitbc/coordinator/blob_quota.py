"""How much an uploader may still store, and which blobs retention deletes: the pure rules behind the blob store.

Each blob a caller uploads is recorded as one of its holdings (``BLOB_DIR/.owners/<owner id>/<hash>.<size>``);
what an owner holds is the sum of those sizes. An upload may use at most what is left of the owner's quota (and
never more than ``blob_max_bytes``); a blob the owner already holds costs nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BlobQuota:
    max_bytes: int
    """Bytes one owner may hold."""
    max_count: int
    """Blobs one owner may hold."""


@dataclass(frozen=True, slots=True)
class Holdings:
    """What one owner holds now: blob hash → size."""

    sizes: dict[str, int]

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def compute_upload_allowance(holdings: Holdings, quota: BlobQuota, max_blob_bytes: int) -> int:
    """The most bytes the owner's next upload may stream before its hash is known: what the quota leaves,
    plus the largest blob it already holds (the upload may turn out to be that blob again, which costs
    nothing), never more than ``max_blob_bytes``. ``is_within_quota`` decides once the hash is known."""
    largest = max(holdings.sizes.values(), default=0)
    return max(0, min(max_blob_bytes, quota.max_bytes - holdings.total_bytes + largest))


def is_within_quota(holdings: Holdings, blob_hash: str, size: int, quota: BlobQuota) -> bool:
    """Whether the owner may keep this upload: a blob it already holds always; a new one only if its
    holdings stay within the quota by bytes and by count."""
    if blob_hash in holdings.sizes:
        return True
    return holdings.total_bytes + size <= quota.max_bytes and len(holdings.sizes) + 1 <= quota.max_count


def is_blob_expired(last_put_s: float, now_s: float, retention_s: float) -> bool:
    """A blob is deleted once nobody has uploaded it for ``retention_s``."""
    return now_s - last_put_s > retention_s
