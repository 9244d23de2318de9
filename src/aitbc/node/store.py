"""The node's SQLite store: one database transaction per committed block.

WAL mode with ``synchronous=FULL``: a block is durable when ``commit_block``
returns (one fsync per block, about one per second), and a ``kill -9`` at any
moment leaves the database at the last committed block, never in between.
Blocks are stored as msgpack (fast to write and read back); the canonical
encoding is only for hashing and signing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import msgspec
import orjson

from aitbc.chain.audit_types import EMPTY_AUDITS, AuditState
from aitbc.chain.block import BlockOutcome
from aitbc.chain.bonds import Bond
from aitbc.chain.entries import Account, ChainEvent, Deposit, Escrow, MultisigAccount, PaidJob
from aitbc.chain.gov_types import EMPTY_GOVERNANCE, GovernanceState
from aitbc.chain.validators import EMPTY_STAKING, StakingState
from aitbc.protocol.block import Block, BlockHeader
from aitbc.protocol.errors import StorageError
from aitbc.protocol.tx import Tx
from aitbc.protocol.vote import CommitCertificate

SCHEMA_VERSION: Final = 1

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    height INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    header BLOB NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS txs (
    hash BLOB PRIMARY KEY,
    height INTEGER NOT NULL,
    idx INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    address TEXT PRIMARY KEY,
    balance INTEGER NOT NULL,
    nonce INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS escrows (
    job_id TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY,
    height INTEGER NOT NULL,
    job_id TEXT NOT NULL,
    data BLOB NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    coordinator TEXT NOT NULL DEFAULT '',
    miner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS commits (
    height INTEGER PRIMARY KEY,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_job_events_job ON job_events (job_id);
CREATE INDEX IF NOT EXISTS ix_job_events_height ON job_events (height);
CREATE TABLE IF NOT EXISTS multisigs (
    address TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deposits (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS paid_jobs (
    job_id TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bonds (
    validator TEXT NOT NULL,
    delegator TEXT NOT NULL,
    amount INTEGER NOT NULL,
    PRIMARY KEY (validator, delegator)
) WITHOUT ROWID;
"""

_EVENT_PARTY_COLUMNS: Final = ("client", "coordinator", "miner")
_EVENT_PARTY_INDEXES: Final = "".join(
    f"CREATE INDEX IF NOT EXISTS ix_job_events_{c} ON job_events ({c}, seq);\n" for c in _EVENT_PARTY_COLUMNS
)

_INSERT_TX_INDEX: Final = """
INSERT INTO txs (hash, height, idx)
WITH RECURSIVE i(n) AS (SELECT 0 WHERE ?1 > 0 UNION ALL SELECT n + 1 FROM i WHERE n + 1 < ?1)
SELECT substr(?2, n * 32 + 1, 32), ?3, n FROM i ORDER BY 1
"""
"""Row n of the tx index from the n-th 32-byte hash of one blob."""

_UPSERT_ACCOUNTS: Final = """
INSERT INTO accounts (address, balance, nonce)
SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]')
FROM json_each(?1) WHERE true ORDER BY 1
ON CONFLICT (address) DO UPDATE SET balance = excluded.balance, nonce = excluded.nonce
"""
"""The accounts of a JSON array of [address, balance, nonce] rows."""

