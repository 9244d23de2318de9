"""A price-time priority limit order book with integer prices and quantities (pure: no clock, no I/O).

Quantities are base-asset units (AITBC base units), prices are quote-asset units (satoshis) per
``price_scale`` base units (one AITBC). A market's lot and tick sizes are chosen so that every
``quantity * price`` is a multiple of ``price_scale`` (``lot_size * tick_size % price_scale == 0``),
so the value of any fill is an exact integer: no rounding, nothing created or lost.

This module only keeps resting orders and matches against them; balances, holds and fees are
``aitbc.market.trading``'s rules. It is the raw-book baseline of ``bench/exchange.py``.

Priority: the best price first; within a price, the order that rested first. Each price level is a
``dict`` (insertion-ordered) so the oldest order is the first key and a cancel is O(1).
"""

from __future__ import annotations

import hashlib
import struct
from bisect import insort
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from aitbc.protocol.errors import AitbcError, ConfigError

MAX_INT64: Final = 2**63 - 1
"""Every amount the exchange stores fits a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT)."""


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"


class TimeInForce(StrEnum):
    GTC = "gtc"
    """Good till cancelled: the rest of a limit order rests on the book."""
    IOC = "ioc"
    """Immediate or cancel: fill what can be filled now, cancel the rest."""
    FOK = "fok"
    """Fill or kill: fill all of it now or none of it."""


class SelfTradePrevention(StrEnum):
    """What happens when an order would trade with a resting order of the same user."""

    CANCEL_RESTING = "cancel_resting"
    CANCEL_TAKER = "cancel_taker"
    CANCEL_BOTH = "cancel_both"


class OrderRejection(StrEnum):
    """Why an order or cancel is refused; stable public strings (the API's ``reason``)."""

    MALFORMED = "malformed"
    NON_POSITIVE_QUANTITY = "non_positive_quantity"
    QUANTITY_TOO_LARGE = "quantity_too_large"
    LOT_SIZE = "lot_size"
    NON_POSITIVE_PRICE = "non_positive_price"
    PRICE_TOO_LARGE = "price_too_large"
    TICK_SIZE = "tick_size"
    VALUE_TOO_LARGE = "value_too_large"
    POST_ONLY_WOULD_TRADE = "post_only_would_trade"
    NO_LIQUIDITY = "no_liquidity"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    ACCOUNT_IN_DEBT = "account_in_debt"
    UNKNOWN_ORDER = "unknown_order"
    NON_POSITIVE_AMOUNT = "non_positive_amount"
    AMOUNT_TOO_LARGE = "amount_too_large"
    UNKNOWN_ASSET = "unknown_asset"
    DUPLICATE_REFERENCE = "duplicate_reference"
    UNKNOWN_REFERENCE = "unknown_reference"


class OrderRejected(AitbcError):
    """A command the trading rules refuse; nothing changed. ``reason`` is an ``OrderRejection``."""

    def __init__(self, rejection: OrderRejection, message: str) -> None:
        super().__init__(message, reason=rejection.value)
        self.rejection = rejection


@dataclass(frozen=True, slots=True)
class MarketSpec:
    """One market's units and limits (defaults: AITBC priced in satoshis per AITBC)."""

    symbol: str = "AITBC-BTC"
    base: str = "AITBC"
    quote: str = "BTC"
    price_scale: int = 1_000_000
    """The price is in quote units per this many base units (10**6 = one AITBC)."""
    tick_size: int = 1
    """Prices are multiples of this (satoshis per AITBC)."""
    lot_size: int = 1_000_000
    """Quantities are multiples of this (base units)."""
    max_quantity: int = 10**15
    max_price: int = 21 * 10**14
    """No price above all the bitcoin there will ever be, per AITBC."""

    def __post_init__(self) -> None:
        for name in ("price_scale", "tick_size", "lot_size", "max_quantity", "max_price"):
            value = getattr(self, name)
            if type(value) is not int or not 0 < value <= MAX_INT64:
                raise ConfigError(f"market {self.symbol}: {name} must be a positive 64-bit integer")
        if (self.lot_size * self.tick_size) % self.price_scale:
            raise ConfigError(
                f"market {self.symbol}: lot_size * tick_size must be a multiple of price_scale "
                "(so that every fill has an exact integer value)"
            )
        if self.base == self.quote:
            raise ConfigError(f"market {self.symbol}: base and quote must differ")

    def compute_value(self, quantity: int, price: int) -> int:
        """Quote units paid for ``quantity`` base units at ``price`` (exact for lot/tick multiples)."""
        return quantity * price // self.price_scale


class Order:
    """A live order (mutable while it lives; the trading rules keep ``hold`` up to date)."""

    __slots__ = ("hold", "order_id", "price", "quantity", "remaining", "side", "user")

    def __init__(self, order_id: int, user: str, side: Side, price: int, quantity: int, hold: int = 0) -> None:
        self.order_id = order_id
        self.user = user
        self.side = side
        self.price = price
        self.quantity = quantity
        self.remaining = quantity
        self.hold = hold

    def __repr__(self) -> str:
        return f"Order({self.order_id}, {self.user!r}, {self.side}, {self.price}, {self.remaining}/{self.quantity})"


Fill = tuple[Order, int, int]
"""(maker order, quantity, price) of one match."""


