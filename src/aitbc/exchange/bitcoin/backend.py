"""``BitcoinBackend``: what the exchange asks of the Bitcoin network, and two real clients for it —
Bitcoin Core's JSON-RPC and an Esplora HTTP API. Blocks come as raw bytes and are parsed here (embit),
so amounts are exact satoshis and a backend cannot hand us a pre-digested view."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

import httpx
from embit.transaction import Transaction

from aitbc.protocol.errors import RemoteError


@dataclass(frozen=True, slots=True)
class Block:
    hash: str
    prev_hash: str
    txs: list[Any]
    """embit Transactions."""


def _dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def compute_merkle_root(txids: list[bytes]) -> bytes:
    """Bitcoin's merkle root over txids (internal byte order; an odd level repeats its last hash)."""
    level = list(txids)
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [_dsha(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def parse_block(raw: bytes) -> Block:
    """A serialized block: 80-byte header, then the transactions (compact-size count).

    Checked, so a hostile backend cannot slip in a transaction: the header's proof of work meets its own
    target, and the merkle root commits to exactly these transactions.
    """
    if len(raw) < 81:
        raise RemoteError("block shorter than a header", reason="bad_block")
    header = raw[:80]
    digest = _dsha(header)
    block_hash = digest[::-1].hex()
    bits = int.from_bytes(header[72:76], "little")
    target = (bits & 0xFFFFFF) << (8 * ((bits >> 24) - 3))
    if int.from_bytes(digest, "little") > target:
        raise RemoteError(f"block {block_hash} does not meet its proof-of-work target", reason="bad_block")
    prev_hash = header[4:36][::-1].hex()
    stream = io.BytesIO(raw[80:])
    first = stream.read(1)[0]
    count = first if first < 0xFD else int.from_bytes(stream.read({0xFD: 2, 0xFE: 4, 0xFF: 8}[first]), "little")
    txs = [Transaction.read_from(stream) for _ in range(count)]
    if stream.read(1):
        raise RemoteError("block has bytes after its last transaction", reason="bad_block")
    if not txs or compute_merkle_root([tx.txid()[::-1] for tx in txs]) != header[36:68]:
        raise RemoteError(f"block {block_hash}: transactions do not match the merkle root", reason="bad_block")
    return Block(block_hash, prev_hash, txs)


class BitcoinBackend(Protocol):
    """The chain as the exchange needs it (``aitbc.exchange.bitcoin.watcher`` drives it)."""

    def get_tip_height(self) -> int: ...
    def get_block_hash(self, height: int) -> str: ...
    def get_block(self, block_hash: str) -> Block: ...
    def estimate_fee_rate(self, target_blocks: int) -> int:
        """Satoshis per virtual byte to confirm within ``target_blocks`` (at least 1)."""
        ...

    def broadcast(self, tx_hex: str) -> str:
        """Send a signed transaction; its txid."""
        ...

    def close(self) -> None: ...


def _check_block(block: Block, expected_hash: str) -> Block:
    if block.hash != expected_hash:
        raise RemoteError(f"backend sent block {block.hash} for {expected_hash}", reason="bad_block")
    return block


class CoreRpcBackend:
    """Bitcoin Core JSON-RPC (``http://user:password@host:port``; regtest 18443, testnet 18332, main 8332)."""

    def __init__(self, url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        parsed = httpx.URL(url)
        auth = (parsed.username, parsed.password) if parsed.username else None
        self.url = str(parsed.copy_with(username=None, password=None))
        self._http = httpx.Client(timeout=timeout, auth=auth, transport=transport)
        self._id = 0

    def call(self, method: str, *params: Any) -> Any:
        self._id += 1
        try:
            response = self._http.post(
                self.url, json={"jsonrpc": "1.0", "id": self._id, "method": method, "params": list(params)}
            )
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach bitcoind at {self.url}: {exc}", reason="unreachable") from None
        if response.status_code == 401:
            raise RemoteError("bitcoind refused the RPC credentials", code=401, reason="unauthorized")
        try:
            body = json.loads(response.text, parse_float=Decimal)
        except ValueError:
            raise RemoteError(f"bitcoind answered HTTP {response.status_code} without JSON") from None
        if body.get("error"):
            err = body["error"]
            raise RemoteError(f"bitcoind {method}: {err.get('message')}", code=err.get("code"), reason="rpc_error")
        return body.get("result")

    def get_tip_height(self) -> int:
        return int(self.call("getblockcount"))

    def get_block_hash(self, height: int) -> str:
        return str(self.call("getblockhash", height))

    def get_block(self, block_hash: str) -> Block:
        return _check_block(parse_block(bytes.fromhex(self.call("getblock", block_hash, 0))), block_hash)

    def estimate_fee_rate(self, target_blocks: int) -> int:
        result = self.call("estimatesmartfee", target_blocks)
        rate = result.get("feerate") if isinstance(result, dict) else None
        if rate is None:
            return 1  # no estimate yet (fresh regtest / testnet): the relay minimum
        return max(1, int((Decimal(rate) * 100_000).to_integral_value(rounding="ROUND_CEILING")))  # BTC/kvB

    def broadcast(self, tx_hex: str) -> str:
        return str(self.call("sendrawtransaction", tx_hex))

    def close(self) -> None:
        self._http.close()


class EsploraBackend:
    """An Esplora HTTP API (``…/api``: blockstream.info, mempool.space, or a self-hosted electrs)."""

    def __init__(self, url: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, transport=transport)

    def _get(self, path: str) -> httpx.Response:
        try:
            response = self._http.get(f"{self.url}{path}")
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach Esplora at {self.url}: {exc}", reason="unreachable") from None
        if response.status_code != 200:
            raise RemoteError(
                f"Esplora {path}: HTTP {response.status_code} {response.text[:200]}", code=response.status_code
            )
        return response

    def get_tip_height(self) -> int:
        return int(self._get("/blocks/tip/height").text)

    def get_block_hash(self, height: int) -> str:
        return self._get(f"/block-height/{height}").text.strip()

    def get_block(self, block_hash: str) -> Block:
        return _check_block(parse_block(self._get(f"/block/{block_hash}/raw").content), block_hash)

    def estimate_fee_rate(self, target_blocks: int) -> int:
        estimates = self._get("/fee-estimates").json()
        usable = sorted((int(k), float(v)) for k, v in estimates.items() if int(k) <= target_blocks)
        if not usable:
            return 1
        return max(1, int(usable[-1][1] + 0.999))

    def broadcast(self, tx_hex: str) -> str:
        try:
            response = self._http.post(f"{self.url}/tx", content=tx_hex)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach Esplora at {self.url}: {exc}", reason="unreachable") from None
        if response.status_code != 200:
            raise RemoteError(f"Esplora refused the transaction: {response.text[:200]}", code=response.status_code)
        return response.text.strip()

    def close(self) -> None:
        self._http.close()
