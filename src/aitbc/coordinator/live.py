"""A miner the coordinator has heard from: its offer and the jobs it runs now (shared by dispatch and matching),
and which miners are live and what they serve, kept between submissions."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from aitbc.market.matching import JobRequirements, MinerOffer, ServedModel, compute_max_units
from aitbc.market.metering import compute_min_affordable_price
from aitbc.protocol.job import compute_model_kind
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


def compute_served_models(live: Iterable[LiveMiner], min_bond: int | None) -> list[dict[str, Any]]:
    """Each model the ``live`` miners serve (by name, kind and digest): how many serve it, how many of those
    are bonded for audited jobs, and its unit price range."""
    models: dict[tuple[str, str, str], dict[str, Any]] = {}
    for miner in live:
        for model in miner.offer.models:
            entry = models.setdefault(
                (model.name, model.kind, model.digest),
                {
                    "name": model.name,
                    "kind": model.kind,
                    "digest": model.digest,
                    "miners": 0,
                    "bonded_miners": 0,
                    "min_unit_price": model.unit_price,
                    "max_unit_price": model.unit_price,
                },
            )
            entry["miners"] += 1
            entry["bonded_miners"] += min_bond is not None and miner.bond >= min_bond  # audited jobs
            entry["min_unit_price"] = min(entry["min_unit_price"], model.unit_price)
            entry["max_unit_price"] = max(entry["max_unit_price"], model.unit_price)
    return sorted(models.values(), key=lambda m: (m["kind"], m["name"], m["digest"]))


@dataclass(frozen=True, slots=True)
class LiveView:
    """The live miners at one moment, what they serve, and their offers by model name."""

    live: tuple[LiveMiner, ...]
    served: tuple[dict[str, Any], ...]
    offers_by_model: dict[str, tuple[MinerOffer, ...]]
    cheapest: dict[tuple[str, str, str | None], int]
    """(model, kind, digest or None for any): the least unit price a live miner charges for it (each miner's
    first model that matches, as ``aitbc.market.matching.find_served_model`` picks)."""
    version: int
    min_bond: int | None
    computed_at_ms: int
    valid_until_ms: int
    """The first moment one of ``live`` may have gone quiet for longer than the timeout."""


def compute_live_view(
    miners: Iterable[LiveMiner], at_ms: int, timeout_ms: int, min_bond: int | None, version: int
) -> LiveView:
    """Which of ``miners`` are live at ``at_ms`` (heard from within ``timeout_ms``) and what they serve."""
    live = tuple(m for m in miners if m.last_seen_ms >= at_ms - timeout_ms)
    by_model: dict[str, list[MinerOffer]] = {}
    cheapest: dict[tuple[str, str, str | None], int] = {}
    for miner in live:
        for name in dict.fromkeys(model.name for model in miner.offer.models):
            by_model.setdefault(name, []).append(miner.offer)
        matched: set[tuple[str, str, str | None]] = set()
        for model in miner.offer.models:
            for key in ((model.name, model.kind, None), (model.name, model.kind, model.digest)):
                if key not in matched:
                    matched.add(key)
                    cheapest[key] = min(cheapest.get(key, model.unit_price), model.unit_price)
    return LiveView(
        live=live,
        served=tuple(compute_served_models(live, min_bond)),
        offers_by_model={name: tuple(offers) for name, offers in by_model.items()},
        cheapest=cheapest,
        version=version,
        min_bond=min_bond,
        computed_at_ms=at_ms,
        valid_until_ms=min((m.last_seen_ms + timeout_ms + 1 for m in live), default=2**63),
    )


class LiveMiners:
    """``compute_live_view`` of the registered miners, kept until something it depends on changes.

    A submission asks which miners are live, what they serve and at what price, two or three times; that
    walked every registered miner each time (O(miners) per ``POST /api/v1/jobs``). The view is kept while the
    miners are the same objects with the same offers and bonds (``changed()`` is called when one registers or
    its bond is read anew), none of them went quiet (``valid_until_ms``) and none came back (``heard``)."""

    def __init__(self, miners: dict[str, LiveMiner], timeout_ms: int) -> None:
        self.miners = miners
        self.timeout_ms = timeout_ms
        self._version = 0
        self._view: LiveView | None = None

    def changed(self) -> None:
        self._version += 1

    def heard(self, miner: LiveMiner, at_ms: int) -> None:
        """``miner`` was heard from at ``at_ms``."""
        if miner.last_seen_ms < at_ms - self.timeout_ms:  # it comes back: the view must include it
            self.changed()
        miner.last_seen_ms = at_ms

    def view(self, at_ms: int, min_bond: int | None) -> LiveView:
        view = self._view
        if (
            view is not None
            and view.version == self._version
            and view.min_bond == min_bond
            and view.computed_at_ms <= at_ms < view.valid_until_ms
        ):
            return view
        view = compute_live_view(self.miners.values(), at_ms, self.timeout_ms, min_bond, self._version)
        if at_ms >= (self._view.computed_at_ms if self._view is not None else 0):
            self._view = view  # keep the latest moment's view (a question about the past is answered, not kept)
        return view


def compute_min_affordable_from_view(view: LiveView, req: JobRequirements) -> int | None:
    """``compute_min_affordable_price`` over ``view``'s live offers, from the view's cheapest prices when the
    job names no hardware or region (then every miner serving the model fits it): no walk over the miners."""
    if req.min_vram_gb is not None or req.gpu is not None or req.region is not None:
        return compute_min_affordable_price(view.offers_by_model.get(req.model, ()), req)
    price = view.cheapest.get((req.model, compute_model_kind(req.job_type), req.model_digest))
    return None if price is None else price * compute_max_units(replace(req, max_price=None))
