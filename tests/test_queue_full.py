"""--queue-max-depth: backpressure instead of an unbounded backlog. An enqueue that would
take a queue's waiting jobs (queued + scheduled) past the limit is refused whole with
429 queue_full and changes nothing; room made by leasing lets enqueues in again."""

from __future__ import annotations

from pathlib import Path

import pytest
from _http import NDJSON, Api
from conftest import ServerProcess

import tqd


def test_a_full_queue_refuses_enqueues_and_takes_them_again_with_room(
        server_factory: type[ServerProcess], tmp_path: Path) -> None:
    srv = server_factory(tmp_path / "d", "--queue-max-depth", "5").start()
    api = Api(srv.url)
    for _ in range(4):
        api.enqueue_ok("q", {})
    api.enqueue_ok("q", {"delay": 3600})  # scheduled jobs wait too: 5 now
    r = api.enqueue("q", {})
    assert r.status == 429, r
    body = r.json()
    assert body["error"] == "queue_full" and body["depth"] == 5 and body["max_depth"] == 5
    assert "queue-max-depth" in body["message"]
    assert api.request("GET", "/v1/queues/q").json()["queued"] == 4  # nothing was added
    api.enqueue_ok("other", {})  # other queues are not held back
    # a lease makes room (active jobs are no longer waiting)
    (job,) = api.request("POST", "/v1/lease", {"queues": ["q"]}).lines()
    api.enqueue_ok("q", {})
    # a bulk request is all or nothing
    api.request("POST", f"/v1/jobs/{job['id']}/ack", {"lease": job["lease"]})
    lines = b'{"payload": 1}\n{"payload": 2}\n'
    r = api.request("POST", "/v1/queues/q/jobs", raw=lines, ctype=NDJSON)
    assert r.status == 429 and r.json()["error"] == "queue_full", r
    assert api.request("GET", "/v1/queues/q").json()["queued"] == 4


def test_the_client_raises_queue_full(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    srv = server_factory(tmp_path / "d", "--queue-max-depth", "1").start()
    with tqd.SyncClient(srv.url, retries=0) as c:
        c.enqueue("q", "t", 1)
        with pytest.raises(tqd.QueueFull) as e:
            c.enqueue("q", "t", 2)
        assert e.value.status == 429 and isinstance(e.value, tqd.RateLimited)


def test_without_a_limit_queues_grow(server: ServerProcess) -> None:
    api = Api(server.url)
    body = b"\n".join(b'{"payload": 1}' for _ in range(200))
    assert api.request("POST", "/v1/queues/q/jobs", raw=body, ctype=NDJSON).status == 201
