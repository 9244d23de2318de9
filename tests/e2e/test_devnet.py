"""``aitbc devnet up`` as a real long-running process: start, use it through the CLI, SIGTERM, resume."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from aitbc.client.node import NodeClient
from aitbc.devnet.config import DevnetInfo, devnet_file, read_devnet_info
from support.ports import free_ports

ADDRESS_RE = re.compile(r"\bait1[02-9ac-hj-np-z]{58}\b")
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | {"COLUMNS": "250", "NO_COLOR": "1"}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too (it only waits for its parent to read its status)
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z"):
            return False
    return True


def aitbc(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aitbc", *args], capture_output=True, text=True, timeout=60, env=ENV, check=False
    )


class DevnetUp:
    def __init__(self, data_dir: Path, ports: list[int], log: Path, miner_backend: str = "none") -> None:
        self.data_dir = data_dir
        self.ports = ports
        self.log = log
        self.miner_backend = miner_backend
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DevnetInfo:
        rpc, ws, p2p, coordinator, poolhub, web, exchange = (str(p) for p in self.ports)
        with contextlib.suppress(FileNotFoundError):
            devnet_file(self.data_dir).unlink()  # so we wait for this start's file, not the last one's
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(self.data_dir)),
                    *("--rpc-port", rpc, "--ws-port", ws, "--p2p-port", p2p),
                    *("--coordinator-port", coordinator, "--miner-backend", self.miner_backend, "--no-demo"),
                    *("--poolhub-port", poolhub, "--web-port", web, "--exchange-port", exchange),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        deadline = time.monotonic() + 90
        while not devnet_file(self.data_dir).exists():
            assert self.proc.poll() is None, f"devnet up exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no devnet.json after 90s:\n{self.output()}"
            time.sleep(0.1)
        return read_devnet_info(self.data_dir)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def sigterm(self, timeout: float = 10.0) -> tuple[int, float]:
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            for pid in read_devnet_info(self.data_dir).pids.values():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_devnet_up_transfer_sigterm_resume(tmp_path: Path) -> None:
    data_dir = tmp_path / "devnet"
    devnet = DevnetUp(data_dir, free_ports(7), tmp_path / "devnet-up.log")
    try:
        info = devnet.start()
        rpc_port = devnet.ports[0]
        assert info.rpc_url == f"http://127.0.0.1:{rpc_port}/"
        assert info.ws_url == f"ws://127.0.0.1:{devnet.ports[1]}/ws"
        assert Path(info.faucet_key).exists()
        node_pid = info.pids["node"]
        assert alive(node_pid)
        assert httpx.get(f"http://127.0.0.1:{rpc_port}/healthz", timeout=5).json()["status"] == "ok"

        # a transfer through the CLI, finding the devnet from its directory
        created = aitbc("keys", "new", "eve", "--devnet", str(data_dir))
        assert created.returncode == 0, created.stderr
        (eve,) = ADDRESS_RE.findall(created.stdout)
        sent = aitbc("tx", "transfer", "--to", eve, "--amount", "3.25", "--devnet", str(data_dir))
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert re.search(r"committed in block \d+", sent.stdout), sent.stdout
        with NodeClient(info.rpc_url) as client:
            height = client.get_head()["height"]
            genesis_hash = client.get_chain_info()["genesis_hash"]
            assert client.get_account(eve)["balance"] == 3_250_000

        # SIGTERM: the devnet exits 0 within a few seconds and takes its children with it
        code, took = devnet.sigterm()
        assert code == 0, devnet.output()
        assert took < 8, f"devnet took {took:.1f}s to stop"
        assert "devnet stopped" in devnet.output()
        for name, pid in info.pids.items():
            assert not alive(pid), f"{name} (pid {pid}) still running after devnet up exited"
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{rpc_port}/healthz", timeout=1)
            raise AssertionError("the node still answers after the devnet stopped")

        # again: the same chain resumes where it stopped
        again = devnet.start()
        assert again.chain_id == info.chain_id
        assert again.pids["node"] != node_pid
        with NodeClient(again.rpc_url) as client:
            assert client.get_head()["height"] >= height
            assert client.get_account(eve)["balance"] == 3_250_000
            assert client.get_chain_info()["genesis_hash"] == genesis_hash
        assert "resumed" in devnet.output()
        code, took = devnet.sigterm()
        assert code == 0, devnet.output()
        for pid in again.pids.values():
            assert not alive(pid)
    finally:
        devnet.cleanup()


def test_paid_job_through_the_cli_settles_on_chain(tmp_path: Path) -> None:
    """`aitbc job submit --escrow --wait` opens the escrow with the devnet client's key, runs the job on the echo
    miner, and the chain pays the miner the receipt's total; `job cost` and `miner earnings` agree."""
    data_dir = tmp_path / "devnet"
    devnet = DevnetUp(data_dir, free_ports(7), tmp_path / "devnet-up.log", miner_backend="echo")
    try:
        info = devnet.start()
        assert info.client_key is not None and info.coordinator_address is not None
        with NodeClient(info.rpc_url) as client:
            from aitbc.runtime.keyfile import read_keyfile

            payer = read_keyfile(Path(info.client_key)).address
            before = client.get_account(payer)["balance"]
            assert before > 0 and client.get_account(info.coordinator_address)["balance"] > 0
        ran = aitbc("job", "submit", "--prompt", "pay for me", "--escrow", "--wait", "--devnet", str(data_dir))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        (job_id,) = set(re.findall(r"\bjob_[0-9a-f]{20}\b", ran.stdout))
        for shown in ("committed in block", "pay for me", "settled", "paid to miner"):
            assert shown in ran.stdout, ran.stdout
        cost = aitbc("job", "cost", job_id, "--json", "--devnet", str(data_dir))
        assert cost.returncode == 0, cost.stderr
        import orjson

        summary = orjson.loads(cost.stdout)
        assert summary["state"] == "settled" and summary["paid_to_miner"] > 0
        with NodeClient(info.rpc_url) as client:
            assert before - client.get_account(payer)["balance"] == summary["total_cost"]
        earned = aitbc("miner", "earnings", "--json", "--devnet", str(data_dir))
        assert earned.returncode == 0, earned.stderr
        assert orjson.loads(earned.stdout)["earned"] == summary["paid_to_miner"]
        verified = aitbc("receipt", "verify", job_id, "--json", "--devnet", str(data_dir))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        checks = {c["name"]: c["outcome"] for c in orjson.loads(verified.stdout)["checks"]}
        assert checks["settle_committed"] == checks["amounts"] == checks["assigned_miner"] == "pass", checks
        chain_job = aitbc("chain", "job", job_id, "--devnet", str(data_dir))
        assert chain_job.returncode == 0 and "verified against state root" in chain_job.stdout, chain_job.stdout
        code, _ = devnet.sigterm()
        assert code == 0, devnet.output()
    finally:
        devnet.cleanup()


