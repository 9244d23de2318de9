"""Who may read a blob (``GET /api/v1/blobs/{hash}``): its uploaders, and the parties of a job that names it.

A blob is readable by every owner that uploaded it (``BlobStore.holds``). Naming a job (``?job=ID``), it is
also readable by that job's client, its miner, and the miner the chain drew to audit or referee it, when
the job names the blob: its dataset (the sealed one for a private dataset, or a copy its client re-sealed to
an auditor or referee), held by the job's client, or a
blob of its training result (weights, loss curve, checkpoints), held by the job's miner. That the named
blob must be held by the party who named it stops a client or a miner from naming someone else's blob to
read it through a job. Anyone else gets 404, as if the blob did not exist (docs/security.md).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection
from typing import Final

from aitbc.coordinator.audits import AuditDesk
from aitbc.coordinator.blobs import BlobStore
from aitbc.coordinator.db.records import JobRecord
from aitbc.coordinator.services import CoordinatorService
from aitbc.protocol.training import get_dataset_blob, get_output_blobs

JOB_ID: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def get_blob_namer(job: JobRecord, blob_hash: str, resealed: Collection[str] = ()) -> str | None:
    """Who must hold ``blob_hash`` for ``job`` to name it: the client's API key id for its dataset (or a copy
    of a sealed one the client re-sealed to an auditor or referee: ``resealed``), the miner for a blob of its
    training result; None when the job does not name it."""
    spec = job.training
    if spec is not None and (get_dataset_blob(spec) == blob_hash or blob_hash in resealed):
        return job.api_key_id
    output = job.result
    if output is not None and output.training is not None and blob_hash in get_output_blobs(output.training):
        return job.miner
    return None


def is_job_party(job: JobRecord, caller: str) -> bool:
    """The job's client (its API key id) or the miner that ran it."""
    return caller == job.api_key_id or (job.miner is not None and caller == job.miner)


async def may_read(
    service: CoordinatorService,
    store: BlobStore,
    desk: AuditDesk | None,
    caller: str,
    blob_hash: str,
    job_id: str | None,
) -> bool:
    """Whether ``caller`` (an API key id or a miner address) may read ``blob_hash``, naming ``job_id``."""
    if await store.holds_async(caller, blob_hash):
        return True
    if job_id is None or not JOB_ID.match(job_id):
        return False
    job = await service.db.get_job(job_id)
    if job is None:
        return False
    namer = get_blob_namer(job, blob_hash, (await asyncio.to_thread(store.resealed, job_id)).values())
    if namer is None or not await store.holds_async(namer, blob_hash):
        return False
    if is_job_party(job, caller):
        return True
    return desk is not None and await desk.get_role(caller, job_id) is not None
