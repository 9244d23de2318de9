"""Governance on a real 4-validator devnet (`aitbc devnet up --validators 4`), driven through the CLI:

* a proposal lowering ``protocol_fee_bps`` (and raising ``min_fee``) passes, takes effect at its stated
  height on all four validators, and the next settled job pays the new fee (the coordinator's settle tx pays
  the new ``min_fee``: nothing cached the old parameters);
* a vetoed proposal burns its deposit.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from aitbc.client.node import NodeClient
from aitbc.devnet.config import DevnetInfo, devnet_file, read_devnet_info
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import Delegate, Transfer, sign_tx
from aitbc.runtime.keyfile import read_keyfile, write_keyfile

ENV = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | {"COLUMNS": "250", "NO_COLOR": "1"}
AITBC = 1_000_000
VALIDATORS = 4


def aitbc(*args: str, timeout: float = 90) -> str:
    ran = subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=timeout, env=ENV, check=False
    )
    assert ran.returncode == 0, f"aitbc {' '.join(args)}:\n{ran.stdout}\n{ran.stderr}"
    return ran.stdout


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def base_port() -> int:
    """A base port with every port a 4-validator devnet uses free (validator i: base + 10i, +1, +2)."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 10)
        wanted = [base + 10 * i + k for i in range(VALIDATORS) for k in range(3)] + [base + 100]
        if all(port_free(p) for p in wanted):
            return base
    raise AssertionError("no free port range")


def wait_until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def start_devnet(data_dir: Path, log: Path) -> tuple[subprocess.Popen[bytes], DevnetInfo, int]:
    base = base_port()
    args = [sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(data_dir), "--validators", "4"]
    args += ["--rpc-port", str(base), "--ws-port", str(base + 1), "--p2p-port", str(base + 2)]
    args += ["--coordinator-port", str(base + 100), "--miner-backend", "echo", "--no-demo"]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=ENV)
    deadline = time.monotonic() + 180
    while not devnet_file(data_dir).exists():
        assert proc.poll() is None, f"devnet up exited {proc.returncode}:\n{log.read_text(errors='replace')}"
        assert time.monotonic() < deadline, f"devnet not up after 180 s:\n{log.read_text(errors='replace')}"
        time.sleep(0.2)
    return proc, read_devnet_info(data_dir), base


def stop_devnet(proc: subprocess.Popen[bytes], data_dir: Path) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    with contextlib.suppress(Exception):
        for pid in read_devnet_info(data_dir).pids.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def send_all(node: NodeClient, txs: list[Any]) -> None:
    hashes = [node.send_tx(tx) for tx in txs]
    for tx_hash in hashes:
        status = node.wait_for_tx(tx_hash, timeout=60)
        assert status["status"] == "committed", status


def proposal(data_dir: Path, proposal_id: int) -> dict[str, Any]:
    shown: dict[str, Any] = orjson.loads(aitbc("gov", "show", str(proposal_id), "--json", "--devnet", str(data_dir)))
    return shown


