"""One error tree, one mapping: statuses and JSON-RPC codes come from the classes of ``aitbc.protocol.errors``."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest

import aitbc
from aitbc.protocol import errors
from aitbc.protocol.errors import (
    AitbcError,
    InvalidTx,
    NotFound,
    RateLimited,
    RemoteError,
    Unauthorized,
    UnknownMiner,
)
from aitbc.runtime.errors import error_body, error_headers, http_status, rpc_code


def all_error_classes() -> list[type[AitbcError]]:
    for module in pkgutil.walk_packages(aitbc.__path__, "aitbc."):
        if ".migrations" in module.name or module.name.endswith("__main__"):
            continue
        importlib.import_module(module.name)
    found: list[type[AitbcError]] = []
    todo: list[type[AitbcError]] = [AitbcError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_the_tree_in_the_docstring_is_the_tree_in_the_module() -> None:
    assert errors.__doc__ is not None
    drawn = dict(
        (name, (int(status), int(code)))
        for name, status, code in re.findall(r"[├└]── (\w+)\s+(\d{3})\s+(-\d+)", errors.__doc__)
    )
    declared = {
        name: cls
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, AitbcError) and cls is not AitbcError
    }
    assert set(drawn) == set(declared)
    for name, cls in declared.items():
        assert (cls.http_status, cls.rpc_code) == drawn[name], name


def test_no_two_error_classes_share_a_name() -> None:
    names = [cls.__name__ for cls in all_error_classes()]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"error classes defined twice: {duplicates}"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (Unauthorized("no key"), 401, -32010),
        (UnknownMiner("who?"), 403, -32011),
        (NotFound("no job"), 404, -32004),
        (RateLimited("slow down", 0.25), 429, -32013),
        (RemoteError("node said no", code=InvalidTx.rpc_code, reason="nonce_too_low"), 400, -32001),
        (RemoteError("node down", reason="unreachable"), 502, -32020),
        (AitbcError("anything else"), 400, -32602),
    ],
)
def test_one_mapping_for_http_and_json_rpc(error: AitbcError, status: int, code: int) -> None:
    assert (http_status(error), rpc_code(error)) == (status, code)
    body = error_body(error)["error"]
    assert body["reason"] == error.reason and body["message"] == error.message


def test_a_rate_limit_says_when_to_retry() -> None:
    limited = RateLimited("slow down", 0.25)
    assert error_headers(limited) == {"Retry-After": "0.25"}
    assert error_body(limited)["error"]["retry_after_s"] == 0.25
    assert error_headers(NotFound("x")) is None
