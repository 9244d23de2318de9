"""The daemon's state without HTTP: unlock timeout, wipe on lock, failed-unlock window (a fake clock)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from aitbc.protocol.crypto import KeyPair, SigningKind
from aitbc.protocol.errors import InvalidTx, NotFound, RateLimited
from aitbc.protocol.tx import (
    MultisigTransfer,
    Transfer,
    compute_multisig_address,
    tx_from_json_obj,
    tx_to_json_obj,
    verify_tx,
)
from aitbc.wallet.config import WalletSettings, is_loopback_host
from aitbc.wallet.keystore import WrongPassphrase
from aitbc.wallet.multisig import combine_spends, parse_spend
from aitbc.wallet.service import UnlockedKey, WalletLocked, WalletService


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path, clock: Clock, **overrides: object) -> WalletService:
    settings = WalletSettings(
        wallet_dir=tmp_path,
        kdf_memlimit_kib=8,
        kdf_opslimit=1,
        allow_weak_kdf=True,
        **overrides,  # type: ignore[arg-type]
    )
    return WalletService(settings, clock=clock)


def test_unlock_timeout_and_lock_wipe(tmp_path: Path) -> None:
    clock = Clock()

    async def run() -> None:
        service = _service(tmp_path, clock)
        created = await service.create("alice", "pw")
        with pytest.raises(WalletLocked):
            service.key("alice")
        with pytest.raises(NotFound):
            service.key("bob")
        await service.unlock("alice", "pw", timeout_s=10)
        key = service.key("alice")
        assert key.address == created["address"]
        clock.now += 9.9
        assert service.key("alice") is key
        clock.now += 0.2
        with pytest.raises(WalletLocked):
            service.key("alice")
        with pytest.raises(WalletLocked):  # the old handle is wiped too: it can no longer sign
            key.sign("c", SigningKind.TX, b"m")
        await service.unlock("alice", "pw")
        key = service.key("alice")
        assert service.lock("alice") == ["alice"]
        with pytest.raises(WalletLocked):
            key.sign("c", SigningKind.TX, b"m")
        assert service.lock("alice") == []

    asyncio.run(run())


def test_failed_unlocks_window(tmp_path: Path) -> None:
    clock = Clock()

    async def run() -> None:
        service = _service(tmp_path, clock, max_failed_unlocks=2, failed_unlock_window_s=60)
        await service.create("alice", "pw")
        for _ in range(2):
            with pytest.raises(WrongPassphrase):
                await service.unlock("alice", "bad")
        with pytest.raises(RateLimited) as exc:
            await service.unlock("alice", "pw")
        assert 59 <= exc.value.retry_after <= 60
        clock.now += 61
        await service.unlock("alice", "pw")  # the window passed
        with pytest.raises(WrongPassphrase):
            await service.unlock("alice", "bad")
        await service.unlock("alice", "pw")  # a success resets the count

    asyncio.run(run())


def test_unlocked_key_signs_like_keypair() -> None:
    key = KeyPair.from_seed(b"\x05" * 32)
    unlocked = UnlockedKey("k", key, expires_at=1e18)
    tx = Transfer(chain_id="c", sender=key.address, nonce=0, fee=1, recipient=key.address, amount=1)
    signed = unlocked.sign_tx(tx)
    verify_tx(signed)
    assert unlocked.sign("c", SigningKind.BLOCK, b"x") == key.sign("c", SigningKind.BLOCK, b"x")


def test_sign_tx_refuses_other_sender(tmp_path: Path) -> None:
    clock = Clock()

    async def run() -> None:
        service = _service(tmp_path, clock)
        await service.create("alice", "pw")
        await service.unlock("alice", "pw")
        other = KeyPair.generate().address
        tx = Transfer(chain_id="c", sender=other, nonce=0, fee=1, recipient=other, amount=1)
        with pytest.raises(InvalidTx):
            await service.sign_tx("alice", tx_to_json_obj(tx))
        # but it approves a multisig spend (membership is the chain's rule)
        spend = MultisigTransfer(
            chain_id="c", sender=compute_multisig_address(other, 0), nonce=0, fee=1, recipient=other, amount=1
        )
        approved = tx_from_json_obj((await service.sign_tx("alice", tx_to_json_obj(spend)))["tx"])
        assert isinstance(approved, MultisigTransfer)
        assert [a.signer for a in approved.approvals] == [service.key("alice").address]
        verify_tx(approved)

    asyncio.run(run())


def test_combine_spends_refuses_different_spends() -> None:
    a, b = KeyPair.from_seed(b"\x01" * 32), KeyPair.from_seed(b"\x02" * 32)
    base = MultisigTransfer(
        chain_id="c", sender=compute_multisig_address(a.address, 0), nonce=0, fee=1, recipient=a.address, amount=5
    )
    from aitbc.protocol.tx import add_multisig_approvals, sign_multisig_approval

    one = add_multisig_approvals(base, [sign_multisig_approval(base, a)])
    two = add_multisig_approvals(base, [sign_multisig_approval(base, b)])
    assert len(combine_spends([one, two]).approvals) == 2
    other = add_multisig_approvals(
        MultisigTransfer(chain_id="c", sender=base.sender, nonce=0, fee=1, recipient=a.address, amount=6), []
    )
    with pytest.raises(InvalidTx):
        combine_spends([one, other])
    with pytest.raises(InvalidTx):
        parse_spend(
            tx_to_json_obj(Transfer(chain_id="c", sender=a.address, nonce=0, fee=1, recipient=a.address, amount=1))
        )


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_bind_refuses_non_loopback_unless_forced(tmp_path: Path) -> None:
    from aitbc.protocol.errors import ConfigError
    from aitbc.wallet.app import bind_daemon_socket

    with pytest.raises(ConfigError) as exc:
        bind_daemon_socket(WalletSettings(wallet_dir=tmp_path, host="0.0.0.0", port=0))
    assert exc.value.reason == "not_loopback"
    for host in ("127.0.0.1", "::1"):
        sock = bind_daemon_socket(WalletSettings(wallet_dir=tmp_path, host=host, port=0))
        sock.close()
    sock = bind_daemon_socket(WalletSettings(wallet_dir=tmp_path, host="0.0.0.0", port=0, force_bind=True))
    sock.close()
