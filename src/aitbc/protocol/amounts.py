"""Token amounts: integers in base units everywhere; decimals only at the edges (CLI, UI).

1 AITBC = 10**6 base units ("micro-AITBC", symbol uAIT). No float ever touches
an amount: parsing and formatting go through ``decimal.Decimal``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Final

from aitbc.protocol.types import MAX_U64

DECIMALS: Final = 6
BASE_UNITS_PER_AITBC: Final = 10**DECIMALS
TOKEN_SYMBOL: Final = "AITBC"  # noqa: S105 - a ticker, not a secret
MAX_AMOUNT: Final = MAX_U64


def parse_aitbc(text: str) -> int:
    """'1.5' → 1_500_000 base units; refuses negatives, more than 6 decimals and overflow."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount must be a non-negative number: {text!r}")
    units = value * BASE_UNITS_PER_AITBC
    if units != units.to_integral_value():
        raise ValueError(f"amount has more than {DECIMALS} decimal places: {text!r}")
    result = int(units)
    if result > MAX_AMOUNT:
        raise ValueError(f"amount too large: {text!r}")
    return result


def format_aitbc(units: int) -> str:
    """1_500_000 → '1.5' (trailing zeros trimmed, never scientific notation)."""
    whole, frac = divmod(units, BASE_UNITS_PER_AITBC)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{DECIMALS}d}".rstrip("0")
