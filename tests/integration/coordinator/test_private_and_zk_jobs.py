"""Private jobs and zk receipt proofs through a real coordinator and real echo miners.

Private: the client asks for a quote, seals the input to the quoted miner, and gets the result
sealed to its one-off key; the coordinator's database and its (debug-level) log never contain the
prompt or the answer, and only the quoted miner could open the input.
ZK: a job with ``constraints.zk_proof_required`` comes back with a proof the chain's check accepts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from coordinator_harness import CoordinatorProcess, MinerProcess, Stack, echo_job, run_cli, submit, wait_done

from aitbc.protocol.crypto import KeyPair
from aitbc.protocol.job import JobInput
from aitbc.protocol.receipt import Receipt
from aitbc.protocol.sealed import SealedBoxError, new_reply_key, open_job_input, open_job_output, seal_job_input
from aitbc.protocol.zk import ZkReceiptProof, compute_proof_escrow, get_receipt_proof_problem


@pytest.fixture(scope="module")
def debug_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A coordinator logging at debug level (the privacy check reads its log) with two echo miners."""
    base = tmp_path_factory.mktemp("private")
    coordinator = CoordinatorProcess(base / "coordinator", lease_seconds=5.0, log_level="debug")
    coordinator.start()
    miners = [MinerProcess(coordinator, base / f"miner{i}") for i in range(2)]
    for miner in miners:
        miner.start()
    api_key = coordinator.create_key_cli("--name", "private")
    for miner in miners:
        miner.wait_registered()
    stack = Stack(coordinator, api_key, miners, base)
    yield stack
    stack.stop()


def _stored_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.rglob("*")) if p.is_file())


def test_private_job_end_to_end_leaves_no_plaintext_at_the_coordinator(debug_stack: Stack) -> None:
    secret_prompt = f"private-{uuid.uuid4().hex} the patient's diagnosis is confidential"
    job_input = JobInput(type="inference", model="echo", prompt=secret_prompt)
    with debug_stack.http() as http:
        quote = http.post("/api/v1/jobs/quote", json={"type": "inference", "model": "echo"})
        assert quote.status_code == 200, quote.text
        miner = quote.json()["miner"]
        assert miner in {m.address for m in debug_stack.miners}
        ciphertext, input_hash = seal_job_input(job_input, miner)
        reply_secret, reply_to = new_reply_key()
        job = submit(
            http,
            {
                "type": "inference",
                "model": "echo",
                "sealed": {"miner": miner, "ciphertext": ciphertext, "input_hash": input_hash, "reply_to": reply_to},
            },
        )
        done = wait_done(http, job["job_id"])
        assert done["state"] == "completed", (done, debug_stack.diagnostics())
        assert done["miner"] == miner  # only the quoted miner may claim it
        assert done["input_hash"] == input_hash
        result = http.get(f"/api/v1/jobs/{job['job_id']}/result").json()
        receipt = msgspec.convert(http.get(f"/api/v1/jobs/{job['job_id']}/receipt").json()["receipt"], Receipt)
    answer = open_job_output(reply_secret, result["output"]["text"], receipt.output_hash)
    assert answer.text == secret_prompt  # the echo backend answers with the prompt
    assert receipt.input_hash == input_hash

    # Nothing the coordinator stored or logged holds the prompt or the answer (the echo answer is the prompt)
    log = debug_stack.coordinator.log_path.read_bytes()
    stored = _stored_bytes(debug_stack.coordinator.data_dir)
    assert ciphertext[:64].encode() in stored  # the scan does read what the coordinator keeps
    assert b'"level":"debug"' in log or b"registered" in log  # and a log that was written
    stored += log
    for needle in (secret_prompt, secret_prompt.split(" ", 1)[0], "diagnosis is confidential"):
        assert needle.encode() not in stored
    # The ciphertext the coordinator holds opens only for the quoted miner
    other = next(m for m in debug_stack.miners if m.address != miner)
    with pytest.raises(SealedBoxError):
        open_job_input(other.key, ciphertext, input_hash)
    with pytest.raises(SealedBoxError):
        open_job_input(KeyPair.generate(), ciphertext, input_hash)


def test_sealed_job_with_plaintext_input_is_refused(debug_stack: Stack) -> None:
    miner = debug_stack.miners[0].address
    ciphertext, input_hash = seal_job_input(JobInput(type="inference", model="echo", prompt="x"), miner)
    _, reply_to = new_reply_key()
    body = {
        **echo_job("leaked plaintext"),
        "sealed": {"miner": miner, "ciphertext": ciphertext, "input_hash": input_hash, "reply_to": reply_to},
    }
    with debug_stack.http() as http:
        response = http.post("/api/v1/jobs", json=body)
    assert response.status_code == 422, response.text


def test_zk_proof_required_job_gets_a_proof_the_chain_accepts(debug_stack: Stack) -> None:
    with debug_stack.http() as http:
        job = submit(http, echo_job("prove me", max_price=10_000, constraints={"zk_proof_required": True}))
        done = wait_done(http, job["job_id"], timeout=90)
        assert done["state"] == "completed", (done, debug_stack.diagnostics())
    rows = debug_stack.coordinator.db_receipts([job["job_id"]])
    assert rows and rows[0]["zk_proof"] is not None
    receipt = msgspec.convert(rows[0]["receipt"], Receipt)
    proof = msgspec.convert(rows[0]["zk_proof"], ZkReceiptProof)
    escrow = compute_proof_escrow(None, 10_000, receipt.total_price)
    assert get_receipt_proof_problem(proof, receipt, escrow) is None
    assert get_receipt_proof_problem(proof, receipt, escrow + 1) is not None


def test_cli_private_zk_job(debug_stack: Stack) -> None:
    """`aitbc job submit --private --zk --wait`: the answer is decrypted in the CLI, never stored in the clear."""
    secret = f"cli-{uuid.uuid4().hex}"
    done = run_cli(
        "job", "submit", "--prompt", f"{secret} tell nobody", "--model", "echo", "--private", "--zk", "--wait",
        "--coordinator", debug_stack.url, "--api-key", debug_stack.api_key,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sealed to miner" in done.stdout
    assert f"{secret} tell nobody" in done.stdout  # decrypted by the CLI with its one-off key
    assert secret.encode() not in _stored_bytes(debug_stack.coordinator.data_dir)
    rows = [r for r in debug_stack.coordinator.db_receipts() if r["zk_proof"] is not None]
    assert rows