def test_param_change_applies_on_every_validator_and_the_next_job_pays_the_new_fee(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    proc, info, base = start_devnet(data_dir, tmp_path / "devnet.log")
    try:
        rpc_urls = [f"http://127.0.0.1:{base + 10 * i}/" for i in range(VALIDATORS)]
        keys = tmp_path / "keys"
        keys.mkdir()
        voters = {name: KeyPair.generate() for name in ("alice", "bob", "carol")}
        for name, key in voters.items():
            write_keyfile(keys / f"{name}.key", key)
        faucet = read_keyfile(Path(info.faucet_key))
        with NodeClient(info.rpc_url) as node:
            chain_id = node.get_chain_info()["chain_id"]
            validators = [v["address"] for v in node.get_validators()["validators"]][:3]
            nonce = node.next_nonce(faucet.address)
            send_all(
                node,
                [
                    sign_tx(Transfer(chain_id=chain_id, sender=faucet.address, nonce=nonce + i, fee=1_000,
                                     recipient=k.address, amount=2_000 * AITBC), faucet)
                    for i, k in enumerate(voters.values())
                ],
            )  # fmt: skip
            # Bonded stake: alice 600 and bob 300 to two validators, carol 100 to a third.
            bonds = [("alice", 600), ("bob", 300), ("carol", 100)]
            send_all(
                node,
                [
                    sign_tx(Delegate(chain_id=chain_id, sender=voters[n].address, nonce=0, fee=1_000,
                                     validator=validators[i], amount=a * AITBC), voters[n])
                    for i, (n, a) in enumerate(bonds)
                ],
            )  # fmt: skip
            activation = node.get_head()["height"] + 45
        common = ["--keys-dir", str(keys), "--devnet", str(data_dir)]

        out = aitbc("gov", "propose", "--title", "cheaper jobs", "--kind", "param_change",
                    "--set", "protocol_fee_bps=50", "--set", "min_fee=2000", "--activation-height", str(activation),
                    "--deposit", "10", "--from", "alice", *common)  # fmt: skip
        (fee_id,) = (int(x) for x in re.findall(r"proposal (\d+):", out))
        out = aitbc("gov", "propose", "--title", "a bad idea", "--kind", "text", "--deposit", "10", "--from", "carol",
                    *common)  # fmt: skip
        (veto_id,) = (int(x) for x in re.findall(r"proposal (\d+):", out))
        with NodeClient(info.rpc_url) as node:
            carol_after_deposit = node.get_account(voters["carol"].address)["balance"]
        aitbc("gov", "vote", str(fee_id), "yes", "--from", "alice", *common)
        aitbc("gov", "vote", str(fee_id), "yes", "--from", "bob", *common)
        aitbc("gov", "vote", str(veto_id), "no_with_veto", "--from", "alice", *common)
        aitbc("gov", "vote", str(veto_id), "no", "--from", "bob", *common)

        passed = wait_until(
            lambda: (p := proposal(data_dir, fee_id))["status"] != "voting_period" and p, 120, "the fee vote to close"
        )
        assert passed["status"] == "passed", passed
        assert passed["enact_height"] == activation
        vetoed = wait_until(
            lambda: (p := proposal(data_dir, veto_id))["status"] != "voting_period" and p, 60, "the veto vote to close"
        )
        assert vetoed["status"] == "vetoed", vetoed

        # Every validator enacts the change exactly at the stated height, on the same block.
        for url in rpc_urls:
            wait_until(lambda u=url: NodeClient(u).get_head()["height"] >= activation, 120, f"{url} to reach it")
        hashes = set()
        for url in rpc_urls:
            with NodeClient(url) as node:
                params = node.call("get_gov_params")
                assert params["params"]["protocol_fee_bps"] == 50 and params["params"]["min_fee"] == 2000, url
                history = {(r["name"], r["height"]) for r in params["history"]}
                assert history == {("protocol_fee_bps", activation), ("min_fee", activation)}, url
                hashes.add(node.get_block(activation, False)["hash"])
                assert params["burned"] == 10 * AITBC, url  # the veto burned carol's deposit
        assert len(hashes) == 1

        with NodeClient(info.rpc_url) as node:
            # carol's deposit is gone for good: her balance did not get it back
            assert node.get_account(voters["carol"].address)["balance"] == carol_after_deposit

        # The next job settles with the new protocol fee (and the coordinator pays the new min_fee).
        ran = aitbc("job", "submit", "--prompt", "governed", "--wait", "--devnet", str(data_dir), timeout=180)
        (job_id,) = set(re.findall(r"\b(?:job|dj)[_-][0-9a-z_-]{10,}\b", ran))
        cost = orjson.loads(aitbc("job", "cost", job_id, "--json", "--devnet", str(data_dir)))
        assert cost["paid_to_miner"] > 0
        assert cost["protocol_fee"] == cost["paid_to_miner"] * 50 // 10_000, cost
    finally:
        stop_devnet(proc, data_dir)
