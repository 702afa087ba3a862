"""tqd.Client / tqd.SyncClient against the real server: every method, typed errors, redirects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from conftest import ServerProcess

from tqd.client import (
    Client,
    ClientError,
    ConnectionFailed,
    InvalidJob,
    InvalidQueue,
    InvalidRequest,
    InvalidState,
    LeaseLost,
    NotFound,
    PayloadTooLarge,
    SyncClient,
)


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[Client]:
    async with Client(server.url, retries=1) as c:
        yield c


async def fake_server(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                      ) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_enqueue_options_and_get(client: Client) -> None:
    r = await client.enqueue("mail", "send_email", {"to": "a@example.com"}, priority="high",
                             max_attempts=3, timeout=7, key="order-1")
    assert (r.state, r.created) == ("queued", True)
    job = await client.get(r.id)
    assert (job.queue, job.type, job.payload, job.priority) == ("mail", "send_email", {"to": "a@example.com"}, 7)
    assert (job.max_attempts, job.timeout, job.key, job.attempt, job.errors) == (3, 7.0, "order-1", 0, [])
    again = await client.enqueue("mail", "send_email", {"to": "other"}, key="order-1")
    assert (again.id, again.created) == (r.id, False)
    delayed = await client.enqueue("mail", "x", None, delay=3600)
    assert delayed.state == "scheduled"
    at = await client.enqueue("mail", "x", None, run_at=time.time() + 3600)
    assert (await client.get(at.id)).state == "scheduled"
    mine = await client.enqueue("mail", "x", 1, id="client-id-1")
    assert mine.id == "client-id-1" and (await client.enqueue("mail", "x", 2, id="client-id-1")).created is False


async def test_enqueue_many_chunks_in_order(client: Client) -> None:
    seen: list[int] = []
    jobs = [{"type": "t", "payload": i} for i in range(25)] + [{"type": "t", "key": "k"}, {"key": "k"}]
    res = await client.enqueue_many("bulk", jobs, chunk_size=10, on_chunk=seen.append)
    assert seen == [10, 20, 27] and len(res) == 27
    assert [j.payload async for j in client.jobs("bulk", limit=25)] == list(range(25))
    assert res[26].id == res[25].id and res[26].created is False


async def test_enqueue_many_refused_line_is_counted_from_the_start(client: Client) -> None:
    jobs = [{"payload": i} for i in range(4)] + [{"priority": 12}]
    with pytest.raises(InvalidJob) as ei:
        await client.enqueue_many("bulk2", jobs, chunk_size=3)
    assert ei.value.line == 5 and ei.value.status == 400
    assert (await client.queue("bulk2")).queued == 3  # the first chunk was stored, the second not


async def test_typed_errors(client: Client) -> None:
    with pytest.raises(NotFound) as nf:
        await client.get("no-such-job")
    assert (nf.value.code, nf.value.status) == ("not_found", 404) and isinstance(nf.value, ClientError)
    with pytest.raises(InvalidJob):
        await client.enqueue("q", "t", None, delay=1, run_at=time.time())
    with pytest.raises(InvalidQueue):
        await client.enqueue("bad name", "t", None)
    with pytest.raises(InvalidRequest):
        await client.lease("q", max=0)
    r = await client.enqueue("q", "t", None)
    with pytest.raises(InvalidState) as st:
        await client.retry(r.id)
    assert st.value.status == 409
    with pytest.raises(LeaseLost):
        await client.ack(r.id, "not-the-lease")
    with pytest.raises(InvalidRequest):
        await client.purge("q", "queued")


async def test_payload_too_large(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    s = server_factory(tmp_path / "small", "--max-payload-bytes", "100").start()
    async with Client(s.url) as c:
        with pytest.raises(PayloadTooLarge) as ei:
            await c.enqueue("q", "t", "x" * 200)
        assert ei.value.status == 413
        with pytest.raises(PayloadTooLarge) as bulk:
            await c.enqueue_many("q", [{"payload": 1}, {"payload": "x" * 200}])
        assert bulk.value.line == 2
    assert s.stop() == 0


async def test_lease_heartbeat_ack_fail(client: Client) -> None:
    a = await client.enqueue("w", "t", {"n": 1}, timeout=30)
    b = await client.enqueue("w", "t", {"n": 2}, max_attempts=1)
    leased = await client.lease(["w"], max=10, worker="w-1", timeout=20)
    assert [j.id for j in leased] == [a.id, b.id]
    ja, jb = leased
    assert ja.lease and ja.attempt == 1 and ja.worker == "w-1" and ja.state == "active"
    exp = await client.heartbeat(a.id, ja.lease, extend=50, progress={"pct": 50})
    assert exp > time.time() + 40
    assert (await client.get(a.id)).progress == {"pct": 50}
    await client.ack(a.id, ja.lease, {"ok": True})
    assert (await client.get(a.id)).result == {"ok": True}
    res = await client.fail(b.id, jb.lease, "boom", "Traceback ...")
    assert res.state == "dead"
    job = await client.get(b.id)
    assert [(e.error, e.details) for e in job.errors] == [("boom", "Traceback ...")]
    c = await client.enqueue("w", "t", None)
    (jc,) = await client.lease("w")
    res = await client.fail(c.id, jc.lease, "later", retry_in=3600)
    assert res.state == "scheduled" and res.run_at is not None and res.run_at > time.time() + 3000
    assert await client.lease("w") == []


async def test_lease_long_poll_wakes_on_enqueue(client: Client) -> None:
    waiting = asyncio.create_task(client.lease("lp", wait=30))
    await asyncio.sleep(0.2)
    r = await client.enqueue("lp", "t", None)
    jobs = await waiting
    assert [j.id for j in jobs] == [r.id]


async def test_ack_many_reports_each_line(client: Client) -> None:
    ids = [(await client.enqueue("am", "t", i)).id for i in range(3)]
    leased = await client.lease("am", max=3)
    items = [(j.id, j.lease, j.payload * 10) for j in leased]
    items[1] = (items[1][0], "stale", None)
    items.append(("missing", "x", None))
    out = await client.ack_many(items)
    assert [(o.id, o.ok, o.error) for o in out] == [
        (ids[0], True, None), (ids[1], False, "lease_lost"), (ids[2], True, None),
        ("missing", False, "not_found")]
    assert (await client.get(ids[2])).result == 20


async def test_cancel_retry_redrive_purge(client: Client) -> None:
    r = await client.enqueue("m", "t", None)
    assert await client.cancel(r.id) == "cancelled"
    with pytest.raises(InvalidState):
        await client.cancel(r.id)
    assert await client.retry(r.id) == "queued"
    (j,) = await client.lease("m")
    assert (await client.fail(r.id, j.lease, "x", retry=False)).state == "dead"
    assert (await client.queue("m")).dead == 1
    assert await client.redrive("m") == 1
    job = await client.get(r.id)
    assert (job.state, job.attempt, len(job.errors)) == ("queued", 0, 1)
    await client.cancel(r.id)
    assert await client.purge("m", "cancelled") == 1
    with pytest.raises(NotFound):
        await client.get(r.id)


async def test_queues_pause_resume(client: Client) -> None:
    await client.enqueue("qa", "t", None, priority=9)
    await client.enqueue("qb", "t", None)
    names = {s.name: s for s in await client.queues()}
    assert names["qa"].queued == 1 and names["qa"].queued_by_priority["9"] == 1
    assert (await client.pause("qa")).paused is True
    assert await client.lease("qa") == []
    st = await client.resume("qa")
    assert st.paused is False and st.queued == 1
    assert len(await client.lease("qa")) == 1
    assert (await client.queue("unknown")).queued == 0


async def test_jobs_iterates_pages(client: Client) -> None:
    ids = [r.id for r in await client.enqueue_many("pg", [{"payload": i} for i in range(25)])]
    assert [j.id async for j in client.jobs("pg", page_size=10)] == ids
    assert [j.id async for j in client.jobs("pg", page_size=10, limit=12)] == ids[:12]
    page = await client.jobs_page("pg", limit=5)
    assert [j.id for j in page.jobs] == ids[:5] and page.next
    await client.cancel(ids[3])
    assert [j.id async for j in client.jobs("pg", state="cancelled")] == [ids[3]]


async def test_307_redirect_is_followed_with_body_and_token(server: ServerProcess) -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def redirect(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, request.headers.get("Authorization")))
        return web.Response(status=307, headers={"Location": server.url + request.path_qs,
                                                 "X-Tqd-Leader": server.url})

    runner, url = await fake_server(redirect)
    try:
        async with Client(url, token="s3cret") as c:
            r = await c.enqueue("rd", "t", {"via": "redirect"})
            assert (await c.get(r.id)).payload == {"via": "redirect"}
            assert [j.id async for j in c.jobs("rd", state="queued", limit=5)] == [r.id]
            (j,) = await c.lease("rd")
            await c.ack(r.id, j.lease, 1)
    finally:
        await runner.cleanup()
    assert ("POST", "/v1/queues/rd/jobs", "Bearer s3cret") in seen
    assert any(m == "GET" and "state=queued" in pq for m, pq, _ in seen)


async def test_503_is_retried_and_urls_fail_over(server: ServerProcess) -> None:
    calls = 0

    async def flaky(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return web.json_response({"error": "not_ready", "message": "no leader"}, status=503)
        return web.Response(status=307, headers={"Location": server.url + request.path_qs})

    runner, url = await fake_server(flaky)
    try:
        async with Client(url, backoff_s=0.01) as c:
            assert (await c.queue("x")).name == "x" and calls == 3
    finally:
        await runner.cleanup()
    # The first URL refuses connections: the next one is used.
    async with Client(["http://127.0.0.1:1", server.url]) as c:
        assert (await c.enqueue("fo", "t", None)).created
    async with Client("http://127.0.0.1:1", retries=1, backoff_s=0.01) as c:
        with pytest.raises(ConnectionFailed):
            await c.get("x")


def test_sync_client(server: ServerProcess) -> None:
    with SyncClient(server.url) as c:
        r = c.enqueue("sync", "t", {"a": 1}, priority=2)
        assert c.get(r.id).priority == 2
        assert [j.id for j in c.jobs("sync", page_size=1)] == [r.id]
        assert c.enqueue_many("sync", [{"payload": 2}])[0].created
        (j, _) = c.lease("sync", max=2)
        assert c.heartbeat(j.id, j.lease, extend=10) > time.time()
        c.ack(j.id, j.lease, "done")
        assert c.get(j.id).result == "done"
        assert [s.name for s in c.queues()] == ["sync"] and c.queue("sync").completed == 1
        assert c.pause("sync").paused and not c.resume("sync").paused
        with pytest.raises(NotFound):
            c.cancel("nope")


async def test_url_without_scheme_means_http_and_bad_urls_fail_at_once(server: ServerProcess) -> None:
    async with Client(server.url.removeprefix("http://")) as c:  # "127.0.0.1:PORT"
        assert c.urls == [server.url]
        assert (await c.enqueue("bare", "t", None)).created
    for bad in ("ftp://127.0.0.1:7070", "http://", "127.0.0.1:port"):
        with pytest.raises(ValueError, match="bad server URL"):
            Client(bad)


async def test_connect_retries_zero_tries_each_url_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A server that is down is reported after one attempt per URL, with no backoff rounds."""
    tried: list[str] = []
    real_send = Client._send

    async def counting_send(self: Client, method: str, url: str, *a: object) -> tuple[int, bytes]:
        tried.append(url)
        return await real_send(self, method, url, *a)

    monkeypatch.setattr(Client, "_send", counting_send)
    down = ["http://127.0.0.1:1", "http://127.0.0.1:2"]  # nothing listens on either
    async with Client(down, connect_retries=0) as c:
        with pytest.raises(ConnectionFailed, match="cannot connect"):
            await c.get("x")
    assert tried == ["http://127.0.0.1:1/v1/jobs/x", "http://127.0.0.1:2/v1/jobs/x"]
    tried.clear()
    async with Client(down, retries=4, backoff_s=0.001) as c:  # the library default keeps retrying
        with pytest.raises(ConnectionFailed):
            await c.get("x")
    assert len(tried) > 2
