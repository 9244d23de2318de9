"""EXPERIMENTAL: the wallet's zkml_proof check on the committed sample proof (EZKL verify, no proving)."""

from __future__ import annotations

import json
from typing import Any

import pytest

pytest.importorskip("ezkl", reason="the zkml extra (ezkl, onnx) is not installed")

from aitbc.protocol.receipt import Receipt, ReceiptUnits
from aitbc.protocol.zkml import compute_zk_inference_output_hash
from aitbc.protocol.zkml_input import ZKML_MODEL
from aitbc.wallet.receipts import ReceiptReport, _check_zkml
from aitbc.zk.zkml import compute_zkml_model_digest, default_zkml_paths

pytestmark = pytest.mark.slow

PATHS = default_zkml_paths()


def _receipt(proofs: list[dict[str, Any]], **changes: Any) -> Receipt:
    fields: dict[str, Any] = {
        "chain_id": "test",
        "job_id": "job1",
        "miner": "ait1" + "q" * 38,
        "client": "c",
        "coordinator": "ait1" + "q" * 38,
        "model": ZKML_MODEL,
        "model_digest": compute_zkml_model_digest(PATHS),
        "input_hash": "00" * 32,
        "output_hash": compute_zk_inference_output_hash(proofs),
        "units": ReceiptUnits(prompt_tokens=1, completion_tokens=0, compute_ms=10),
        "unit_price": 1,
        "total_price": 1,
        "started_at_ms": 1,
        "finished_at_ms": 2,
    }
    return Receipt(**{**fields, **changes})


def _outcome(receipt: Receipt, proofs: list[dict[str, Any]] | None, texts: list[str] | None = None) -> tuple[str, str]:
    report = ReceiptReport(job_id="job1")
    _check_zkml(report, receipt, proofs, texts)
    return report.checks[0].outcome, report.checks[0].detail


def test_genuine_sample_proof_passes_and_says_what_it_shows() -> None:
    proofs = [json.loads(PATHS.sample_proof.read_text())]
    outcome, detail = _outcome(_receipt(proofs), proofs, ["0.1,-0.2,0.3,0.4"])
    assert outcome == "pass", detail
    assert "EXPERIMENTAL" in detail and "development SRS" in detail and "job's input vectors" in detail


def test_mismatches_fail() -> None:
    proofs = [json.loads(PATHS.sample_proof.read_text())]
    assert _outcome(_receipt(proofs, output_hash="11" * 32), proofs)[0] == "fail"
    assert _outcome(_receipt(proofs, model_digest="sha256:" + "22" * 32), proofs)[0] == "fail"
    assert _outcome(_receipt(proofs), proofs, ["0.1,-0.2,0.3,0.5"])[0] == "fail"
    tampered = json.loads(json.dumps(proofs[0]))
    tampered["instances"][0][-1] = "01" + "00" * 31  # a changed output, hashed into the receipt: EZKL refuses it
    outcome, detail = _outcome(_receipt([tampered]), [tampered])
    assert outcome == "fail" and "do not verify" in detail


def test_no_proofs() -> None:
    proofs = [json.loads(PATHS.sample_proof.read_text())]
    assert _outcome(_receipt(proofs), None)[0] == "skip"
    report = ReceiptReport(job_id="job1")
    _check_zkml(report, _receipt(proofs, model="echo"), None, None)
    assert report.checks == []  # not a zk-inference receipt: no such check
