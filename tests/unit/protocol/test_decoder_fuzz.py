"""Short fuzz runs of the tx, block and receipt decoders (the long run is atheris, by hand: tests/fuzz/).

A decoder either refuses with its typed error or returns the value whose canonical encoding is the input."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from fuzz.mutate import near
from fuzz.targets import TARGETS, seeds

SEEDS = seeds()


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_decoder_accepts_its_seeds(name: str) -> None:
    for seed in SEEDS[name]:
        TARGETS[name](seed)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=near(SEEDS["tx_bytes"]))
def test_tx_bytes_decoder(data: bytes) -> None:
    TARGETS["tx_bytes"](data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=near(SEEDS["tx_json"]))
def test_tx_json_decoder(data: bytes) -> None:
    TARGETS["tx_json"](data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=near(SEEDS["block_bytes"]))
def test_block_decoder(data: bytes) -> None:
    TARGETS["block_bytes"](data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=near(SEEDS["receipt_bytes"]))
def test_receipt_bytes_decoder(data: bytes) -> None:
    TARGETS["receipt_bytes"](data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=near(SEEDS["receipt_json"]))
def test_receipt_json_decoder(data: bytes) -> None:
    TARGETS["receipt_json"](data)
