"""Amounts: exact decimal parsing and formatting at the edges, integers inside."""

from __future__ import annotations

import time
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.protocol.amounts import BASE_UNITS_PER_AITBC, DECIMALS, MAX_AMOUNT, format_aitbc, parse_aitbc
from aitbc.protocol.types import MAX_U64

units = st.integers(min_value=0, max_value=MAX_AMOUNT)


def test_constants() -> None:
    assert BASE_UNITS_PER_AITBC == 10**DECIMALS == 1_000_000
    assert MAX_AMOUNT == MAX_U64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("0.0", 0),
        ("-0", 0),
        ("1", 1_000_000),
        ("1.5", 1_500_000),
        ("12.5", 12_500_000),
        ("0.000001", 1),
        ("0.0000010", 1),
        (" 2.25 ", 2_250_000),
        ("1e3", 1_000_000_000),
        ("1E-6", 1),
        ("1.500000000000000000000000000000000000000", 1_500_000),
        ("9223372036854.775807", MAX_AMOUNT),
    ],
)
def test_parse(text: str, expected: int) -> None:
    assert parse_aitbc(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "abc",
        "1.2.3",
        "1,5",
        "0x10",
        "-1",
        "-0.000001",
        "0.0000001",
        "1.0000001",
        "1e-7",
        "nan",
        "NaN",
        "inf",
        "-Infinity",
        "9223372036854.775808",
        "9223372036855",
        "1e13",
        # more than 28 significant digits: Decimal arithmetic would round these to an integer
        "1.0000000000000000000000000000001",
        "0.0000010000000000000000000000000000001",
        # exponents that would overflow Decimal arithmetic or underflow it to zero
        "1e999999999999999999",
        "1e-999999999999999999",
    ],
)
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_aitbc(text)


def test_parse_huge_exponent_is_rejected_quickly() -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match="too large"):
        parse_aitbc("1e10000000")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (1, "0.000001"),
        (10, "0.00001"),
        (1_000_000, "1"),
        (1_500_000, "1.5"),
        (12_345_678, "12.345678"),
        (100_000_000_000, "100000"),
        (MAX_AMOUNT, "9223372036854.775807"),
    ],
)
def test_format(value: int, text: str) -> None:
    assert format_aitbc(value) == text


@settings(max_examples=150)
@given(value=units)
def test_format_then_parse_round_trips(value: int) -> None:
    text = format_aitbc(value)
    assert "e" not in text.lower()
    assert not text.endswith(".")
    assert parse_aitbc(text) == value
    assert Decimal(text) * BASE_UNITS_PER_AITBC == value


@settings(max_examples=100)
@given(whole=st.integers(0, 9_000_000_000_000), frac=st.integers(0, 999_999), zeros=st.integers(0, 30))
def test_parse_then_format_normalizes(whole: int, frac: int, zeros: int) -> None:
    text = f"{whole}.{frac:06d}" + "0" * zeros
    value = parse_aitbc(text)
    assert value == whole * BASE_UNITS_PER_AITBC + frac
    assert parse_aitbc(format_aitbc(value)) == value


@settings(max_examples=100)
@given(
    value=st.one_of(
        st.decimals(min_value=-(10**14), max_value=10**14, allow_nan=False, allow_infinity=False),
        st.decimals(min_value=0, max_value=10, places=8),
        st.sampled_from([Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity"), Decimal("sNaN")]),
    )
)
def test_parse_accepts_exactly_the_representable_amounts(value: Decimal) -> None:
    text = str(value)
    if value.is_finite():
        scaled = Fraction(value) * BASE_UNITS_PER_AITBC  # exact, unlike Decimal arithmetic
        representable = scaled >= 0 and scaled.denominator == 1 and scaled <= MAX_AMOUNT
    else:
        representable = False
    if representable:
        assert parse_aitbc(text) == int(scaled)
    else:
        with pytest.raises(ValueError):
            parse_aitbc(text)
