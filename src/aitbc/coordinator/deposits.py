"""Jobs paid from a client's deposit: the coordinator's books (reservations, unsettled charges).

An API key bound to a deposit (``aitbc coordinator keys bind``) submits with a plain
``POST /api/v1/jobs``: no escrow, no wait for a block. ``DepositBook.reserve`` accepts the job at
once when the deposit's available amount (``aitbc.market.deposits``) covers its worst-case charge,
and answers 402 ``insufficient_deposit`` with ``available`` and ``needed`` otherwise. The job's id
carries its expiry height (``dj-<height>-<random>``), so the chain can pay it at most once.

The reservation follows the job: a job that fails, is cancelled or expires releases it; a
completed job's charge stays *pending* until the chain state read back includes its settlement
(``DepositSettler`` in ``aitbc.coordinator.settlement`` sends the batches). Everything here is in
memory and rebuilt from the jobs table on start (``load``): the database is the record, the book
only saves a query per submission.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aitbc.chain.deposits import compute_job_charge
from aitbc.chain.entries import Deposit
from aitbc.chain.params import ChainParams
from aitbc.coordinator.db.deposit_repo import DepositRepo
from aitbc.coordinator.db.payment_records import OpenDepositJob
from aitbc.coordinator.payments import ChainLink, ChainUnavailable
from aitbc.market.deposits import DepositAvailability, compute_deposit_availability, is_affordable
from aitbc.market.lifecycle import JobRuleViolation, JobState, PaymentState
from aitbc.protocol.deposit import JobRequest, get_job_expiry, is_valid_job_request_signature, make_deposit_job_id
from aitbc.protocol.errors import InvalidInput, PaymentRequired, RemoteError
from aitbc.runtime.entropy import random_bytes

log = logging.getLogger("aitbc.coordinator.deposits")


class DepositProblem(PaymentRequired):
    """The API key's deposit cannot pay for this job now (HTTP 402); says how much is available and needed."""

    reason = "insufficient_deposit"

    def __init__(
        self, message: str, *, reason: str | None = None, available: int | None = None, needed: int | None = None
    ) -> None:
        super().__init__(message, reason=reason)
        self.available = available
        self.needed = needed

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = dict(super().to_dict())
        if self.available is not None:
            body["available"] = self.available
        if self.needed is not None:
            body["needed"] = self.needed
        return body


@dataclass(slots=True)
class _Book:
    """One deposit: its chain state as last read, and what this coordinator owes against it (with running
    totals, so a submission costs the same however many jobs are in flight or waiting for their block)."""

    deposit: Deposit
    height: int
    reserved: dict[str, int] = field(default_factory=dict)
    """In-flight job → worst-case charge."""
    pending: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """Completed job → (charge, height of the block that settled it, once known)."""
    reserved_total: int = 0
    unsettled_total: int = 0
    """Σ ``pending`` charges the chain state at ``height`` does not include yet."""

    def _counts(self, settled_at: int | None) -> bool:
        return settled_at is None or settled_at > self.height

    def unsettled(self) -> int:
        """Charges the chain state at ``height`` does not include yet."""
        return self.unsettled_total

    def reserve(self, job_id: str, charge: int) -> None:
        self.unreserve(job_id)
        self.reserved[job_id] = charge
        self.reserved_total += charge

    def unreserve(self, job_id: str) -> int | None:
        charge = self.reserved.pop(job_id, None)
        if charge is not None:
            self.reserved_total -= charge
        return charge

    def set_pending(self, job_id: str, charge: int, settled_at: int | None = None) -> None:
        self.drop_pending(job_id)
        self.pending[job_id] = (charge, settled_at)
        if self._counts(settled_at):
            self.unsettled_total += charge

    def drop_pending(self, job_id: str) -> None:
        old = self.pending.pop(job_id, None)
        if old is not None and self._counts(old[1]):
            self.unsettled_total -= old[0]

    def prune(self) -> None:
        """After ``height`` moved: forget the charges the chain state now includes."""
        self.pending = {j: (c, h) for j, (c, h) in self.pending.items() if self._counts(h)}
        self.unsettled_total = sum(c for c, _ in self.pending.values())


