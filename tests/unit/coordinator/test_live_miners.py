"""The live-miner view kept between submissions answers exactly what a fresh walk over the miners would."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aitbc.coordinator.live import LiveMiner, LiveMiners, compute_live_view, compute_min_affordable_from_view
from aitbc.market.matching import JobRequirements, MinerOffer, ServedModel
from aitbc.market.metering import compute_min_affordable_price

TIMEOUT_MS = 1_000
MODELS = ("llama", "gemma", "embed")


def miner(address: str, models: tuple[str, ...], price: int, last_seen_ms: int) -> LiveMiner:
    served = tuple(ServedModel(name, "d-" + name, "llm", price) for name in models)
    return LiveMiner(MinerOffer(address, served), None, 4, last_seen_ms)


# (operation, miner index, argument)
operations = st.lists(
    st.tuples(
        st.sampled_from(["register", "hear", "wait", "bond", "min_bond"]),
        st.integers(0, 4),
        st.integers(0, 2_500),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=operations)
def test_the_kept_view_equals_a_fresh_one_after_any_sequence_of_events(ops: list[tuple[str, int, int]]) -> None:
    miners: dict[str, LiveMiner] = {}
    kept = LiveMiners(miners, TIMEOUT_MS)
    now, min_bond = 10_000, None
    for op, index, arg in ops:
        address = f"ait1miner{index}"
        if op == "register":  # a new registration is a new object with its own offer
            miners[address] = miner(address, MODELS[: 1 + arg % 3], 1 + arg % 7, now)
            kept.changed()
        elif op == "hear" and address in miners:
            kept.heard(miners[address], now)
        elif op == "wait":
            now += arg
        elif op == "bond" and address in miners:
            miners[address].bond = arg
            kept.changed()
        elif op == "min_bond":
            min_bond = None if arg % 3 == 0 else arg
        view = kept.view(now, min_bond)
        fresh = compute_live_view(miners.values(), now, TIMEOUT_MS, min_bond, 0)
        assert [m.offer.miner for m in view.live] == [m.offer.miner for m in fresh.live]
        assert view.served == fresh.served
        assert view.offers_by_model == fresh.offers_by_model


def test_a_view_is_reused_until_a_live_miner_goes_quiet_and_rebuilt_when_one_comes_back() -> None:
    a, b = miner("ait1a", ("llama",), 2, 0), miner("ait1b", ("llama", "gemma"), 3, 600)
    kept = LiveMiners({"ait1a": a, "ait1b": b}, TIMEOUT_MS)
    first = kept.view(900, None)
    assert [m.offer.miner for m in first.live] == ["ait1a", "ait1b"]
    assert kept.view(1_000, None) is first  # a was heard at 0: live up to 1,000 inclusive
    assert [m.offer.miner for m in kept.view(1_001, None).live] == ["ait1b"]
    kept.heard(a, 1_200)  # a comes back
    back = kept.view(1_200, None)
    assert [m.offer.miner for m in back.live] == ["ait1a", "ait1b"]
    assert back.offers_by_model["gemma"] == (b.offer,)
    assert {m["name"]: m["miners"] for m in back.served} == {"llama": 2, "gemma": 1}


def test_a_question_about_an_earlier_moment_is_answered_without_replacing_the_kept_view() -> None:
    a, b = miner("ait1a", ("llama",), 2, 0), miner("ait1b", ("llama",), 2, 5_000)
    kept = LiveMiners({"ait1a": a, "ait1b": b}, TIMEOUT_MS)
    now_view = kept.view(5_500, None)
    assert [m.offer.miner for m in now_view.live] == ["ait1b"]
    assert [m.offer.miner for m in kept.view(500, None).live] == ["ait1a", "ait1b"]  # a was live then
    assert kept.view(5_600, None) is now_view


served_model = st.builds(
    ServedModel,
    name=st.sampled_from(MODELS),
    digest=st.sampled_from(["d1", "d2"]),
    kind=st.sampled_from(["text", "embedding"]),
    unit_price=st.integers(1, 50),
)
offer_lists = st.lists(
    st.builds(
        MinerOffer,
        miner=st.sampled_from([f"ait1m{i}" for i in range(6)]),
        models=st.lists(served_model, min_size=1, max_size=4).map(tuple),
        region=st.sampled_from(["", "eu", "us"]),
        gpu_name=st.sampled_from([None, "RTX 4090", "H200"]),
        vram_gb=st.sampled_from([0.0, 24.0, 141.0]),
    ),
    max_size=6,
)
requirements = st.builds(
    JobRequirements,
    job_type=st.sampled_from(["inference", "embedding"]),
    model=st.sampled_from(MODELS),
    input_chars=st.integers(0, 5_000),
    max_tokens=st.integers(1, 512),
    model_digest=st.sampled_from([None, "d1", "d2"]),
    max_price=st.sampled_from([None, 1, 10_000]),
    min_vram_gb=st.sampled_from([None, None, 30.0]),
    gpu=st.sampled_from([None, None, "h200"]),
    region=st.sampled_from([None, None, "eu"]),
)


@settings(max_examples=500, deadline=None)
@given(offers=offer_lists, req=requirements)
def test_the_least_affordable_price_from_the_view_equals_the_walk_over_every_offer(
    offers: list[MinerOffer], req: JobRequirements
) -> None:
    miners = [LiveMiner(offer, None, 4, 0) for offer in offers]
    view = compute_live_view(miners, 0, TIMEOUT_MS, None, 0)
    assert compute_min_affordable_from_view(view, req) == compute_min_affordable_price(offers, req)
