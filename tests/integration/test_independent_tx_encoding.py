"""An implementation of AITBC txs written from docs/transactions.md alone — no import of aitbc.protocol.

It reads the field tables out of the document, encodes every committed vector's JSON into the canonical
bytes, signs with plain PyNaCl, and must reproduce the signing bytes, the signature and the tx hash of each
vector. Then it builds and signs a transfer of its own and a real node accepts and commits it. If the
document and the code ever disagree, this test says where."""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path
from typing import Any

import httpx
import nacl.signing
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "transactions.md").read_text(encoding="utf-8")
VECTORS = sorted((ROOT / "tests" / "vectors" / "tx").glob("*.json"))

# -- §1: bech32m (BIP-350) ----------------------------------------------------------------------------
CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= GEN[i] if (top >> i) & 1 else 0
    return chk


def hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def regroup(data: list[int], frm: int, to: int, pad: bool) -> list[int]:
    acc = bits = 0
    out = []
    for value in data:
        acc = (acc << frm) | value
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if pad and bits:
        out.append((acc << (to - bits)) & ((1 << to) - 1))
    return out


def address_payload(address: str) -> bytes:
    hrp, _, rest = address.rpartition("1")
    data = [CHARSET.index(c) for c in rest]
    assert hrp == "ait" and polymod(hrp_expand(hrp) + data) == 0x2BC830A3, f"bad bech32m: {address}"
    return bytes(regroup(data[:-6], 5, 8, False))


def address_of(public_key: bytes) -> str:
    data = regroup(list(public_key), 8, 5, True)
    check = polymod(hrp_expand("ait") + data + [0] * 6) ^ 0x2BC830A3
    return "ait1" + "".join(CHARSET[d] for d in data + [(check >> 5 * (5 - i)) & 31 for i in range(6)])


# -- §6: the field tables, parsed from the document -----------------------------------------------------
def parse_tables(doc: str) -> tuple[dict[str, list[tuple[str, str, bool]]], dict[str, list[tuple[str, str, bool]]]]:
    kinds: dict[str, list[tuple[str, str, bool]]] = {}
    structs: dict[str, list[tuple[str, str, bool]]] = {}
    current: list[tuple[str, str, bool]] | None = None
    for line in doc.splitlines():
        heading = re.match(r"^#### (struct )?`([A-Za-z_]+)`$", line)
        if heading:
            current = []
            (structs if heading.group(1) else kinds)[heading.group(2)] = current
            continue
        row = re.match(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]*) \|$", line)
        if row and current is not None:
            current.append((row.group(1), row.group(2).strip(), not row.group(3).strip().startswith("no")))
    return kinds, structs


KINDS, STRUCTS = parse_tables(DOC)


# -- §3: the canonical bytes ---------------------------------------------------------------------------
def enc_str(raw: bytes) -> bytes:
    return struct.pack(">I", len(raw)) + raw


def encode(wire: str, value: Any) -> bytes:
    if wire == "u64":
        return struct.pack(">Q", value)
    if wire == "bool":
        return b"\x01" if value else b"\x00"
    if wire == "str":
        return enc_str(value.encode("utf-8"))
    if wire == "hex":
        return enc_str(bytes.fromhex(value))
    if wire == "hash32":
        raw = bytes.fromhex(value)
        assert len(raw) == 32
        return raw
    if wire == "address":
        return address_payload(value)
    if wire.startswith("optional<"):
        return b"\x00" if value is None else b"\x01" + encode(wire[9:-1], value)
    if wire.startswith("list<"):
        return struct.pack(">I", len(value)) + b"".join(encode(wire[5:-1], v) for v in value)
    if wire.startswith("struct "):
        return body(STRUCTS[wire[7:]], value, signed_only=False)
    raise AssertionError(f"the document names an unknown wire type {wire!r}")


def body(fields: list[tuple[str, str, bool]], obj: dict[str, Any], signed_only: bool) -> bytes:
    return b"".join(encode(wire, obj[name]) for name, wire, signed in fields if signed or not signed_only)