@dataclass(frozen=True, slots=True)
class Reservation:
    job_id: str
    deposit_id: str
    charge: int
    expires_height: int
    client_signature: str | None = None


@dataclass(frozen=True, slots=True)
class SignedAsk:
    """What a submission says about a signed-mode job: the id the client chose and its signature over the
    job request (``aitbc.protocol.deposit.JobRequest``); the rest of the request comes from the job."""

    job_id: str | None
    client_signature: str | None
    chain_id: str
    model: str
    input_hash: str


MIN_SIGNED_BLOCKS = 10
"""A signed-mode job id must leave at least this many blocks before its expiry (to run, then settle)."""


class DepositBook:
    """Deposits this coordinator settles against, the keys bound to them, and their reservations."""

    def __init__(
        self,
        link: ChainLink,
        repo: DepositRepo,
        read: Callable[..., Awaitable[Any]],
        coordinator: str,
        job_blocks: int,
    ) -> None:
        self.link = link
        self.repo = repo
        self._read = read
        self.coordinator = coordinator
        self.job_blocks = job_blocks
        """How many blocks ahead a new deposit job expires (it must settle before)."""
        self.bindings: dict[str, str] = {}
        self.books: dict[str, _Book] = {}
        self.job_deposit: dict[str, str] = {}
        self.head_height = 0
        self._open_rows: list[OpenDepositJob] = []
        self._made_here: dict[str, None] = {}
        """Jobs reserved here since the last ``resync`` (their rows may not be stored yet)."""
        self.unpaid_finished = True
        """A deposit job ended without a result since the jobs table was last marked (``released``); True at
        start, so jobs that ended before a restart are marked too."""

    # -- start ---------------------------------------------------------------------
    def load(self) -> None:
        """Rebuild bindings, reservations and unsettled charges from the database (before serving)."""
        self.bindings = self.repo.list_bindings()
        self._open_rows = self.repo.open_deposit_jobs()

    async def start(self) -> None:
        """Read the bound deposits from the chain and apply the reloaded jobs to them."""
        head = await self.link.call(self.link.node.get_head)
        self.head_height = int(head["height"])
        for job in self._open_rows:
            book = await self._ensure(job.deposit_id)
            if book is None:
                continue
            self.job_deposit[job.id] = job.deposit_id
            if job.payment_state == PaymentState.RESERVED and job.state != JobState.COMPLETED:
                book.reserve(job.id, job.charge)
            else:
                book.set_pending(job.id, job.charge)
        self._open_rows = []

    async def resync(self) -> None:
        """On a replica: the reservations and unsettled charges as the jobs table has them (other replicas take
        and finish deposit jobs too), then the deposits as the chain has them now.

        The jobs are read first and the chain after, then both applied at once: a charge settled by the time
        of the first read is in the chain state of the second. Reservations made here meanwhile (their jobs
        may not be stored yet) are kept."""
        rows = await self._read(self.repo.open_deposit_jobs)
        self.bindings = await self._read(self.repo.list_bindings)
        for deposit_id in {row.deposit_id for row in rows} - set(self.books):
            await self._ensure(deposit_id)
        await self.refresh()
        kept = {job_id: self.job_deposit.get(job_id) for job_id in self._made_here}  # (no await from here on)
        old_pending = {d: dict(b.pending) for d, b in self.books.items()}
        reserved_here = {d: dict(b.reserved) for d, b in self.books.items()}
        for book in self.books.values():
            book.reserved, book.pending, book.reserved_total, book.unsettled_total = {}, {}, 0, 0
        self.job_deposit = {}
        stored = set()
        for row in rows:
            found = self.books.get(row.deposit_id)
            if found is None:
                continue
            stored.add(row.id)
            self.job_deposit[row.id] = row.deposit_id
            if row.payment_state == PaymentState.RESERVED and row.state != JobState.COMPLETED:
                found.reserve(row.id, row.charge)
            else:
                previous = old_pending.get(row.deposit_id, {}).get(row.id)
                found.set_pending(row.id, previous[0] if previous else row.charge, previous[1] if previous else None)
        for job_id, deposit_id in kept.items():
            charge = reserved_here.get(deposit_id or "", {}).get(job_id)
            if job_id not in stored and deposit_id is not None and charge is not None:
                self.books[deposit_id].reserve(job_id, charge)
                self.job_deposit[job_id] = deposit_id
        self._made_here = {}
        self.unpaid_finished = True

    # -- lookups -------------------------------------------------------------------
    async def deposit_of_key(self, api_key_id: str) -> str | None:
        found = self.bindings.get(api_key_id)
        if found is None:
            found = await self._read(self.repo.get_binding, api_key_id)
            if found is not None:
                self.bindings[api_key_id] = found
        return found

    async def ensure(self, deposit_id: str) -> _Book | None:
        """The deposit's book, read from the chain the first time (None: no such deposit)."""
        return await self._ensure(deposit_id)

    async def _ensure(self, deposit_id: str) -> _Book | None:
        book = self.books.get(deposit_id)
        if book is not None:
            return book
        try:
            payload = await self.link.call(self.link.node.call, "get_deposit", deposit_id)
        except RemoteError as exc:
            if exc.code == -32004:
                return None
            raise ChainUnavailable(f"cannot read deposit {deposit_id} from the node: {exc.message}") from None
        book = _Book(msgspec.convert(payload["deposit"], Deposit), int(payload["height"]))
        self.books[deposit_id] = book
        self.head_height = max(self.head_height, book.height)
        return book

    async def refresh(self, only: str | None = None) -> None:
        """Read every active deposit (or ``only`` that one) again, in one batched call; settled charges then
        leave ``pending``."""
        ids = [only] if only is not None else [d for d, b in self.books.items() if b.reserved or b.pending]
        ids = ids or list(self.books)
        if not ids:
            return
        results = await self.link.call(self.link.node.batch, [("get_deposit", [d]) for d in ids])
        for deposit_id, result in zip(ids, results, strict=True):
            if isinstance(result, RemoteError):
                continue
            book = self.books[deposit_id]
            book.deposit = msgspec.convert(result["deposit"], Deposit)
            book.height = int(result["height"])
            self.head_height = max(self.head_height, book.height)
            book.prune()

    def availability(self, deposit_id: str) -> DepositAvailability | None:
        book = self.books.get(deposit_id)
        if book is None:
            return None
        return compute_deposit_availability(
            book.deposit, max(book.height, self.head_height), book.reserved_total, book.unsettled()
        )

    # -- the job's path ------------------------------------------------------------
    async def reserve(
        self, api_key_id: str, client: str, max_price: int, params: ChainParams, signed: SignedAsk | None = None
    ) -> Reservation:
        """Reserve ``max_price`` + protocol fee on the key's deposit for a new job, or raise ``DepositProblem``.

        A signed-mode deposit takes only jobs its owner signed (``signed``: the id and signature the client
        sent, checked here, before anything is reserved: ``InvalidInput`` (422) if missing or wrong); a
        delegated one only jobs whose id the coordinator draws."""
        deposit_id = await self.deposit_of_key(api_key_id)
        if deposit_id is None:
            raise DepositProblem(
                "this API key has no deposit to pay from: open one (`aitbc deposit open`) and bind it to the key "
                "(`aitbc coordinator keys bind`), or pay per job with an escrow (send its job_id)",
                reason="no_deposit",
            )
        if self.head_height == 0:
            self.head_height = int((await self.link.call(self.link.node.get_head))["height"])
        book = await self._ensure(deposit_id)
        if book is None:
            raise DepositProblem(f"deposit {deposit_id} does not exist on chain", reason="no_deposit")
        deposit = book.deposit
        if deposit.coordinator != self.coordinator or deposit.owner != client:
            raise DepositProblem(
                f"deposit {deposit_id} is {deposit.owner}'s with coordinator {deposit.coordinator}; this key pays as "
                f"{client} through {self.coordinator}",
                reason="wrong_deposit",
            )
        if deposit.mode == "signed":
            job_id, expires = self._check_signed(deposit, max_price, params, signed)
        elif signed is not None:
            raise InvalidInput(
                f"deposit {deposit_id} is delegated: the coordinator draws the job id; leave job_id and "
                "client_signature out"
            )
        else:
            expires = self.head_height + self.job_blocks
            job_id = make_deposit_job_id(expires, random_bytes(10))
        charge = compute_job_charge(max_price, params)
        availability = self.availability(deposit_id)
        assert availability is not None
        if not is_affordable(availability, charge):
            raise DepositProblem(
                f"the deposit has {availability.available} available (balance {availability.balance}, reserved "
                f"{availability.reserved}, pending {availability.pending}); this job may cost {charge} "
                f"(max_price {max_price} + protocol fee): top it up (`aitbc deposit top-up`) or lower max_price",
                available=availability.available,
                needed=charge,
            )
        book.reserve(job_id, charge)
        self.job_deposit[job_id] = deposit_id
        self._made_here[job_id] = None
        return Reservation(job_id, deposit_id, charge, expires, signed.client_signature if signed else None)

    def _check_signed(
        self, deposit: Deposit, max_price: int, params: ChainParams, signed: SignedAsk | None
    ) -> tuple[str, int]:
        """The signed-mode job's id and expiry height once its client signature verifies (else 422)."""
        if signed is None or not signed.client_signature or signed.job_id is None:
            raise InvalidInput(
                f"deposit {deposit.id} is in signed mode: send job_id (dj-<expiry height>-<random>), max_price and "
                "client_signature, your signature over the job request (aitbc.protocol.deposit.sign_job_request; "
                "`aitbc job submit --key` does it)"
            )
        expires = get_job_expiry(signed.job_id)
        head = self.head_height
        if expires is None or not head + MIN_SIGNED_BLOCKS <= expires <= head + params.max_receipt_blocks:
            raise InvalidInput(
                f"job_id {signed.job_id} must be dj-<expiry height>-<8..40 hex> with its expiry between heights "
                f"{head + MIN_SIGNED_BLOCKS} and {head + params.max_receipt_blocks}"
            )
        if signed.job_id in self.job_deposit:
            raise JobRuleViolation(f"job {signed.job_id} was already submitted", reason="duplicate_job")
        request = JobRequest(
            chain_id=signed.chain_id,
            job_id=signed.job_id,
            deposit_id=deposit.id,
            model=signed.model,
            input_hash=signed.input_hash,
            max_price=max_price,
        )
        if not is_valid_job_request_signature(request, deposit.owner, signed.client_signature):
            raise InvalidInput(
                f"client_signature does not verify as {deposit.owner}'s over the job request (chain_id, job_id, "
                "deposit_id, model, input_hash, max_price)"
            )
        return signed.job_id, expires

    def cancel_reservation(self, job_id: str) -> None:
        """Nothing is owed for the job: it was never stored (its insert failed), or it ended unpaid."""
        deposit_id = self.job_deposit.pop(job_id, None)
        if deposit_id is not None:
            self.books[deposit_id].unreserve(job_id)

    def on_finished(self, job_id: str, completed: bool) -> None:
        """A deposit job ended: a completed one's charge waits for its batch; any other owes nothing."""
        deposit_id = self.job_deposit.get(job_id)
        if deposit_id is None:
            return
        book = self.books[deposit_id]
        charge = book.unreserve(job_id)
        if completed and charge is not None:
            book.set_pending(job_id, charge)
        elif not completed:
            self.job_deposit.pop(job_id, None)
            self.unpaid_finished = True

    def on_batched(self, job_id: str, total_price: int, params: ChainParams) -> int:
        """The job's receipt went into a batch: its pending charge becomes the receipt's; returns it."""
        charge = compute_job_charge(total_price, params)
        deposit_id = self.job_deposit.get(job_id)
        if deposit_id is not None:
            self.books[deposit_id].set_pending(job_id, charge)
        return charge

    def on_settled(self, job_id: str, height: int) -> None:
        deposit_id = self.job_deposit.pop(job_id, None)
        if deposit_id is not None:
            book = self.books[deposit_id]
            if job_id in book.pending:
                book.set_pending(job_id, book.pending[job_id][0], height)

    def on_refused(self, job_id: str) -> None:
        """The chain refused the job's entry: nothing will be charged for it."""
        deposit_id = self.job_deposit.pop(job_id, None)
        if deposit_id is not None:
            self.books[deposit_id].drop_pending(job_id)
