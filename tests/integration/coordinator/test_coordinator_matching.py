"""In-process matching (no pool hub): the best-ranked waiting miner gets a job, and the ranking is explained."""

from __future__ import annotations

import concurrent.futures
import time

from coordinator_harness import Stack, fake_model, run_cli, submit


def test_the_cheaper_of_two_waiting_miners_gets_the_job_and_it_is_explained(stack: Stack) -> None:
    model = fake_model(price=1)
    cheap = stack.fake_miner([model])
    dear = stack.fake_miner([{**model, "unit_price": 40}], region="eu")
    winners = []
    with stack.http() as http, concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(3):
            dear_claim = pool.submit(dear.claim, 1.5)
            time.sleep(0.1)  # the dear miner has waited longest: without ranking it would get the job
            cheap_claim = pool.submit(cheap.claim, 1.5)
            time.sleep(0.1)
            job_id = submit(http, {"type": "inference", "model": model["name"], "input": {"prompt": f"p{i}"}})["job_id"]
            for name, fake, claimed in (("cheap", cheap, cheap_claim.result()), ("dear", dear, dear_claim.result())):
                if claimed is not None:
                    assert claimed["job"]["job_id"] == job_id
                    winners.append(name)
                    fake.release(job_id, claimed["lease"]["lease_id"])
            if i < 2:
                http.post(f"/api/v1/jobs/{job_id}/cancel")
        assert winners == ["cheap", "cheap", "cheap"]

        explained = http.get(f"/api/v1/jobs/{job_id}/match").json()
        ranking = explained["ranking"]
        assert ranking["policy"] == "local" and explained["job"]["job_id"] == job_id
        assert [c["miner"] for c in ranking["candidates"]] == [cheap.address, dear.address]
        assert any("1/token" in r for r in ranking["candidates"][0]["reasons"])
        excluded = {e["miner"]: e["reason"] for e in ranking["excluded"]}
        assert all(reason.startswith("does not serve") for reason in excluded.values())  # the echo miners
        other = stack.new_key()
        assert http.get(f"/api/v1/jobs/{job_id}/match", headers={"X-Api-Key": other}).status_code == 404

        cli = run_cli("match", "explain", job_id, "--coordinator", stack.url, "--api-key", stack.api_key, "--json")
        assert cli.returncode == 0, cli.stderr
        assert cheap.address in cli.stdout and '"policy": "local"' in cli.stdout
        http.post(f"/api/v1/jobs/{job_id}/cancel")
