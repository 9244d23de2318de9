"""The exchange's ledger rules: balances and holds per user and asset, the events that move them, and
their double-entry postings (pure).

Every event of the trading engine (``aitbc.market.trading``) maps to postings that sum to zero per
asset (``compute_postings``), over these accounts:

    user:<id>:available   what a user may spend (may go negative only through a reversed deposit)
    user:<id>:held        reserved for an open order or a pending withdrawal
    exchange:fees         trading fees the exchange earned
    external:deposits     minus everything that came in from a chain
    external:withdrawals  everything that went out to a chain (amount + network fee)

so Σ users (available + held) = deposits - withdrawals - fees, per asset (``check_ledger_invariants``).
The exchange's database stores these postings in the same transaction as the event (docs/exchange.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from aitbc.protocol.errors import AitbcError


class LedgerInvariantBroken(AitbcError):
    reason = "ledger_invariant_broken"


class Balance:
    """One user's balance in one asset."""

    __slots__ = ("available", "held")

    def __init__(self, available: int = 0, held: int = 0) -> None:
        self.available = available
        self.held = held

    def __repr__(self) -> str:
        return f"Balance(available={self.available}, held={self.held})"


class Ledger:
    """Balances per asset and user, plus the per-asset totals the invariant is checked against."""

    __slots__ = ("accounts", "assets", "deposits", "fees", "withdrawals")

    def __init__(self, assets: tuple[str, ...]) -> None:
        self.assets = assets
        self.accounts: dict[str, dict[str, Balance]] = {a: {} for a in assets}
        self.deposits: dict[str, int] = dict.fromkeys(assets, 0)
        self.withdrawals: dict[str, int] = dict.fromkeys(assets, 0)
        self.fees: dict[str, int] = dict.fromkeys(assets, 0)

    def account(self, user: str, asset: str) -> Balance:
        accounts = self.accounts[asset]
        balance = accounts.get(user)
        if balance is None:
            balance = accounts[user] = Balance()
        return balance

    def get_balance(self, user: str, asset: str) -> tuple[int, int]:
        """(available, held); zeros for a user who never had any."""
        balance = self.accounts[asset].get(user)
        return (balance.available, balance.held) if balance else (0, 0)

    def is_in_debt(self, user: str) -> bool:
        return any((b := self.accounts[a].get(user)) is not None and b.available < 0 for a in self.assets)


# -- events (the engine's output; each one is a journal entry) -----------------------------------


class OrderAccepted(NamedTuple):
    order_id: int
    user: str
    side: str
    order_type: str
    price: int | None
    quantity: int
    time_in_force: str
    post_only: bool
    asset: str
    """The asset held for the order: quote for a buy, base for a sell."""
    hold: int


class OrderRested(NamedTuple):
    order_id: int
    user: str
    side: str
    price: int
    remaining: int


class Trade(NamedTuple):
    trade_id: int
    price: int
    quantity: int
    value: int
    taker_side: str
    maker_order_id: int
    taker_order_id: int
    buyer: str
    seller: str
    buyer_hold_used: int
    """Quote units taken from the buyer's hold (at the buyer's limit price; the difference to ``value``
    goes back to the buyer's available balance)."""
    buyer_fee: int
    """In the base asset, out of what the buyer receives."""
    seller_fee: int
    """In the quote asset, out of what the seller receives."""


class OrderClosed(NamedTuple):
    order_id: int
    user: str
    side: str
    price: int
    """The order's limit price (0 for a market order)."""
    asset: str
    filled: int
    remaining: int
    released: int
    """What was still held for the order and goes back to available."""
    reason: str
    """filled, cancelled, ioc, fok, market, self_trade, deposit_reversed."""


class Deposited(NamedTuple):
    user: str
    asset: str
    amount: int
    ref: str


class DepositReversed(NamedTuple):
    user: str
    asset: str
    amount: int
    ref: str


class WithdrawalHeld(NamedTuple):
    ref: str
    user: str
    asset: str
    amount: int


