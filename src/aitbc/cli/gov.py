"""``aitbc gov``: propose, fund, vote on and read on-chain governance (``docs/governance.md``).

Reads are verified: the CLI fetches the whole governance state with its Merkle proof and checks it against
the block header it names before showing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from aitbc.chain.gov_types import GovernanceState, Proposal, get_proposal
from aitbc.chain.param_changes import GOVERNABLE_PARAMS
from aitbc.cli.common import DevnetOpt, RpcOpt, console, handle_errors, load_key, node_client
from aitbc.cli.stake import FeeOpt, KeyOpt, KeysDirOpt, send_and_wait
from aitbc.protocol.amounts import format_aitbc, parse_aitbc
from aitbc.protocol.errors import ConfigError
from aitbc.protocol.tx import DepositProposal, GovernanceVote, ParamChange, SubmitProposal

app = typer.Typer(help="On-chain governance: proposals, deposits, votes, parameters.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


def _aitbc(value: str, name: str) -> int:
    try:
        return parse_aitbc(value)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _changes(items: list[str]) -> list[ParamChange]:
    changes = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise ConfigError(f"--set {item!r}: write NAME=INTEGER, e.g. protocol_fee_bps=100")
        if name not in GOVERNABLE_PARAMS:
            raise ConfigError(f"--set: {name} is not governable; see `aitbc gov params`")
        changes.append(ParamChange(name=name, value=int(value)))
    return changes


def _verified(devnet: Path | None, rpc: str | None) -> tuple[GovernanceState, dict[str, Any]]:
    with node_client(devnet, rpc) as node:
        return node.get_verified_governance()


@app.command("propose")
@handle_errors
def propose(
    title: Annotated[str, typer.Option(help="One line, at most 140 characters")],
    kind: Annotated[str, typer.Option(help="param_change | text | treasury_spend | software_upgrade")] = "text",
    description: Annotated[str, typer.Option(help="What and why")] = "",
    set_: Annotated[list[str] | None, typer.Option("--set", help="param_change: NAME=VALUE (repeatable)")] = None,
    activation_height: Annotated[int, typer.Option(help="param_change / software_upgrade: when it applies")] = 0,
    recipient: Annotated[str, typer.Option(help="treasury_spend: who is paid")] = "",
    spend: Annotated[str, typer.Option(help="treasury_spend: AITBC paid from the reward pool")] = "0",
    version: Annotated[str, typer.Option(help="software_upgrade: the version nodes must run")] = "",
    deposit: Annotated[str, typer.Option(help="AITBC deposited now (voting opens at the minimum deposit)")] = "0",
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Submit a proposal; prints its id."""
    status = send_and_wait(
        SubmitProposal,
        sender,
        fee,
        devnet,
        rpc,
        keys,
        proposal_kind=kind,
        title=title,
        description=description,
        changes=_changes(set_ or []),
        recipient=recipient,
        spend=_aitbc(spend, "--spend"),
        activation_height=activation_height,
        upgrade_version=version,
        deposit=_aitbc(deposit, "--deposit"),
    )
    proposer = load_key(sender, devnet, keys).address
    gov, _ = _verified(devnet, rpc)
    mine = [p for p in gov.proposals if p.proposer == proposer and p.submit_height == status["height"]]
    if mine:
        proposal = mine[-1]
        console.print(f"proposal [bold]{proposal.id}[/]: {proposal.status}")
        if proposal.status == "voting_period":
            console.print(f"  voting until block {proposal.voting_end_height}")
        else:
            console.print(
                f"  deposit {format_aitbc(proposal.total_deposit)} AITBC, until block {proposal.deposit_end_height}"
            )


