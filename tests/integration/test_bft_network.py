"""Real validator processes on 127.0.0.1.

* The network grows: a node whose key is no genesis authority follows the chain as a full node, and one that
  stakes with ``aitbc stake`` enters the active set at the next epoch, votes, and leaves again after ``unstake``.
* A double vote seen over p2p becomes a committed ``report_evidence`` tx: the offender is slashed and jailed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aitbc.chain.genesis import compute_genesis_hash, genesis_to_json, load_genesis
from aitbc.client.node import NodeClient
from aitbc.devnet.network import ValidatorNetwork, ValidatorProcess
from aitbc.node.init import init_validator_network
from aitbc.node.p2p import MAX_FRAME, P2PNode, Peer
from aitbc.node.p2p_messages import Message, VoteGossip
from aitbc.node.secret import TAG_LEN
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.vote import Vote, VoteKind, sign_vote
from aitbc.runtime.files import atomic_write
from aitbc.runtime.keyfile import read_keyfile, write_keyfile
from support.ports import free_ports as _free_ports

EPOCH = 5
TIMEOUT_ARGS = ["--timeout-propose-ms", "600", "--timeout-vote-ms", "300", "--timeout-delta-ms", "300"]


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
    m = scrape(full)
    assert m[("aitbc_consensus_is_validator", ())] == 0 and m[("aitbc_consensus_height", ())] >= top
    assert m[("aitbc_p2p_peers", ())] >= 4 and m[("aitbc_consensus_commit_latency_seconds_count", ())] > 0


async def _inject_double_votes(network: Network, offender: KeyPair, count: int) -> None:
    """A test peer (its own node key) connects to validator 0 and gossips two conflicting prevotes of
    ``offender`` for each of the ``count`` heights after the head it reads once connected (heights ahead of
    the node wait until it gets there; a head read before connecting may be past on a loaded machine)."""
    genesis = load_genesis(network.net.node_dir(0) / "genesis.json")
    target = network.net.nodes[0]

    async def ignore(peer: Peer, message: Message) -> None:
        return None

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    peer = P2PNode(
        chain_id=genesis.chain_id,
        genesis_hash=compute_genesis_hash(genesis),
        key=KeyPair.generate(),
        host="127.0.0.1",
        port=0,
        peers=[f"127.0.0.1:{target.p2p_port}"],
        handler=ignore,
    )
    await peer.start(sock)
    try:
        for _ in range(100):
            if peer.peers:
                break
            await asyncio.sleep(0.1)
        assert peer.peers, "the test peer could not connect"
        head = int((await asyncio.to_thread(_head, target))["height"])
        for height in range(head + 1, head + 1 + count):
            for block_id in ("aa" * 32, "bb" * 32):
                vote = Vote(
                    chain_id=genesis.chain_id,
                    height=height,
                    round=0,
                    kind=VoteKind.PREVOTE.value,
                    block_hash=block_id,
                    validator=offender.address,
                )
                peer.broadcast(VoteGossip(sign_vote(vote, offender)))
        await asyncio.sleep(1.0)
        # then a frame announcing more than MAX_FRAME bytes: validator 0 bans the peer at once
        next(iter(peer.peers.values())).writer.write((MAX_FRAME + TAG_LEN + 1).to_bytes(4, "big"))
        await asyncio.sleep(1.0)  # let the write queue drain before closing
    finally:
        await peer.stop()


def scrape(node: ValidatorProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The node's /metrics as {(sample name, sorted labels): value}."""
    text = httpx.get(f"http://{node.host}:{node.rpc_port}/metrics", timeout=3.0).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _row(node: ValidatorProcess, address: str) -> dict[str, Any]:
    with NodeClient(node.rpc_url, timeout=3.0) as client:
        rows = {v["address"]: v for v in client.get_validators()["validators"]}
    return dict(rows[address])


def test_a_double_vote_seen_over_p2p_gets_the_offender_slashed_and_jailed(network: Network) -> None:
    network.prepare({})
    network.net.start()
    v0, v3 = network.net.nodes[0], network.net.nodes[3]
    offender = read_keyfile(v3.data_dir / "validator.key")
    staked = run_cli("stake", "100", "--from", str(v3.data_dir / "validator.key"), "--rpc", v3.rpc_url)
    assert staked.returncode == 0, staked.stderr + staked.stdout
    bond = 100 * BASE_UNITS_PER_AITBC
    wait_until("the offender's bond", lambda: _row(v0, offender.address)["bonded"] == bond)
    assert _row(v0, offender.address)["status"] == "active"

    asyncio.run(_inject_double_votes(network, offender, 3))

    # validator 0 turned what it saw into a report_evidence tx, and the chain applied it
    wait_until("the offender to be jailed", lambda: _row(v0, offender.address)["status"] == "jailed")
    row = _row(v0, offender.address)
    assert row["bonded"] == bond - bond * 500 // 10_000  # devnet slash_double_sign_bps = 5 %
    # every validator agrees, and the chain goes on without it
    top = int(_head(v0)["height"])
    for node in network.net.nodes[1:]:
        wait_until("the others to agree", lambda node=node: _row(node, offender.address)["status"] == "jailed")
    wait_until("blocks after the jailing", lambda: _head(v0)["height"] >= top + 3)
    assert offender.address not in _signers(v0, top + 3)

    # what validator 0's /metrics says about it
    m = scrape(v0)
    assert m[("aitbc_consensus_height", ())] >= top + 3
    assert ("aitbc_consensus_round", ()) in m and 0 <= m[("aitbc_consensus_step", ())] <= 3
    assert m[("aitbc_consensus_is_validator", ())] == 1
    assert m[("aitbc_consensus_rounds_per_height_count", ())] >= top
    assert m[("aitbc_consensus_commit_latency_seconds_count", ())] >= top
    assert m[("aitbc_consensus_evidence_reported_total", ())] >= 1
    assert m[("aitbc_p2p_peers", ())] == 3  # the other validators; the test peer was banned
    assert m[("aitbc_p2p_peer_bans_total", ())] >= 1 and m[("aitbc_p2p_peer_penalties_total", ())] >= 1
    for kind in ("vote", "proposal", "status"):
        assert m[("aitbc_p2p_messages_in_total", (("type", kind),))] > 0
        assert m[("aitbc_p2p_messages_out_total", (("type", kind),))] > 0
    assert any(name == "aitbc_p2p_messages_dropped_total" for name, _ in m)
