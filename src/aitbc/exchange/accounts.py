"""People: sign-up and login (Argon2id), sessions with expiry and revocation, TOTP 2FA (RFC 6238) with
replay protection, API keys with scopes, per-user rate limits and the audit log.

Tokens are random 32-byte strings given to the client once; the database keeps only their SHA-256, so a
stolen database does not log anyone in. ``s_…`` is a session, ``k_<id>_…`` an API key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

import nacl.exceptions
import nacl.pwhash
import pyotp
import sqlalchemy as sa

from aitbc.exchange.config import ExchangeSettings
from aitbc.exchange.db import schema
from aitbc.exchange.store import ExchangeStore
from aitbc.protocol.errors import AitbcError, Conflict, Forbidden, NotFound, Unauthorized

SCOPES: Final = ("read", "trade", "withdraw")
TOTP_STEP_SECONDS: Final = 30
ISSUER: Final = "AITBC Exchange"


# Unauthorized (401), Forbidden (403) and Conflict (409) are the project's (aitbc.protocol.errors).


class TooManyRequests(AitbcError):
    reason = "rate_limited"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a user, through a session or an API key, with its scopes."""

    user_id: int
    username: str
    scopes: frozenset[str]
    session_id: str | None = None
    api_key_id: str | None = None

    @property
    def engine_user(self) -> str:
        return str(self.user_id)

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise Forbidden(f"this credential lacks the {scope!r} scope", reason="missing_scope")


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now_ms() -> int:
    return int(time.time() * 1000)


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Accounts:
    """Users, credentials and limits over the exchange store (credential lookups are cached in memory)."""

    def __init__(self, settings: ExchangeSettings, store: ExchangeStore) -> None:
        self.settings = settings
        self.store = store
        self._principals: dict[str, tuple[Principal, int]] = {}
        """token hash -> (principal, expires_at_ms; 0 = no expiry). Revocation removes the entry."""
        self._buckets: dict[int, TokenBucket] = {}
        self._failures: dict[str, deque[float]] = {}
        self._dummy: str | None = None

    # -- passwords ------------------------------------------------------------------------
    @property
    def dummy_hash(self) -> str:
        """A hash of a random password, verified for unknown usernames so both cases take as long."""
        if self._dummy is None:
            self._dummy = self.hash_password(secrets.token_urlsafe(16))
        return self._dummy

    def hash_password(self, password: str) -> str:
        digest: bytes = nacl.pwhash.argon2id.str(
            password.encode(), opslimit=self.settings.password_opslimit, memlimit=self.settings.password_memlimit
        )
        return digest.decode()

    @staticmethod
    def is_password_ok(stored: str, password: str) -> bool:
        try:
            return bool(nacl.pwhash.verify(stored.encode(), password.encode()))
        except nacl.exceptions.InvalidkeyError:
            return False

    # -- throttles ----------------------------------------------------------------------------
    def check_rate(self, user_id: int) -> None:
        bucket = self._buckets.get(user_id)
        if bucket is None:
            bucket = self._buckets[user_id] = TokenBucket(
                self.settings.rate_limit_per_second, self.settings.rate_limit_burst
            )
        if not bucket.take():
            raise TooManyRequests(f"more than {self.settings.rate_limit_per_second:g} requests/s; slow down")

    def check_login_throttle(self, key: str) -> None:
        window = self._failures.get(key)
        if window is None:
            return
        cutoff = time.monotonic() - 60
        while window and window[0] < cutoff:
            window.popleft()
        if len(window) >= self.settings.login_attempts_per_minute:
            raise TooManyRequests("too many failed attempts; wait a minute")

    def note_failure(self, key: str) -> None:
        window = self._failures.setdefault(key, deque())
        window.append(time.monotonic())
        if len(self._failures) > 100_000:  # bounded memory under a username-spraying attack
            self._failures.pop(next(iter(self._failures)))

    # -- audit ----------------------------------------------------------------------------------
    def audit(self, user_id: int | None, action: str, **detail: Any) -> None:
        self.store.execute(
            schema.audit.insert(), {"at_ms": _now_ms(), "user_id": user_id, "action": action, "detail": detail}
        )

    # -- users and sessions -------------------------------------------------------------------
    def create_user(self, username: str, password_hash: str, *, is_operator: bool = False) -> int:
        try:
            result = self.store.execute(
                schema.users.insert(),
                {
                    "username": username,
                    "password_hash": password_hash,
                    "totp_enabled": False,
                    "totp_last_step": 0,
                    "is_operator": is_operator,
                    "created_at_ms": _now_ms(),
                },
            )
        except sa.exc.IntegrityError:
            raise Conflict(f"username {username!r} is taken", reason="username_taken") from None
        user_id = int(result.inserted_primary_key[0])
        self.audit(user_id, "sign_up", username=username)
        return user_id

    def get_user(self, user_id: int) -> Any:
        row = self.store.fetch_one(sa.select(schema.users).where(schema.users.c.id == user_id))
        if row is None:
            raise NotFound(f"no user {user_id}")
        return row

    def find_user(self, username: str) -> Any:
        return self.store.fetch_one(sa.select(schema.users).where(schema.users.c.username == username))

    def create_session(self, user: Any) -> tuple[str, str, int]:
        """(session id, token, expires_at_ms); the oldest sessions beyond the per-user cap are revoked."""
        s = schema.sessions.c
        live = self.store.fetch_all(
            sa.select(s.id)
            .where(s.user_id == user.id, s.revoked.is_(False), s.expires_at_ms > _now_ms())
            .order_by(s.created_at_ms)
        )
        for row in live[: max(0, len(live) - self.settings.max_sessions_per_user + 1)]:
            self.revoke_session(user.id, row.id)
        session_id, token = secrets.token_hex(8), "s_" + secrets.token_urlsafe(32)
        now = _now_ms()
        expires = now + self.settings.session_ttl_seconds * 1000
        self.store.execute(
            schema.sessions.insert(),
            {
                "id": session_id,
                "token_hash": _hash_token(token),
                "user_id": user.id,
                "created_at_ms": now,
                "expires_at_ms": expires,
                "revoked": False,
            },
        )
        self.audit(user.id, "login", session=session_id)
        return session_id, token, expires

    def list_sessions(self, user_id: int) -> list[dict[str, Any]]:
        s = schema.sessions.c
        rows = self.store.fetch_all(
            sa.select(s.id, s.created_at_ms, s.expires_at_ms, s.revoked)
            .where(s.user_id == user_id)
            .order_by(s.created_at_ms.desc())
            .limit(100)
        )
        now = _now_ms()
        return [
            {
                "id": r.id,
                "created_at_ms": r.created_at_ms,
                "expires_at_ms": r.expires_at_ms,
                "active": not r.revoked and r.expires_at_ms > now,
            }
            for r in rows
        ]

    def revoke_session(self, user_id: int, session_id: str) -> None:
        s = schema.sessions.c
        row = self.store.fetch_one(sa.select(s.token_hash).where(s.id == session_id, s.user_id == user_id))
        if row is None:
            raise NotFound(f"no session {session_id}")
        self.store.execute(schema.sessions.update().where(s.id == session_id).values(revoked=True))
        self._principals.pop(row.token_hash, None)
        self.audit(user_id, "session_revoked", session=session_id)

    # -- API keys -------------------------------------------------------------------------------
    def create_api_key(self, user_id: int, label: str, scopes: list[str]) -> tuple[str, str]:
        bad = sorted(set(scopes) - set(SCOPES))
        if bad or not scopes:
            raise AitbcError(f"scopes must be a non-empty subset of {list(SCOPES)}", reason="bad_scopes")
        key_id = secrets.token_hex(6)
        token = f"k_{key_id}_{secrets.token_urlsafe(32)}"
        self.store.execute(
            schema.api_keys.insert(),
            {
                "id": key_id,
                "token_hash": _hash_token(token),
                "user_id": user_id,
                "label": label,
                "scopes": ",".join(s for s in SCOPES if s in scopes),
                "created_at_ms": _now_ms(),
                "revoked": False,
            },
        )
        self.audit(user_id, "api_key_created", key=key_id, scopes=scopes)
        return key_id, token

    def list_api_keys(self, user_id: int) -> list[dict[str, Any]]:
        k = schema.api_keys.c
        rows = self.store.fetch_all(sa.select(schema.api_keys).where(k.user_id == user_id).order_by(k.created_at_ms))
        return [
            {
                "id": r.id,
                "label": r.label,
                "scopes": r.scopes.split(","),
                "created_at_ms": r.created_at_ms,
                "revoked": r.revoked,
            }
            for r in rows
        ]

    def revoke_api_key(self, user_id: int, key_id: str) -> None:
        k = schema.api_keys.c
        row = self.store.fetch_one(sa.select(k.token_hash).where(k.id == key_id, k.user_id == user_id))
        if row is None:
            raise NotFound(f"no API key {key_id}")
        self.store.execute(schema.api_keys.update().where(k.id == key_id).values(revoked=True))
        self._principals.pop(row.token_hash, None)
        self.audit(user_id, "api_key_revoked", key=key_id)

    # -- authentication -------------------------------------------------------------------------
    def authenticate(self, token: str) -> Principal:
        token_hash = _hash_token(token)
        cached = self._principals.get(token_hash)
        now = _now_ms()
        if cached is not None:
            principal, expires = cached
            if expires and expires <= now:
                self._principals.pop(token_hash, None)
                raise Unauthorized("session expired; log in again", reason="session_expired")
            return principal
        principal, expires = self._load_principal(token, token_hash, now)
        if len(self._principals) > 100_000:
            self._principals.clear()
        self._principals[token_hash] = (principal, expires)
        return principal

    def _load_principal(self, token: str, token_hash: str, now: int) -> tuple[Principal, int]:
        u = schema.users.c
        if token.startswith("s_"):
            s = schema.sessions.c
            row = self.store.fetch_one(
                sa.select(s.id, s.expires_at_ms, s.revoked, u.id.label("user_id"), u.username)
                .join(schema.users, u.id == s.user_id)
                .where(s.token_hash == token_hash)
            )
            if row is None:
                raise Unauthorized("unknown session token")
            if row.revoked:
                raise Unauthorized("session revoked", reason="session_revoked")
            if row.expires_at_ms <= now:
                raise Unauthorized("session expired; log in again", reason="session_expired")
            return Principal(row.user_id, row.username, frozenset(SCOPES), session_id=row.id), row.expires_at_ms
        if token.startswith("k_"):
            k = schema.api_keys.c
            row = self.store.fetch_one(
                sa.select(k.id, k.scopes, k.revoked, u.id.label("user_id"), u.username)
                .join(schema.users, u.id == k.user_id)
                .where(k.token_hash == token_hash)
            )
            if row is None or row.revoked:
                raise Unauthorized("unknown or revoked API key", reason="api_key_revoked" if row else "unauthorized")
            return Principal(row.user_id, row.username, frozenset(row.scopes.split(",")), api_key_id=row.id), 0
        raise Unauthorized("expected Authorization: Bearer s_… (session) or k_… (API key)")

    # -- TOTP 2FA ---------------------------------------------------------------------------------
    def begin_totp(self, user_id: int) -> tuple[str, str]:
        """A new secret (not active until confirmed with a code) and its ``otpauth://`` URI."""
        user = self.get_user(user_id)
        if user.totp_enabled:
            raise Conflict("2FA is already on; turn it off first", reason="2fa_enabled")
        secret = pyotp.random_base32()
        self.store.execute(schema.users.update().where(schema.users.c.id == user_id).values(totp_secret=secret))
        self.audit(user_id, "2fa_setup")
        return secret, self.otpauth_uri(user.username, secret)

    @staticmethod
    def otpauth_uri(username: str, secret: str) -> str:
        return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)

    def check_totp(self, user_id: int, code: str, *, now: float | None = None) -> None:
        """Accept a code of the current step (±1 for clock skew) that is newer than the last one used."""
        user = self.get_user(user_id)
        key = f"totp:{user_id}"
        self.check_login_throttle(key)
        if not user.totp_secret:
            raise Forbidden("2FA is not set up", reason="2fa_required")
        totp = pyotp.TOTP(user.totp_secret)
        t = time.time() if now is None else now
        current = int(t) // TOTP_STEP_SECONDS
        for step in (current - 1, current, current + 1):
            if hmac.compare_digest(totp.at(step * TOTP_STEP_SECONDS), code.strip()):
                if step <= user.totp_last_step:
                    self.note_failure(key)
                    self.audit(user_id, "2fa_replay")
                    raise Unauthorized("this 2FA code was already used", reason="totp_replayed")
                self.store.execute(
                    schema.users.update().where(schema.users.c.id == user_id).values(totp_last_step=step)
                )
                return
        self.note_failure(key)
        self.audit(user_id, "2fa_failed")
        raise Unauthorized("wrong 2FA code", reason="totp_invalid")

    def set_totp_enabled(self, user_id: int, enabled: bool) -> None:
        values: dict[str, Any] = {"totp_enabled": enabled}
        if not enabled:
            values["totp_secret"] = None
        self.store.execute(schema.users.update().where(schema.users.c.id == user_id).values(**values))
        self.audit(user_id, "2fa_enabled" if enabled else "2fa_disabled")

    def list_audit(self, user_id: int, limit: int) -> list[dict[str, Any]]:
        a = schema.audit.c
        rows = self.store.fetch_all(
            sa.select(schema.audit).where(a.user_id == user_id).order_by(a.id.desc()).limit(limit)
        )
        return [{"at_ms": r.at_ms, "action": r.action, "detail": r.detail} for r in rows]