_block_encoder = msgspec.msgpack.Encoder()
_block_decoder = msgspec.msgpack.Decoder(Block)
_header_decoder = msgspec.msgpack.Decoder(BlockHeader)
_escrow_decoder = msgspec.msgpack.Decoder(Escrow)
_event_decoder = msgspec.msgpack.Decoder(ChainEvent)
_multisig_decoder = msgspec.msgpack.Decoder(MultisigAccount)
_deposit_decoder = msgspec.msgpack.Decoder(Deposit)
_paid_decoder = msgspec.msgpack.Decoder(PaidJob)
_staking_decoder = msgspec.json.Decoder(StakingState)
_governance_decoder = msgspec.json.Decoder(GovernanceState)
_audits_decoder = msgspec.json.Decoder(AuditState)
_commit_decoder = msgspec.msgpack.Decoder(CommitCertificate)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class NodeStore:
    """Blocks, the tx index and the account table of one chain.

    ``commit_block`` is called from one writer thread; reads run on the event loop thread over a
    second connection (WAL lets both run): the startup reads here, everything a client can ask
    through a ``HeadView`` bounded by the node's head.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = _connect(path)
        self._writer.executescript(_SCHEMA)
        self._add_event_party_columns()
        self._reader = _connect(path)

    def _add_event_party_columns(self) -> None:
        """Data directories from before events were indexed by party gain the columns (old rows keep '')."""
        present = {row[1] for row in self._writer.execute("PRAGMA table_info(job_events)")}
        for column in _EVENT_PARTY_COLUMNS:
            if column not in present:
                self._writer.execute(f"ALTER TABLE job_events ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        self._writer.executescript(_EVENT_PARTY_INDEXES)

    def close(self) -> None:
        self._writer.close()
        self._reader.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- meta ------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self._reader.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def is_empty(self) -> bool:
        return self._reader.execute("SELECT 1 FROM blocks LIMIT 1").fetchone() is None

    def initialize(
        self, genesis_hash: str, chain_id: str, block0: Block, block0_hash: str, accounts: dict[str, Account]
    ) -> None:
        """Write genesis (block 0 and the initial accounts) in one transaction."""
        with self._transaction() as conn:
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("genesis_hash", genesis_hash), ("chain_id", chain_id)],
            )
            conn.execute(
                "INSERT INTO blocks (height, hash, header, data) VALUES (0, ?, ?, ?)",
                (bytes.fromhex(block0_hash), _block_encoder.encode(block0.header), _block_encoder.encode(block0)),
            )
            conn.executemany(
                "INSERT INTO accounts (address, balance, nonce) VALUES (?, ?, ?)",
                [(a, acc.balance, acc.nonce) for a, acc in accounts.items()],
            )

    def check_identity(self, genesis_hash: str) -> None:
        stored = self.get_meta("genesis_hash")
        if stored != genesis_hash:
            raise StorageError(
                f"{self.path} belongs to another chain (genesis {stored}, expected {genesis_hash}); "
                "use a fresh --data-dir or the matching genesis.json"
            )
        version = self.get_meta("schema_version")
        if version != str(SCHEMA_VERSION):
            raise StorageError(f"{self.path}: unsupported schema version {version}")

    # -- writes ----------------------------------------------------------
    def commit_block(self, outcome: BlockOutcome, commit: CommitCertificate | None = None) -> None:
        """Store the block and its effects; ``commit``: the precommits that finalized it (BFT chains)."""
        block = outcome.block
        height = block.header.height
        with self._transaction() as conn:
            if commit is not None:
                conn.execute(
                    "INSERT INTO commits (height, data) VALUES (?, ?)", (height, _block_encoder.encode(commit))
                )
            conn.execute(
                "INSERT INTO blocks (height, hash, header, data) VALUES (?, ?, ?, ?)",
                (
                    height,
                    bytes.fromhex(outcome.hash),
                    _block_encoder.encode(block.header),
                    _block_encoder.encode(block),
                ),
            )
            # One statement each for the tx index and the accounts, not one per row: SQLite inserts
            # them all in C without handing the GIL back and forth per row (2x less time per block
            # measured, more when the event loop is busy), in key order for the B-tree.
            hashes = b"".join([bytes.fromhex(v.hash) for v in outcome.included])
            conn.execute(_INSERT_TX_INDEX, (len(outcome.included), hashes, height))
            accounts = [[a, acc.balance, acc.nonce] for a, acc in outcome.delta.accounts.items()]
            conn.execute(_UPSERT_ACCOUNTS, (orjson.dumps(accounts),))
            if outcome.delta.escrows:
                conn.executemany(
                    "INSERT INTO escrows (job_id, data) VALUES (?, ?) "
                    "ON CONFLICT (job_id) DO UPDATE SET data = excluded.data",
                    [(j, _block_encoder.encode(e)) for j, e in outcome.delta.escrows.items()],
                )
            if outcome.delta.multisigs:
                conn.executemany(
                    "INSERT INTO multisigs (address, data) VALUES (?, ?) "
                    "ON CONFLICT (address) DO UPDATE SET data = excluded.data",
                    [(a, _block_encoder.encode(m)) for a, m in outcome.delta.multisigs.items()],
                )
            if outcome.delta.deposits:
                conn.executemany(
                    "INSERT INTO deposits (id, data) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                    [(d, _block_encoder.encode(v)) for d, v in outcome.delta.deposits.items()],
                )
            if outcome.delta.paid:
                written = [(j, _block_encoder.encode(p)) for j, p in outcome.delta.paid.items() if p is not None]
                forgotten = [(j,) for j, p in outcome.delta.paid.items() if p is None]
                conn.executemany(
                    "INSERT INTO paid_jobs (job_id, data) VALUES (?, ?) "
                    "ON CONFLICT (job_id) DO UPDATE SET data = excluded.data",
                    written,
                )
                conn.executemany("DELETE FROM paid_jobs WHERE job_id = ?", forgotten)
            if outcome.delta.staking is not None:
                # Without the bonds: they are rows of their own, written per change (the block's
                # ``delta.staking`` does not hold them; its bond writes do, see ``aitbc.chain.bonds``).
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('staking', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (msgspec.json.encode(msgspec.structs.replace(outcome.delta.staking, bonds=[])).decode(),),
                )
            bond_writes = outcome.delta.bond_writes
            if bond_writes:
                conn.executemany(
                    "INSERT INTO bonds (validator, delegator, amount) VALUES (?, ?, ?) "
                    "ON CONFLICT (validator, delegator) DO UPDATE SET amount = excluded.amount",
                    [(v, d, a) for (v, d), a in sorted(bond_writes.items()) if a],
                )
                conn.executemany(
                    "DELETE FROM bonds WHERE validator = ? AND delegator = ?",
                    [key for key, a in bond_writes.items() if not a],
                )
            if outcome.delta.audits is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('audits', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (msgspec.json.encode(outcome.delta.audits).decode(),),
                )
            if outcome.delta.governance is not None:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('governance', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (msgspec.json.encode(outcome.delta.governance).decode(),),
                )
            if outcome.delta.events:
                conn.executemany(
                    "INSERT INTO job_events (height, job_id, data, client, coordinator, miner) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (height, ev.job_id, _block_encoder.encode(ev), ev.client, ev.coordinator, ev.miner)
                        for ev in outcome.delta.events
                    ],
                )

    def last_event_seq(self) -> int:
        row = self._reader.execute("SELECT COALESCE(MAX(seq), 0) FROM job_events").fetchone()
        return int(row[0])

    def load_staking(self) -> StakingState:
        """The staking state with its bonds (kept in their own table, sorted as ``StakingState.bonds``)."""
        raw = self.get_meta("staking")
        staking = EMPTY_STAKING if raw is None else _staking_decoder.decode(raw)
        rows = self._reader.execute("SELECT validator, delegator, amount FROM bonds ORDER BY validator, delegator")
        return msgspec.structs.replace(staking, bonds=[Bond(v, d, a) for v, d, a in rows])

    def load_audits(self) -> AuditState:
        raw = self.get_meta("audits")
        return EMPTY_AUDITS if raw is None else _audits_decoder.decode(raw)

    def load_governance(self) -> GovernanceState:
        raw = self.get_meta("governance")
        return EMPTY_GOVERNANCE if raw is None else _governance_decoder.decode(raw)

    def load_escrows(self) -> dict[str, Escrow]:
        return {
            job_id: _escrow_decoder.decode(data)
            for job_id, data in self._reader.execute("SELECT job_id, data FROM escrows")
        }

    def load_deposits(self) -> dict[str, Deposit]:
        return {d: _deposit_decoder.decode(data) for d, data in self._reader.execute("SELECT id, data FROM deposits")}

    def load_paid_jobs(self) -> dict[str, PaidJob]:
        return {
            job_id: _paid_decoder.decode(data)
            for job_id, data in self._reader.execute("SELECT job_id, data FROM paid_jobs")
        }

    def load_multisigs(self) -> dict[str, MultisigAccount]:
        return {
            address: _multisig_decoder.decode(data)
            for address, data in self._reader.execute("SELECT address, data FROM multisigs")
        }

    # -- startup reads (before the node serves anything) -------------------
    def head_header(self) -> BlockHeader:
        row = self._reader.execute("SELECT header FROM blocks ORDER BY height DESC LIMIT 1").fetchone()
        if row is None:
            raise StorageError(f"{self.path} holds no blocks")
        return _header_decoder.decode(row[0])

    def load_accounts(self) -> dict[str, Account]:
        return {
            address: Account(balance=balance, nonce=nonce)
            for address, balance, nonce in self._reader.execute("SELECT address, balance, nonce FROM accounts")
        }

    def view(self, height: int) -> HeadView:
        """Reads of blocks, txs and events as of ``height`` (the node's head; see ``HeadView``)."""
        return HeadView(self._reader, height)


class HeadView:
    """Reads of committed blocks, txs, commits and job events, bounded by one height: the node's head.

    The store's reader connection sees a block as soon as the writer thread commits it, which is
    before the node moves its head (state swap, mempool update, events). Every read a client can
    reach goes through the view of the head the node has moved to, so no answer mixes the next block
    with the current head: no tx "committed" with 0 confirmations, no block above the head, no job
    event that was not emitted yet. The node swaps in a new view where it moves its head."""

    __slots__ = ("_conn", "height")

    def __init__(self, conn: sqlite3.Connection, height: int) -> None:
        self._conn = conn
        self.height = height

    def block_by_height(self, height: int) -> Block | None:
        if height > self.height:
            return None
        row = self._conn.execute("SELECT data FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else _block_decoder.decode(row[0])

    def block_by_hash(self, block_hash: str) -> Block | None:
        row = self._conn.execute(
            "SELECT data FROM blocks WHERE hash = ? AND height <= ?", (bytes.fromhex(block_hash), self.height)
        ).fetchone()
        return None if row is None else _block_decoder.decode(row[0])

    def header_by_height(self, height: int) -> BlockHeader | None:
        if height > self.height:
            return None
        row = self._conn.execute("SELECT header FROM blocks WHERE height = ?", (height,)).fetchone()
        return None if row is None else _header_decoder.decode(row[0])

    def commit_by_height(self, height: int) -> CommitCertificate | None:
        if height > self.height:
            return None
        row = self._conn.execute("SELECT data FROM commits WHERE height = ?", (height,)).fetchone()
        return None if row is None else _commit_decoder.decode(row[0])

    def tx_location(self, tx_hash: str) -> tuple[int, int] | None:
        row = self._conn.execute(
            "SELECT height, idx FROM txs WHERE hash = ? AND height <= ?", (bytes.fromhex(tx_hash), self.height)
        ).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def tx_by_hash(self, tx_hash: str) -> tuple[Tx, int, int] | None:
        location = self.tx_location(tx_hash)
        if location is None:
            return None
        block = self.block_by_height(location[0])
        if block is None:  # pragma: no cover - the index and blocks are written together
            raise StorageError(f"tx index points at missing block {location[0]}")
        return block.txs[location[1]], location[0], location[1]

    def job_events(self, job_id: str) -> list[tuple[int, int, ChainEvent]]:
        """(seq, height, event) of one job, oldest first."""
        rows = self._conn.execute(
            "SELECT seq, height, data FROM job_events WHERE job_id = ? AND height <= ? ORDER BY seq",
            (job_id, self.height),
        )
        return [(int(seq), int(h), _event_decoder.decode(data)) for seq, h, data in rows]

    def job_events_after(self, after_seq: int, address: str | None, limit: int) -> list[tuple[int, int, ChainEvent]]:
        """(seq, height, event) with ``seq > after_seq``, oldest first; only those naming ``address`` if given."""
        if address is None:
            rows = self._conn.execute(
                "SELECT seq, height, data FROM job_events WHERE seq > ? AND height <= ? ORDER BY seq LIMIT ?",
                (after_seq, self.height, limit),
            )
        else:
            rows = self._conn.execute(
                "SELECT seq, height, data FROM job_events WHERE seq > ?1 AND (client = ?2 OR coordinator = ?2 "
                "OR miner = ?2) AND height <= ?4 ORDER BY seq LIMIT ?3",
                (after_seq, address, limit, self.height),
            )
        return [(int(seq), int(h), _event_decoder.decode(data)) for seq, h, data in rows]

    def job_events_page(self, from_height: int, after_seq: int, limit: int) -> list[tuple[int, int, ChainEvent]]:
        rows = self._conn.execute(
            "SELECT seq, height, data FROM job_events WHERE height BETWEEN ? AND ? AND seq > ? ORDER BY seq LIMIT ?",
            (from_height, self.height, after_seq, limit),
        )
        return [(int(seq), int(h), _event_decoder.decode(data)) for seq, h, data in rows]

    def job_events_since(self, height: int, limit: int = 10_000) -> list[tuple[int, int, ChainEvent]]:
        rows = self._conn.execute(
            "SELECT seq, height, data FROM job_events WHERE height BETWEEN ? AND ? ORDER BY seq LIMIT ?",
            (height, self.height, limit),
        )
        return [(int(seq), int(h), _event_decoder.decode(data)) for seq, h, data in rows]
