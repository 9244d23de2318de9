"""Request bodies of the exchange API (responses are plain JSON documented in docs/exchange.md).

Amounts are JSON integers in the smallest unit (satoshis, AITBC base units): strings and fractions are
refused with 422 before any rule runs; size and sign are the trading rules' job (400 with a reason).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from aitbc.market.orderbook import OrderType, SelfTradePrevention, Side, TimeInForce

StrictInt = Annotated[int, Field(strict=True)]
Username = Annotated[str, Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9_.-]+$")]
Password = Annotated[str, Field(min_length=10, max_length=256)]
TotpCode = Annotated[str, Field(min_length=6, max_length=8, pattern=r"^[0-9]+$")]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SignUp(_Body):
    username: Username
    password: Password


class Login(_Body):
    username: Annotated[str, Field(max_length=64)]
    password: Annotated[str, Field(max_length=256)]
    totp: TotpCode | None = None


class NewOrder(_Body):
    market: Annotated[str, Field(max_length=16)] = "AITBC-BTC"
    side: Side
    type: OrderType = OrderType.LIMIT
    quantity: StrictInt
    """Base units (AITBC * 10**6), a multiple of the lot size."""
    price: StrictInt | None = None
    """Satoshis per AITBC, a multiple of the tick size; none for a market order."""
    time_in_force: TimeInForce | None = None
    """Default GTC for a limit order, IOC for a market order."""
    post_only: bool = False
    self_trade_prevention: SelfTradePrevention = SelfTradePrevention.CANCEL_RESTING
    client_order_id: Annotated[str, Field(max_length=64)] | None = None


class NewApiKey(_Body):
    label: Annotated[str, Field(min_length=1, max_length=64)]
    scopes: Annotated[list[str], Field(min_length=1, max_length=3)]


class TotpBody(_Body):
    code: TotpCode


class DepositRequest(_Body):
    asset: Annotated[str, Field(max_length=8)] = "BTC"
    amount: StrictInt | None = None
    """Optional amount for the BIP21 URI (satoshis)."""
    label: Annotated[str, Field(max_length=64)] | None = None


class WithdrawalRequest(_Body):
    asset: Annotated[str, Field(max_length=8)]
    address: Annotated[str, Field(min_length=1, max_length=100)]
    amount: StrictInt
    """What the address receives, in the smallest unit; the network fee is held on top."""
    totp: TotpCode


class SignedWithdrawal(_Body):
    psbt: Annotated[str, Field(min_length=1, max_length=200_000)]
    """The operator's signed PSBT (base64)."""
