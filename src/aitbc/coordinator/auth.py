"""Who is calling: client API keys (with per-key rate limits) and signed miner requests."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from typing import Final

from aitbc.coordinator.db.payment_records import ApiKey as ApiKey
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.protocol.auth import MAX_REQUEST_AGE_MS, MinerRequest, miner_request_bytes
from aitbc.protocol.crypto import SigningKind, is_valid_signature, sha256_hex
from aitbc.protocol.errors import AitbcError, RateLimited, Unauthorized

KEY_PREFIX: Final = "aitbc"
KEY_CACHE_SECONDS: Final = 0.5
"""How long a key read from the database is trusted: a revocation takes effect within this."""
MAX_CACHED_KEYS: Final = 100_000


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_api_key(name: str, client: str | None, rate_per_second: float, burst: int) -> tuple[str, ApiKey]:
    """A fresh key: the full token (shown once) and the key to store (only the secret's hash)."""
    key_id = os.urandom(6).hex()
    secret = os.urandom(24).hex()
    key = ApiKey(
        id=key_id,
        name=name,
        secret_hash=hash_secret(secret),
        client=client or f"key_{key_id}",
        rate_per_second=rate_per_second,
        burst=burst,
        revoked=False,
        created_at_ms=int(time.time() * 1000),
    )
    return f"{KEY_PREFIX}_{key_id}_{secret}", key


def parse_api_key(token: str) -> tuple[str, str] | None:
    """``(key id, secret)`` of a well-formed ``aitbc_<id>_<secret>`` token, else None."""
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != KEY_PREFIX:
        return None
    return parts[1], parts[2]


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class ApiKeyAuthenticator:
    """Checks ``X-Api-Key`` tokens against the store (cached) and applies a token bucket per key."""

    def __init__(self, repo: CoordinatorRepo, cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.repo = repo
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        """key id → (key, monotonic time it was read): read again once older than ``cache_seconds``, so a
        key revoked in the database (``aitbc coordinator keys revoke``, another replica) stops working
        within that time without a restart."""
        self._buckets: dict[str, _Bucket] = {}

    def lookup(self, key_id: str) -> ApiKey | None:
        cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached[1] < self.cache_seconds:
            return cached[0]
        read_at = time.monotonic()
        key = self.repo.get_api_key(key_id)
        if key is None:
            return None
        if len(self._cache) >= MAX_CACHED_KEYS:
            self._cache.clear()
        self._cache[key_id] = (key, read_at)
        return key

    def uncached_key_id(self, token: str | None) -> str | None:
        """The key id a well-formed token names, if it is not cached yet (to look it up off the event loop)."""
        parsed = parse_api_key(token) if token else None
        if parsed is None:
            return None
        cached = self._cache.get(parsed[0])
        if cached is None or time.monotonic() - cached[1] >= self.cache_seconds:
            return parsed[0]
        return None

    def authenticate(self, token: str | None, now: float) -> ApiKey:
        if not token:
            raise Unauthorized("missing X-Api-Key header; create a key with `aitbc coordinator keys create`")
        parsed = parse_api_key(token)
        if parsed is None:
            raise Unauthorized("malformed API key")
        key_id, secret = parsed
        key = self.lookup(key_id)
        if key is None or not hmac.compare_digest(key.secret_hash, hash_secret(secret)):
            raise Unauthorized("invalid API key")
        if key.revoked:
            raise Unauthorized("API key revoked")
        self._take(key, now)
        return key

    def _take(self, key: ApiKey, now: float) -> None:
        bucket = self._buckets.get(key.id)
        if bucket is None:
            bucket = self._buckets[key.id] = _Bucket(float(key.burst), now)
        bucket.tokens = min(float(key.burst), bucket.tokens + (now - bucket.stamp) * key.rate_per_second)
        bucket.stamp = now
        if bucket.tokens < 1:
            retry_after = (1 - bucket.tokens) / key.rate_per_second
            raise RateLimited(f"rate limit exceeded; retry in {retry_after:.2f}s", retry_after)
        bucket.tokens -= 1


class MinerRequestVerifier:
    """Checks signed miner requests: valid signature, fresh timestamp, never-seen nonce."""

    def __init__(self, chain_id: str, started_at_ms: int, max_age_ms: int = MAX_REQUEST_AGE_MS) -> None:
        self.chain_id = chain_id
        self.started_at_ms = started_at_ms
        self.max_age_ms = max_age_ms
        self._seen: OrderedDict[str, int] = OrderedDict()

    def verify(
        self,
        miner: str | None,
        timestamp: str | None,
        nonce: str | None,
        signature: str | None,
        method: str,
        path: str,
        body: bytes,
        now_ms: int,
        body_sha256: str | None = None,
    ) -> str:
        """Return the authenticated miner address or raise ``AuthError``; ``body_sha256``: the body's hash,
        when the caller hashed a streamed body instead of holding it."""
        if not (miner and timestamp and nonce and signature):
            raise Unauthorized("miner requests must be signed (X-Aitbc-Miner, -Timestamp, -Nonce, -Signature)")
        if not timestamp.isdigit() or len(nonce) > 64 or len(signature) != 128:
            raise Unauthorized("malformed miner auth headers")
        ts = int(timestamp)
        # Requests older than the window, or from before this process started, could be replays.
        if abs(now_ms - ts) > self.max_age_ms or ts < self.started_at_ms - 1000:
            raise Unauthorized("miner request timestamp is outside the accepted window (check the clock)")
        try:
            request = MinerRequest(
                miner=miner,
                method=method.upper(),
                path=path,
                timestamp_ms=ts,
                nonce=nonce,
                body_sha256=body_sha256 or sha256_hex(body),
            )
            message = miner_request_bytes(request)
            sig = bytes.fromhex(signature)
        except (ValueError, AitbcError):
            raise Unauthorized("malformed miner auth headers") from None
        if not is_valid_signature(miner, self.chain_id, SigningKind.MINER_REQUEST, message, sig):
            raise Unauthorized("miner request signature does not verify")
        replay_key = f"{miner}:{nonce}"
        if replay_key in self._seen:
            raise Unauthorized("replayed miner request (nonce already used)")
        self._seen[replay_key] = ts
        while self._seen and next(iter(self._seen.values())) < now_ms - 2 * self.max_age_ms:
            self._seen.popitem(last=False)
        return miner
