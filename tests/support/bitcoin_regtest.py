"""A test double of bitcoind's RPC (and of an Esplora HTTP API) over a chain of real regtest blocks.

No bitcoind is installable here, so this serves what the exchange's real clients ask for, from blocks
and transactions built with embit exactly as Bitcoin serializes them: coinbase with the BIP34 height
and the BIP141 witness commitment, P2WPKH spends signed by a faucet key, the merkle root, and headers
mined to the regtest target (bits 0x207fffff). Reorgs replace the top blocks with a heavier branch.
What it does not do: script or consensus validation of submitted transactions beyond "the inputs exist
and are unspent" (the tests verify the exchange's signatures themselves).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from embit import ec, script
from embit.networks import NETWORKS
from embit.psbt import PSBT
from embit.transaction import Transaction, TransactionInput, TransactionOutput

REGTEST = NETWORKS["regtest"]
BITS = 0x207FFFFF
TARGET = 0x7FFFFF << (8 * (0x20 - 3))
RPC_USER, RPC_PASSWORD = "exchange", "regtest-secret"


def dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def merkle(hashes: list[bytes]) -> bytes:
    level = list(hashes)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [dsha(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def compact_size(n: int) -> bytes:
    if n < 0xFD:
        return bytes([n])
    if n <= 0xFFFF:
        return b"\xfd" + n.to_bytes(2, "little")
    return b"\xfe" + n.to_bytes(4, "little")


@dataclass
class MinedBlock:
    hash: str
    height: int
    raw: bytes
    txs: list[Transaction]


@dataclass
class RegtestChain:
    faucet: ec.PrivateKey = field(default_factory=lambda: ec.PrivateKey(hashlib.sha256(b"aitbc faucet").digest()))
    blocks: list[MinedBlock] = field(default_factory=list)
    mempool: list[Transaction] = field(default_factory=list)
    fee_rate: Decimal = Decimal("0.00012")
    """BTC/kvB answered by estimatesmartfee (12 sat/vB)."""
    lock: threading.RLock = field(default_factory=threading.RLock)
    _time: int = 1_700_000_000
    _tag: int = 0

    @property
    def faucet_script(self) -> Any:
        return script.p2wpkh(self.faucet.get_public_key())

    @property
    def height(self) -> int:
        return len(self.blocks) - 1

    # -- the UTXO set, from the blocks (and optionally the mempool) ---------------------------------
    def utxos(self, with_mempool: bool = False) -> dict[tuple[bytes, int], TransactionOutput]:
        out: dict[tuple[bytes, int], TransactionOutput] = {}
        txs = [tx for b in self.blocks for tx in b.txs] + (self.mempool if with_mempool else [])
        for tx in txs:
            for vin in tx.vin:
                out.pop((vin.txid, vin.vout), None)
            for i, vout in enumerate(tx.vout):
                out[(tx.txid(), i)] = vout
        return out

    # -- mining -------------------------------------------------------------------------------------
    def mine(self, n: int = 1, include_mempool: bool = True) -> list[str]:
        hashes = []
        with self.lock:
            for _ in range(n):
                txs, self.mempool = (self.mempool if include_mempool else []), ([] if include_mempool else self.mempool)
                hashes.append(self._mine_block(txs).hash)
        return hashes

    def _mine_block(self, txs: list[Transaction]) -> MinedBlock:
        height = len(self.blocks)
        self._tag += 1
        # coinbase: BIP34 height push, an extra nonce so forks differ, 50 BTC to the faucet, witness commitment
        height_bytes = height.to_bytes((height.bit_length() + 8) // 8 or 1, "little")
        sig = bytes([len(height_bytes)]) + height_bytes + bytes([4]) + self._tag.to_bytes(4, "little")
        coinbase_in = TransactionInput(b"\x00" * 32, 0xFFFFFFFF, script.Script(sig), sequence=0xFFFFFFFF)
        coinbase_in.witness = script.Witness([b"\x00" * 32])
        wtxids = [b"\x00" * 32] + [dsha(tx.serialize()) for tx in txs]
        commitment = dsha(merkle(wtxids) + b"\x00" * 32)
        coinbase = Transaction(
            version=2,
            vin=[coinbase_in],
            vout=[
                TransactionOutput(50 * 100_000_000, self.faucet_script),
                TransactionOutput(0, script.Script(b"\x6a\x24\xaa\x21\xa9\xed" + commitment)),
            ],
        )
        all_txs = [coinbase, *txs]
        root = merkle([tx.txid()[::-1] for tx in all_txs])
        prev = bytes.fromhex(self.blocks[-1].hash)[::-1] if self.blocks else b"\x00" * 32
        self._time += 600
        nonce = 0
        while True:
            header = (
                (0x20000000).to_bytes(4, "little")
                + prev
                + root
                + self._time.to_bytes(4, "little")
                + BITS.to_bytes(4, "little")
                + nonce.to_bytes(4, "little")
            )
            digest = dsha(header)
            if int.from_bytes(digest, "little") <= TARGET:
                break
            nonce += 1
        raw = header + compact_size(len(all_txs)) + b"".join(tx.serialize() for tx in all_txs)
        block = MinedBlock(digest[::-1].hex(), height, raw, all_txs)
        self.blocks.append(block)
        return block

    def reorg(self, depth: int, extra: int = 1, keep_txs: bool = False) -> list[str]:
        """Replace the top ``depth`` blocks with ``depth + extra`` new ones (their transactions are dropped,
        as when a double spend wins, unless ``keep_txs``)."""
        with self.lock:
            dropped = self.blocks[-depth:]
            del self.blocks[-depth:]
            if keep_txs:
                self.mempool = [tx for b in dropped for tx in b.txs[1:]] + self.mempool
            else:
                self.mempool = []
            return self.mine(depth + extra)

    # -- paying -------------------------------------------------------------------------------------
    def send(self, address: str, amount: int, fee: int = 2_000) -> str:
        """A signed P2WPKH transaction from the faucet to ``address``, put in the mempool; its txid."""
        with self.lock:
            spent = {(vin.txid, vin.vout) for tx in self.mempool for vin in tx.vin}
            coins = [
                (k, v)
                for k, v in self.utxos(with_mempool=True).items()
                if v.script_pubkey == self.faucet_script and k not in spent and v.value >= amount + fee
            ]
            (txid, vout), coin = coins[0]
            tx = Transaction(
                version=2,
                vin=[TransactionInput(txid, vout, sequence=0xFFFFFFFD)],
                vout=[
                    TransactionOutput(amount, script.address_to_scriptpubkey(address)),
                    TransactionOutput(coin.value - amount - fee, self.faucet_script),
                ],
            )
            psbt = PSBT(tx)
            psbt.inputs[0].witness_utxo = coin
            assert psbt.sign_with(self.faucet) == 1
            signed = finalize(psbt)
            self.mempool.append(signed)
            return str(signed.txid().hex())

    def accept(self, tx_hex: str) -> str:
        """sendrawtransaction: the inputs must exist and be unspent (no script checks here)."""
        tx = Transaction.read_from(io.BytesIO(bytes.fromhex(tx_hex)))
        with self.lock:
            utxos = self.utxos(with_mempool=True)
            for vin in tx.vin:
                if (vin.txid, vin.vout) not in utxos:
                    raise ValueError(f"bad-txns-inputs-missingorspent {vin.txid.hex()}:{vin.vout}")
            self.mempool.append(tx)
        return str(tx.txid().hex())


def finalize(psbt: PSBT) -> Transaction:
    """P2WPKH inputs: witness = [signature, pubkey]."""
    tx = psbt.tx.copy() if hasattr(psbt.tx, "copy") else Transaction.parse(psbt.tx.serialize())
    for i, inp in enumerate(psbt.inputs):
        ((pub, sig),) = inp.partial_sigs.items()
        tx.vin[i].witness = script.Witness([sig, pub.sec()])
    return tx


class _Handler(BaseHTTPRequestHandler):
    chain: RegtestChain

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path.startswith("/esplora/tx"):
            try:
                self._reply(200, self.chain.accept(body.decode()).encode(), "text/plain")
            except ValueError as exc:
                self._reply(400, str(exc).encode(), "text/plain")
            return
        expected = "Basic " + base64.b64encode(f"{RPC_USER}:{RPC_PASSWORD}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            self._reply(401, b"")
            return
        request = json.loads(body)
        try:
            result = self._rpc(request["method"], request.get("params", []))
            reply = {"result": result, "error": None, "id": request.get("id")}
        except (IndexError, KeyError, ValueError) as exc:
            reply = {"result": None, "error": {"code": -8, "message": str(exc)}, "id": request.get("id")}
        self._reply(200, json.dumps(reply, default=str).encode())

    def _rpc(self, method: str, params: list[Any]) -> Any:
        chain = self.chain
        with chain.lock:
            if method == "getblockcount":
                return chain.height
            if method == "getblockhash":
                return chain.blocks[int(params[0])].hash
            if method == "getblock":
                block = next(b for b in chain.blocks if b.hash == params[0])
                return block.raw.hex()
            if method == "estimatesmartfee":
                return {"feerate": chain.fee_rate, "blocks": int(params[0])}
            if method == "sendrawtransaction":
                return chain.accept(params[0])
            if method == "getblockchaininfo":
                return {"chain": "regtest", "blocks": chain.height, "bestblockhash": chain.blocks[-1].hash}
        raise ValueError(f"Method not found: {method}")

    def do_GET(self) -> None:
        chain = self.chain
        path = self.path.removeprefix("/esplora")
        with chain.lock:
            if path == "/blocks/tip/height":
                self._reply(200, str(chain.height).encode(), "text/plain")
            elif path.startswith("/block-height/"):
                height = int(path.rsplit("/", 1)[1])
                if height > chain.height:
                    self._reply(404, b"Block not found", "text/plain")
                else:
                    self._reply(200, chain.blocks[height].hash.encode(), "text/plain")
            elif path.startswith("/block/") and path.endswith("/raw"):
                block_hash = path.split("/")[2]
                block = next((b for b in chain.blocks if b.hash == block_hash), None)
                if block is None:
                    self._reply(404, b"Block not found", "text/plain")
                else:
                    self._reply(200, block.raw, "application/octet-stream")
            elif path == "/fee-estimates":
                rate = float(chain.fee_rate * 100_000)
                self._reply(200, json.dumps({"1": rate * 2, "3": rate, "6": rate, "144": 1.0}).encode())
            else:
                self._reply(404, b"not found", "text/plain")


@contextmanager
def regtest_server(chain: RegtestChain | None = None) -> Iterator[tuple[RegtestChain, str, str]]:
    """(chain, Core RPC URL with credentials, Esplora base URL) of a server on 127.0.0.1, port 0."""
    chain = chain or RegtestChain()
    if not chain.blocks:
        chain.mine(101)
    handler = type("Handler", (_Handler,), {"chain": chain})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield chain, f"http://{RPC_USER}:{RPC_PASSWORD}@127.0.0.1:{port}/", f"http://127.0.0.1:{port}/esplora"
    finally:
        server.shutdown()
        server.server_close()