class OrderBook:
    """Resting orders of one market, bids and asks, in price-time priority."""

    __slots__ = ("ask_prices", "asks", "bid_prices", "bids", "open_by_user", "orders", "spec")

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.bids: dict[int, dict[int, Order]] = {}
        self.asks: dict[int, dict[int, Order]] = {}
        self.bid_prices: list[int] = []
        """Ascending: the best bid is the last."""
        self.ask_prices: list[int] = []
        """Descending: the best ask is the last."""
        self.orders: dict[int, Order] = {}
        self.open_by_user: dict[str, int] = {}
        """Resting orders per user (for a per-user cap)."""

    # -- reads -------------------------------------------------------------------------
    def best_bid(self) -> int | None:
        return self.bid_prices[-1] if self.bid_prices else None

    def best_ask(self) -> int | None:
        return self.ask_prices[-1] if self.ask_prices else None

    def is_crossing(self, side: Side, price: int) -> bool:
        """Would a limit order at ``price`` trade with the other side right now?"""
        if side is Side.BUY:
            return bool(self.ask_prices) and price >= self.ask_prices[-1]
        return bool(self.bid_prices) and price <= self.bid_prices[-1]

    def is_crossed(self) -> bool:
        """A book whose best bid reaches its best ask is broken (matching should have traded them)."""
        return bool(self.bid_prices and self.ask_prices) and self.bid_prices[-1] >= self.ask_prices[-1]

    def levels(self, side: Side, depth: int) -> list[tuple[int, int]]:
        """(price, total quantity) of the best ``depth`` levels of one side, best first."""
        prices, book = (self.bid_prices, self.bids) if side is Side.BUY else (self.ask_prices, self.asks)
        out = []
        for price in reversed(prices[-depth:] if depth else prices):
            out.append((price, sum(o.remaining for o in book[price].values())))
        return out

    def level_quantity(self, side: Side, price: int) -> int:
        level = (self.bids if side is Side.BUY else self.asks).get(price)
        return sum(o.remaining for o in level.values()) if level else 0

    def compute_fillable(
        self, side: Side, quantity: int, limit: int | None, user: str, stp: SelfTradePrevention
    ) -> tuple[int, int]:
        """(quantity, quote value) an order would fill right now, with the same self-trade rule as ``match``."""
        prices, book = (self.ask_prices, self.asks) if side is Side.BUY else (self.bid_prices, self.bids)
        is_buy = side is Side.BUY
        want, value, scale = quantity, 0, self.spec.price_scale
        for price in reversed(prices):
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            for maker in book[price].values():
                if maker.user == user:
                    if stp is SelfTradePrevention.CANCEL_RESTING:
                        continue
                    return quantity - want, value
                q = want if want < maker.remaining else maker.remaining
                want -= q
                value += q * price // scale
                if not want:
                    return quantity, value
        return quantity - want, value

    # -- changes -----------------------------------------------------------------------
    def add(self, order: Order) -> None:
        """Rest ``order`` behind every order already at its price."""
        if order.side is Side.BUY:
            level = self.bids.get(order.price)
            if level is None:
                level = self.bids[order.price] = {}
                insort(self.bid_prices, order.price)
        else:
            level = self.asks.get(order.price)
            if level is None:
                level = self.asks[order.price] = {}
                insort(self.ask_prices, order.price, key=_neg)
        level[order.order_id] = order
        self.orders[order.order_id] = order
        self.open_by_user[order.user] = self.open_by_user.get(order.user, 0) + 1

    def _forget(self, order: Order) -> None:
        del self.orders[order.order_id]
        left = self.open_by_user[order.user] - 1
        if left:
            self.open_by_user[order.user] = left
        else:
            del self.open_by_user[order.user]

    def remove(self, order: Order) -> None:
        book, prices = (self.bids, self.bid_prices) if order.side is Side.BUY else (self.asks, self.ask_prices)
        level = book[order.price]
        del level[order.order_id]
        self._forget(order)
        if not level:
            del book[order.price]
            prices.remove(order.price)

    def match(
        self, side: Side, quantity: int, limit: int | None, user: str, stp: SelfTradePrevention
    ) -> tuple[list[Fill], list[Order], int, bool]:
        """Take liquidity for an incoming order: (fills, own resting orders cancelled, quantity left, taker stopped).

        Walks the other side best price first, oldest first; a maker of the same user triggers the
        self-trade rule instead of a fill. Filled makers leave the book.
        """
        is_buy = side is Side.BUY
        prices, book = (self.ask_prices, self.asks) if is_buy else (self.bid_prices, self.bids)
        forget = self._forget
        fills: list[Fill] = []
        cancelled: list[Order] = []
        remaining = quantity
        stopped = False
        while remaining and prices:
            price = prices[-1]
            if limit is not None and (price > limit if is_buy else price < limit):
                break
            level = book[price]
            while remaining and level:
                maker = level[next(iter(level))]
                if maker.user == user:
                    if stp is SelfTradePrevention.CANCEL_TAKER:
                        stopped = True
                        break
                    del level[maker.order_id]
                    forget(maker)
                    cancelled.append(maker)
                    if stp is SelfTradePrevention.CANCEL_BOTH:
                        stopped = True
                        break
                    continue
                q = remaining if remaining < maker.remaining else maker.remaining
                maker.remaining -= q
                remaining -= q
                fills.append((maker, q, price))
                if not maker.remaining:
                    del level[maker.order_id]
                    forget(maker)
            if not level:
                del book[price]
                prices.pop()
            if stopped:
                break
        return fills, cancelled, remaining, stopped


def _neg(price: int) -> int:
    return -price


_ORDER = struct.Struct(">BQQQQH")


def compute_book_hash(book: OrderBook) -> str:
    """SHA-256 over every resting order in priority order (bids then asks): equal books, equal hashes."""
    h = hashlib.sha256(book.spec.symbol.encode())
    for tag, prices, levels in ((0, book.bid_prices, book.bids), (1, book.ask_prices, book.asks)):
        for price in reversed(prices):
            for order in levels[price].values():
                user = order.user.encode()
                h.update(_ORDER.pack(tag, order.order_id, price, order.remaining, order.quantity, len(user)))
                h.update(user)
    return h.hexdigest()
