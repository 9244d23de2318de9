"""Restarts, kill -9 under load, and a tampered database: the real node process and its SQLite file."""

from __future__ import annotations

import itertools
import random
import sqlite3
import subprocess
import sys
import threading
import time
from typing import Any

import orjson

from aitbc.client.node import NodeClient
from aitbc.protocol.block import compute_tx_root_of
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.tx import tx_from_json_obj, tx_to_json_obj
from aitbc.protocol.tx import tx_hash as compute_tx_hash


def batch(client: Any, calls: list[tuple[str, list[Any]]]) -> list[Any]:
    """``client.batch`` in chunks the node accepts (its JSON-RPC batch cap is 1,000 calls)."""
    out: list[Any] = []
    for start in range(0, len(calls), 500):
        out.extend(client.batch(calls[start : start + 500]))
    return out


def blocks(client: NodeClient, first: int, last: int, include_txs: bool = False) -> list[dict[str, Any]]:
    out = batch(client, [("get_block", [h, include_txs]) for h in range(first, last + 1)])
    for block in out:
        assert isinstance(block, dict), block
    return out  # type: ignore[return-value]


def assert_linked(chain: list[dict[str, Any]]) -> None:
    for before, after in itertools.pairwise(chain):
        assert after["height"] == before["height"] + 1
        assert after["prev_hash"] == before["hash"], f"block {after['height']} does not extend {before['height']}"


