"""What ``aitbc job submit`` shows of a paid job: its escrow, and where the money went once settled."""

from __future__ import annotations

import time

from rich.table import Table

from aitbc.cli.common import console
from aitbc.client.node import NodeClient
from aitbc.client.payment import JobEscrow
from aitbc.protocol.amounts import format_aitbc


def show_escrow(escrow: JobEscrow) -> None:
    table = Table("escrow", "", show_header=False, border_style="yellow")
    table.add_row("job id", escrow.job_id)
    table.add_row(
        "locked",
        f"{format_aitbc(escrow.amount)} AITBC = max price {format_aitbc(escrow.max_price)} + protocol fee",
    )
    table.add_row("coordinator", escrow.coordinator)
    table.add_row("deadline", f"height {escrow.deadline_height} (refunded by the chain if unpaid by then)")
    table.add_row("tx", f"{escrow.tx_hash} [green]committed[/] in block {escrow.height}")
    console.print(table)


def show_payment(node: NodeClient, job_id: str, timeout: float = 60.0) -> None:
    """Wait for the chain to settle or refund the escrow, then show where the money went."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the settlement on chain…"):
        while True:
            found = node.get_job(job_id)
            if found is not None and found["escrow"]["state"] != "open":
                break
            if time.monotonic() > deadline:
                console.print(f"[yellow]escrow of {job_id} still open after {timeout:.0f}s[/]")
                return
            time.sleep(0.2)
    escrow = found["escrow"]
    closing = found["events"][-1]
    table = Table("payment", "", show_header=False, border_style="green")
    table.add_row("escrow", f"[bold]{escrow['state']}[/] in block {closing['height']}, tx {closing['tx_hash']}")
    if escrow["state"] == "settled":
        table.add_row("paid to miner", f"{format_aitbc(escrow['paid_to_miner'])} AITBC → {escrow['miner']}")
        table.add_row("protocol fee", f"{format_aitbc(escrow['protocol_fee'])} AITBC → validators' reward pool")
    table.add_row("returned to you", f"{format_aitbc(escrow['refunded'])} AITBC")
    console.print(table)


def show_deposit_payment(node: NodeClient, job_id: str, timeout: float = 60.0) -> None:
    """Wait for the batch that settles a deposit job, then show what it drew (proof-checked)."""
    deadline = time.monotonic() + timeout
    with console.status("waiting for the job's settle batch on chain…"):
        while (paid := node.get_verified_paid_job(job_id)[0]) is None:
            if time.monotonic() > deadline:
                console.print(f"[yellow]{job_id} not settled after {timeout:.0f}s (`aitbc job cost {job_id}`)[/]")
                return
            time.sleep(0.2)
    table = Table("payment", "", show_header=False, border_style="green")
    table.add_row("settled", f"in a batch, block {paid.height} (proof checked against the header)")
    table.add_row("paid to miner", f"{format_aitbc(paid.paid_to_miner)} AITBC → {paid.miner}")
    table.add_row("protocol fee", f"{format_aitbc(paid.protocol_fee)} AITBC → validators' reward pool")
    table.add_row("drawn from", f"deposit {paid.deposit_id}")
    console.print(table)
