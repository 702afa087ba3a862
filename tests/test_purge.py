"""Purge from the outside: it finishes however many jobs in other states come first."""

from __future__ import annotations

from pathlib import Path

import pytest
from _http import running


@pytest.mark.slow
def test_purge_passes_more_than_a_step_of_other_jobs(tmp_path: Path) -> None:
    with running(tmp_path / "data") as (_, api):
        for _ in range(11):  # 110,000 queued jobs, older than the one to purge
            r = api.bulk("q", b'{"payload": 1}\n' * 10_000)
            assert r.status == 201, r
        done = api.enqueue_ok("q", {"payload": "new", "priority": 9})
        job = api.lease_one("q")
        assert job["id"] == done and api.ack(done, job["lease"]).status == 200
        last = api.enqueue_ok("q2", {})
        r = api.request("DELETE", "/v1/queues/q/jobs?state=completed", timeout=60)
        assert r.status == 200 and r.json() == {"deleted": 1}, r
        assert api.request("GET", f"/v1/jobs/{done}").status == 404
        assert api.stats("q")["queued"] == 110_000
        assert api.job(last)["state"] == "queued"
