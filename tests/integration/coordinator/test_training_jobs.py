"""Training jobs through REAL processes: a coordinator and two miners started with ``--training``.

The client uploads a dataset blob, submits the same training spec twice, pinned by region to each miner in
turn; both miners fetch the dataset, train, keep their checkpoints, upload weights and loss curve as blobs
and return the commitment as their receipt's output hash. The two runs must agree bit for bit: the same
weights blob, the same commitment. The CLI follows a job's progress and downloads the weights; bad
requests are refused with a clear 4xx.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from coordinator_harness import CoordinatorProcess, MinerProcess, expect, run_cli

from aitbc.client.coordinator import CoordinatorClient
from aitbc.miner.link import CoordinatorLink
from aitbc.protocol.crypto import KeyPair, sha256
from aitbc.protocol.errors import RemoteError
from aitbc.protocol.sealed import SealedBoxError, open_dataset
from aitbc.protocol.training import TrainingCommitment, compute_commitment_hash
from aitbc.training import load_dataset, replay_segment
from support.training_data import digits_npz, make_spec

pytestmark = pytest.mark.slow

DATA = digits_npz(400)
PRIVATE = digits_npz(300)  # never uploaded in plain


class Stack:
    def __init__(self, coordinator: CoordinatorProcess, miners: list[MinerProcess], api_key: str) -> None:
        self.coordinator = coordinator
        self.miners = miners
        self.api_key = api_key

    def client(self) -> CoordinatorClient:
        return CoordinatorClient(self.coordinator.url, self.api_key, timeout=60.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp("training")
    coordinator = CoordinatorProcess(
        base / "coordinator", lease_seconds=10.0, extra_args=["--blob-max-bytes", str(4 * 1024 * 1024)]
    )
    coordinator.start()
    miners = [
        MinerProcess(coordinator, base / f"miner-{region}", region=region, extra_args=("--training",))
        for region in ("ta", "tb")
    ]
    try:
        for miner in miners:
            miner.start()
        for miner in miners:
            miner.wait_registered(timeout=120.0)
        yield Stack(coordinator, miners, coordinator.insert_key())
    finally:
        for miner in miners:
            miner.stop()
        coordinator.stop()
        coordinator.dispose()


def _run(client: CoordinatorClient, body: dict[str, object], region: str) -> dict[str, object]:
    job = client.submit({**body, "constraints": {"region": region}})
    done = client.wait(job["job_id"], timeout=240.0)
    assert done["state"] == "completed", done
    return client.result(job["job_id"])


def test_same_training_job_on_two_miners_gives_identical_weights(stack: Stack) -> None:
    with stack.client() as client:
        blob = client.put_blob(DATA)
        assert blob == sha256(DATA).hex()
        spec = make_spec(DATA, "npz", model="cnn", steps=24, checkpoint_every=8, batch_size=16, optimiser="adam")
        body = {"type": "training", "model": "cnn", "input": {"training": msgspec.to_builtins(spec)}}
        first, second = _run(client, body, "ta"), _run(client, body, "tb")
        out_a, out_b = first["output"]["training"], second["output"]["training"]  # type: ignore[index]
        assert out_a == out_b  # the same commitment, weights blob and loss-curve blob
        receipts = [client.receipt(r["job_id"])["receipt"] for r in (first, second)]  # type: ignore[index]
        assert {r["miner"] for r in receipts} == {m.address for m in stack.miners}
        commitment = msgspec.convert(out_a["commitment"], TrainingCommitment)
        assert receipts[0]["output_hash"] == receipts[1]["output_hash"] == compute_commitment_hash(commitment)
        assert commitment.runtime_build.startswith("aitbc-training/")
        assert receipts[0]["units"]["prompt_tokens"] == 24 * 16  # billed by sample-steps
        weights = client.get_blob(out_a["weights_blob"], str(first["job_id"]))
        losses = json.loads(client.get_blob(out_a["losses_blob"], str(first["job_id"])))["losses"]
        assert len(losses) == 24 and len(weights) > 10_000
        assert client.get_blob(blob) == DATA  # its uploader reads it without naming a job
    # only the job's parties read its blobs: another key gets 404, as for a blob that does not exist
    url, other = stack.coordinator.url, {"X-Api-Key": stack.coordinator.insert_key()}
    for name, job in ((out_a["weights_blob"], None), (out_a["weights_blob"], first["job_id"]), (blob, first["job_id"])):
        refused = httpx.get(f"{url}/api/v1/blobs/{name}", params={"job": job} if job else None, headers=other)
        assert refused.status_code == 404 and refused.json()["error"]["reason"] == "blob_not_found", refused.text
    with httpx.Client(base_url=url, headers={"X-Api-Key": stack.api_key}) as owner:
        assert owner.get(f"/api/v1/blobs/{out_a['weights_blob']}").status_code == 404  # no job named: not its blob
        assert owner.get(f"/api/v1/blobs/{'e' * 64}", params={"job": first["job_id"]}).status_code == 404
    # the miner kept its checkpoints: a middle segment replays to the committed hashes
    folder = stack.miners[0].data_dir / "training" / str(first["job_id"])
    replayed = replay_segment(spec, load_dataset("npz", DATA), (folder / "8.safetensors").read_bytes(), 8, 16)
    assert replayed[0] == commitment.checkpoint_hashes[1] and replayed[-1] == commitment.checkpoint_hashes[2]


def test_cli_submits_follows_and_downloads(stack: Stack, tmp_path: Path) -> None:
    dataset = tmp_path / "digits.npz"
    dataset.write_bytes(DATA)
    common = ["--coordinator", stack.coordinator.url, "--api-key", stack.api_key]
    submitted = run_cli(
        "job", "submit", "--type", "training", "--model", "mlp", "--dataset", str(dataset), "--steps", "20",
        "--batch-size", "16", "--checkpoint-every", "5", "--lr", "0.005", "--wait", *common, timeout=240.0,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "20/20" in submitted.stdout and "final loss" in submitted.stdout
    job_id = submitted.stdout.split("submitted ")[1].split()[0]
    out = tmp_path / "weights.safetensors"
    fetched = run_cli("job", "result", job_id, "--out", str(out), *common)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    saved = json.loads(fetched.stdout)
    assert saved["sha256"] == sha256(out.read_bytes()).hex() and saved["matches_commitment"] is True
    from safetensors.torch import load_file

    assert {k.split(".")[-1] for k in load_file(str(out))} == {"weight", "bias"}


async def _fetch_as(stack: Stack, key: KeyPair, blob: str, job_id: str) -> bytes:
    link = await CoordinatorLink.connect(stack.coordinator.url, key)
    async with link:
        return await link.get_blob(blob, job_id)


def test_a_private_dataset_is_sealed_to_its_miner_and_the_coordinator_holds_only_ciphertext(
    stack: Stack, tmp_path: Path
) -> None:
    dataset = tmp_path / "private.npz"
    dataset.write_bytes(PRIVATE)
    common = ["--coordinator", stack.coordinator.url, "--api-key", stack.api_key]
    target = stack.miners[1].address
    submitted = run_cli(
        "job", "submit", "--type", "training", "--model", "mlp", "--dataset", str(dataset), "--steps", "12",
        "--batch-size", "16", "--checkpoint-every", "4", "--private", "--seal-to", target, "--wait", *common,
        timeout=240.0,
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "sealed to miner" in submitted.stdout and "12/12" in submitted.stdout
    job_id = submitted.stdout.split("submitted ")[1].split()[0]
    prefix = re.search(r"dataset ([0-9a-f]{16})… uploaded", submitted.stdout)
    assert prefix is not None, submitted.stdout
    blob_dir = stack.coordinator.data_dir / "blobs"
    (stored_path,) = (blob_dir / prefix[1][:2]).glob(prefix[1] + "*")
    with stack.client() as client:
        miner = client.job(job_id)["miner"]
        assert miner == target
        out = client.result(job_id)["output"]["training"]
        assert out["commitment"]["dataset_hash"] == sha256(PRIVATE).hex()  # the receipt commits to the plaintext
        assert client.receipt(job_id)["receipt"]["miner"] == miner
        assert f"sealed to miner {miner}" in " ".join(submitted.stdout.split())  # only the target ran it
        # the coordinator's store holds the ciphertext and never the plaintext
        stored = stored_path.read_bytes()
        assert stored != PRIVATE and PRIVATE[:64] not in stored and len(stored) == len(PRIVATE) + 48
        assert not (blob_dir / sha256(PRIVATE).hex()[:2] / sha256(PRIVATE).hex()).exists()
        weights = out["weights_blob"]
        assert len(client.get_blob(weights, job_id)) > 1000
    sealed = {"miner": miner, "blob": stored_path.name}
    spec = {**msgspec.to_builtins(make_spec(PRIVATE, "npz", steps=12, checkpoint_every=4)), "sealed_dataset": sealed}
    # the miner it is not sealed to can neither fetch the ciphertext through the job nor open it
    (outsider,) = [m for m in stack.miners if m.address != miner]
    with pytest.raises(RemoteError, match="HTTP 404"):
        asyncio.run(_fetch_as(stack, outsider.key, sealed["blob"], job_id))
    with pytest.raises(SealedBoxError):
        open_dataset(outsider.key, stored, sha256(PRIVATE).hex())
    other = {"X-Api-Key": stack.coordinator.insert_key()}
    for name in (sealed["blob"], weights):
        refused = httpx.get(f"{stack.coordinator.url}/api/v1/blobs/{name}", params={"job": job_id}, headers=other)
        assert refused.status_code == 404, refused.text
    # another client cannot name this client's sealed blob in a job of its own
    body = {"type": "training", "model": "mlp", "input": {"training": spec}}
    stolen = httpx.post(f"{stack.coordinator.url}/api/v1/jobs", json=body, headers=other)
    assert stolen.status_code == 422 and stolen.json()["error"]["reason"] == "dataset_missing", stolen.text
    # re-sealing for an auditor: only the job's client, only its own blob, only for a sealed-dataset job
    reseal = f"{stack.coordinator.url}/api/v1/jobs/{job_id}/sealed-datasets"
    mine = {"X-Api-Key": stack.api_key}
    copy = expect(httpx.post(f"{stack.coordinator.url}/api/v1/blobs", content=b"copy", headers=mine), 201).json()
    entry = {"miner": stack.miners[0].address, "blob": copy["hash"]}
    assert httpx.post(reseal, json=entry, headers=other).status_code == 404
    assert httpx.post(reseal, json={**entry, "blob": "e" * 64}, headers=mine).status_code == 422
    assert expect(httpx.post(reseal, json=entry, headers=mine), 201).json()["blob"] == copy["hash"]
    cli = run_cli("job", "reseal", job_id, "--dataset", str(dataset), "--to", stack.miners[0].address, *common)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    resealed = json.loads(cli.stdout)
    assert resealed["miner"] == stack.miners[0].address and resealed["blob"] != copy["hash"]
    copy_bytes = (blob_dir / resealed["blob"][:2] / resealed["blob"]).read_bytes()  # sealed to miner 0 only
    assert open_dataset(stack.miners[0].key, copy_bytes, sha256(PRIVATE).hex()) == PRIVATE
    audited = httpx.post(
        f"{stack.coordinator.url}/api/v1/jobs",
        json={**body, "constraints": {"audited": True}},
        headers={"X-Api-Key": stack.api_key},
    )
    assert audited.status_code == 422, audited.text


def test_bad_training_requests_are_refused(stack: Stack) -> None:
    url, headers = stack.coordinator.url, {"X-Api-Key": stack.api_key}
    spec = msgspec.to_builtins(make_spec(b"never uploaded", "npz", model="mlp"))
    body = {"type": "training", "model": "mlp", "input": {"training": spec}}
    missing = httpx.post(f"{url}/api/v1/jobs", json=body, headers=headers)
    assert missing.status_code == 422 and missing.json()["error"]["reason"] == "dataset_missing"
    other = {**body, "model": "cnn"}
    assert httpx.post(f"{url}/api/v1/jobs", json=other, headers=headers).status_code == 422
    too_big = httpx.post(f"{url}/api/v1/blobs", content=b"x" * (4 * 1024 * 1024 + 1), headers=headers)
    assert too_big.status_code == 413, too_big.text
    assert httpx.post(f"{url}/api/v1/blobs", content=b"abc").status_code == 401
    assert httpx.get(f"{url}/api/v1/blobs/{'0' * 64}", headers=headers).status_code == 404
    stored = expect(httpx.post(f"{url}/api/v1/blobs", content=b"abc", headers=headers), 201).json()
    assert stored["hash"] == sha256(b"abc").hex()
    assert httpx.get(f"{url}/api/v1/blobs/{stored['hash']}", headers=headers).content == b"abc"


def test_an_uploader_past_its_blob_quota_gets_413_and_the_disk_does_not_grow(tmp_path: Path) -> None:
    mib = 1024 * 1024
    coordinator = CoordinatorProcess(
        tmp_path / "coordinator", extra_args=["--blob-max-bytes", str(mib), "--blob-quota-bytes", str(3 * mib // 2)]
    )
    coordinator.start()
    try:
        url = coordinator.url
        alice, bob = {"X-Api-Key": coordinator.insert_key()}, {"X-Api-Key": coordinator.insert_key()}
        expect(httpx.post(f"{url}/api/v1/blobs", content=b"a" * mib, headers=alice), 201)
        expect(httpx.post(f"{url}/api/v1/blobs", content=b"a" * mib, headers=alice), 201)  # held once
        blob_dir = coordinator.data_dir / "blobs"
        used = sum(p.stat().st_size for p in blob_dir.rglob("*") if p.is_file())
        refused = httpx.post(f"{url}/api/v1/blobs", content=b"b" * (mib // 2 + 1), headers=alice)
        assert refused.status_code == 413, refused.text
        assert refused.json()["error"]["reason"] == "blob_quota_exceeded"
        assert "blob_quota_bytes" in refused.json()["error"]["message"]
        assert sum(p.stat().st_size for p in blob_dir.rglob("*") if p.is_file()) == used
        expect(httpx.post(f"{url}/api/v1/blobs", content=b"b" * mib, headers=bob), 201)  # bob's quota is his own
    finally:
        coordinator.stop()
        coordinator.dispose()