def canonical(tx: dict[str, Any], signed_only: bool = False) -> bytes:
    return b"\x01" + enc_str(tx["type"].encode()) + body(KINDS[tx["type"]], tx, signed_only)


# -- §4: signing ---------------------------------------------------------------------------------------
def domain(chain_id: str) -> bytes:
    chain = chain_id.encode()
    return b"AITBC-SIG-v1\x00" + bytes([len(chain)]) + chain + bytes([2]) + b"tx"


def sign(seed: bytes, tx: dict[str, Any]) -> str:
    message = domain(tx["chain_id"]) + canonical(tx, signed_only=True)
    return nacl.signing.SigningKey(seed).sign(message).signature.hex()


def test_the_document_describes_every_vectors_kind() -> None:
    assert len(VECTORS) >= 18
    assert {p.stem for p in VECTORS} == set(KINDS)
    assert {"Receipt", "ReceiptUnits", "MultisigApproval"} <= set(STRUCTS)


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_independent_encoding_reproduces_the_vector(path: Path) -> None:
    vector = json.loads(path.read_text(encoding="utf-8"))
    tx = vector["tx"]
    assert canonical(tx, signed_only=True).hex() == vector["signing_bytes_hex"]
    assert domain(tx["chain_id"]).hex() == vector["signing_domain_hex"]
    assert canonical(tx).hex() == vector["canonical_bytes_hex"]
    assert hashlib.sha256(canonical(tx)).hexdigest() == vector["tx_hash"]
    seed = bytes.fromhex(vector["sender_seed_hex"])
    if tx["type"] == "multisig_transfer":
        mine = next(
            a for a in tx["approvals"] if a["signer"] == address_of(bytes(nacl.signing.SigningKey(seed).verify_key))
        )
        assert mine["signature"] == sign(seed, tx)
    else:
        assert address_of(bytes(nacl.signing.SigningKey(seed).verify_key)) == tx["sender"]
        assert tx["signature"] == sign(seed, tx)


def test_a_transfer_signed_here_is_committed_by_a_real_node(shared_node: Any) -> None:
    key = nacl.signing.SigningKey(hashlib.sha256(b"independent implementation").digest())
    me = address_of(bytes(key.verify_key))
    with shared_node.client() as client:
        shared_node.fund(client, {me: 5_000_000})

    def rpc(method: str, *params: Any) -> Any:
        reply = httpx.post(
            shared_node.rpc_url, json={"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
        )
        body_ = reply.json()
        assert "error" not in body_, body_
        return body_["result"]

    info = rpc("get_chain_info")
    account = rpc("get_account", me)
    tx: dict[str, Any] = {
        "type": "transfer",
        "chain_id": info["chain_id"],
        "sender": me,
        "nonce": account["nonce"],
        "fee": info["params"]["min_fee"],
        "recipient": shared_node.faucet_key.address,
        "amount": 1_234,
        "memo": "from the spec",
    }
    tx["signature"] = sign(key.encode(), tx)
    submitted = rpc("send_tx", tx)
    tx_hash = submitted["tx_hash"]
    assert tx_hash == hashlib.sha256(canonical(tx)).hexdigest()
    status = shared_node.wait_committed(rpc_client := shared_node.client(), [tx_hash])[tx_hash]
    rpc_client.close()
    assert status["status"] == "committed"
    assert rpc("get_account", me)["balance"] == 5_000_000 - 1_234 - tx["fee"]


def test_the_nodes_openapi_documents_every_tx_kind(shared_node: Any) -> None:
    spec = httpx.get(f"{shared_node.base_url}/openapi.json").json()
    body_schema = spec["paths"]["/v1/txs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    mapping = body_schema["discriminator"]["mapping"]
    assert set(mapping) == set(KINDS)
    schemas = spec["components"]["schemas"]
    for tag, ref in mapping.items():
        name = ref.rsplit("/", 1)[-1]
        fields = [f for f, _, _ in KINDS[tag]]
        assert set(schemas[name]["properties"]) == {"type", *fields}, tag
    rpc_body = spec["paths"]["/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "send_tx" in rpc_body["anyOf"][0]["properties"]["method"]["enum"]
