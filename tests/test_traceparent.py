"""W3C trace context: a `traceparent` sent with an enqueue is kept with the job (every job
of a bulk request), shown in its record and its lease, and handed to the worker's handler;
a malformed one is ignored, as the Trace Context spec asks of a receiver."""

from __future__ import annotations

from typing import Any

import pytest
from _http import NDJSON, Api
from conftest import ServerProcess

from tqd import Client, Worker
from tqd.queue.validate import traceparent

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_traceparent_goes_with_the_job(server: ServerProcess) -> None:
    api = Api(server.url)
    r = api.enqueue("q", {"payload": 1}, headers={"traceparent": TP})
    jid = r.json()["id"]
    assert api.request("GET", f"/v1/jobs/{jid}").json()["traceparent"] == TP
    lines = b'{"payload": 1}\n{"payload": 2}\n'
    ids = [x["id"] for x in api.request("POST", "/v1/queues/b/jobs", raw=lines, ctype=NDJSON,
                                        headers={"traceparent": TP}).lines()]
    assert [api.request("GET", f"/v1/jobs/{i}").json()["traceparent"] for i in ids] == [TP, TP]
    leased = api.request("POST", "/v1/lease", {"queues": ["q"]}).lines()
    assert leased[0]["traceparent"] == TP
    plain = api.enqueue_ok("q", {})
    assert api.request("GET", f"/v1/jobs/{plain}").json()["traceparent"] is None
    bad = api.enqueue("q", {}, headers={"traceparent": "garbage"}).json()["id"]
    assert api.request("GET", f"/v1/jobs/{bad}").json()["traceparent"] is None


@pytest.mark.parametrize("header, kept", [
    (TP, TP),
    (TP.upper(), None),  # lower-case hex only
    ("ff" + TP[2:], None),  # version ff is invalid
    ("00-" + "0" * 32 + TP[35:], None),  # all-zero trace id
    (TP[:36] + "0" * 16 + TP[52:], None),  # all-zero parent id
    (TP + "-x", None),  # version 00 has exactly four fields
    ("01" + TP[2:] + "-future", "01" + TP[2:]),  # a newer version: its known prefix
    (" " + TP + " ", TP),
    ("", None),
])
def test_traceparent_parsing(header: str, kept: str | None) -> None:
    assert traceparent(header) == kept


async def test_the_worker_hands_the_trace_to_its_handler(server: ServerProcess) -> None:
    import asyncio

    seen: list[Any] = []
    w = Worker(server.url, queues=["t"], concurrency=1, poll_wait_s=1.0)

    @w.task("traced")
    async def traced(job: Any) -> None:
        seen.append(job.traceparent)

    run = asyncio.create_task(w.run())
    try:
        async with Client(server.url) as c:
            job = await c.enqueue("t", "traced", {}, traceparent=TP, wait=30)
            assert job.state == "completed" and job.traceparent == TP
        assert seen == [TP]
    finally:
        w.stop()
        await asyncio.wait_for(run, 30)
