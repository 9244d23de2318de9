"""The ``aitbc`` command line as subprocesses (``python -m aitbc``) against a real node."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from aitbc.cli.main import app
from aitbc.devnet.config import DevnetInfo, write_devnet_info
from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC
from aitbc.protocol.tx import tx_from_json_obj, tx_hash

ADDRESS_RE = re.compile(r"\bait1[02-9ac-hj-np-z]{58}\b")


def aitbc(*args: str, timeout: float = 60.0, columns: int = 250) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")}
    env.update(COLUMNS=str(columns), NO_COLOR="1", TERM="dumb")
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected a one-line error, got:\n{result.stderr}"
    assert lines[0].startswith("error"), lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def devnet(shared_node: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A devnet directory whose devnet.json points at the shared node."""
    directory = tmp_path_factory.mktemp("devnet")
    (directory / "keys").mkdir()
    write_devnet_info(
        directory,
        DevnetInfo(
            chain_id=shared_node.chain_id,
            rpc_url=shared_node.rpc_url,
            ws_url=shared_node.ws_url,
            node_data_dir=str(shared_node.data_dir),
            faucet_key=str(shared_node.data_dir / "faucet.key"),
            validator_key=str(shared_node.data_dir / "validator.key"),
            keys_dir=str(directory / "keys"),
            pids={"node": shared_node.pid},
        ),
    )
    yield directory


def test_keys_transfer_account_head_block_watch(shared_node: Any, devnet: Path) -> None:
    d = str(devnet)
    created = ok(aitbc("keys", "new", "bob", "--devnet", d))
    (bob,) = ADDRESS_RE.findall(created)
    assert (devnet / "keys" / "bob.key").exists()
    assert (devnet / "keys" / "bob.key").stat().st_mode & 0o777 == 0o600

    sent = ok(aitbc("tx", "transfer", "--to", bob, "--amount", "1.5", "--devnet", d))
    match = re.search(r"committed in block (\d+)", sent)
    assert match, sent
    height = int(match.group(1))
    (tx_hash,) = re.findall(r"\b[0-9a-f]{64}\b", sent)
    with shared_node.client() as client:
        status = client.get_tx_status(tx_hash)
        assert status["status"] == "committed" and status["height"] == height
        assert client.get_account(bob)["balance"] == 1_500_000

    with ThreadPoolExecutor(4) as pool:
        account = pool.submit(aitbc, "chain", "account", bob, "--devnet", d)
        head = pool.submit(aitbc, "chain", "head", "--devnet", d)
        block = pool.submit(aitbc, "chain", "block", str(height), "--devnet", d)
        watch = pool.submit(aitbc, "chain", "watch", "--count", "2", "--devnet", d)

        shown = ok(account.result())
        assert bob in shown
        assert re.search(r"balance:\s+1\.5 AITBC", shown), shown
        assert re.search(r"nonce:\s+0\b", shown), shown
        assert "proof verified" in shown

        head_json = json.loads(ok(head.result()))
        assert head_json["height"] >= height and len(head_json["hash"]) == 64
        assert head_json["chain_id"] == shared_node.chain_id

        block_json = json.loads(ok(block.result()))
        assert block_json["height"] == height
        assert tx_hash in {_hash(t) for t in block_json["txs"]}
        assert any(t["recipient"] == bob and t["amount"] == 1_500_000 for t in block_json["txs"])

        # Not a terminal (a pipe): one plain line per block as it arrives, human UTC times, whole hashes.
        watched = ok(watch.result())
        line = (
            r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z)  height (\d+)  txs \d+  hash ([0-9a-f]{64})  proposer ait1\w+$"
        )
        rows = re.findall(line, watched, re.MULTILINE)
        assert len(rows) == 2 and len(watched.strip().splitlines()) == 2, watched
        heights = [int(h) for _, h, _ in rows]
        assert heights[1] == heights[0] + 1
        stamp = datetime.strptime(rows[0][0], "%Y-%m-%d %H:%M:%S.%fZ").replace(tzinfo=UTC)
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 120


