"""A BFT network grows: a node whose key is no genesis authority follows the chain as a full node, and one that
stakes with ``aitbc stake`` enters the active set at the next epoch, votes, and leaves again after ``unstake``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from aitbc.chain.genesis import genesis_to_json, load_genesis
from aitbc.client.node import NodeClient
from aitbc.devnet.network import ValidatorNetwork, ValidatorProcess
from aitbc.node.init import init_validator_network
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.runtime.files import atomic_write
from aitbc.runtime.keyfile import write_keyfile

EPOCH = 5
TIMEOUT_ARGS = ["--timeout-propose-ms", "600", "--timeout-vote-ms", "300", "--timeout-delta-ms", "300"]


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [int(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ports


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # a node busy starting: ask again
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    env.update(COLUMNS="250", NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=90, env=env, check=False
    )


class Network:
    """Four genesis validators with short epochs, plus nodes joining with keys of their own."""

    def __init__(self, base: Path) -> None:
        self.base = base
        ports = _free_ports(3 * 4)
        self.net = ValidatorNetwork(
            base,
            4,
            ports=[(ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]) for i in range(4)],
            extra_args=[*TIMEOUT_ARGS, "--log-level", "warning"],
        )
        self.extra: list[ValidatorProcess] = []

    def prepare(self, balances: dict[str, int]) -> None:
        _, dirs = init_validator_network(self.base, 4, block_time_ms=300, extra_balances=balances)
        genesis = load_genesis(dirs[0] / "genesis.json")
        staking = msgspec.structs.replace(genesis.params.staking, epoch_blocks=EPOCH)
        genesis = msgspec.structs.replace(genesis, params=msgspec.structs.replace(genesis.params, staking=staking))
        for d in dirs:
            atomic_write(d / "genesis.json", genesis_to_json(genesis))
        self.net.prepare()

    def add_node(self, name: str, key: KeyPair) -> ValidatorProcess:
        """A node with its own key, dialing the four validators (which did not list it as a peer)."""
        data_dir = self.base / name
        data_dir.mkdir()
        (data_dir / "genesis.json").write_bytes((self.net.node_dir(0) / "genesis.json").read_bytes())
        write_keyfile(data_dir / "validator.key", key)
        rpc, ws, p2p = _free_ports(3)
        node = ValidatorProcess(
            len(self.net.nodes) + len(self.extra),
            data_dir,
            "127.0.0.1",
            rpc,
            ws,
            p2p,
            [f"127.0.0.1:{v.p2p_port}" for v in self.net.nodes],
            self.base / "logs" / f"{name}.log",
            [*TIMEOUT_ARGS, "--log-level", "warning"],
        )
        self.extra.append(node)
        return node

    def stop(self) -> None:
        for node in self.extra:
            node.stop()
        self.net.stop()


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    net = Network(tmp_path)
    try:
        yield net
    finally:
        net.stop()


def _head(node: ValidatorProcess) -> dict[str, Any]:
    with NodeClient(node.rpc_url, timeout=3.0) as client:
        return client.get_head()


def _block(node: ValidatorProcess, height: int) -> dict[str, Any]:
    with NodeClient(node.rpc_url, timeout=3.0) as client:
        return client.get_block(height, include_txs=False)


def _status(node: ValidatorProcess, address: str) -> str:
    with NodeClient(node.rpc_url, timeout=3.0) as client:
        rows = {v["address"]: v for v in client.get_validators()["validators"]}
    return str(rows[address]["status"]) if address in rows else "none"


def _signers(node: ValidatorProcess, height: int) -> set[str]:
    commit = _block(node, height)["commit"]
    return {s["validator"] for s in commit["signatures"]} if commit else set()


def test_a_staker_joins_and_leaves_the_active_set_and_a_full_node_follows(network: Network) -> None:
    staker, follower = KeyPair.generate(), KeyPair.generate()
    network.prepare({staker.address: 5_000 * BASE_UNITS_PER_AITBC})
    network.net.start()
    v0 = network.net.nodes[0]
    wait_until("the four validators commit blocks", lambda: _head(v0)["height"] >= 3)

    joiner = network.add_node("staker", staker)
    full = network.add_node("full", follower)
    for node in (joiner, full):
        node.start()
        node.wait_healthy()
    wait_until("the new nodes to sync", lambda: min(_head(joiner)["height"], _head(full)["height"]) >= 3)
    assert _status(v0, follower.address) == "none"

    staked = run_cli("stake", "1500", "--from", str(joiner.data_dir / "validator.key"), "--rpc", joiner.rpc_url)
    assert staked.returncode == 0, staked.stderr + staked.stdout
    wait_until("the staker to enter the active set", lambda: _status(v0, staker.address) == "active")
    entered = int(_head(v0)["height"])
    wait_until(
        "a commit signed by the staker",
        lambda: any(staker.address in _signers(v0, h) for h in range(entered, int(_head(v0)["height"]) + 1)),
    )

    unstaked = run_cli("unstake", "1500", "--from", str(joiner.data_dir / "validator.key"), "--rpc", joiner.rpc_url)
    assert unstaked.returncode == 0, unstaked.stderr + unstaked.stdout
    wait_until("the staker to leave the active set", lambda: _status(v0, staker.address) != "active")
    left = int(_head(v0)["height"])
    wait_until("two more blocks without it", lambda: _head(v0)["height"] >= left + 2)
    assert staker.address not in _signers(v0, left + 2)

    # The full node never voted and holds the same chain, block for block.
    top = int(_head(v0)["height"])
    wait_until("the full node to reach the top", lambda: _head(full)["height"] >= top)
    for height in range(1, top + 1):
        assert _block(full, height)["hash"] == _block(v0, height)["hash"], height
        assert follower.address not in _signers(v0, height)
    assert _status(full, staker.address) == _status(v0, staker.address)
