"""Crash-safe signing: the position is on disk before the signature exists; conflicts are refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aitbc.consensus.signing import LastSigned, is_sign_allowed
from aitbc.node.signguard import DoubleSignRefused, SignGuard
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import StorageError
from aitbc.protocol.vote import Proposal, Vote, VoteKind

KEY = KeyPair.from_seed(b"\x09" * 32)


def vote(height: int, round_: int, kind: VoteKind, block_hash: str) -> Vote:
    return Vote(
        chain_id="c", height=height, round=round_, kind=kind.value, block_hash=block_hash, validator=KEY.address
    )


def test_rule() -> None:
    last = LastSigned(height=5, round=1, step=1, signed_hash="aa" * 32)
    assert is_sign_allowed(None, 1, 0, 0, "bb" * 32)
    assert is_sign_allowed(last, 5, 1, 2, "bb" * 32) and is_sign_allowed(last, 6, 0, 0, "bb" * 32)
    assert is_sign_allowed(last, 5, 1, 1, "aa" * 32)  # the same bytes again
    assert not is_sign_allowed(last, 5, 1, 1, "bb" * 32)
    assert not is_sign_allowed(last, 5, 0, 2, "aa" * 32)
    assert not is_sign_allowed(last, 4, 9, 2, "aa" * 32)


def test_conflicting_vote_is_refused_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "sign_state.json"
    guard = SignGuard(path, KEY)
    first = guard.sign_vote(vote(3, 0, VoteKind.PREVOTE, "aa" * 32))
    assert guard.sign_vote(vote(3, 0, VoteKind.PREVOTE, "aa" * 32)) == first  # resend: identical
    restarted = SignGuard(path, KEY)
    with pytest.raises(DoubleSignRefused):
        restarted.sign_vote(vote(3, 0, VoteKind.PREVOTE, "bb" * 32))
    with pytest.raises(DoubleSignRefused):
        restarted.sign_vote(vote(2, 7, VoteKind.PRECOMMIT, "aa" * 32))
    restarted.sign_vote(vote(3, 0, VoteKind.PRECOMMIT, "aa" * 32))
    restarted.sign_proposal(
        Proposal(chain_id="c", height=3, round=1, block_hash="cc" * 32, pol_round=0, proposer=KEY.address)
    )
    assert SignGuard(path, KEY).last == restarted.last


def test_a_corrupt_sign_state_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "sign_state.json"
    path.write_text("{not json")
    with pytest.raises(StorageError, match="refusing to sign"):
        SignGuard(path, KEY)


def test_kill_9_between_persist_and_send_cannot_lead_to_a_conflicting_vote(tmp_path: Path) -> None:
    """A child signs one vote, prints it, then stops itself; we kill -9 it and restart the guard."""
    path = tmp_path / "sign_state.json"
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from aitbc.node.signguard import SignGuard
        from aitbc.protocol.crypto import KeyPair
        from aitbc.protocol.vote import Vote
        key = KeyPair.from_seed(b"\\x09" * 32)
        guard = SignGuard(Path({str(path)!r}), key)
        v = Vote(chain_id="c", height=9, round=2, kind="precommit", block_hash="aa" * 32, validator=key.address)
        print(guard.sign_vote(v).signature, flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    assert len(line) == 128
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    guard = SignGuard(path, KEY)
    with pytest.raises(DoubleSignRefused):
        guard.sign_vote(vote(9, 2, VoteKind.PRECOMMIT, ""))  # nil after having signed a block
