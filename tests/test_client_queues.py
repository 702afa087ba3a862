"""Deleting queues and listing them page by page: Client, SyncClient and `tqd queue delete`.

Server side: `DELETE /v1/queues/{q}[?force=true]` -> `{"deleted": true, "purged": n}` (409
invalid_state while the queue holds jobs, unless force); `GET /v1/queues?limit=N&after=CURSOR`
-> `{"queues": [...], "next": cursor or null}`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from conftest import ServerProcess
from test_cli import ok, tqd

from tqd.client import Client, InvalidState, SyncClient


@pytest.fixture
async def client(server: ServerProcess) -> AsyncIterator[Client]:
    async with Client(server.url, retries=1) as c:
        yield c


async def test_delete_queue(client: Client) -> None:
    await client.pause("empty")  # a queue with a setting and no job
    assert "empty" in {s.name for s in await client.queues()}
    assert await client.delete_queue("empty") == 0
    assert "empty" not in {s.name for s in await client.queues()}
    st = await client.queue("empty")  # unknown queues read as all zero, not paused
    assert (st.paused, st.queued, st.enqueued_total) == (False, 0, 0)

    ids = [r.id for r in await client.enqueue_many("full", [{"payload": i} for i in range(3)])]
    (leased,) = await client.lease("full")
    await client.cancel(ids[2])
    with pytest.raises(InvalidState) as ei:  # jobs in it: refused, nothing deleted
        await client.delete_queue("full")
    assert ei.value.status == 409 and (await client.queue("full")).queued == 1
    assert await client.delete_queue("full", force=True) == 3  # queued, active and cancelled
    assert "full" not in {s.name for s in await client.queues()}
    assert (await client.queue("full")).enqueued_total == 0


async def test_queues_follow_the_cursor(client: Client) -> None:
    names = [f"q{i:02}" for i in range(7)]
    for n in names:
        await client.enqueue(n, "t", None)
    page = await client.queues_page(limit=3)
    assert [s.name for s in page.queues] == names[:3] and page.next
    page2 = await client.queues_page(limit=3, after=page.next)
    assert [s.name for s in page2.queues] == names[3:6]
    assert [s.name for s in await client.queues(page_size=2)] == names
    assert [s.name for s in await client.queues()] == names


def test_sync_client_delete_and_pages(server: ServerProcess) -> None:
    with SyncClient(server.url) as c:
        c.enqueue("s1", "t", None)
        c.enqueue("s2", "t", None)
        assert [s.name for s in c.queues(page_size=1)] == ["s1", "s2"]
        assert [s.name for s in c.queues_page(limit=1).queues] == ["s1"]
        with pytest.raises(InvalidState):
            c.delete_queue("s1")
        assert c.delete_queue("s1", force=True) == 1
        assert [s.name for s in c.queues()] == ["s2"]


def test_cli_queue_delete(server: ServerProcess) -> None:
    ok(server, "enqueue", "doomed", "1")
    r = tqd(server, "queue", "delete", "doomed")
    assert r.returncode == 1 and r.stderr.startswith("tqd: invalid_state"), r.stderr
    assert "doomed: deleted with 1 job(s)" in ok(server, "queue", "delete", "doomed", "--force")
    ok(server, "pause", "typo")
    assert "typo: deleted" in ok(server, "queue", "delete", "typo")
    assert "doomed" not in ok(server, "queues") and "typo" not in ok(server, "queues")
