"""A miner refuses a training job whose dataset is sealed to another miner before fetching anything."""

from __future__ import annotations

import asyncio

import httpx
import msgspec
import pytest

from aitbc.miner.backends.training import fetch_dataset
from aitbc.miner.link import CoordinatorLink
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.sealed import SealedBoxError, seal_dataset
from aitbc.protocol.training import SealedDataset
from support.training_data import make_spec

DATA = b"a,b\n1,0\n"
ME, OTHER = KeyPair.from_seed(b"\x31" * 32), KeyPair.from_seed(b"\x32" * 32)


def _link(key: KeyPair, blobs: dict[str, bytes], asked: list[str]) -> CoordinatorLink:
    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(f"{request.url.path}?{request.url.query.decode()}")
        blob = blobs.get(request.url.path.rsplit("/", 1)[-1])
        return httpx.Response(200, content=blob) if blob is not None else httpx.Response(404, json={})

    return CoordinatorLink("http://coordinator", key, "test", httpx.MockTransport(answer))


def test_the_target_miner_opens_its_sealed_dataset_and_another_does_not_fetch_it() -> None:
    ciphertext = seal_dataset(DATA, ME.address)
    blob = sha256(ciphertext).hex()
    spec = msgspec.structs.replace(
        make_spec(DATA, "csv", model="logreg"), sealed_dataset=SealedDataset(miner=ME.address, blob=blob)
    )
    asked: list[str] = []
    assert asyncio.run(fetch_dataset(_link(ME, {blob: ciphertext}, asked), spec, "job_1")) == DATA
    assert asked == [f"/api/v1/blobs/{blob}?job=job_1"]
    with pytest.raises(SealedBoxError, match="not to this miner"):
        asyncio.run(fetch_dataset(_link(OTHER, {blob: ciphertext}, asked), spec, "job_1"))
    assert len(asked) == 1
