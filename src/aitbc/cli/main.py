"""The ``aitbc`` command: one binary, a subcommand per role."""

from __future__ import annotations

import typer

from aitbc.cli import (
    audits,
    chain,
    coordinator,
    deposit,
    devnet,
    exchange,
    gov,
    job,
    keys,
    match,
    miner,
    miners,
    node,
    poolhub,
    receipt,
    stake,
    tx,
    wallet,
    wallet_multisig,
    web,
    zk,
)

app = typer.Typer(
    name="aitbc",
    help="AITBC: verifiable, paid AI compute. Start with `aitbc devnet up`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(node.app, name="node")
app.add_typer(keys.app, name="keys")
app.add_typer(tx.app, name="tx")
app.add_typer(chain.app, name="chain")
app.add_typer(devnet.app, name="devnet")
app.add_typer(coordinator.app, name="coordinator")
app.add_typer(miner.app, name="miner")
app.add_typer(job.app, name="job")
app.add_typer(deposit.app, name="deposit")
app.add_typer(wallet.app, name="wallet")
wallet.app.add_typer(wallet_multisig.multisig_app, name="multisig")
app.add_typer(receipt.app, name="receipt")
app.add_typer(zk.app, name="zk")
app.command("stake")(stake.stake)
app.command("unstake")(stake.unstake)
app.add_typer(poolhub.app, name="poolhub")
app.add_typer(exchange.app, name="exchange")
app.add_typer(miners.app, name="miners")
app.add_typer(match.app, name="match")
app.add_typer(web.app, name="web")
app.add_typer(gov.app, name="gov")
app.add_typer(audits.app, name="audits")
miner.app.command("bond")(audits.bond)
miner.app.command("unbond")(audits.unbond)
