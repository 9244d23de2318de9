"""The trading engine: commands in, events out, over one order book and the ledger (pure, deterministic).

Event sourcing: the exchange stores every accepted command (with the events it produced) in order;
``replay`` feeds the commands to a fresh engine and gets the same events, the same book and the same
``compute_state_hash`` bit for bit, because nothing here reads a clock, randomness or the order of a set.

Each ``process_*`` reads as: ``# Verify`` checks that raise ``OrderRejected`` with nothing changed, then
the mutation, which returns the events (ledger journal entries: see ``aitbc.market.ledger``).

A reversed deposit (the Bitcoin block that paid it was orphaned) debits the user even when the coins
were already traded: trades stand (the counterparty did nothing wrong), the user's open orders in that
asset are cancelled to free their holds, and what is still missing leaves the user's available balance
negative — a debt that blocks withdrawals until it is covered (docs/exchange.md).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from aitbc.market.ledger import (
    Balance,
    Deposited,
    DepositReversed,
    Event,
    Ledger,
    OrderAccepted,
    OrderClosed,
    OrderRested,
    Trade,
    WithdrawalHeld,
    WithdrawalReleased,
    WithdrawalSent,
)
from aitbc.market.orderbook import (
    MAX_INT64,
    Fill,
    MarketSpec,
    Order,
    OrderBook,
    OrderRejected,
    OrderRejection,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    compute_book_hash,
)
from aitbc.protocol.errors import ConfigError

# -- commands ---------------------------------------------------------------------------------


class PlaceOrder(NamedTuple):
    user: str
    side: Side
    order_type: OrderType
    quantity: int
    price: int | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    stp: SelfTradePrevention = SelfTradePrevention.CANCEL_RESTING


class CancelOrder(NamedTuple):
    user: str
    order_id: int


class Deposit(NamedTuple):
    user: str
    asset: str
    amount: int
    ref: str


class ReverseDeposit(NamedTuple):
    user: str
    asset: str
    amount: int
    ref: str


class RequestWithdrawal(NamedTuple):
    ref: str
    user: str
    asset: str
    amount: int


class CompleteWithdrawal(NamedTuple):
    ref: str


class CancelWithdrawal(NamedTuple):
    ref: str


Command = (
    PlaceOrder | CancelOrder | Deposit | ReverseDeposit | RequestWithdrawal | CompleteWithdrawal | CancelWithdrawal
)


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Trading fees in basis points of what each side receives (the buyer pays in base, the seller in quote)."""

    maker_bps: int = 0
    taker_bps: int = 10

    def __post_init__(self) -> None:
        if not (0 <= self.maker_bps <= 1000 and 0 <= self.taker_bps <= 1000):
            raise ConfigError("fees must be between 0 and 1000 basis points")


def _reject(rejection: OrderRejection, message: str) -> OrderRejected:
    return OrderRejected(rejection, message)


