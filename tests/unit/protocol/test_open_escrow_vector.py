"""The recorded open_escrow vector (tests/vectors/open_escrow_v1.json): the web app signs this tx in the
browser and its Vitest suite checks the same file, so Python and TypeScript agree byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.tx import OpenEscrow, sign_tx, tx_bytes, tx_from_json_obj, tx_hash, tx_signing_bytes, verify_tx

VECTOR = json.loads((Path(__file__).resolve().parents[2] / "vectors" / "open_escrow_v1.json").read_text())


def test_open_escrow_vector_matches_the_codec() -> None:
    signed = tx_from_json_obj(VECTOR["tx"])
    assert isinstance(signed, OpenEscrow)
    key = KeyPair.from_seed(bytes.fromhex(VECTOR["sender_seed_hex"]))
    assert key.address == signed.sender
    assert tx_signing_bytes(signed).hex() == VECTOR["signing_bytes_hex"]
    assert tx_bytes(signed).hex() == VECTOR["canonical_bytes_hex"]
    assert tx_hash(signed) == VECTOR["tx_hash"]
    assert sign_tx(signed, key).signature == VECTOR["tx"]["signature"]
    verify_tx(signed)
