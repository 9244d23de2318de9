"""The committed tx vectors and the field tables of docs/transactions.md match what the code produces.

A failure here means a tx layout changed: that is a consensus change (old signatures and hashes no longer
match). If it was deliberate, regenerate with `.venv/bin/python tests/vectors/tx_vectors.py --write`."""

from __future__ import annotations

import json

import pytest

from aitbc.protocol.tx import TX_TYPES, tx_bytes, tx_from_json_obj, tx_hash, tx_signing_bytes, verify_tx
from vectors import tx_vectors

COMMITTED = {p.name: p.read_text(encoding="utf-8") for p in tx_vectors.VECTOR_DIR.glob("*.json")}


def test_every_tx_kind_has_a_vector() -> None:
    assert set(COMMITTED) == {f"{tx_vectors.codec.struct_tag(k)}.json" for k in TX_TYPES}


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_vector_is_what_the_code_produces(name: str) -> None:
    assert tx_vectors.render_vectors()[name] == COMMITTED[name], f"{name} changed: a consensus change"


@pytest.mark.parametrize("name", sorted(COMMITTED))
def test_vector_round_trips_and_its_signature_verifies(name: str) -> None:
    vector = json.loads(COMMITTED[name])
    tx = tx_from_json_obj(vector["tx"])
    assert tx_bytes(tx).hex() == vector["canonical_bytes_hex"]
    assert tx_signing_bytes(tx).hex() == vector["signing_bytes_hex"]
    assert tx_hash(tx) == vector["tx_hash"]
    if vector["type"] != "multisig_transfer":  # approvals are checked against the account's policy, on chain
        verify_tx(tx)


def test_docs_tables_match_the_code() -> None:
    current = tx_vectors.DOC.read_text(encoding="utf-8")
    assert tx_vectors.render_doc(current) == current, "run tests/vectors/tx_vectors.py --write"