class TradingEngine:
    """One market's book and the ledger of every user (mutated in place by ``process``)."""

    def __init__(self, spec: MarketSpec, fees: FeeSchedule | None = None) -> None:
        self.spec = spec
        self.fees = fees or FeeSchedule()
        self.book = OrderBook(spec)
        self.ledger = Ledger((spec.base, spec.quote))
        self.next_order_id = 1
        self.next_trade_id = 1
        self.withdrawals: dict[str, tuple[str, str, int]] = {}
        """Pending withdrawals: ref -> (user, asset, amount)."""
        self.deposit_refs: set[str] = set()
        self._handlers: dict[type, Callable[[Any], list[Event]]] = {
            PlaceOrder: self.process_place_order,
            CancelOrder: self.process_cancel_order,
            Deposit: self.process_deposit,
            ReverseDeposit: self.process_reverse_deposit,
            RequestWithdrawal: self.process_request_withdrawal,
            CompleteWithdrawal: self.process_complete_withdrawal,
            CancelWithdrawal: self.process_cancel_withdrawal,
        }

    def process(self, command: Command) -> list[Event]:
        """Apply one command; raise ``OrderRejected`` (nothing changed) or return its events."""
        handler = self._handlers.get(type(command))
        if handler is None:
            raise _reject(OrderRejection.MALFORMED, f"unknown command {type(command).__name__}")
        return handler(command)

    # -- orders ------------------------------------------------------------------------
    def process_place_order(self, cmd: PlaceOrder) -> list[Event]:
        spec, book = self.spec, self.book
        quantity, price, side = cmd.quantity, cmd.price, cmd.side
        is_buy = side is Side.BUY
        is_limit = cmd.order_type is OrderType.LIMIT
        value = cost = 0
        # Verify the quantity: a positive multiple of the lot size, within the market's maximum
        if type(quantity) is not int:
            raise _reject(OrderRejection.MALFORMED, "quantity must be an integer number of base units")
        if quantity <= 0:
            raise _reject(OrderRejection.NON_POSITIVE_QUANTITY, f"quantity must be positive, got {quantity}")
        if quantity > spec.max_quantity:
            raise _reject(OrderRejection.QUANTITY_TOO_LARGE, f"quantity above the maximum {spec.max_quantity}")
        if quantity % spec.lot_size:
            raise _reject(OrderRejection.LOT_SIZE, f"quantity must be a multiple of the lot size {spec.lot_size}")
        # Verify the price: a limit order's is a positive multiple of the tick; a market order has none
        if is_limit:
            if type(price) is not int:
                raise _reject(OrderRejection.MALFORMED, "a limit order needs an integer price")
            if price <= 0:
                raise _reject(OrderRejection.NON_POSITIVE_PRICE, f"price must be positive, got {price}")
            if price > spec.max_price:
                raise _reject(OrderRejection.PRICE_TOO_LARGE, f"price above the maximum {spec.max_price}")
            if price % spec.tick_size:
                raise _reject(OrderRejection.TICK_SIZE, f"price must be a multiple of the tick size {spec.tick_size}")
            value = quantity * price // spec.price_scale
            if value > MAX_INT64:
                raise _reject(OrderRejection.VALUE_TOO_LARGE, "quantity * price does not fit 64 bits")
        elif price is not None:
            raise _reject(OrderRejection.MALFORMED, "a market order has no price")
        elif cmd.time_in_force is TimeInForce.GTC:
            raise _reject(OrderRejection.MALFORMED, "a market order is IOC or FOK")
        tif = cmd.time_in_force
        # Verify post-only: a resting limit order that would not trade on arrival
        if cmd.post_only:
            if not is_limit or tif is not TimeInForce.GTC:
                raise _reject(OrderRejection.MALFORMED, "post-only orders are GTC limit orders")
            assert price is not None
            if book.is_crossing(side, price):
                raise _reject(OrderRejection.POST_ONLY_WOULD_TRADE, "post-only order would trade on arrival")
        # Verify the balance: the order's hold must be available (a market buy holds its exact cost now)
        fillable = -1
        if not is_limit or tif is TimeInForce.FOK:
            fillable, cost = book.compute_fillable(side, quantity, price, cmd.user, cmd.stp)
            if not is_limit and fillable == 0:
                raise _reject(OrderRejection.NO_LIQUIDITY, "no resting order to trade with")
        if is_buy:
            asset = spec.quote
            hold = value if is_limit else cost
        else:
            asset, hold = spec.base, quantity
        ledger_accounts = self.ledger.accounts[asset]
        account = ledger_accounts.get(cmd.user)
        if account is None or account.available < hold:
            have = account.available if account else 0
            raise _reject(OrderRejection.INSUFFICIENT_BALANCE, f"order needs {hold} {asset}, {have} available")
        # Accept: hold the funds, then match
        order_id = self.next_order_id
        self.next_order_id = order_id + 1
        account.available -= hold
        account.held += hold
        events: list[Event] = [
            OrderAccepted(
                order_id,
                cmd.user,
                side,
                cmd.order_type,
                price,
                quantity,
                tif,
                cmd.post_only,
                asset,
                hold,
            )
        ]
        order = Order(order_id, cmd.user, side, price or 0, quantity, hold)
        if fillable >= 0 and tif is TimeInForce.FOK and fillable < quantity:
            self._close(order, "fok", events)
            return events
        fills, cancelled, remaining, stopped = book.match(side, quantity, price, cmd.user, cmd.stp)
        for maker in cancelled:
            self._close(maker, "self_trade", events)
        if fills:
            self._settle(order, fills, is_limit, events)
        order.remaining = remaining
        if not remaining:
            self._close(order, "filled", events)
        elif stopped:
            self._close(order, "self_trade", events)
        elif not is_limit:
            self._close(order, "market", events)
        elif tif is not TimeInForce.GTC:
            self._close(order, tif, events)
        else:
            book.add(order)
            events.append(OrderRested(order_id, cmd.user, side, order.price, remaining))
        return events

    def _settle(self, taker: Order, fills: list[Fill], taker_is_limit: bool, events: list[Event]) -> None:
        """Move the money of each fill: holds consumed, proceeds minus fees credited, fees collected."""
        spec = self.spec
        base_accounts = self.ledger.accounts[spec.base]
        quote_accounts = self.ledger.accounts[spec.quote]
        fees = self.ledger.fees
        scale = spec.price_scale
        maker_bps, taker_bps = self.fees.maker_bps, self.fees.taker_bps
        taker_buys = taker.side is Side.BUY
        trade_id = self.next_trade_id
        base_fees = quote_fees = 0
        for maker, q, price in fills:
            value = q * price // scale
            if taker_buys:
                buyer, seller = taker, maker
                buyer_used = q * taker.price // scale if taker_is_limit else value
                buyer_fee = q * taker_bps // 10_000
                seller_fee = value * maker_bps // 10_000
            else:
                buyer, seller = maker, taker
                buyer_used = value
                buyer_fee = q * maker_bps // 10_000
                seller_fee = value * taker_bps // 10_000
            buyer.hold -= buyer_used
            seller.hold -= q
            b_quote = quote_accounts[buyer.user]
            b_quote.held -= buyer_used
            b_quote.available += buyer_used - value
            _account(base_accounts, buyer.user).available += q - buyer_fee
            base_accounts[seller.user].held -= q
            _account(quote_accounts, seller.user).available += value - seller_fee
            base_fees += buyer_fee
            quote_fees += seller_fee
            events.append(
                Trade(
                    trade_id,
                    price,
                    q,
                    value,
                    taker.side,
                    maker.order_id,
                    taker.order_id,
                    buyer.user,
                    seller.user,
                    buyer_used,
                    buyer_fee,
                    seller_fee,
                )
            )
            trade_id += 1
            if not maker.remaining:
                self._close(maker, "filled", events)
        self.next_trade_id = trade_id
        fees[spec.base] += base_fees
        fees[spec.quote] += quote_fees

    def _close(self, order: Order, reason: str, events: list[Event]) -> None:
        """An order leaves the book (or never rests): what is still held goes back to available."""
        asset = self.spec.quote if order.side is Side.BUY else self.spec.base
        released = order.hold
        if released:
            account = self.ledger.accounts[asset][order.user]
            account.held -= released
            account.available += released
            order.hold = 0
        events.append(
            OrderClosed(
                order.order_id,
                order.user,
                order.side,
                order.price,
                asset,
                order.quantity - order.remaining,
                order.remaining,
                released,
                reason,
            )
        )

    def process_cancel_order(self, cmd: CancelOrder) -> list[Event]:
        order = self.book.orders.get(cmd.order_id) if type(cmd.order_id) is int else None
        # Verify the order is open and the user's own (a stranger's order looks unknown: no probing)
        if order is None or order.user != cmd.user:
            raise _reject(OrderRejection.UNKNOWN_ORDER, f"no open order {cmd.order_id}")
        self.book.remove(order)
        events: list[Event] = []
        self._close(order, "cancelled", events)
        return events

    # -- money in and out ------------------------------------------------------------------
    def _check_amount(self, asset: str, amount: int) -> None:
        if asset not in self.ledger.accounts:
            raise _reject(OrderRejection.UNKNOWN_ASSET, f"unknown asset {asset!r}")
        if type(amount) is not int:
            raise _reject(OrderRejection.MALFORMED, "amount must be an integer")
        if amount <= 0:
            raise _reject(OrderRejection.NON_POSITIVE_AMOUNT, f"amount must be positive, got {amount}")
        if amount > MAX_INT64:
            raise _reject(OrderRejection.AMOUNT_TOO_LARGE, "amount does not fit 64 bits")

    def process_deposit(self, cmd: Deposit) -> list[Event]:
        # Verify the amount and that this deposit was not credited before
        self._check_amount(cmd.asset, cmd.amount)
        if cmd.ref in self.deposit_refs:
            raise _reject(OrderRejection.DUPLICATE_REFERENCE, f"deposit {cmd.ref} already credited")
        self.deposit_refs.add(cmd.ref)
        self.ledger.account(cmd.user, cmd.asset).available += cmd.amount
        self.ledger.deposits[cmd.asset] += cmd.amount
        return [Deposited(cmd.user, cmd.asset, cmd.amount, cmd.ref)]

    def process_reverse_deposit(self, cmd: ReverseDeposit) -> list[Event]:
        # Verify it reverses a credited deposit
        self._check_amount(cmd.asset, cmd.amount)
        if cmd.ref not in self.deposit_refs:
            raise _reject(OrderRejection.UNKNOWN_REFERENCE, f"no credited deposit {cmd.ref}")
        self.deposit_refs.discard(cmd.ref)
        events: list[Event] = []
        account = self.ledger.account(cmd.user, cmd.asset)
        if account.available < cmd.amount:
            # free what the user's open orders hold in this asset, oldest first
            holding_side = Side.BUY if cmd.asset == self.spec.quote else Side.SELL
            for order in sorted(self.book.orders.values(), key=_order_id):
                if order.user == cmd.user and order.side is holding_side:
                    self.book.remove(order)
                    self._close(order, "deposit_reversed", events)
        account.available -= cmd.amount
        self.ledger.deposits[cmd.asset] -= cmd.amount
        events.append(DepositReversed(cmd.user, cmd.asset, cmd.amount, cmd.ref))
        return events

    def process_request_withdrawal(self, cmd: RequestWithdrawal) -> list[Event]:
        # Verify the amount, a new reference, no debt, and the balance
        self._check_amount(cmd.asset, cmd.amount)
        if cmd.ref in self.withdrawals:
            raise _reject(OrderRejection.DUPLICATE_REFERENCE, f"withdrawal {cmd.ref} exists")
        if self.ledger.is_in_debt(cmd.user):
            raise _reject(OrderRejection.ACCOUNT_IN_DEBT, "a reversed deposit left this account negative")
        account = self.ledger.account(cmd.user, cmd.asset)
        if account.available < cmd.amount:
            raise _reject(
                OrderRejection.INSUFFICIENT_BALANCE, f"withdrawal needs {cmd.amount}, {account.available} available"
            )
        account.available -= cmd.amount
        account.held += cmd.amount
        self.withdrawals[cmd.ref] = (cmd.user, cmd.asset, cmd.amount)
        return [WithdrawalHeld(cmd.ref, cmd.user, cmd.asset, cmd.amount)]

    def process_complete_withdrawal(self, cmd: CompleteWithdrawal) -> list[Event]:
        # Verify the withdrawal is pending
        pending = self.withdrawals.pop(cmd.ref, None)
        if pending is None:
            raise _reject(OrderRejection.UNKNOWN_REFERENCE, f"no pending withdrawal {cmd.ref}")
        user, asset, amount = pending
        self.ledger.accounts[asset][user].held -= amount
        self.ledger.withdrawals[asset] += amount
        return [WithdrawalSent(cmd.ref, user, asset, amount)]

    def process_cancel_withdrawal(self, cmd: CancelWithdrawal) -> list[Event]:
        # Verify the withdrawal is pending
        pending = self.withdrawals.pop(cmd.ref, None)
        if pending is None:
            raise _reject(OrderRejection.UNKNOWN_REFERENCE, f"no pending withdrawal {cmd.ref}")
        user, asset, amount = pending
        account = self.ledger.accounts[asset][user]
        account.held -= amount
        account.available += amount
        return [WithdrawalReleased(cmd.ref, user, asset, amount)]


