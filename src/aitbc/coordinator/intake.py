"""How a submitted job is paid, on a coordinator with a node: from the API key's deposit, or by an escrow.

A key bound to a deposit (``aitbc coordinator keys bind``) and a request without ``job_id`` is paid from
the deposit: the job's worst-case charge is reserved at once (``DepositBook.reserve``) or the request is
refused with 402. A signed-mode deposit takes only jobs its owner signed: the request carries the job id
the client chose (``dj-<expiry>-<random>``), its ``max_price`` and ``client_signature`` over the job
request, checked before anything is reserved (422 if missing or wrong) and kept for the settle batch.
Otherwise the request's ``job_id`` must name an escrow the client opened on chain for this coordinator
(``check_escrow``). Either way the job's ttl is cut so that it gives up while it can
still be settled.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aitbc.coordinator.auth import ApiKey
from aitbc.coordinator.config import CoordinatorSettings
from aitbc.coordinator.db.deposit_repo import DepositRepo
from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.db.repo import CoordinatorRepo
from aitbc.coordinator.db.writer import DbWriter
from aitbc.coordinator.deposits import DepositBook, DepositProblem, Reservation, SignedAsk
from aitbc.coordinator.metrics import CoordinatorMetrics
from aitbc.coordinator.payments import ChainLink, EscrowProblem, PaymentWorker, check_escrow
from aitbc.coordinator.settlement import DepositSettler
from aitbc.market.deposits import compute_worst_case_price
from aitbc.market.lifecycle import JobRuleViolation, PaymentState
from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.deposit import get_job_expiry
from aitbc.protocol.errors import InvalidInput
from aitbc.protocol.job import JobInput


class PaymentIntake:
    def __init__(
        self,
        settings: CoordinatorSettings,
        coordinator: str,
        chain: ChainLink,
        db: DbWriter,
        deposits: DepositBook,
        served_models: Callable[[], list[dict[str, Any]]],
    ) -> None:
        self.settings = settings
        self.coordinator = coordinator
        self.chain = chain
        self.db = db
        self.repo = db.repo
        self.deposits = deposits
        self.served_models = served_models

    async def pay(
        self,
        api_key: ApiKey,
        job: JobRecord,
        ttl: int,
        job_input: JobInput,
        job_id: str | None,
        client_signature: str | None = None,
    ) -> tuple[JobRecord, Reservation | None]:
        """The job with its payment terms (and the deposit reservation, when it is paid from one).

        A request with a deposit job id (``dj-…``, never an escrow's) or a client signature is a signed-mode
        deposit job; one without a job id, from a key bound to a deposit, a delegated one."""
        deposit_job = get_job_expiry(job_id) is not None if job_id is not None else None
        if deposit_job or client_signature is not None:
            if not await self._has_deposit(api_key):
                raise DepositProblem(
                    "a dj-… job id or a client_signature pays from a deposit: bind this API key to one "
                    "(`aitbc coordinator keys bind`)",
                    reason="no_deposit",
                )
            return await self._reserved(api_key, job, ttl, job_input, client_signature)
        if job_id is None and await self._has_deposit(api_key):
            return await self._reserved(api_key, job, ttl, job_input, None)
        return await self._escrowed(api_key, job, ttl, job_id), None

    async def _escrowed(self, api_key: ApiKey, job: JobRecord, ttl: int, escrow_job_id: str | None) -> JobRecord:
        """A paid job: its escrow checked on chain, its ttl cut to what the escrow allows."""
        if escrow_job_id is None:
            raise EscrowProblem(
                "this coordinator takes paid jobs only: bind this API key to a deposit (`aitbc deposit open`, "
                "`aitbc coordinator keys bind`), or send the job_id of an escrow you opened on chain naming "
                f"coordinator {self.coordinator} (`aitbc job submit --escrow` does it for you)",
                reason="escrow_missing",
            )
        if await self.db.get_job(job.id) is not None:
            raise JobRuleViolation(f"job {job.id} was already submitted", reason="duplicate_job")
        terms = await check_escrow(
            self.chain, self.coordinator, api_key.client, job.id, job.max_price, self.settings.escrow_min_blocks
        )
        info = await self.chain.get_info()
        # A job nobody took must give up while its escrow can still be settled.
        blocks_left = terms.deadline_height - terms.head_height - self.settings.escrow_min_blocks // 2
        ttl = max(1, min(ttl, blocks_left * info.block_time_ms // 1000))
        return replace(
            job,
            max_price=terms.max_price,
            expires_at_ms=job.created_at_ms + ttl * 1000,
            escrow_amount=terms.amount,
            escrow_deadline=terms.deadline_height,
            payment_state=PaymentState.ESCROWED.value,
        )

    async def _has_deposit(self, api_key: ApiKey) -> bool:
        return await self.deposits.deposit_of_key(api_key.id) is not None

    async def _reserved(
        self, api_key: ApiKey, job: JobRecord, ttl: int, job_input: JobInput, client_signature: str | None
    ) -> tuple[JobRecord, Reservation]:
        """A job paid from the key's deposit: its worst-case charge reserved now, or 402 (``DepositProblem``);
        a signed-mode one only with the client's signature over the job request (422 without)."""
        info = await self.chain.get_info()
        client_chose_id = job.id.startswith("dj-")
        signed = (
            SignedAsk(
                job_id=job.id if client_chose_id else None,
                client_signature=client_signature,
                chain_id=info.chain_id,
                model=job.model,
                input_hash=job.input_hash,
            )
            if client_chose_id or client_signature is not None
            else None
        )
        max_price = job.max_price
        if max_price is None:
            if signed is not None:
                raise InvalidInput("a signed-mode job names its max_price (it is part of what the client signs)")
            prices = [int(m["max_unit_price"]) for m in self.served_models() if m["name"] == job.model]
            max_price = compute_worst_case_price(job_input, prices)
        if client_chose_id and await self.db.get_job(job.id) is not None:
            raise JobRuleViolation(f"job {job.id} was already submitted", reason="duplicate_job")
        reservation = await self.deposits.reserve(api_key.id, api_key.client, max_price, info.params, signed)
        # A job nobody took must give up while it can still be settled (its id carries its expiry).
        blocks = min(self.settings.deposit_job_blocks, reservation.expires_height - self.deposits.head_height)
        ttl = max(1, min(ttl, (blocks // 2) * info.block_time_ms // 1000))
        paid = replace(
            job,
            id=reservation.job_id,
            max_price=max_price,
            expires_at_ms=job.created_at_ms + ttl * 1000,
            escrow_amount=reservation.charge,
            escrow_deadline=reservation.expires_height,
            payment_state=PaymentState.RESERVED.value,
            client_signature=reservation.client_signature,
        )
        return paid, reservation

    async def account_view(self, api_key: ApiKey) -> dict[str, Any]:
        """The key's deposit as this coordinator counts it (``GET /api/v1/account``)."""
        deposit_id = await self.deposits.deposit_of_key(api_key.id)
        if deposit_id is None:
            raise DepositProblem("this API key has no deposit (`aitbc coordinator keys bind`)", reason="no_deposit")
        book = await self.deposits.ensure(deposit_id)
        if book is not None:
            await self.deposits.refresh(only=deposit_id)  # the balance as of the head, not of the last batch
        availability = self.deposits.availability(deposit_id)
        if book is None or availability is None:
            raise DepositProblem(f"deposit {deposit_id} does not exist on chain", reason="no_deposit")
        return {
            "deposit_id": deposit_id,
            "client": api_key.client,
            "coordinator": self.coordinator,
            "mode": book.deposit.mode,
            "balance": availability.balance,
            "reserved": availability.reserved,
            "pending": availability.pending,
            "available": availability.available,
            "spent": availability.spent,
            "withdrawing": availability.withdrawing,
            "withdrawal_height": book.deposit.withdrawal_height or None,
            "cap": {
                "per_period": availability.cap_per_period or None,
                "period_blocks": book.deposit.period_blocks or None,
                "room": availability.cap_room,
            },
            "jobs": await self.db.read(self.deposits.repo.count_deposit_jobs, deposit_id),
            "height": availability.height,
            "chain_id": (await self.chain.get_info()).chain_id,
            "job_expiry_height": self.deposits.head_height + self.settings.deposit_job_blocks,
        }


def wire_deposits(
    settings: CoordinatorSettings,
    repo: CoordinatorRepo,
    key: KeyPair,
    metrics: CoordinatorMetrics,
    chain: ChainLink,
    db: DbWriter,
    payments: PaymentWorker,
    payment_write: Callable[..., Awaitable[Any]],
    served_models: Callable[[], list[dict[str, Any]]],
) -> tuple[DepositBook, PaymentIntake]:
    """The deposit side of a paying coordinator: the books, their batch settler (run by ``payments``), and
    the intake that pays each submission from a deposit or an escrow."""
    deposit_repo = DepositRepo(repo.engine)
    deposits = DepositBook(chain, deposit_repo, db.read, key.address, settings.deposit_job_blocks)
    payments.settler = DepositSettler(
        chain,
        key,
        repo,
        deposit_repo,
        deposits,
        metrics,
        db.read,
        payment_write,
        retry_seconds=settings.payment_retry_seconds,
    )
    return deposits, PaymentIntake(settings, key.address, chain, db, deposits, served_models)