@app.command("deposit")
@handle_errors
def deposit(
    proposal_id: Annotated[int, typer.Argument(help="Proposal id")],
    amount: Annotated[str, typer.Argument(help="AITBC to add")],
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Add to a proposal's deposit (returned unless the proposal is vetoed or misses its quorum)."""
    units = _aitbc(amount, "amount")
    send_and_wait(DepositProposal, sender, fee, devnet, rpc, keys, proposal_id=proposal_id, amount=units)


@app.command("vote")
@handle_errors
def vote(
    proposal_id: Annotated[int, typer.Argument(help="Proposal id")],
    option: Annotated[str, typer.Argument(help="yes | no | abstain | no_with_veto")],
    sender: KeyOpt = None,
    fee: FeeOpt = "0.001",
    keys: KeysDirOpt = None,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """GovernanceVote with your bonded stake (a validator's vote also carries delegations whose owners do not vote)."""
    if option not in ("yes", "no", "abstain", "no_with_veto"):
        raise ConfigError("option must be yes, no, abstain or no_with_veto")
    send_and_wait(GovernanceVote, sender, fee, devnet, rpc, keys, proposal_id=proposal_id, option=option)


def _row(p: Proposal) -> list[str]:
    tally = p.tally
    result = "" if tally is None else f"yes {format_aitbc(tally.yes)} / no {format_aitbc(tally.no)}"
    return [str(p.id), p.kind, p.title, p.status, format_aitbc(p.total_deposit), result, p.note]


@app.command("proposals")
@handle_errors
def proposals(
    status: Annotated[str | None, typer.Option(help="Only proposals in this status")] = None,
    as_json: JsonOpt = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """Every proposal (verified against the chain's state root)."""
    gov, payload = _verified(devnet, rpc)
    chosen = [p for p in gov.proposals if status is None or p.status == status]
    if as_json:
        print(json.dumps([msgspec.to_builtins(p) for p in chosen], indent=2))
        return
    table = Table("id", "kind", "title", "status", "deposit", "tally", "note", title=f"at block {payload['height']}")
    for proposal in chosen:
        table.add_row(*_row(proposal))
    console.print(table)


@app.command("show")
@handle_errors
def show(
    proposal_id: Annotated[int, typer.Argument(help="Proposal id")],
    as_json: JsonOpt = False,
    devnet: DevnetOpt = None,
    rpc: RpcOpt = None,
) -> None:
    """One proposal with its votes or final tally (verified against the chain's state root)."""
    gov, payload = _verified(devnet, rpc)
    proposal = get_proposal(gov, proposal_id)
    if proposal is None:
        raise ConfigError(f"no proposal {proposal_id} at block {payload['height']}")
    if as_json:
        print(json.dumps(msgspec.to_builtins(proposal), indent=2))
        return
    console.print(f"[bold]#{proposal.id} {proposal.title}[/] ({proposal.kind}) — {proposal.status} {proposal.note}")
    for change in proposal.changes:
        console.print(f"  set {change.name} = {change.value}")
    if proposal.enact_height:
        console.print(f"  takes effect at block {proposal.enact_height}")
    if proposal.kind == "treasury_spend":
        console.print(f"  pays {format_aitbc(proposal.spend)} AITBC to {proposal.recipient}")
    console.print(f"  deposit {format_aitbc(proposal.total_deposit)} AITBC from {len(proposal.deposits)} depositor(s)")
    if proposal.voting_start_height:
        console.print(f"  vote open blocks {proposal.voting_start_height}-{proposal.voting_end_height}")
    for v in proposal.votes:
        console.print(f"  {v.voter}: {v.option}")
    if proposal.tally is not None:
        t = proposal.tally
        console.print(
            f"  tally: yes {format_aitbc(t.yes)}, no {format_aitbc(t.no)}, abstain {format_aitbc(t.abstain)}, "
            f"veto {format_aitbc(t.no_with_veto)} of {format_aitbc(t.total_bonded)} bonded"
        )
    console.print(f"[dim]verified against the state root of block {payload['height']}[/]")


@app.command("params")
@handle_errors
def params(as_json: JsonOpt = False, devnet: DevnetOpt = None, rpc: RpcOpt = None) -> None:
    """The governable parameters in force, their ranges, scheduled changes and history."""
    with node_client(devnet, rpc) as node:
        live = node.call("get_gov_params")
    gov, payload = _verified(devnet, rpc)
    if as_json:
        print(json.dumps(live, indent=2))
        return
    from aitbc.chain.param_changes import get_param
    from aitbc.chain.params import ChainParams

    current = msgspec.convert(live["params"], ChainParams)
    table = Table("parameter", "value", "range", title=f"at block {payload['height']}")
    for name, (low, high) in GOVERNABLE_PARAMS.items():
        table.add_row(name, str(get_param(current, name)), f"{low} … {high}")
    console.print(table)
    for s in gov.scheduled:
        console.print(
            f"scheduled at block {s.height} (proposal {s.proposal_id}): "
            + ", ".join(f"{c.name}={c.value}" for c in s.changes)
        )
    for r in gov.history:
        console.print(f"block {r.height}: {r.name} {r.old} → {r.new} (proposal {r.proposal_id})")
    for u in gov.upgrades:
        console.print(f"upgrade to {u.version} signalled for block {u.height} (proposal {u.proposal_id})")
