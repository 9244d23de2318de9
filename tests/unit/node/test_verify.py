"""SignatureVerifier: bulk Ed25519 checks on worker processes, same answers as checking inline."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal

import nacl.bindings

from aitbc.node.verify import SignatureVerifier
from aitbc.protocol.crypto import SignatureCheck, check_signatures


def _checks(n: int) -> tuple[list[SignatureCheck], list[bool]]:
    checks: list[SignatureCheck] = []
    expected: list[bool] = []
    for i in range(n):
        pk, sk = nacl.bindings.crypto_sign_seed_keypair(hashlib.sha256(b"%d" % (i % 20)).digest())
        signed = nacl.bindings.crypto_sign(b"message %d" % i, sk)
        if i % 7 == 0:  # flipped bit
            signed = signed[:5] + bytes([signed[5] ^ 1]) + signed[6:]
        elif i % 11 == 0:  # malformed public key
            pk = pk[:31]
        checks.append((signed, pk))
        expected.append(i % 7 != 0 and i % 11 != 0)
    return checks, expected


def test_bulk_checks_match_inline_checks() -> None:
    checks, expected = _checks(600)
    assert check_signatures(checks) == expected
    verifier = SignatureVerifier(2)
    try:

        async def run() -> None:
            assert await verifier.check(checks) == expected
            assert await verifier.check(checks[:10]) == expected[:10]  # inline
            assert await verifier.check([]) == []
            parts = await asyncio.gather(*(verifier.check(checks[i : i + 200]) for i in range(0, 600, 200)))
            assert [ok for part in parts for ok in part] == expected

        asyncio.run(run())
        asyncio.run(run())  # a second event loop uses the same workers
    finally:
        verifier.close()
    assert asyncio.run(verifier.check(checks)) == expected  # closed: checked inline


def test_a_killed_worker_costs_no_answer_and_is_replaced() -> None:
    checks, expected = _checks(600)
    verifier = SignatureVerifier(2)
    verifier.start()
    victim = verifier._pool[0].proc.pid
    try:

        async def run() -> None:
            pending = asyncio.gather(*(verifier.check(checks) for _ in range(4)))
            await asyncio.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            for result in await pending:
                assert result == expected
            assert await verifier.check(checks) == expected

        asyncio.run(run())
        live = [w.proc.pid for w in verifier._pool if not w.dead]
        assert victim not in live and len(live) == 2
    finally:
        verifier.close()
    assert all(w.proc.poll() is not None for w in verifier._pool) or not verifier._pool
