"""Coordinator auth: API keys with per-key token buckets, and signed miner requests (forgery, replay, staleness)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aitbc.coordinator.auth import (
    ApiKeyAuthenticator,
    MinerRequestVerifier,
    hash_secret,
    new_api_key,
)
from aitbc.coordinator.db.engine import create_db_engine, migrate
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.protocol.auth import (
    HEADER_MINER,
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TIMESTAMP,
    MAX_REQUEST_AGE_MS,
    sign_miner_request,
)
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RateLimited, Unauthorized

CHAIN = "aitbc-unit"
MINER = KeyPair.from_seed(b"\x41" * 32)
IMPOSTOR = KeyPair.from_seed(b"\x42" * 32)
STARTED_MS = 1_700_000_000_000
NOW_MS = STARTED_MS + 60_000
PATH = "/api/v1/miners/claim"
BODY = b'{"wait_seconds":1}'


# -- API keys ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CoordinatorRepo]:
    # One store for the module (migrating is the slow part); every test adds its own fresh keys.
    path: Path = tmp_path_factory.mktemp("auth") / "coordinator.db"
    engine = create_db_engine(f"sqlite:///{path}")
    migrate(engine)
    yield CoordinatorRepo(engine)
    engine.dispose()


def add_key(repo: CoordinatorRepo, rate: float = 10.0, burst: int = 3, client: str | None = None) -> str:
    token, row = new_api_key("test", client, rate, burst)
    repo.insert_api_key(row)
    return token


def test_new_keys_store_only_the_secrets_hash(repo: CoordinatorRepo) -> None:
    token, row = new_api_key("ci", None, 5.0, 7)
    prefix, key_id, secret = token.split("_")
    assert prefix == "aitbc"
    assert row.id == key_id
    assert row.secret_hash == hash_secret(secret)
    assert secret not in str(row.to_row())
    assert row.client == f"key_{key_id}"
    assert new_api_key("ci", "ait1someone", 5.0, 7)[1].client == "ait1someone"
    assert new_api_key("ci", None, 5.0, 7)[0] != token


def test_a_valid_key_authenticates(repo: CoordinatorRepo) -> None:
    token = add_key(repo, client="alice")
    key = ApiKeyAuthenticator(repo).authenticate(token, now=100.0)
    assert key.client == "alice"
    assert key.id == token.split("_")[1]


@pytest.mark.parametrize(
    ("token", "needle"),
    [
        (None, "missing"),
        ("", "missing"),
        ("not-a-key", "malformed"),
        ("aitbc_only-two", "malformed"),
        ("other_abc_def", "malformed"),
        ("aitbc_abc_def_ghi", "malformed"),
        ("aitbc_000000000000_" + "0" * 48, "invalid"),
    ],
)
def test_missing_malformed_and_unknown_keys(repo: CoordinatorRepo, token: str | None, needle: str) -> None:
    with pytest.raises(Unauthorized, match=needle) as info:
        ApiKeyAuthenticator(repo).authenticate(token, now=1.0)
    assert info.value.reason == "unauthorized"


def test_a_wrong_secret_for_a_real_key_id(repo: CoordinatorRepo) -> None:
    prefix, key_id, secret = add_key(repo).split("_")
    wrong = f"{prefix}_{key_id}_{'0' * len(secret)}"
    with pytest.raises(Unauthorized, match="invalid"):
        ApiKeyAuthenticator(repo).authenticate(wrong, now=1.0)


def test_a_revoked_key(repo: CoordinatorRepo) -> None:
    token = add_key(repo)
    assert repo.revoke_api_key(token.split("_")[1])
    with pytest.raises(Unauthorized, match="revoked"):
        ApiKeyAuthenticator(repo).authenticate(token, now=1.0)


def test_rate_limit_allows_the_burst_then_refuses_with_retry_after(repo: CoordinatorRepo) -> None:
    token = add_key(repo, rate=2.0, burst=3)
    auth = ApiKeyAuthenticator(repo)
    for _ in range(3):
        auth.authenticate(token, now=10.0)
    with pytest.raises(RateLimited) as info:
        auth.authenticate(token, now=10.0)
    assert info.value.reason == "rate_limited"
    assert info.value.retry_after == pytest.approx(0.5)
    # A refused request does not consume a token: after the advertised wait one more passes ...
    auth.authenticate(token, now=10.5)
    # ... and only one.
    with pytest.raises(RateLimited):
        auth.authenticate(token, now=10.5)


def test_rate_limit_refills_up_to_the_burst(repo: CoordinatorRepo) -> None:
    token = add_key(repo, rate=1.0, burst=2)
    auth = ApiKeyAuthenticator(repo)
    auth.authenticate(token, now=0.0)
    auth.authenticate(token, now=0.0)
    # A long idle period refills the bucket to its burst, not beyond.
    for _ in range(2):
        auth.authenticate(token, now=1_000.0)
    with pytest.raises(RateLimited):
        auth.authenticate(token, now=1_000.0)


def test_rate_limits_are_per_key(repo: CoordinatorRepo) -> None:
    a = add_key(repo, rate=0.1, burst=1)
    b = add_key(repo, rate=0.1, burst=1)
    auth = ApiKeyAuthenticator(repo)
    auth.authenticate(a, now=5.0)
    with pytest.raises(RateLimited):
        auth.authenticate(a, now=5.0)
    auth.authenticate(b, now=5.0)


def test_bad_keys_do_not_consume_a_good_keys_budget(repo: CoordinatorRepo) -> None:
    token = add_key(repo, rate=0.1, burst=1)
    prefix, key_id, secret = token.split("_")
    auth = ApiKeyAuthenticator(repo)
    for _ in range(5):
        with pytest.raises(Unauthorized):
            auth.authenticate(f"{prefix}_{key_id}_{'f' * len(secret)}", now=5.0)
    auth.authenticate(token, now=5.0)


# -- signed miner requests ----------------------------------------------------------------------


def verifier() -> MinerRequestVerifier:
    return MinerRequestVerifier(CHAIN, STARTED_MS)


def signed_headers(
    key: KeyPair = MINER, ts: int = NOW_MS, body: bytes = BODY, path: str = PATH, chain: str = CHAIN
) -> dict[str, str]:
    return sign_miner_request(key, chain, "POST", path, body, ts)


def verify(
    v: MinerRequestVerifier,
    headers: dict[str, str | None],
    *,
    body: bytes = BODY,
    path: str = PATH,
    method: str = "POST",
    now: int = NOW_MS,
) -> str:
    return v.verify(
        headers.get(HEADER_MINER),
        headers.get(HEADER_TIMESTAMP),
        headers.get(HEADER_NONCE),
        headers.get(HEADER_SIGNATURE),
        method,
        path,
        body,
        now,
    )


def refused(v: MinerRequestVerifier, headers: dict[str, str | None], needle: str, **kw: object) -> None:
    with pytest.raises(Unauthorized, match=needle) as info:
        verify(v, headers, **kw)  # type: ignore[arg-type]
    assert info.value.reason == "unauthorized"


def test_a_signed_request_verifies() -> None:
    assert verify(verifier(), signed_headers()) == MINER.address  # type: ignore[arg-type]


@pytest.mark.parametrize("missing", [HEADER_MINER, HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE])
def test_unsigned_requests_are_refused(missing: str) -> None:
    headers: dict[str, str | None] = {**signed_headers(), missing: None}
    refused(verifier(), headers, "must be signed")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (HEADER_TIMESTAMP, "12e3"),
        (HEADER_TIMESTAMP, "-1"),
        (HEADER_NONCE, "n" * 65),
        (HEADER_SIGNATURE, "ab" * 63),
        (HEADER_SIGNATURE, "zz" * 64),
        (HEADER_MINER, "not-an-address"),
        (HEADER_MINER, "ait1qqqqqqqqqqqqqqqqqqqq"),
    ],
)
def test_malformed_headers_are_refused(header: str, value: str) -> None:
    headers: dict[str, str | None] = {**signed_headers(), header: value}
    with pytest.raises(Unauthorized) as info:
        verify(verifier(), headers)
    assert info.value.reason == "unauthorized"


def test_forged_signature_another_key_claims_to_be_the_miner() -> None:
    forged: dict[str, str | None] = {**signed_headers(key=IMPOSTOR), HEADER_MINER: MINER.address}
    refused(verifier(), forged, "does not verify")


def test_signature_for_another_chain() -> None:
    refused(verifier(), signed_headers(chain="aitbc-other"), "does not verify")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change", [{"body": b'{"wait_seconds":60}'}, {"path": "/api/v1/miners/register"}, {"method": "PUT"}]
)
def test_a_signature_for_another_request(change: dict[str, object]) -> None:
    refused(verifier(), signed_headers(), "does not verify", **change)  # type: ignore[arg-type]


def test_replayed_request_is_refused() -> None:
    v = verifier()
    headers = signed_headers()
    assert verify(v, headers) == MINER.address  # type: ignore[arg-type]
    refused(v, headers, "replayed", now=NOW_MS + 5)  # type: ignore[arg-type]
    # A fresh request (new nonce) from the same miner still passes.
    assert verify(v, signed_headers()) == MINER.address  # type: ignore[arg-type]


def test_a_replay_with_a_failed_first_attempt_is_not_remembered() -> None:
    # A request refused for its signature does not burn its nonce for the real miner (no DoS by nonce).
    v = verifier()
    good = signed_headers()
    forged: dict[str, str | None] = {**good, HEADER_SIGNATURE: signed_headers(key=IMPOSTOR)[HEADER_SIGNATURE]}
    refused(v, forged, "does not verify")
    assert verify(v, good) == MINER.address  # type: ignore[arg-type]


@pytest.mark.parametrize("skew", [MAX_REQUEST_AGE_MS + 1, -(MAX_REQUEST_AGE_MS + 1), 10 * MAX_REQUEST_AGE_MS])
def test_stale_or_future_timestamps_are_refused(skew: int) -> None:
    headers = signed_headers(ts=NOW_MS - skew)
    refused(verifier(), headers, "outside the accepted window")  # type: ignore[arg-type]


def test_timestamps_at_the_window_edge_pass() -> None:
    v = verifier()
    assert verify(v, signed_headers(ts=NOW_MS - MAX_REQUEST_AGE_MS)) == MINER.address  # type: ignore[arg-type]
    assert verify(v, signed_headers(ts=NOW_MS + MAX_REQUEST_AGE_MS)) == MINER.address  # type: ignore[arg-type]


def test_requests_signed_before_the_coordinator_started_are_refused() -> None:
    # The replay memory is in-process: a request from before a restart could be a replay, so it is refused.
    v = MinerRequestVerifier(CHAIN, STARTED_MS)
    headers = signed_headers(ts=STARTED_MS - 1_001)
    refused(v, headers, "outside the accepted window", now=STARTED_MS + 1_000)  # type: ignore[arg-type]


def test_replay_memory_is_bounded_but_still_catches_replays_inside_the_window() -> None:
    v = verifier()
    first = signed_headers(ts=NOW_MS)
    verify(v, first)  # type: ignore[arg-type]
    # Much later traffic prunes old nonces ...
    later = NOW_MS + 3 * MAX_REQUEST_AGE_MS
    for i in range(3):
        verify(v, signed_headers(ts=later + i), now=later + i)  # type: ignore[arg-type]
    assert len(v._seen) == 3
    # ... and the pruned request is still refused, by its timestamp.
    refused(v, first, "outside the accepted window", now=later + 10)  # type: ignore[arg-type]
