"""The pinned circom/snarkjs toolchain (npm, under ``circuits/node_modules``), run as subprocesses.

Why Node at all: the trusted-setup ceremony and its verification are snarkjs's; the node and the
miner never need it (they verify and prove in-process with groth16py).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aitbc.protocol.errors import AitbcError

CIRCUIT_NAME: Final = "receipt"


class ToolchainError(AitbcError):
    """A toolchain step failed or is missing (with the tool's own output in the message)."""


def default_circuits_dir() -> Path:
    """``circuits/`` of the source checkout this package runs from."""
    return Path(__file__).resolve().parents[3] / "circuits"


@dataclass(frozen=True, slots=True)
class CircuitPaths:
    """Where the circuit, its toolchain and its committed setup artifacts live."""

    root: Path

    @property
    def source(self) -> Path:
        return self.root / f"{CIRCUIT_NAME}.circom"

    @property
    def node_modules(self) -> Path:
        return self.root / "node_modules"

    @property
    def circomlib(self) -> Path:
        return self.node_modules / "circomlib" / "circuits"

    @property
    def setup(self) -> Path:
        return self.root / "setup"

    @property
    def r1cs(self) -> Path:
        return self.setup / f"{CIRCUIT_NAME}.r1cs"

    @property
    def wasm(self) -> Path:
        return self.setup / f"{CIRCUIT_NAME}.wasm"

    @property
    def ptau(self) -> Path:
        return self.setup / "pot_final.ptau"

    @property
    def zkey(self) -> Path:
        return self.setup / f"{CIRCUIT_NAME}_final.zkey"

    @property
    def vk(self) -> Path:
        return self.setup / "vk.json"

    @property
    def transcript(self) -> Path:
        return self.setup / "transcript.json"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ToolchainError("node is not installed (the ceremony tools are npm packages; see circuits/README.md)")
    return node


def _npm_bin(paths: CircuitPaths, script: str) -> Path:
    path = paths.node_modules / script
    if not path.exists():
        raise ToolchainError(f"{path} is missing: run `npm ci` in {paths.root}")
    return path


def run_snarkjs(paths: CircuitPaths, *args: str, cwd: Path | None = None, timeout: float = 900) -> str:
    """Run one snarkjs command; its stdout is returned (it is the step's public log)."""
    return _run([_node(), str(_npm_bin(paths, "snarkjs/build/cli.cjs")), *args], cwd or paths.root, timeout)


def run_circom(paths: CircuitPaths, out_dir: Path) -> None:
    """Compile the circuit to r1cs + wasm in ``out_dir`` (circom2 only reads files under its cwd)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rel_lib = paths.circomlib.relative_to(paths.root)
    _run(
        [
            _node(),
            str(_npm_bin(paths, "circom2/cli.js")),
            paths.source.name,
            "--O2",
            "--r1cs",
            "--wasm",
            "-l",
            str(rel_lib),
            "-o",
            str(out_dir.resolve()),
        ],
        paths.root,
        300,
    )


def _run(argv: list[str], cwd: Path, timeout: float) -> str:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{' '.join(argv[1:3])} timed out after {timeout:.0f} s") from None
    # snarkjs reports failed checks on stdout with exit code 0 in some versions: callers also parse it.
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-2000:]
        raise ToolchainError(f"`{' '.join(Path(a).name for a in argv[1:4])}` failed (exit {done.returncode}):\n{tail}")
    return done.stdout + done.stderr