def test_restart_keeps_everything(node_process: Any) -> None:
    """SIGTERM + start keeps every block, tx, balance and nonce; a tampered database is refused."""
    node = node_process()
    alice, bob = KeyPair.generate(), KeyPair.generate()
    with node.client() as client:
        node.fund(client, {alice.address: 50_000_000, bob.address: 1_000_000})
        hashes = [client.send_tx(node.transfer(alice, bob.address, 1_000 * (i + 1), i, fee=10 + i)) for i in range(5)]
        statuses = node.wait_committed(client, hashes)
        txs = {h: client.call("get_tx", h) for h in hashes}
        head = client.get_head()
        history = blocks(client, 0, head["height"], include_txs=True)
        accounts = {a: client.get_account(a) for a in (alice.address, bob.address, node.faucet.address)}
        validator_balance = client.get_account(node.validator.address)["balance"]
        info = client.get_chain_info()

    node.restart()  # SIGTERM (must exit 0), then the same data dir again

    with node.client() as client:
        assert client.get_chain_info()["genesis_hash"] == info["genesis_hash"]
        assert client.get_head()["height"] >= head["height"]
        assert blocks(client, 0, head["height"], include_txs=True) == history
        for h in hashes:
            now = client.get_tx_status(h)
            assert now["confirmations"] >= statuses[h]["confirmations"]
            assert {**now, "confirmations": 0} == {**statuses[h], "confirmations": 0}
            assert client.call("get_tx", h) == txs[h]
        for address, before in accounts.items():
            after = client.get_account(address)
            assert (after["balance"], after["nonce"], after["pending_nonce"]) == (
                before["balance"],
                before["nonce"],
                before["nonce"],
            ), address
            account, _ = client.get_verified_account(address)
            assert account is not None and account.balance == before["balance"]
        assert client.get_account(node.validator.address)["balance"] == validator_balance
        assert accounts[alice.address]["nonce"] == 5
        # the chain goes on from where it stopped: heights continue and nonces too
        new_head = node.wait_for_height(client, head["height"] + 2)
        assert_linked(blocks(client, head["height"], new_head["height"]))
        replay = client.batch([("send_tx", [txs[hashes[0]]["tx"]])])[0]
        assert isinstance(replay, RemoteError) and replay.reason == "nonce_too_low"
        more = client.send_tx(node.transfer(alice, bob.address, 1, 5))
        status = client.wait_for_tx(more)
        assert status["status"] == "committed" and status["height"] > head["height"]
        assert client.get_account(alice.address)["nonce"] == 6

    # a database whose accounts do not match its head's state root is refused, not served
    assert node.stop() == 0
    with sqlite3.connect(node.data_dir / "chain.db") as conn:
        updated = conn.execute("UPDATE accounts SET balance = balance + 1 WHERE address = ?", (bob.address,))
        assert updated.rowcount == 1
    run = subprocess.run(
        [
            *(sys.executable, "-m", "aitbc", "node", "run", "--data-dir", str(node.data_dir)),
            *("--rpc-port", str(node.rpc_port), "--ws-port", str(node.ws_port), "--p2p-port", str(node.p2p_port)),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert run.returncode != 0
    assert "do not match the state root" in run.stdout + run.stderr


class Load(threading.Thread):
    """Keeps sending signed transfers from the faucet in small batches until stopped or the node goes away."""

    def __init__(self, node: Any, start_nonce: int) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.nonce = start_nonce
        self.sent: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.recipients = [KeyPair.generate().address for _ in range(20)]

    def run(self) -> None:
        client = NodeClient(self.node.rpc_url, timeout=5)
        try:
            while not self.stop.is_set():
                txs = [
                    self.node.transfer(
                        self.node.faucet, random.choice(self.recipients), random.randint(1, 10**6), self.nonce + i
                    )
                    for i in range(25)
                ]
                try:
                    results = client.batch([("send_tx", [tx_to_json_obj(tx)]) for tx in txs])
                except RemoteError:
                    return  # the node was killed
                for tx, result in zip(txs, results, strict=True):
                    if isinstance(result, RemoteError):
                        raise AssertionError(f"tx {tx.nonce} refused under load: {result}")
                    self.sent.append(compute_tx_hash(tx))
                self.nonce += len(txs)
                time.sleep(0.02)
        except BaseException as exc:
            self.error = exc
        finally:
            client.close()


def test_kill_9_under_load_loses_no_committed_tx(node_process: Any) -> None:
    node = node_process()
    client = node.client(timeout=5)
    start_nonce = client.next_nonce(node.faucet.address)
    load = Load(node, start_nonce)
    load.start()

    committed: dict[str, tuple[int, int]] = {}
    block_hashes: dict[int, str] = {}
    started = time.monotonic()
    kill_at: float | None = None
    while kill_at is None or time.monotonic() < kill_at:
        if kill_at is None and len(committed) >= 50 and time.monotonic() - started > 1.0:
            kill_at = time.monotonic() + random.uniform(0.0, 0.5)  # somewhere in the middle of the next block(s)
        assert time.monotonic() - started < 30, f"only {len(committed)} txs committed under load in 30s"
        assert load.is_alive() or load.error is None, load.error
        pending = [h for h in list(load.sent) if h not in committed]
        if pending:
            for h, status in zip(pending, batch(client, [("get_tx_status", [h]) for h in pending]), strict=True):
                assert isinstance(status, dict), status
                if status["status"] == "committed":
                    committed[h] = (status["height"], status["index"])
            for height in {hgt for hgt, _ in committed.values()} - set(block_hashes):
                block_hashes[height] = client.get_block(height, False)["hash"]
        time.sleep(0.05)
    node.kill()  # SIGKILL while the load thread is still sending
    load.stop.set()
    load.join(10)
    assert not load.is_alive()
    assert load.error is None, load.error
    client.close()
    assert len(committed) >= 50
    assert node.proc.returncode == -9

    node.start(keep_ports=True)  # refuses to start if the stored state does not match its head's state root
    with node.client() as client:
        head = client.get_head()
        assert head["height"] >= max(block_hashes)

        # every tx reported committed before the kill is still there, in the same block
        statuses = batch(client, [("get_tx_status", [h]) for h in committed])
        for h, status in zip(committed, statuses, strict=True):
            assert isinstance(status, dict) and status["status"] == "committed", (h, status)
            assert (status["height"], status["index"]) == committed[h]
        for height, hash_ in block_hashes.items():
            assert client.get_block(height, False)["hash"] == hash_

        # the head the node resumed from (the last block committed before the kill) is complete
        resumed = _resumed_height(node)
        assert resumed >= max(block_hashes)
        top = client.get_block(resumed)
        assert top["tx_count"] == len(top["txs"])
        for index, tx in enumerate(top["txs"]):
            found = client.call("get_tx", compute_tx_hash(tx_from_json_obj(tx)))
            assert found["tx"] == tx and found["height"] == resumed and found["index"] == index
        assert top["tx_root"] == compute_tx_root_of([tx_from_json_obj(t) for t in top["txs"]])
        # state: proofs verify against the current head's state root (the node checked the resumed one at start)
        faucet_account, proof = client.get_verified_account(node.faucet.address)
        assert faucet_account is not None and proof["height"] >= resumed

        # the whole chain is there and linked; the faucet nonce counts exactly its committed txs
        chain = blocks(client, 0, head["height"], include_txs=True)
        assert_linked(chain)
        faucet_txs = [t for b in chain for t in b["txs"] if t["sender"] == node.faucet.address]
        assert [t["nonce"] for t in faucet_txs] == list(range(start_nonce, start_nonce + len(faucet_txs)))
        assert faucet_account.nonce == start_nonce + len(faucet_txs)
        assert len(faucet_txs) >= len(committed)
        # fees of every committed tx went to the validator
        fees = sum(t["fee"] for b in chain for t in b["txs"])
        assert client.get_account(node.validator.address)["balance"] == fees

        # heights continue after the restart and new txs commit
        after = node.wait_for_height(client, head["height"] + 2)
        assert_linked(blocks(client, head["height"], after["height"]))
        nonce = client.next_nonce(node.faucet.address)
        assert nonce >= faucet_account.nonce
        more = client.send_tx(node.transfer(node.faucet, KeyPair.generate().address, 5, nonce))
        assert client.wait_for_tx(more)["status"] == "committed"


def _resumed_height(node: Any) -> int:
    """The height the last start resumed at, from the node's own log line."""
    lines = [line for line in node.log_text().splitlines() if '"resumed chain"' in line]
    assert lines, "the node did not log where it resumed"
    return int(orjson.loads(lines[-1])["height"])
