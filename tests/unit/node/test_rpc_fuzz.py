"""A short fuzz run of the node's JSON-RPC dispatcher over a real NodeService (the long run is atheris, by
hand: tests/fuzz/). Any body gets valid JSON-RPC back, never an internal error, within the reply budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aitbc.node.rpc import METHODS
from fuzz.mutate import near
from fuzz.targets import RpcTarget, seeds

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.text(max_size=80)
    | st.sampled_from(["0" * 64, "ait1", "", "job_x", "9" * 30]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
CALL = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]), "method": st.sampled_from([*METHODS, "nope"])},
    optional={"params": JSON, "id": st.one_of(st.integers(), st.text(max_size=8), st.none())},
)


@pytest.fixture(scope="module")
def rpc() -> Iterator[RpcTarget]:
    target = RpcTarget()
    yield target
    target.close()


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@SETTINGS
@given(body=near(seeds()["rpc"]))
def test_rpc_dispatcher_on_mutated_bodies(rpc: RpcTarget, body: bytes) -> None:
    rpc(body)


@SETTINGS
@given(calls=st.one_of(CALL, st.lists(CALL, min_size=1, max_size=60)))
def test_rpc_dispatcher_on_generated_calls(rpc: RpcTarget, calls: Any) -> None:
    rpc(orjson.dumps(calls, option=orjson.OPT_PASSTHROUGH_SUBCLASS) if _fits(calls) else b"[]")


def _fits(value: Any) -> bool:
    """orjson writes integers up to 64 bits; larger ones go as text the node reads like any JSON number."""
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True
