"""What a coordinator may still take on against a client's deposit (pure arithmetic).

The chain knows a deposit's balance, its pending withdrawal and what it spent this period; the
coordinator also knows what it has promised but not yet settled:

- **reserved**: the worst-case charge (``max_price`` + protocol fee) of every job in flight;
- **pending**: the charge of every completed job whose settlement the chain state read does not
  include yet (queued for a batch, or in a batch not yet committed).

``available = balance - withdrawal - reserved - pending``, and with a cap also
``cap room - reserved - pending``; a job is accepted when its worst-case charge fits both, so
the batch that later settles it never finds the deposit short (``insufficient_deposit``) or over
its cap, whatever the order the jobs finish in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aitbc.chain.deposits import get_cap_room
from aitbc.chain.entries import Deposit
from aitbc.market.matching import JobRequirements, compute_max_units
from aitbc.protocol.job import JobInput, compute_input_units


@dataclass(frozen=True, slots=True)
class DepositAvailability:
    balance: int
    """On chain, at ``height``."""
    withdrawing: int
    reserved: int
    pending: int
    spent: int
    """Everything the deposit has paid on chain (``spent_total``)."""
    cap_per_period: int
    cap_room: int | None
    """What the cap still allows this period, less reserved and pending (None: no cap)."""
    available: int
    """What a new job may reserve: the smaller of the free balance and the cap room."""
    height: int


def compute_deposit_availability(deposit: Deposit, height: int, reserved: int, pending: int) -> DepositAvailability:
    """The deposit as of chain ``height`` less the coordinator's reservations and unsettled charges."""
    free = deposit.balance - deposit.withdrawal_amount - reserved - pending
    room = get_cap_room(deposit, height + 1)
    cap_room = None if room is None else room - reserved - pending
    available = free if cap_room is None else min(free, cap_room)
    return DepositAvailability(
        balance=deposit.balance,
        withdrawing=deposit.withdrawal_amount,
        reserved=reserved,
        pending=pending,
        spent=deposit.spent_total,
        cap_per_period=deposit.cap_per_period,
        cap_room=None if cap_room is None else max(cap_room, 0),
        available=max(available, 0),
        height=height,
    )


def is_affordable(availability: DepositAvailability, charge: int) -> bool:
    return charge <= availability.available


def compute_worst_case_price(job_input: JobInput, unit_prices: Sequence[int]) -> int:
    """The most a job can cost at the dearest of ``unit_prices`` (the miners serving its model): what a
    deposit reserves for a job sent without ``max_price``."""
    chars = compute_input_units(job_input)
    units = compute_max_units(JobRequirements(job_input.type, job_input.model, chars, job_input.params.max_tokens))
    return max(unit_prices, default=0) * units
