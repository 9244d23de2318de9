"""How `make env` (and the image) compile llama-cpp-python: cmake/llama-cpp-slim.cmake may only leave out the
libraries the Python bindings never load for text models, and the import paths AITBC uses must not load them."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SLIM = ROOT / "cmake" / "llama-cpp-slim.cmake"
LEFT_OUT = {"LLAVA_BUILD": "libmtmd", "LLAMA_BUILD_COMMON": "libllama-common"}


def test_slim_build_only_turns_off_unloaded_libraries() -> None:
    """No compiler flag, backend or ggml option here: what is built is built exactly as by default."""
    code = "\n".join(line.split("#", 1)[0] for line in SLIM.read_text().splitlines())
    settings = re.findall(r"set\(\s*([A-Za-z0-9_]+)\s+(\S+)", code)
    assert settings and {name: value for name, value in settings} == {name: "OFF" for name in LEFT_OUT}
    assert "add_compile" not in code and "CMAKE_C" not in code


def test_make_env_and_the_image_compile_with_it() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "LLAMA_CMAKE_ARGS ?= -DCMAKE_PROJECT_INCLUDE=$(CURDIR)/cmake/llama-cpp-slim.cmake" in makefile
    assert 'CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS)"' in makefile
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert (
        "COPY cmake ./cmake" in dockerfile and "-DCMAKE_PROJECT_INCLUDE=/src/cmake/llama-cpp-slim.cmake" in dockerfile
    )


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
def test_the_bindings_aitbc_uses_never_load_the_left_out_libraries() -> None:
    """Import what the builtin backend, the metering tokenizer and the llama server import (the server's app and
    chat formats included) and list the shared libraries mapped into the process: libllama and libggml are, the
    left-out ones are not (so a build without them serves the same)."""
    script = (
        "import importlib, importlib.util\n"
        "for m in ('llama_cpp', 'llama_cpp.llama', 'llama_cpp._internals', 'llama_cpp.llama_chat_format'):\n"
        "    importlib.import_module(m)\n"
        "if importlib.util.find_spec('llama_cpp.server') and importlib.util.find_spec('fastapi'):\n"
        "    importlib.import_module('llama_cpp.server.app')\n"
        "print(open('/proc/self/maps').read())\n"
    )
    maps = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120)
    mapped = set(re.findall(r"/(lib[a-z0-9_-]+)\.so", maps.stdout))
    assert {"libllama", "libggml", "libggml-base", "libggml-cpu"} <= mapped
    assert not mapped & set(LEFT_OUT.values())
