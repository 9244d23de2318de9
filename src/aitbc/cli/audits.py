"""``aitbc audits`` (read the audits of settled jobs) and ``aitbc miner bond`` / ``unbond`` (docs/verification.md).

Reads are verified: the whole audit state is fetched with its Merkle proof and checked against the block
header it names before anything is shown.
"""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from aitbc.chain.audit_types import TrainingDispute, get_audit, get_bond
from aitbc.cli.common import DevnetOpt, RpcOpt, console, handle_errors, load_key, node_client
from aitbc.cli.stake import FeeOpt, KeyOpt, KeysDirOpt, send_and_wait
from aitbc.protocol.amounts import format_aitbc, parse_aitbc
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.tx import BondMiner, UnbondMiner

app = typer.Typer(help="Audits of settled jobs: re-executions, disputes, slashing.", no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _aitbc(value: str, name: str) -> int:
    try:
        return parse_aitbc(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


@app.command("list")
@handle_errors
def list_audits(
    status: Annotated[str | None, typer.Option(help="pending, passed, disputed, miner_slashed, …")] = None,
    address: Annotated[
        str | None, typer.Option(help="Only audits where this miner is miner, auditor or referee")
    ] = None,
    as_json: JsonOpt = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """The newest audits first (verified against the chain's state root)."""
    with node_client(devnet, rpc) as node:
        audits, payload = node.get_verified_audits()
    chosen = [
        a
        for a in reversed(audits.audits)
        if (status is None or a.status == status)
        and (address is None or address in (a.job.miner, a.auditor, *a.referees))
    ]
    if as_json:
        print(json.dumps(msgspec.to_builtins(chosen), indent=2))
        return
    table = Table("job", "miner", "auditor", "status", "slashed", "refunded", title=f"at block {payload['height']}")
    for a in chosen:
        table.add_row(a.job.job_id, a.job.miner[:16] + "…", a.auditor[:16] + "…", a.status,
                      format_aitbc(a.slashed), format_aitbc(a.refunded))  # fmt: skip
    console.print(table)
    console.print(
        f"{len(audits.candidates)} settled job(s) wait for the next draw; {format_aitbc(audits.burned)} AITBC burned"
    )


@app.command("show")
@handle_errors
def show(
    job_id: Annotated[str, typer.Argument(help="Job id")],
    as_json: JsonOpt = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """One job's audit: who re-ran it, what they reported, the outcome (verified against the state root)."""
    with node_client(devnet, rpc) as node:
        audits, payload = node.get_verified_audits()
    audit = get_audit(audits, job_id)
    if audit is None:
        raise ConfigError(f"job {job_id} has not been audited (at block {payload['height']})")
    if as_json:
        print(json.dumps(msgspec.to_builtins(audit), indent=2))
        return
    console.print(f"[bold]{job_id}[/]: {audit.status} (selected at block {audit.selected_height})")
    console.print(f"  miner {audit.job.miner}, model {audit.job.model_digest}")
    console.print(f"  auditor {audit.auditor}, report by block {audit.deadline_height}")
    if audit.auditor_output:
        console.print(f"  miner output {audit.job.output_hash}\n  auditor says {audit.auditor_output}")
    for report in audit.reports:
        console.print(f"  referee {report.referee} says {report.output_hash}")
    if audit.training is not None:
        _show_training(audit.training, audit.referees)
    if audit.slashed:
        console.print(f"  slashed {format_aitbc(audit.slashed)} AITBC; client refunded {format_aitbc(audit.refunded)}")
    console.print(f"[dim]verified against the state root of block {payload['height']}[/]")


def _show_training(dispute: TrainingDispute, referees: list[str]) -> None:
    """A training dispute: the drawn segment, where the bisection stands, the referee's step."""
    start, end = dispute.start_step, dispute.end_step
    console.print(f"  training segment {dispute.segment}: steps {start}-{end}, {dispute.rounds} bisection round(s)")
    console.print(f"  agreed state after step {start + dispute.lo}: {dispute.lo_hash}")
    console.print(f"  after step {start + dispute.hi}: miner says {dispute.miner_hash}")
    console.print(f"  after step {start + dispute.hi}: auditor says {dispute.auditor_hash}")
    if referees:
        said = dispute.referee_hash or "(not yet)"
        console.print(f"  referee {referees[0]} recomputed step {start + dispute.hi}: {said}")


@handle_errors
def bond(
    amount: Annotated[str, typer.Argument(help="AITBC to bond, e.g. 100")],
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Model digest you serve (sha256:…); repeatable")
    ] = None,
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Bond AITBC as a miner: audited jobs go to bonded miners, who also audit others (docs/verification.md)."""
    send_and_wait(BondMiner, sender, fee, devnet, rpc, keys, amount=_aitbc(amount, "amount"), models=model or [])
    address = load_key(sender, devnet, keys).address
    with node_client(devnet, rpc) as node:
        audits, _ = node.get_verified_audits()
    current = get_bond(audits, address)
    if current is not None:
        console.print(f"bonded {format_aitbc(current.amount)} AITBC; models: {', '.join(current.models) or 'none'}")


@handle_errors
def unbond(
    amount: Annotated[str, typer.Argument(help="AITBC to unbond")],
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Start unbonding; released after the unbonding period, later while you are in an open audit."""
    send_and_wait(UnbondMiner, sender, fee, devnet, rpc, keys, amount=_aitbc(amount, "amount"))
