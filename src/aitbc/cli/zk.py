"""``aitbc zk``: the receipt circuit's trusted-setup ceremony and its one-command verification."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

import aitbc.protocol
from aitbc.cli.common import console, handle_errors
from aitbc.protocol.zk import compute_vk_hash
from aitbc.zk.ceremony import run_ceremony, verify_setup
from aitbc.zk.toolchain import CircuitPaths, default_circuits_dir

app = typer.Typer(help="Zero-knowledge receipts: trusted setup and its verification.", no_args_is_help=True)

CircuitsOpt = Annotated[
    Path | None,
    typer.Option("--circuits", help="Circuit folder (default: this checkout's circuits/)", show_default=False),
]


@app.command("ceremony")
@handle_errors
def ceremony(
    beacon: Annotated[
        str,
        typer.Option(
            "--beacon",
            help="32-byte hex public randomness fixed only after the contributions (e.g. a later block hash)",
        ),
    ],
    contributor: Annotated[
        list[str], typer.Option("--contributor", "-c", help="Contributor name (repeat; at least two)")
    ] = [],  # noqa: B006 - typer needs a literal default
    circuits: CircuitsOpt = None,
) -> None:
    """Run powers of tau and the circuit's phase 2, each with every contributor and a final beacon.

    Writes circuits/setup/ (r1cs, wasm, ptau, final zkey, vk.json, transcript.json) and the
    package's copy of the verifying key; pin the printed hash in aitbc.protocol.zk."""
    paths = CircuitPaths(circuits or default_circuits_dir())
    names = contributor or ["contributor-1", "contributor-2", "contributor-3"]
    with console.status("ceremony") as status:
        transcript = run_ceremony(paths, names, beacon, log=lambda msg: status.update(msg))
    packaged = Path(aitbc.protocol.__file__).parent / "zk_receipt_vk.json"
    shutil.copyfile(paths.vk, packaged)
    console.print(f"[green]ceremony done[/]: {len(transcript.steps)} steps, transcript {paths.transcript}")
    console.print(f"verifying key sha256 (pin as RECEIPT_VK_SHA256): [bold]{compute_vk_hash(paths.vk.read_text())}[/]")


@app.command("verify-setup")
@handle_errors
def verify_setup_cmd(
    circuits: CircuitsOpt = None,
    recompile: Annotated[bool, typer.Option(help="Also recompile the circuit and compare r1cs/wasm")] = True,
) -> None:
    """Re-check the committed setup (never regenerates it): contributions, beacon, zkey, pinned key."""
    paths = CircuitPaths(circuits or default_circuits_dir())
    with console.status("verifying") as status:
        established = verify_setup(paths, log=lambda msg: status.update(msg), recompile=recompile)
    for line in established:
        console.print(f"[green]ok[/] {line}")
    console.print("[bold green]setup verified[/]")
