"""Queues as things to manage: delete one (empty, or with force), list them a page at a time."""

from __future__ import annotations

import uuid

from _http import Api, assert_error
from conftest import ServerProcess


def _names(api: Api) -> list[str]:
    out: list[str] = []
    after = ""
    while True:
        r = api.request("GET", "/v1/queues?limit=7" + (f"&after={after}" if after else ""))
        assert r.status == 200, r
        page = r.json()
        out += [q["name"] for q in page["queues"]]
        if page["next"] is None:
            return out
        after = page["next"]


def test_a_typo_queue_can_be_deleted(server: ServerProcess) -> None:
    api = Api(server.url)
    typo = "nosuch-" + uuid.uuid4().hex[:6]
    assert api.request("POST", f"/v1/queues/{typo}/pause").status == 200
    assert typo in _names(api)
    r = api.request("DELETE", f"/v1/queues/{typo}")
    assert r.status == 200 and r.json() == {"deleted": True, "purged": 0}, r
    assert typo not in _names(api)
    assert_error(api.request("DELETE", f"/v1/queues/{typo}"), 404, "not_found")
    # resuming a queue that does not exist stores nothing either
    assert api.request("POST", f"/v1/queues/{typo}/resume").status == 200
    assert typo not in _names(api)


def test_a_queue_with_jobs_needs_force(server: ServerProcess) -> None:
    api = Api(server.url)
    q = "full-" + uuid.uuid4().hex[:6]
    ids = [api.enqueue_ok(q, {"payload": i}) for i in range(3)]
    held = api.lease_one(q)

    def counts() -> dict[str, object]:
        return {k: v for k, v in api.stats(q).items() if k != "oldest_queued_age"}
    before = counts()
    assert_error(api.request("DELETE", f"/v1/queues/{q}"), 409, "invalid_state")
    assert_error(api.request("DELETE", f"/v1/queues/{q}?force=maybe"), 400, "invalid_request")
    assert counts() == before
    r = api.request("DELETE", f"/v1/queues/{q}?force=true")
    assert r.status == 200 and r.json() == {"deleted": True, "purged": 3}, r
    for jid in ids:
        assert api.request("GET", f"/v1/jobs/{jid}").status == 404
    assert api.ack(held["id"], held["lease"]).status == 404  # its holder learns it is gone
    assert q not in _names(api)
    assert api.enqueue_ok(q, {}) and api.stats(q)["enqueued_total"] == 1  # a new queue


def test_queue_list_pages_in_name_order(server: ServerProcess) -> None:
    api = Api(server.url)
    tag = uuid.uuid4().hex[:6]
    made = sorted(f"p{tag}-{i:02d}" for i in range(20))
    for q in made:
        api.enqueue_ok(q, {})
    names = _names(api)
    assert names == sorted(names) and len(names) == len(set(names))
    assert [n for n in names if tag in n] == made
    first = api.request("GET", "/v1/queues").json()
    assert first["next"] is None and len(first["queues"]) == len(names)  # default: 1000
    for bad in ("limit=0", "limit=1001", "limit=x", "after=bad%20name"):
        assert_error(api.request("GET", f"/v1/queues?{bad}"), 400, "invalid_request")
