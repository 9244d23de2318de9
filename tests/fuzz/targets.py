"""Fuzz targets: each takes arbitrary bytes and raises ``AssertionError`` (or anything unexpected) only on a bug.

Shared by the short hypothesis runs in CI (tests/unit/protocol/test_decoder_fuzz.py,
tests/unit/node/test_rpc_fuzz.py) and the long coverage-guided run by hand with atheris
(``python tests/fuzz/atheris_main.py TARGET -atheris_runs=1000000``).

- ``tx_bytes`` / ``block_bytes`` / ``receipt_bytes``: the canonical decoder either refuses with its typed
  error or returns a value whose canonical encoding is exactly the input (one encoding per value).
- ``tx_json`` / ``receipt_json``: the JSON readers refuse with their typed errors, never anything else.
- ``rpc``: the node's JSON-RPC dispatcher answers any body with valid JSON (or nothing, for notifications),
  never an internal error (-32603), within its limits.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec
import orjson

from aitbc.chain.genesis import Genesis, GenesisBalance, genesis_block, genesis_state
from aitbc.chain.params import ChainParams
from aitbc.protocol import codec
from aitbc.protocol.block import Block, block_bytes, block_from_bytes
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.errors import EncodingError, InvalidRequest, InvalidTx
from aitbc.protocol.job import JobOutput
from aitbc.protocol.job_messages import ResultSubmission, decode_message
from aitbc.protocol.receipt import Receipt, ReceiptUnits, sign_receipt_as_miner
from aitbc.protocol.tx import Transfer, sign_tx, tx_bytes, tx_from_bytes, tx_from_json, tx_to_json_obj

CHAIN: Final = "aitbc-fuzz"
KEY: Final = KeyPair.from_seed(b"\x21" * 32)


def seed_tx() -> Transfer:
    return sign_tx(
        Transfer(chain_id=CHAIN, sender=KEY.address, nonce=3, fee=1_000, recipient=KEY.address, amount=7, memo="m"),
        KEY,
    )


def seed_receipt() -> Receipt:
    receipt = Receipt(
        chain_id=CHAIN,
        job_id="job_fuzz",
        miner=KEY.address,
        client="client",
        coordinator=KEY.address,
        model="echo",
        model_digest="sha256:" + "ab" * 32,
        input_hash="00" * 32,
        output_hash="11" * 32,
        units=ReceiptUnits(prompt_tokens=3, completion_tokens=2, compute_ms=5),
        unit_price=1,
        total_price=5,
        started_at_ms=1,
        finished_at_ms=9,
    )
    return sign_receipt_as_miner(receipt, KEY)


def seed_genesis() -> Genesis:
    return Genesis(
        chain_id=CHAIN,
        genesis_time_ms=1_700_000_000_000,
        authorities=[KEY.address],
        balances=[GenesisBalance(KEY.address, 10**12)],
        params=ChainParams(),
    )


def seed_block() -> Block:
    genesis = seed_genesis()
    return genesis_block(genesis, genesis_state(genesis))


def seeds() -> dict[str, list[bytes]]:
    """Valid inputs per target, for the fuzzers to mutate."""
    tx = seed_tx()
    receipt = seed_receipt()
    return {
        "tx_bytes": [tx_bytes(tx)],
        "tx_json": [orjson.dumps(tx_to_json_obj(tx))],
        "block_bytes": [block_bytes(seed_block())],
        "receipt_bytes": [codec.encode(receipt)],
        "receipt_json": [
            msgspec.json.encode(ResultSubmission(lease_id="0" * 16, output=JobOutput(text="hi"), receipt=receipt))
        ],
        "rpc": [
            b'{"jsonrpc":"2.0","method":"get_head","id":1}',
            b'[{"jsonrpc":"2.0","method":"get_block","params":[0],"id":1},'
            b'{"jsonrpc":"2.0","method":"get_account","params":["' + KEY.address.encode() + b'"],"id":"a"}]',
            b'{"jsonrpc":"2.0","method":"get_job_events","params":{"after_seq":0,"limit":5},"id":2}',
            orjson.dumps({"jsonrpc": "2.0", "method": "send_tx", "params": [tx_to_json_obj(tx)], "id": 3}),
        ],
    }


def fuzz_tx_bytes(data: bytes) -> None:
    try:
        tx = tx_from_bytes(data)
    except InvalidTx:
        return
    assert tx_bytes(tx) == data, "a tx decoded from bytes that are not its canonical encoding"


def fuzz_tx_json(data: bytes) -> None:
    try:
        tx_from_json(data)
    except InvalidTx:
        return


def fuzz_block_bytes(data: bytes) -> None:
    try:
        block = block_from_bytes(data)
    except EncodingError:
        return
    assert block_bytes(block) == data, "a block decoded from bytes that are not its canonical encoding"


def fuzz_receipt_bytes(data: bytes) -> None:
    try:
        receipt = codec.decode(Receipt, data)
    except EncodingError:
        return
    assert codec.encode(receipt) == data, "a receipt decoded from bytes that are not its canonical encoding"


def fuzz_receipt_json(data: bytes) -> None:
    """The coordinator's reader of a miner's result body (output + receipt): only ``InvalidRequest``."""
    try:
        decode_message(ResultSubmission, data)
    except InvalidRequest:
        return


class RpcTarget:
    """A real ``NodeService`` over a throwaway SQLite store, and one event loop, reused for every input."""

    def __init__(self) -> None:
        from aitbc.node.metrics import NodeMetrics
        from aitbc.node.rpc import RpcLimits
        from aitbc.node.service import NodeService
        from aitbc.node.store import NodeStore

        self._dir = tempfile.TemporaryDirectory(prefix="aitbc-fuzz-")
        self.node = NodeService(seed_genesis(), NodeStore(Path(self._dir.name) / "chain.db"), KEY, NodeMetrics())
        self.loop = asyncio.new_event_loop()
        self.limits = RpcLimits(max_batch=50, max_reply_bytes=256 * 1024)

    def __call__(self, data: bytes) -> None:
        from aitbc.node.rpc import INTERNAL_ERROR, handle_rpc_body

        reply = self.loop.run_until_complete(handle_rpc_body(self.node, data, self.limits))
        if reply.body is None:
            return
        assert len(reply.body) <= self.limits.max_reply_bytes + 1024, "reply over the budget"
        answer = orjson.loads(reply.body)
        for item in answer if isinstance(answer, list) else [answer]:
            assert isinstance(item, dict) and item.get("jsonrpc") == "2.0", item
            error = item.get("error")
            assert error is None or error.get("code") != INTERNAL_ERROR, f"internal error for {data[:200]!r}"

    def close(self) -> None:
        self.node.close()
        self.loop.close()
        self._dir.cleanup()


TARGETS: Final[dict[str, Callable[[bytes], None]]] = {
    "tx_bytes": fuzz_tx_bytes,
    "tx_json": fuzz_tx_json,
    "block_bytes": fuzz_block_bytes,
    "receipt_bytes": fuzz_receipt_bytes,
    "receipt_json": fuzz_receipt_json,
}


def get_target(name: str) -> Callable[[bytes], None]:
    if name == "rpc":
        return RpcTarget()
    return TARGETS[name]


__all__ = ["TARGETS", "RpcTarget", "get_target", "seeds"]
