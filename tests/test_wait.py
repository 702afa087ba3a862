"""GET /v1/jobs/{id}?wait=S: a long-poll until the job finishes, so that a caller can use
tqd as an RPC; Client.wait and enqueue(..., wait=S). Against the real server."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from _http import Api
from conftest import ServerProcess

from tqd import Client, Worker


def _in_background(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    return t, out


def test_a_waiting_read_returns_when_the_job_finishes(server: ServerProcess) -> None:
    api = Api(server.url)
    jid = api.enqueue_ok("q", {"payload": 1})
    # the wait (60 s) is far longer than the client's patience (15 s): only the job's
    # finish can end it in time
    t, out = _in_background(lambda: api.request("GET", f"/v1/jobs/{jid}?wait=60", timeout=15))
    (job,) = api.request("POST", "/v1/lease", {"queues": ["q"]}).lines()
    assert api.request("POST", f"/v1/jobs/{jid}/ack", {"lease": job["lease"], "result": {"n": 2}}).status == 200
    t.join()
    r = out[0]
    assert r.status == 200, r
    assert r.json()["state"] == "completed" and r.json()["result"] == {"n": 2}


@pytest.mark.parametrize("end", ["dead", "cancelled"])
def test_a_wait_also_ends_when_the_job_dies_or_is_cancelled(server: ServerProcess, end: str) -> None:
    api = Api(server.url)
    jid = api.enqueue_ok("q", {"payload": 1})
    t, out = _in_background(lambda: api.request("GET", f"/v1/jobs/{jid}?wait=60", timeout=15))
    if end == "dead":
        (job,) = api.request("POST", "/v1/lease", {"queues": ["q"]}).lines()
        api.request("POST", f"/v1/jobs/{jid}/fail", {"lease": job["lease"], "error": "x", "retry": False})
    else:
        api.request("DELETE", f"/v1/jobs/{jid}")
    t.join()
    assert out[0].status == 200 and out[0].json()["state"] == end, out[0]


def test_a_wait_times_out_with_the_job_as_it_is(server: ServerProcess) -> None:
    api = Api(server.url)
    jid = api.enqueue_ok("q", {})
    r = api.request("GET", f"/v1/jobs/{jid}?wait=0.3")
    assert r.status == 200 and r.json()["state"] == "queued", r
    done = api.enqueue_ok("q2", {})
    (job,) = api.request("POST", "/v1/lease", {"queues": ["q2"]}).lines()
    api.request("POST", f"/v1/jobs/{done}/ack", {"lease": job["lease"]})
    assert api.request("GET", f"/v1/jobs/{done}?wait=30", timeout=5).json()["state"] == "completed"


@pytest.mark.parametrize("wait", ["abc", "-1", "61", "nan", ""])
def test_a_bad_wait_is_400(server: ServerProcess, wait: str) -> None:
    api = Api(server.url)
    jid = api.enqueue_ok("q", {})
    r = api.request("GET", f"/v1/jobs/{jid}?wait={wait}")
    assert r.status == 400 and r.json()["error"] == "invalid_request", r
    assert api.request("GET", "/v1/jobs/nope?wait=1").status == 404


async def test_the_client_calls_a_job_and_gets_its_result(server: ServerProcess) -> None:
    import asyncio

    w = Worker(server.url, queues=["rpc"], concurrency=2, poll_wait_s=1.0)

    @w.task("add")
    async def add(job: Any) -> int:
        return int(job.payload["a"]) + int(job.payload["b"])

    run = asyncio.create_task(w.run())
    try:
        async with Client(server.url) as c:
            job = await c.enqueue("rpc", "add", {"a": 2, "b": 3}, wait=30)
            assert job.state == "completed" and job.result == 5
            res = await c.enqueue("rpc", "add", {"a": 1, "b": 1})
            assert (await c.wait(res.id, 30)).result == 2
    finally:
        w.stop()
        await asyncio.wait_for(run, 30)


def test_a_waiting_read_on_a_follower_ends_once_the_finish_is_replicated(tmp_path: Path) -> None:
    from _cluster import Cluster

    with Cluster(tmp_path, n=2, sync=1).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        api = Api(leader.url)
        jid = api.enqueue_ok("q", {})
        t, out = _in_background(
            lambda: Api(follower.url).request("GET", f"/v1/jobs/{jid}?wait=60", timeout=15))
        (job,) = api.request("POST", "/v1/lease", {"queues": ["q"]}).lines()
        api.request("POST", f"/v1/jobs/{jid}/ack", {"lease": job["lease"]})
        t.join()
        assert out[0].status == 200 and out[0].json()["state"] == "completed", out[0]