def _account(accounts: dict[str, Balance], user: str) -> Balance:
    balance = accounts.get(user)
    if balance is None:
        balance = accounts[user] = Balance()
    return balance


def _order_id(order: Order) -> int:
    return order.order_id


def replay(spec: MarketSpec, fees: FeeSchedule, commands: Iterable[Command]) -> tuple[TradingEngine, list[Event]]:
    """A fresh engine fed ``commands`` in order (rejected ones are skipped, as when first processed)."""
    engine = TradingEngine(spec, fees)
    events: list[Event] = []
    for command in commands:
        try:
            events.extend(engine.process(command))
        except OrderRejected:
            continue
    return engine, events


_BALANCE = struct.Struct(">qqH")


def compute_state_hash(engine: TradingEngine) -> str:
    """The book hash plus every balance, hold, total, pending withdrawal and counter, canonically ordered."""
    h = hashlib.sha256(bytes.fromhex(compute_book_hash(engine.book)))
    ledger = engine.ledger
    for asset in ledger.assets:
        h.update(asset.encode() + b"\0")
        h.update(struct.pack(">qqq", ledger.deposits[asset], ledger.withdrawals[asset], ledger.fees[asset]))
        for user in sorted(ledger.accounts[asset]):
            b = ledger.accounts[asset][user]
            h.update(_BALANCE.pack(b.available, b.held, len(user.encode())) + user.encode())
    for order_id in sorted(engine.book.orders):
        h.update(struct.pack(">QQ", order_id, engine.book.orders[order_id].hold))
    for ref in sorted(engine.withdrawals):
        user, asset, amount = engine.withdrawals[ref]
        h.update(f"{ref}\0{user}\0{asset}\0{amount}\0".encode())
    for ref in sorted(engine.deposit_refs):
        h.update(ref.encode() + b"\0")
    h.update(struct.pack(">QQ", engine.next_order_id, engine.next_trade_id))
    return h.hexdigest()


def rebuild_book(spec: MarketSpec, events: Iterable[Event]) -> OrderBook:
    """The order book from the event log alone, without the matching rules (a check on ``replay``)."""
    book = OrderBook(spec)
    quantities: dict[int, int] = {}
    for event in events:
        if type(event) is OrderAccepted:
            quantities[event.order_id] = event.quantity
        elif type(event) is OrderRested:
            order = Order(event.order_id, event.user, Side(event.side), event.price, quantities.pop(event.order_id))
            order.remaining = event.remaining
            book.add(order)
        elif type(event) is Trade:
            maker = book.orders[event.maker_order_id]
            maker.remaining -= event.quantity
            if not maker.remaining:
                book.remove(maker)
        elif type(event) is OrderClosed:
            quantities.pop(event.order_id, None)
            if event.order_id in book.orders:
                book.remove(book.orders[event.order_id])
    return book
