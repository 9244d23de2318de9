"""The receipt circuit's Groth16 trusted setup: a multi-party ceremony, and its verification.

Phase 1 (powers of tau, circuit independent) and phase 2 (this circuit) each take several
contributions and then a public random beacon. Each contribution mixes fresh secret randomness
into the parameters; the setup is sound if at least ONE contributor destroyed their randomness
(the "one honest contributor" assumption; docs/zk.md). Every step is checkable from the
committed artifacts alone: ``verify_setup`` re-runs snarkjs's own verifiers over the whole
contribution chain, recompiles the circuit, and checks the verifying key the chain pins.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from aitbc.protocol.zk import RECEIPT_VK_SHA256, compute_vk_hash, receipt_vk_json
from aitbc.runtime.files import atomic_write
from aitbc.zk.toolchain import CircuitPaths, ToolchainError, run_circom, run_snarkjs, sha256_file

PTAU_POWER: Final = 11
"""2^11 = 2048 >= the circuit's 1234 constraints + public inputs + 1."""
BEACON_ITERATIONS_EXP: Final = 10
_ANSI = re.compile(r"\x1b\[[0-9;]*m")

Log = Callable[[str], None]


class SetupVerificationError(ToolchainError):
    """The committed setup does not check out (which check failed is in the message)."""


@dataclass
class Transcript:
    """The ceremony's public record: every step, who contributed, the hashes snarkjs printed."""

    circuit: str
    ptau_power: int
    steps: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = {"circuit": self.circuit, "ptau_power": self.ptau_power, "steps": self.steps, "artifacts": self.artifacts}
        return json.dumps(doc, indent=2).encode() + b"\n"


def _clean(output: str) -> list[str]:
    return [line.rstrip() for line in _ANSI.sub("", output).splitlines() if line.strip()]


def run_ceremony(
    paths: CircuitPaths,
    contributors: Sequence[str],
    beacon_hex: str,
    log: Log = lambda _: None,
) -> Transcript:
    """Compile the circuit and run both phases with ``contributors`` and a final beacon each.

    Each contributor's entropy is drawn here and never stored. For contributors on other
    machines, run ``snarkjs powersoftau contribute`` / ``zkey contribute`` on the intermediate
    files instead; ``verify_setup`` checks the result the same way."""
    if len(contributors) < 2:
        raise ValueError("a ceremony needs at least two contributors")
    if not re.fullmatch(r"[0-9a-f]{64}", beacon_hex):
        raise ValueError("the beacon must be 32 bytes of hex (a public value fixed after the contributions)")
    transcript = Transcript(circuit=paths.source.name, ptau_power=PTAU_POWER)
    with tempfile.TemporaryDirectory(prefix="aitbc-ceremony-") as tmp_name:
        tmp = Path(tmp_name)

        def step(name: str, contributor: str | None, *args: str, output: Path | None = None) -> None:
            log(f"{name}{f' ({contributor})' if contributor else ''}")
            out = run_snarkjs(paths, *args)
            entry: dict[str, Any] = {"step": name, "command": "snarkjs " + " ".join(_public_args(args))}
            if contributor:
                entry["contributor"] = contributor
            if output is not None:
                entry["output_sha256"] = sha256_file(output)
            entry["log"] = _clean(out)
            transcript.steps.append(entry)

        log("compile circuit")
        run_circom(paths, tmp / "build")
        shutil.copyfile(tmp / "build" / f"{paths.r1cs.name}", tmp / paths.r1cs.name)
        shutil.copyfile(tmp / "build" / "receipt_js" / paths.wasm.name, tmp / paths.wasm.name)

        # Phase 1: powers of tau
        ptau = tmp / "pot_0000.ptau"
        step("phase1 new", None, "powersoftau", "new", "bn128", str(PTAU_POWER), str(ptau), output=ptau)
        for i, name in enumerate(contributors, start=1):
            nxt = tmp / f"pot_{i:04d}.ptau"
            step(
                "phase1 contribute",
                name,
                "powersoftau",
                "contribute",
                str(ptau),
                str(nxt),
                f"--name={name}",
                f"-e={secrets.token_hex(64)}",
                output=nxt,
            )
            ptau = nxt
        beacon_ptau = tmp / "pot_beacon.ptau"
        step(
            "phase1 beacon",
            "beacon",
            "powersoftau",
            "beacon",
            str(ptau),
            str(beacon_ptau),
            beacon_hex,
            str(BEACON_ITERATIONS_EXP),
            "-n=phase1 beacon",
            output=beacon_ptau,
        )
        final_ptau = tmp / paths.ptau.name
        step("phase1 prepare phase2", None, "powersoftau", "prepare", "phase2", str(beacon_ptau), str(final_ptau))

        # Phase 2: this circuit
        zkey = tmp / "receipt_0000.zkey"
        step("phase2 setup", None, "groth16", "setup", str(tmp / paths.r1cs.name), str(final_ptau), str(zkey))
        for i, name in enumerate(contributors, start=1):
            nxt = tmp / f"receipt_{i:04d}.zkey"
            step(
                "phase2 contribute",
                name,
                "zkey",
                "contribute",
                str(zkey),
                str(nxt),
                f"--name={name}",
                f"-e={secrets.token_hex(64)}",
                output=nxt,
            )
            zkey = nxt
        final_zkey = tmp / paths.zkey.name
        step(
            "phase2 beacon",
            "beacon",
            "zkey",
            "beacon",
            str(zkey),
            str(final_zkey),
            beacon_hex,
            str(BEACON_ITERATIONS_EXP),
            "-n=phase2 beacon",
        )
        vk = tmp / paths.vk.name
        step("export verification key", None, "zkey", "export", "verificationkey", str(final_zkey), str(vk))

        paths.setup.mkdir(parents=True, exist_ok=True)
        for artifact in (paths.r1cs, paths.wasm, paths.ptau, paths.zkey, paths.vk):
            shutil.copyfile(tmp / artifact.name, artifact)
            transcript.artifacts[artifact.name] = sha256_file(artifact)
    atomic_write(paths.transcript, transcript.to_json())
    return transcript


