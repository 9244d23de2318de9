"""``aitbc stake`` / ``unstake`` / ``chain validators`` against a real node, and their errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=90, env=env, check=False
    )


def test_stake_delegate_unstake_and_the_validator_table(node_process: Any) -> None:
    node = node_process()
    rpc = ["--rpc", node.rpc_url]
    faucet = str(node.data_dir / "faucet.key")
    staked = run_cli("stake", "1500", "--from", faucet, *rpc)
    assert staked.returncode == 0, staked.stderr + staked.stdout
    assert "committed in block" in staked.stdout
    delegated = run_cli("stake", "20", "--validator", node.validator.address, "--from", faucet, *rpc)
    assert delegated.returncode == 0, delegated.stderr + delegated.stdout
    unstaked = run_cli("unstake", "500", "--from", faucet, *rpc)
    assert unstaked.returncode == 0, unstaked.stderr + unstaked.stdout

    shown = run_cli("chain", "validators", "--json", *rpc)
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["consensus"] == "poa"
    rows = {v["address"]: v for v in info["validators"]}
    assert rows[node.validator.address]["authority"] and rows[node.validator.address]["power"] >= 100
    assert rows[node.validator.address]["bonded"] == 20 * BASE_UNITS_PER_AITBC
    assert rows[node.faucet.address]["self_stake"] == 1_000 * BASE_UNITS_PER_AITBC
    assert info["unbonding"][0]["amount"] == 500 * BASE_UNITS_PER_AITBC
    table = run_cli("chain", "validators", *rpc)
    assert table.returncode == 0 and "authority" in table.stdout and "staker" in table.stdout


def test_staking_errors_are_one_line(node_process: Any, tmp_path: Path) -> None:
    node = node_process()
    rpc = ["--rpc", node.rpc_url]
    faucet = str(node.data_dir / "faucet.key")
    stranger = KeyPair.from_seed(b"\x44" * 32).address
    for args, reason in [
        (["stake", "5", "--from", faucet], "stake_too_low"),
        (["stake", "5", "--validator", stranger, "--from", faucet], "not_a_validator"),
        (["unstake", "5", "--from", faucet], "insufficient_stake"),
        (["stake", "5", "--validator", "ait1nope", "--from", faucet], "--validator"),
    ]:
        result = run_cli(*args, *rpc)
        assert result.returncode == 1, result.stdout + result.stderr
        assert reason in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
