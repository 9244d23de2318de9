"""The perturbation harness on the small CI manifest: 4 validators under load survive a kill -9, a
SIGSTOP, a p2p disconnect, a restart, a partition and a byzantine validator (tampering relays) with no
fork, no lost committed tx, catch-up and liveness."""

from __future__ import annotations

from pathlib import Path

from support.perturb import run_manifest

MANIFESTS = Path(__file__).parent / "manifests"


def test_ci_manifest_keeps_every_invariant(tmp_path: Path) -> None:
    report = run_manifest(MANIFESTS / "ci.toml", tmp_path)
    print(report.render())
    assert len(report.applied) == 6, report.render()
    assert report.forks == 0, report.render()
    assert report.lost == 0, report.render()
    assert not report.not_caught_up, report.render()
    assert not report.stalls, report.render()
    assert report.committed > 0, report.render()