def _public_args(args: Sequence[str]) -> list[str]:
    """The command line without secrets or temp paths: entropy is redacted, files are named."""
    shown = []
    for arg in args:
        if arg.startswith("-e="):
            shown.append("-e=<secret entropy, destroyed>")
        elif "/" in arg:
            shown.append(Path(arg).name)
        else:
            shown.append(arg)
    return shown


def verify_setup(paths: CircuitPaths, log: Log = lambda _: None, recompile: bool = True) -> list[str]:
    """Re-check the committed setup; returns what was established, raises on the first failure.

    Never regenerates anything: it reads the committed files and recomputes."""
    established: list[str] = []
    # Verify the artifacts are the ones the transcript recorded
    if not paths.transcript.exists():
        raise SetupVerificationError(f"no transcript at {paths.transcript}")
    transcript = json.loads(paths.transcript.read_text())
    for name, expected in transcript["artifacts"].items():
        actual = sha256_file(paths.setup / name)
        if actual != expected:
            raise SetupVerificationError(f"{name}: sha256 {actual} is not the transcript's {expected}")
    established.append("artifacts match the transcript's hashes")

    # Verify phase 1: every contribution and the beacon
    log("verify powers of tau (phase 1 contributions + beacon)")
    out = _checked(paths, "powers of tau", "powersoftau", "verify", str(paths.ptau))
    _expect(out, "Powers of Tau Ok!", "powers of tau")
    contributions = [line for line in out if re.search(r"contribution #\d+", line, re.IGNORECASE)]
    established.append(f"powers of tau verify: {len(contributions)} contributions incl. beacon, all consistent")

    # Verify phase 2: the zkey is this r1cs over that ptau, with every contribution and the beacon
    log("verify zkey (phase 2 contributions + beacon) against r1cs and ptau")
    out = _checked(paths, "zkey", "zkey", "verify", str(paths.r1cs), str(paths.ptau), str(paths.zkey))
    _expect(out, "ZKey Ok!", "zkey")
    established.append("zkey verify: derived from the r1cs and the ptau through the recorded contributions")

    # Verify the verifying key is the zkey's, and the one the chain pins
    with tempfile.TemporaryDirectory(prefix="aitbc-verify-setup-") as tmp_name:
        tmp = Path(tmp_name)
        run_snarkjs(paths, "zkey", "export", "verificationkey", str(paths.zkey), str(tmp / "vk.json"))
        if json.loads((tmp / "vk.json").read_text()) != json.loads(paths.vk.read_text()):
            raise SetupVerificationError("vk.json is not the verifying key of the final zkey")
        if compute_vk_hash(paths.vk.read_text()) != RECEIPT_VK_SHA256:
            raise SetupVerificationError("vk.json is not the verifying key pinned in aitbc.protocol.zk")
        if json.loads(receipt_vk_json()) != json.loads(paths.vk.read_text()):
            raise SetupVerificationError("the package's copy of the verifying key differs from vk.json")
        established.append("vk.json is the final zkey's key, and the one the chain pins")

        # Verify the committed circuit source compiles to the committed r1cs and wasm
        if recompile:
            log("recompile the circuit")
            try:
                run_circom(paths, tmp / "build")
            except ToolchainError as exc:
                raise SetupVerificationError(f"receipt.circom does not compile: {exc.message}") from None
            if sha256_file(tmp / "build" / paths.r1cs.name) != sha256_file(paths.r1cs):
                raise SetupVerificationError("receipt.circom does not compile to the committed receipt.r1cs")
            if sha256_file(tmp / "build" / "receipt_js" / paths.wasm.name) != sha256_file(paths.wasm):
                raise SetupVerificationError("receipt.circom does not compile to the committed receipt.wasm")
            established.append("receipt.circom compiles to the committed r1cs and wasm")
    return established


def _checked(paths: CircuitPaths, what: str, *args: str) -> list[str]:
    """Run a snarkjs verifier; its refusal (non-zero exit) is a failed check, not a tool error."""
    try:
        return _clean(run_snarkjs(paths, *args))
    except ToolchainError as exc:
        tail = "\n".join(_clean(exc.message)[-6:])
        raise SetupVerificationError(f"{what} verification failed:\n{tail}") from None


def _expect(lines: list[str], marker: str, what: str) -> None:
    if not any(marker in line for line in lines) or any("INVALID" in line.upper() for line in lines):
        tail = "\n".join(lines[-15:])
        raise SetupVerificationError(f"{what} verification failed:\n{tail}")
