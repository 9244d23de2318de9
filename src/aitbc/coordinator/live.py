"""A miner the coordinator has heard from: its offer and the jobs it runs now (shared by dispatch and matching)."""

from __future__ import annotations

from dataclasses import dataclass, field

from aitbc.market.matching import MinerOffer, ServedModel
from aitbc.protocol.job_messages import MinerRegistration


@dataclass(slots=True)
class LiveMiner:
    offer: MinerOffer
    registration: MinerRegistration | None
    """What the miner registered (None only in tests that build offers by hand)."""
    max_concurrency: int
    last_seen_ms: int
    active: set[str] = field(default_factory=set)
    idle_generation: int = -1
    bond: int = 0
    """The miner's bond on chain as last read (``aitbc.coordinator.audits``): audited jobs need the minimum."""
    """The work generation at which a claim for this miner last found nothing (see ``MinerDispatcher.claim``)."""


def offer_from_registration(address: str, registration: MinerRegistration) -> MinerOffer:
    hardware = registration.hardware
    return MinerOffer(
        miner=address,
        models=tuple(ServedModel(m.name, m.digest, m.kind, m.unit_price) for m in registration.models),
        region=registration.region,
        gpu_name=hardware.gpu_name,
        vram_gb=float(hardware.vram_gb or 0.0),
    )