class WithdrawalSent(NamedTuple):
    ref: str
    user: str
    asset: str
    amount: int


class WithdrawalReleased(NamedTuple):
    ref: str
    user: str
    asset: str
    amount: int


Event = (
    OrderAccepted
    | OrderRested
    | Trade
    | OrderClosed
    | Deposited
    | DepositReversed
    | WithdrawalHeld
    | WithdrawalSent
    | WithdrawalReleased
)


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    asset: str
    amount: int


FEES = "exchange:fees"
DEPOSITS = "external:deposits"
WITHDRAWALS = "external:withdrawals"


def available_account(user: str) -> str:
    return f"user:{user}:available"


def held_account(user: str) -> str:
    return f"user:{user}:held"


def compute_postings(event: Event, base: str, quote: str) -> list[Posting]:
    """The double-entry postings of one event; they sum to zero per asset."""
    match event:
        case OrderAccepted(user=user, asset=asset, hold=hold):
            return [Posting(available_account(user), asset, -hold), Posting(held_account(user), asset, hold)]
        case OrderClosed(user=user, asset=asset, released=released) if released:
            return [Posting(held_account(user), asset, -released), Posting(available_account(user), asset, released)]
        case Trade() as t:
            return [
                Posting(held_account(t.buyer), quote, -t.buyer_hold_used),
                Posting(available_account(t.buyer), quote, t.buyer_hold_used - t.value),
                Posting(available_account(t.buyer), base, t.quantity - t.buyer_fee),
                Posting(FEES, base, t.buyer_fee),
                Posting(held_account(t.seller), base, -t.quantity),
                Posting(available_account(t.seller), quote, t.value - t.seller_fee),
                Posting(FEES, quote, t.seller_fee),
            ]
        case Deposited(user=user, asset=asset, amount=amount):
            return [Posting(DEPOSITS, asset, -amount), Posting(available_account(user), asset, amount)]
        case DepositReversed(user=user, asset=asset, amount=amount):
            return [Posting(available_account(user), asset, -amount), Posting(DEPOSITS, asset, amount)]
        case WithdrawalHeld(user=user, asset=asset, amount=amount):
            return [Posting(available_account(user), asset, -amount), Posting(held_account(user), asset, amount)]
        case WithdrawalSent(user=user, asset=asset, amount=amount):
            return [Posting(held_account(user), asset, -amount), Posting(WITHDRAWALS, asset, amount)]
        case WithdrawalReleased(user=user, asset=asset, amount=amount):
            return [Posting(held_account(user), asset, -amount), Posting(available_account(user), asset, amount)]
    return []


def apply_postings(ledger: Ledger, postings: list[Posting]) -> None:
    """Move a ledger by postings (how a ledger is rebuilt from the journal alone)."""
    for p in postings:
        kind, _, rest = p.account.partition(":")
        if kind == "user":
            user, _, part = rest.rpartition(":")
            balance = ledger.account(user, p.asset)
            if part == "available":
                balance.available += p.amount
            else:
                balance.held += p.amount
        elif p.account == FEES:
            ledger.fees[p.asset] += p.amount
        elif p.account == DEPOSITS:
            ledger.deposits[p.asset] -= p.amount
        elif p.account == WITHDRAWALS:
            ledger.withdrawals[p.asset] += p.amount


def check_ledger_invariants(ledger: Ledger) -> None:
    """Raise unless, per asset, Σ (available + held) = deposits - withdrawals - fees and no hold is negative."""
    for asset in ledger.assets:
        total = 0
        for user, balance in ledger.accounts[asset].items():
            if balance.held < 0:
                raise LedgerInvariantBroken(f"{user} holds {balance.held} {asset} (negative)")
            total += balance.available + balance.held
        expected = ledger.deposits[asset] - ledger.withdrawals[asset] - ledger.fees[asset]
        if total != expected:
            raise LedgerInvariantBroken(f"{asset}: users hold {total} but deposits - withdrawals - fees = {expected}")
