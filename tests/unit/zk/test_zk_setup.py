"""The committed trusted setup: verify-setup passes on it and fails on a tampered copy.

These run snarkjs (Node + circuits/node_modules, which `.ci/run` installs with `npm ci`)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from aitbc.zk.ceremony import SetupVerificationError, verify_setup
from aitbc.zk.toolchain import CircuitPaths, sha256_file
from support.zk import has_node_toolchain

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def paths(circuit_paths: CircuitPaths) -> CircuitPaths:
    if not has_node_toolchain(circuit_paths):
        if os.environ.get("AITBC_REQUIRE_ZK_TOOLCHAIN"):
            pytest.fail("AITBC_REQUIRE_ZK_TOOLCHAIN is set but node or circuits/node_modules is missing")
        pytest.skip("needs node and `npm ci` in circuits/ (.ci/run installs both)")
    return circuit_paths


def _copy(paths: CircuitPaths, tmp_path: Path) -> CircuitPaths:
    """A copy of circuits/ (source, setup, toolchain) that a test may tamper with."""
    root = tmp_path / "circuits"
    root.mkdir()
    shutil.copyfile(paths.source, root / paths.source.name)
    shutil.copytree(paths.setup, root / "setup")
    # circom2 (WebAssembly) reads includes only below its cwd, through real folders: copy circomlib's
    # circuits, link the other packages (Node resolves links)
    modules = root / "node_modules"
    modules.mkdir()
    for entry in paths.node_modules.iterdir():
        if entry.name != "circomlib":
            (modules / entry.name).symlink_to(entry)
    shutil.copytree(paths.circomlib, modules / "circomlib" / "circuits")
    return CircuitPaths(root)


def test_transcript_records_several_contributions_and_beacons(paths: CircuitPaths) -> None:
    transcript = json.loads(paths.transcript.read_text())
    steps = transcript["steps"]
    for phase in ("phase1", "phase2"):
        contributors = {s["contributor"] for s in steps if s["step"] == f"{phase} contribute"}
        assert len(contributors) >= 3
        assert any(s["step"] == f"{phase} beacon" for s in steps)
    assert all("<secret entropy, destroyed>" in s["command"] for s in steps if "contribute" in s["step"])


def test_verify_setup_passes_on_the_committed_artifacts(paths: CircuitPaths) -> None:
    established = verify_setup(paths, recompile=True)
    assert any("powers of tau" in line for line in established)
    assert any("zkey verify" in line for line in established)
    assert any("compiles to the committed" in line for line in established)


def test_verify_setup_fails_on_a_tampered_zkey(paths: CircuitPaths, tmp_path: Path) -> None:
    copy = _copy(paths, tmp_path)
    data = bytearray(copy.zkey.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.zkey.write_bytes(bytes(data))
    # caught by the transcript's hashes ...
    with pytest.raises(SetupVerificationError, match="transcript"):
        verify_setup(copy, recompile=False)
    # ... and by snarkjs's zkey check when the transcript is rewritten to match
    transcript = json.loads(copy.transcript.read_text())
    transcript["artifacts"][copy.zkey.name] = sha256_file(copy.zkey)
    copy.transcript.write_text(json.dumps(transcript))
    with pytest.raises(SetupVerificationError, match="zkey verification failed"):
        verify_setup(copy, recompile=False)


def test_verify_setup_fails_on_a_changed_circuit(paths: CircuitPaths, tmp_path: Path) -> None:
    copy = _copy(paths, tmp_path)
    source = copy.source.read_text().replace("Num2Bits(32)", "Num2Bits(40)")
    copy.source.write_text(source)
    with pytest.raises(SetupVerificationError, match=r"does not compile to the committed"):
        verify_setup(copy, recompile=True)
