"""Every example in examples/ and the README's OpenAI lines, run as a user would against a real devnet.

One ``aitbc devnet up`` (node, paid coordinator, a miner on the builtin backend: SmolLM2 + MiniLM; the
client's API key bound to its funded deposit), then each ``examples/*.py`` as its own process with
``AITBC_DEVNET`` pointing at it. An example passes when it exits 0 and prints what it promises.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitbc.client.devnet import DevnetInfo, devnet_file, load_devnet, read_devnet_info
from support.ports import free_ports

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((REPO / "examples").glob("*.py"))
ENV = {k: v for k, v in os.environ.items() if not k.startswith("AITBC_")} | {"COLUMNS": "250", "NO_COLOR": "1"}
pytestmark = pytest.mark.timeout(900)


class Devnet:
    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 300.0) -> DevnetInfo:
        rpc, ws, p2p, coordinator = (str(p) for p in free_ports(4))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "aitbc", "devnet", "up", "--data-dir", str(self.data_dir)),
                    *("--rpc-port", rpc, "--ws-port", ws, "--p2p-port", p2p, "--coordinator-port", coordinator),
                    *("--miner-backend", "builtin", "--no-demo", "--no-poolhub", "--no-web", "--no-exchange"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=ENV,
            )
        deadline = time.monotonic() + timeout
        while not devnet_file(self.data_dir).exists():
            assert self.proc.poll() is None, f"devnet up exited with {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"no devnet.json after {timeout:.0f}s:\n{self.output()}"
            time.sleep(0.2)
        return read_devnet_info(self.data_dir)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-8000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        with contextlib.suppress(Exception):
            for pid in read_devnet_info(self.data_dir).pids.values():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("examples")
    net = Devnet(base / "devnet", base / "devnet-up.log")
    try:
        net.start()
        yield net.data_dir
    finally:
        net.stop()


def run_python(devnet: Path, *args: str, timeout: float = 240.0) -> subprocess.CompletedProcess[str]:
    env = ENV | {"AITBC_DEVNET": str(devnet), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False
    )


EXPECTED = {
    "submit_and_wait.py": [r"submitted \S+ state queued", r"answer: \S", r"price: \d+"],
    "stream_tokens.py": [r"\[completed\]", r"subscribed: \{'subscribed': \['job_updates'\]", r"last event_seq \d+"],
    "pay_by_deposit.py": [r"deposit \S+ available \d+", r"payment reserved", r"settled in tx [0-9a-f]{64}"],
    "pay_by_escrow.py": [r"escrow job_\w+ locked \d+", r"job completed answer: "],
    "verify_receipt.py": [r"pass\s+miner_signature", r"receipt [0-9a-f]{64} OK"],
    "openai_sdk.py": [r"models: \[.*smollm2-135m-instruct", r"job id: dj-", r"usage: CompletionUsage"],
    "train_digits.py": [r"submitted \S+ on dataset [0-9a-f]{16}", r"loss \d\.\d+ -> \d\.\d+", r"checkpoints: 7"],
}


def test_every_example_is_checked() -> None:
    assert {p.name for p in EXAMPLES} == set(EXPECTED)


@pytest.mark.parametrize("example", [p.name for p in EXAMPLES])
def test_example_runs_against_a_devnet(devnet: Path, example: str) -> None:
    done = run_python(devnet, str(REPO / "examples" / example))
    assert done.returncode == 0, f"{example} failed:\n{done.stdout}\n{done.stderr}"
    for pattern in EXPECTED[example]:
        assert re.search(pattern, done.stdout), f"{example}: no {pattern!r} in:\n{done.stdout}"


def test_readme_openai_lines_work(devnet: Path) -> None:
    """The README's snippet, exactly as written, pointed at this devnet by ``AITBC_DEVNET``."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### OpenAI-compatible API") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S)
    assert snippet is not None
    code = snippet.group(1)
    assert "load_devnet()" in code and "OpenAI(" in code
    done = run_python(devnet, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip(), "the snippet prints the model's answer"
    assert load_devnet(devnet).openai_base_url.endswith("/v1")
