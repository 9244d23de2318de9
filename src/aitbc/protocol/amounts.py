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
_MAX_AITBC: Final = Decimal(MAX_AMOUNT).scaleb(-DECIMALS)


def parse_aitbc(text: str) -> int:
    """'1.5' → 1_500_000 base units; refuses negatives, more than 6 decimals and overflow.

    Exact: works on the decimal digits themselves (``Decimal`` arithmetic would round
    past 28 digits, and a huge exponent would build a huge integer)."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"amount must be a non-negative number: {text!r}")
    if value > _MAX_AITBC:  # an exact comparison
        raise ValueError(f"amount too large: {text!r}")
    _, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):  # pragma: no cover - finite values have an int exponent
        raise ValueError(f"not a number: {text!r}")
    if not any(digits):
        return 0
    coefficient = int("".join(map(str, digits)))
    shift = exponent + DECIMALS  # value * 10**DECIMALS == coefficient * 10**shift
    if shift >= 0:
        scale: int = 10**shift  # small: value <= _MAX_AITBC bounds the exponent
        return coefficient * scale
    if -shift >= len(digits):  # every digit lies below the smallest unit
        raise ValueError(f"amount has more than {DECIMALS} decimal places: {text!r}")
    divisor: int = 10**-shift
    units, remainder = divmod(coefficient, divisor)
    if remainder:
        raise ValueError(f"amount has more than {DECIMALS} decimal places: {text!r}")
    return units


def format_aitbc(units: int) -> str:
    """1_500_000 → '1.5' (trailing zeros trimmed, never scientific notation)."""
    whole, frac = divmod(units, BASE_UNITS_PER_AITBC)
    if not frac:
        return str(whole)
    return f"{whole}.{frac:0{DECIMALS}d}".rstrip("0")