def _hash(tx: dict[str, Any]) -> str:
    return tx_hash(tx_from_json_obj(tx))


def test_errors_are_one_line_with_exit_1(shared_node: Any, devnet: Path) -> None:
    d = str(devnet)
    narrow = {"columns": 60}  # a one-line error stays one line in a narrow terminal
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with ThreadPoolExecutor(2) as pool:
        bad_to = pool.submit(aitbc, "tx", "transfer", "--to", "ait1notanaddress", "--amount", "1", "--devnet", d)
        closed = pool.submit(aitbc, "chain", "head", "--rpc", f"http://127.0.0.1:{closed_port}/", **narrow)
    assert "--to" in one_line_error(bad_to.result())
    assert one_line_error(closed.result()).startswith("error [unreachable]: cannot reach the node")


def test_more_commands_in_process(shared_node: Any, devnet: Path) -> None:
    """The rest of the CLI, run in-process (same app, no interpreter start-up per command)."""
    runner = CliRunner()
    d = str(devnet)
    env = {"COLUMNS": "250", "NO_COLOR": "1", "AITBC_DEVNET": "", "AITBC_RPC_URL": "", "AITBC_KEYS_DIR": ""}

    def run(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == code, f"{args}: exit {result.exit_code}\n{result.output}"
        return result.output

    # errors: exit 1 with a message, no traceback
    assert "address" in run("chain", "account", "bob", "--devnet", d, code=1)
    assert "devnet.json" in run("chain", "head", "--devnet", str(devnet / "nowhere"), code=1)
    # a block by its hash, without txs
    head = json.loads(run("chain", "head", "--devnet", d))
    by_hash = json.loads(run("chain", "block", head["hash"], "--no-txs", "--devnet", d))
    assert by_hash["height"] == head["height"] and "txs" not in by_hash

    created = run("keys", "new", "carol", "--devnet", d)
    (carol,) = ADDRESS_RE.findall(created)
    assert carol in run("keys", "show", "carol", "--devnet", d)
    assert "carol" in run("keys", "list", "--devnet", d)
    run("keys", "new", "carol", "--devnet", d, code=1)  # refuses to overwrite
    run("tx", "transfer", "--to", carol, "--amount", "2", "--devnet", d)
    # carol pays back from her own key, with an explicit fee
    faucet = shared_node.faucet.address
    run("tx", "transfer", "--from", "carol", "--to", faucet, "--amount", "0.5", "--fee", "0.01", "--devnet", d)
    with shared_node.client() as client:
        account = client.get_account(carol)
        assert account["balance"] == 2 * BASE_UNITS_PER_AITBC - 500_000 - 10_000
        assert account["nonce"] == 1
    broke = run("tx", "transfer", "--from", "carol", "--to", faucet, "--amount", "100", "--devnet", d, code=1)
    assert "insufficient_balance" in broke
    assert "more than 6 decimal" in run("tx", "transfer", "--to", carol, "--amount", "0.0000001", "--devnet", d, code=1)


def _command_paths() -> list[list[str]]:
    root = typer.main.get_command(app)
    paths: list[list[str]] = []

    def walk(command: Any, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(root, [])
    return paths


def test_help_on_every_command() -> None:
    paths = _command_paths()
    assert len(paths) >= 12
    for expected in (["node", "run"], ["keys", "new"], ["tx", "transfer"], ["chain", "watch"], ["devnet", "up"]):
        assert expected in paths
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exit_code == 0, f"{path}: {result.output}"
        assert "Usage" in result.output, path
    # and as real processes: the top level and a leaf command
    with ThreadPoolExecutor(2) as pool:
        top, leaf = pool.map(lambda args: aitbc(*args), [["--help"], ["tx", "transfer", "--help"]])
    assert "Usage" in ok(top) and "devnet" in top.stdout
    assert "--amount" in ok(leaf)
    bare = runner.invoke(app, [])
    assert "Usage" in bare.output