def test_deposit_job_through_the_cli_and_the_readme_curl(tmp_path: Path) -> None:
    """A fresh devnet: the README's curl block, run as written (only the port and the devnet directory
    replaced), prints the miner's answer and the account; `aitbc job submit --wait` pays from the devnet
    key's deposit with no escrow; `job cost` and `deposit show` agree with the chain.

    The devnet's miner runs the builtin backend (SmolLM2, the model the block names), so the block runs
    exactly as written. AITBC_E2E_ECHO=1 runs it on the echo backend instead (the model name swapped for
    ``echo``), where llama.cpp cannot run."""
    import orjson

    data_dir = tmp_path / "devnet"
    ports = free_ports(7)
    builtin = os.environ.get("AITBC_E2E_ECHO") != "1"
    devnet = DevnetUp(data_dir, ports, tmp_path / "devnet-up.log", miner_backend="builtin" if builtin else "echo")
    try:
        info = devnet.start()
        assert info.deposit_id is not None and info.api_key is not None
        readme = (Path(__file__).parents[2] / "README.md").read_text()
        block = readme.split("<!-- readme-curl -->")[1].split("<!-- /readme-curl -->")[0]
        script = block.split("```bash")[1].split("```")[0]
        script = script.replace("~/.aitbc/devnet", str(data_dir)).replace("localhost:8011", f"localhost:{ports[3]}")
        if not builtin:
            assert '"model": "smollm2-135m-instruct"' in script
            script = script.replace('"model": "smollm2-135m-instruct"', '"model": "echo"')
        ran = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=180, check=False)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        first, account = ran.stdout.strip().splitlines()[-2:]
        result = orjson.loads(first)
        assert result["job_id"].startswith("dj-") and result["output"]["text"].strip(), result
        print("README curl answer:", result["output"]["text"])
        assert orjson.loads(account)["deposit_id"] == info.deposit_id

        ran = aitbc("job", "submit", "--prompt", "pay from my deposit", "--wait", "--devnet", str(data_dir))
        assert ran.returncode == 0, ran.stdout + ran.stderr
        for shown in ("reserved on deposit", "settled", "paid to miner", "drawn from"):
            assert shown in ran.stdout, ran.stdout
        (job_id,) = set(re.findall(r"\bdj-[0-9]+-[0-9a-f]{20}\b", ran.stdout))
        cost = aitbc("job", "cost", job_id, "--json", "--devnet", str(data_dir))
        assert cost.returncode == 0, cost.stderr
        summary = orjson.loads(cost.stdout)
        assert summary["deposit_id"] == info.deposit_id and summary["paid_to_miner"] > 0
        verified = aitbc("receipt", "verify", job_id, "--json", "--devnet", str(data_dir))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        checks = {c["name"]: c["outcome"] for c in orjson.loads(verified.stdout)["checks"]}
        assert checks["settle_committed"] == checks["amounts"] == checks["assigned_miner"] == "pass", checks
        shown = aitbc("deposit", "show", "--json", "--devnet", str(data_dir))
        assert shown.returncode == 0, shown.stderr
        deposit = orjson.loads(shown.stdout)
        assert deposit["jobs_paid"] >= 1 and deposit["coordinator_view"]["deposit_id"] == info.deposit_id
        topped = aitbc("deposit", "top-up", "1.5", "--devnet", str(data_dir))
        assert topped.returncode == 0, topped.stdout + topped.stderr
        withdrawn = aitbc("deposit", "withdraw", "0.25", "--devnet", str(data_dir))
        assert withdrawn.returncode == 0 and "paid out at height" in withdrawn.stdout, withdrawn.stdout
        after = orjson.loads(aitbc("deposit", "show", "--json", "--devnet", str(data_dir)).stdout)
        assert after["balance"] == deposit["balance"] + 1_500_000 or after["jobs_paid"] > deposit["jobs_paid"]
        assert after["withdrawal_amount"] == 250_000
        code, _ = devnet.sigterm()
        assert code == 0, devnet.output()
    finally:
        devnet.cleanup()
