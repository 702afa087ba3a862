"""The HTTP API of PROTOCOL.md against the real `tqd serve` on port 0.

Most tests share one server per module (each test uses its own queue names);
tests that need special settings (retention, key window, a tiny map, restart)
start their own. Time-based behaviour uses short settings, not long sleeps.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from _http import NDJSON, Api, assert_error, running
from conftest import ServerProcess

BACKOFF_BASE_S = 0.05
JOB_FIELDS = {
    "id", "queue", "type", "payload", "priority", "state", "attempt", "max_attempts", "timeout",
    "key", "errors", "result", "progress", "created_at", "run_at", "started_at", "finished_at",
    "lease_expires_at", "worker", "traceparent",
}
STATS_FIELDS = {
    "name", "paused", "queued", "queued_by_priority", "scheduled", "active", "dead", "completed",
    "cancelled", "oldest_queued_age", "enqueued_total", "completed_total", "failed_total",
}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    d = tmp_path_factory.mktemp("api") / "data"
    with running(d, "--backoff-base-s", str(BACKOFF_BASE_S)) as (_, a):
        yield a


@pytest.fixture
def q() -> str:
    return "q-" + uuid.uuid4().hex[:12]


def _ids(jobs: list[Any]) -> list[str]:
    return [j["id"] for j in jobs]


# ---- operations -------------------------------------------------------------------


def test_healthz_and_readyz(api: Api) -> None:
    r = api.request("GET", "/healthz")
    assert r.status == 200
    r = api.request("GET", "/readyz")
    assert r.status == 200


# ---- enqueue and the job record ------------------------------------------------------


def test_enqueue_and_job_record_defaults(api: Api, q: str) -> None:
    before = time.time()
    r = api.enqueue(q, {"type": "send_email", "payload": {"to": "a@b", "n": [1, 2.5, None]}})
    assert r.status == 201 and r.ctype == "application/json"
    body = r.json()
    assert set(body) == {"id", "state", "created"}
    assert body["state"] == "queued" and body["created"] is True
    j = api.job(body["id"])
    assert set(j) == JOB_FIELDS
    assert j["id"] == body["id"] and j["queue"] == q and j["type"] == "send_email"
    assert j["payload"] == {"to": "a@b", "n": [1, 2.5, None]}
    assert (j["priority"], j["state"], j["attempt"]) == (5, "queued", 0)
    assert j["max_attempts"] == 10 and j["timeout"] == 60
    assert j["key"] is None and j["errors"] == [] and j["result"] is None and j["progress"] is None
    assert before - 1 <= j["created_at"] <= time.time() + 1
    for f in ("started_at", "finished_at", "lease_expires_at", "worker"):
        assert j[f] is None, f


def test_enqueue_every_field(api: Api, q: str) -> None:
    r = api.enqueue(q, {"type": None, "payload": "text", "priority": 2, "max_attempts": 3,
                        "timeout": 12.5, "key": "order-42", "id": f"{q}-mine"})
    assert r.status == 201 and r.json() == {"id": f"{q}-mine", "state": "queued", "created": True}
    j = api.job(f"{q}-mine")
    assert (j["type"], j["payload"], j["priority"], j["max_attempts"], j["timeout"], j["key"]) == (
        None, "text", 2, 3, 12.5, "order-42")


def test_empty_body_is_a_job_with_defaults(api: Api, q: str) -> None:
    r = api.request("POST", f"/v1/queues/{q}/jobs", raw=b"")
    assert r.status == 201, r
    assert api.job(r.json()["id"])["payload"] is None


@pytest.mark.parametrize("prio,expect", [("high", 7), ("normal", 5), ("low", 3), (0, 0), (9, 9)])
def test_priority_names_and_bounds(api: Api, q: str, prio: Any, expect: int) -> None:
    jid = api.enqueue_ok(q, {"priority": prio})
    assert api.job(jid)["priority"] == expect
    assert api.stats(q)["queued_by_priority"][str(expect)] == 1


def test_payload_any_json_round_trips(api: Api, q: str) -> None:
    for payload in [0, -1.5, "ü€😀", [], {}, [{"a": {"b": [True, False, None]}}], "x" * 10_000]:
        jid = api.enqueue_ok(q, {"payload": payload})
        assert api.job(jid)["payload"] == payload


def test_ids_unique_across_queues_and_sortable_by_enqueue_order(api: Api, q: str) -> None:
    ids = [api.enqueue_ok(f"{q}-{i % 3}") for i in range(30)]
    assert len(set(ids)) == 30
    assert ids == sorted(ids)


def test_get_unknown_job_is_404(api: Api) -> None:
    assert_error(api.request("GET", "/v1/jobs/no-such-job"), 404, "not_found")


def test_delay_schedules_then_queues_on_time(api: Api, q: str) -> None:
    r = api.enqueue(q, {"delay": 0.5})
    assert r.status == 201 and r.json()["state"] == "scheduled"
    jid = r.json()["id"]
    j = api.job(jid)
    assert j["state"] == "scheduled" and j["run_at"] == pytest.approx(j["created_at"] + 0.5, abs=0.01)
    assert api.stats(q)["scheduled"] == 1
    assert api.lease_jobs([q]) == []  # not ready yet
    j = api.wait_for(jid, lambda j: j["state"] == "queued")
    assert j["attempt"] == 0
    st = api.stats(q)
    assert (st["scheduled"], st["queued"]) == (0, 1)
    assert api.lease_one(q)["id"] == jid


def test_run_at_future_and_past(api: Api, q: str) -> None:
    now = time.time()
    r = api.enqueue(q, {"run_at": now + 3600})
    assert r.json()["state"] == "scheduled"
    assert api.job(r.json()["id"])["run_at"] == pytest.approx(now + 3600)
    r = api.enqueue(q, {"run_at": now - 10})
    assert r.json()["state"] == "queued"
    assert api.lease_one(q)["id"] == r.json()["id"]


# ---- idempotency ----------------------------------------------------------------------


def test_key_returns_existing_job(api: Api, q: str) -> None:
    r1 = api.enqueue(q, {"key": "k1", "payload": 1})
    assert r1.status == 201
    r2 = api.enqueue(q, {"key": "k1", "payload": 2})
    assert r2.status == 200
    assert r2.json() == {"id": r1.json()["id"], "state": "queued", "created": False}
    assert api.job(r1.json()["id"])["payload"] == 1
    st = api.stats(q)
    assert st["queued"] == 1 and st["enqueued_total"] == 1
    # the key is per queue
    r3 = api.enqueue(f"{q}-other", {"key": "k1"})
    assert r3.status == 201 and r3.json()["id"] != r1.json()["id"]


def test_key_of_active_and_dead_and_finished_jobs(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"key": "k", "max_attempts": 1})
    job = api.lease_one(q)
    r = api.enqueue(q, {"key": "k"})
    assert (r.status, r.json()) == (200, {"id": jid, "state": "active", "created": False})
    assert api.fail(jid, job["lease"], error="x").json() == {"state": "dead"}
    r = api.enqueue(q, {"key": "k"})  # dead counts as not finished
    assert (r.status, r.json()) == (200, {"id": jid, "state": "dead", "created": False})
    assert api.request("DELETE", f"/v1/jobs/{jid}").status == 200
    r = api.enqueue(q, {"key": "k"})  # cancelled within the key window
    assert (r.status, r.json()) == (200, {"id": jid, "state": "cancelled", "created": False})


def test_client_supplied_id(api: Api, q: str) -> None:
    mine = f"{q}:client.id-1"
    r = api.enqueue(q, {"id": mine, "payload": "a"})
    assert (r.status, r.json()) == (201, {"id": mine, "state": "queued", "created": True})
    # the same id again, even in another queue, makes nothing new
    r = api.enqueue(f"{q}-2", {"id": mine, "payload": "b"})
    assert (r.status, r.json()) == (200, {"id": mine, "state": "queued", "created": False})
    j = api.job(mine)
    assert j["queue"] == q and j["payload"] == "a"
    assert api.stats(f"{q}-2")["enqueued_total"] == 0


def test_key_window_expires_for_finished_jobs(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--key-window-s", "0.5") as (_, a):
        q = "kw"
        jid = a.enqueue_ok(q, {"key": "once"})
        job = a.lease_one(q)
        assert a.ack(job["id"], job["lease"]).status == 200
        r = a.enqueue(q, {"key": "once"})  # finished, but inside the window
        assert (r.status, r.json()) == (200, {"id": jid, "state": "completed", "created": False})
        time.sleep(0.6)
        r = a.enqueue(q, {"key": "once"})
        assert r.status == 201 and r.json()["created"] is True and r.json()["id"] != jid
        assert a.job(jid)["state"] == "completed"  # the old one is untouched
        # a not-finished job's key never expires
        jid2 = a.enqueue_ok(q, {"key": "live"})
        time.sleep(0.6)
        r = a.enqueue(q, {"key": "live"})
        assert (r.status, r.json()["id"], r.json()["created"]) == (200, jid2, False)


# ---- bulk enqueue ------------------------------------------------------------------------


def test_bulk_enqueue_in_order(api: Api, q: str) -> None:
    lines = [{"payload": i, "priority": i % 10} for i in range(5)] + [{"delay": 60}]
    r = api.bulk(q, lines)
    assert r.status == 201 and r.ctype == NDJSON
    out = r.lines()
    assert len(out) == 6
    for i, o in enumerate(out[:5]):
        assert o["state"] == "queued" and o["created"] is True
        assert api.job(o["id"])["payload"] == i
    assert out[5]["state"] == "scheduled"
    assert _ids(out) == sorted(_ids(out))
    st = api.stats(q)
    assert (st["queued"], st["scheduled"], st["enqueued_total"]) == (5, 1, 6)


def test_bulk_without_trailing_newline(api: Api, q: str) -> None:
    r = api.bulk(q, b'{"payload": 1}\n{"payload": 2}')
    assert r.status == 201 and len(r.lines()) == 2


def test_bulk_idempotency(api: Api, q: str) -> None:
    existing = api.enqueue_ok(q, {"key": "old"})
    r = api.bulk(q, [{"key": "a", "payload": 1}, {"key": "old"}, {"key": "a", "payload": 2},
                     {"id": f"{q}-x"}, {"id": f"{q}-x"}, {}])
    assert r.status == 201
    out = r.lines()
    assert [o["created"] for o in out] == [True, False, False, True, False, True]
    assert out[1]["id"] == existing
    assert out[2]["id"] == out[0]["id"]
    assert out[3]["id"] == out[4]["id"] == f"{q}-x"
    assert api.job(out[0]["id"])["payload"] == 1
    assert api.stats(q)["enqueued_total"] == 4


@pytest.mark.parametrize("bad_line", [
    b'{"priority": 10}', b'{"priority": "urgent"}', b'not json', b'[1, 2]', b'{"delay": 1, "run_at": 5}',
    b'{"max_attempts": 0}', b'{"timeout": -1}', b'"a string"', b'{"payload": 1',
])
def test_bulk_is_atomic(api: Api, q: str, bad_line: bytes) -> None:
    body = b'{"id": "%s-first", "key": "k1"}\n{"payload": 2}\n\n' % q.encode() + bad_line + b'\n{"payload": 4}\n'
    r = api.bulk(q, body)
    assert_error(r, 400, "invalid_job", line=4)
    assert api.request("GET", f"/v1/jobs/{q}-first").status == 404
    st = api.stats(q)
    assert st["enqueued_total"] == 0 and st["queued"] == 0
    assert api.jobs(q)["jobs"] == []
    # and the key was not taken
    assert api.enqueue(q, {"key": "k1"}).status == 201


# ---- lease: ordering ----------------------------------------------------------------------


def test_lease_priority_then_fifo(api: Api, q: str) -> None:
    order = [("p1", 1), ("p5a", 5), ("p9", 9), ("p5b", "normal"), ("p7", "high"), ("p5c", 5), ("p0", 0)]
    ids = {name: api.enqueue_ok(q, {"payload": name, "priority": p}) for name, p in order}
    got = api.lease_jobs([q], max=100)
    assert [j["payload"] for j in got] == ["p9", "p7", "p5a", "p5b", "p5c", "p1", "p0"]
    assert {j["id"] for j in got} == set(ids.values())


def test_lease_strict_queue_order(api: Api, q: str) -> None:
    a, b, c = f"{q}-a", f"{q}-b", f"{q}-c"
    b1 = api.enqueue_ok(b, {"priority": 9})
    a1 = api.enqueue_ok(a, {"priority": 0})
    a2 = api.enqueue_ok(a, {"priority": 1})
    b2 = api.enqueue_ok(b, {"priority": 9})
    c1 = api.enqueue_ok(c)
    assert _ids(api.lease_jobs([c, a, b], max=2)) == [c1, a2]
    assert _ids(api.lease_jobs([b, a], max=10)) == [b1, b2, a1]


def test_lease_default_max_is_one_and_max_caps(api: Api, q: str) -> None:
    for _ in range(5):
        api.enqueue_ok(q)
    assert len(api.lease_jobs([q])) == 1
    assert len(api.lease_jobs([q], max=3)) == 3
    assert len(api.lease_jobs([q], max=1000)) == 1
    assert api.lease_jobs([q], max=1000) == []


def test_lease_nothing_is_204(api: Api, q: str) -> None:
    r = api.lease([q])
    assert r.status == 204 and r.body == b""


def test_retried_job_joins_back_of_its_priority(api: Api, q: str) -> None:
    a = api.enqueue_ok(q, {"payload": "a"})
    b = api.enqueue_ok(q, {"payload": "b"})
    hi = api.enqueue_ok(q, {"payload": "hi", "priority": 6})
    lease_hi = api.lease_one(q)
    lease_a = api.lease_one(q)
    assert (lease_hi["id"], lease_a["id"]) == (hi, a)
    r = api.fail(a, lease_a["lease"], error="again", retry_in=0)
    assert r.status == 200 and r.json()["state"] == "queued"
    c = api.enqueue_ok(q, {"payload": "c"})
    r = api.fail(hi, lease_hi["lease"], error="again", retry_in=0)
    assert r.json()["state"] == "queued"
    assert _ids(api.lease_jobs([q], max=10)) == [hi, b, a, c]


def test_delayed_job_joins_back_when_due(api: Api, q: str) -> None:
    d = api.enqueue_ok(q, {"payload": "d", "delay": 0.3})
    e = api.enqueue_ok(q, {"payload": "e"})
    api.wait_for(d, lambda j: j["state"] == "queued")
    f = api.enqueue_ok(q, {"payload": "f"})
    assert _ids(api.lease_jobs([q], max=10)) == [e, d, f]


# ---- lease: the leased record ----------------------------------------------------------------


def test_lease_record_and_timeouts(api: Api, q: str) -> None:
    j1 = api.enqueue_ok(q, {"timeout": 100, "payload": {"x": 1}, "type": "t"})
    j2 = api.enqueue_ok(q, {"timeout": 100})
    before = time.time()
    got = api.lease_one(q, worker="w-1")
    assert set(got) == JOB_FIELDS | {"lease"}
    assert got["id"] == j1 and got["payload"] == {"x": 1} and got["type"] == "t"
    assert got["state"] == "active" and got["attempt"] == 1 and got["worker"] == "w-1"
    assert isinstance(got["lease"], str) and got["lease"]
    assert got["lease_expires_at"] == pytest.approx(got["started_at"] + 100, abs=0.01)
    assert before - 1 <= got["started_at"] <= time.time() + 1
    rec = api.job(j1)
    assert rec["state"] == "active" and rec["attempt"] == 1 and rec["worker"] == "w-1"
    assert rec["lease_expires_at"] == got["lease_expires_at"]
    # the request's timeout wins over the job's
    got2 = api.lease_one(q, timeout=7)
    assert got2["id"] == j2 and got2["lease_expires_at"] == pytest.approx(got2["started_at"] + 7, abs=0.01)
    assert got2["lease"] != got["lease"]
    st = api.stats(q)
    assert (st["queued"], st["active"]) == (0, 2)


# ---- long-poll and pause ---------------------------------------------------------------------


def test_long_poll_wakes_on_enqueue(api: Api, q: str) -> None:
    with ThreadPoolExecutor(1) as ex:
        t0 = time.monotonic()
        fut = ex.submit(api.lease_jobs, [f"{q}-other", q], wait=20)
        time.sleep(0.3)
        assert not fut.done()
        jid = api.enqueue_ok(q)
        jobs = fut.result(timeout=25)
        elapsed = time.monotonic() - t0
    assert _ids(jobs) == [jid]
    assert elapsed < 20  # returned before its wait ran out


def test_long_poll_times_out_with_204(api: Api, q: str) -> None:
    t0 = time.monotonic()
    r = api.lease([q], wait=0.6)
    assert r.status == 204 and r.body == b""
    assert time.monotonic() - t0 >= 0.55  # it did wait


def test_long_poll_gets_scheduled_job_when_due(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"delay": 0.3})
    t0 = time.monotonic()
    jobs = api.lease_jobs([q], wait=20)
    assert _ids(jobs) == [jid] and time.monotonic() - t0 < 20


def test_paused_queue_leases_nothing_and_resume_wakes(api: Api, q: str) -> None:
    r = api.request("POST", f"/v1/queues/{q}/pause")
    assert r.status == 200
    st = r.json()
    assert set(st) == STATS_FIELDS and st["name"] == q and st["paused"] is True
    jid = api.enqueue_ok(q)
    assert api.stats(q)["paused"] is True
    assert api.lease([q]).status == 204
    assert api.lease([q], wait=0.3).status == 204
    with ThreadPoolExecutor(1) as ex:
        fut = ex.submit(api.lease_jobs, [q], wait=20)
        time.sleep(0.3)
        assert not fut.done()
        r = api.request("POST", f"/v1/queues/{q}/resume")
        # the parked lease may be served in resume's own commit: queued or already active
        st = r.json()
        assert r.status == 200 and st["paused"] is False and st["queued"] + st["active"] == 1
        assert _ids(fut.result(timeout=25)) == [jid]


def test_paused_queue_is_skipped_in_multi_queue_lease(api: Api, q: str) -> None:
    a, b = f"{q}-a", f"{q}-b"
    api.enqueue_ok(a)
    jb = api.enqueue_ok(b)
    assert api.request("POST", f"/v1/queues/{a}/pause").status == 200
    assert _ids(api.lease_jobs([a, b], max=5)) == [jb]


# ---- finishing ------------------------------------------------------------------------------


def test_ack_completes_and_stores_result(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    r = api.ack(jid, job["lease"], {"sent": True, "n": [1, 2]})
    assert (r.status, r.json()) == (200, {"state": "completed"})
    j = api.job(jid)
    assert j["state"] == "completed" and j["result"] == {"sent": True, "n": [1, 2]}
    assert j["finished_at"] is not None and j["finished_at"] >= j["started_at"]
    assert j["lease_expires_at"] is None and j["attempt"] == 1
    st = api.stats(q)
    assert (st["active"], st["completed"], st["completed_total"]) == (0, 1, 1)


def test_ack_without_result(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    assert api.ack(jid, job["lease"]).status == 200
    assert api.job(jid)["result"] is None


def test_fail_retries_with_default_backoff(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 3})
    job = api.lease_one(q)
    r = api.fail(jid, job["lease"], error="boom", details="Traceback ...")
    assert r.status == 200
    body = r.json()
    j = api.job(jid)
    assert len(j["errors"]) == 1
    err = j["errors"][0]
    assert err == {"attempt": 1, "at": err["at"], "error": "boom", "details": "Traceback ..."}
    # documented default: base * 2^attempt * U[0.75, 1.25]
    delay = body["run_at"] - err["at"]
    assert BACKOFF_BASE_S * 2 * 0.75 - 0.002 <= delay <= BACKOFF_BASE_S * 2 * 1.25 + 0.002
    assert body["state"] == "scheduled" and set(body) == {"state", "run_at"}
    assert api.stats(q)["failed_total"] == 1
    j = api.wait_for(jid, lambda j: j["state"] == "queued")
    assert j["lease_expires_at"] is None
    job = api.lease_one(q)
    assert job["attempt"] == 2 and job["errors"] == [err]


def test_fail_retry_in_overrides(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    r = api.fail(jid, job["lease"], error="later", retry_in=30)
    assert r.status == 200
    body = r.json()
    assert body["state"] == "scheduled"
    j = api.job(jid)
    assert j["state"] == "scheduled"
    assert body["run_at"] == pytest.approx(j["errors"][0]["at"] + 30, abs=0.01)
    assert j["run_at"] == pytest.approx(body["run_at"], abs=0.01)
    assert api.stats(q)["scheduled"] == 1
    assert api.lease_jobs([q]) == []


def test_fail_retry_false_is_dead(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 5})
    job = api.lease_one(q)
    r = api.fail(jid, job["lease"], error="fatal", retry=False)
    assert (r.status, r.json()) == (200, {"state": "dead"})
    j = api.job(jid)
    assert j["state"] == "dead" and j["errors"][0]["error"] == "fatal"
    assert j["errors"][0]["details"] is None
    st = api.stats(q)
    assert (st["dead"], st["active"], st["failed_total"]) == (1, 0, 1)
    assert api.jobs(q, "?state=dead")["jobs"][0]["id"] == jid


def test_fail_last_attempt_is_dead(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 2})
    for attempt in (1, 2):
        job = api.lease_one(q)
        assert job["attempt"] == attempt
        r = api.fail(jid, job["lease"], error=f"e{attempt}", retry_in=0)
        assert r.status == 200
    assert r.json() == {"state": "dead"}
    j = api.job(jid)
    assert [e["error"] for e in j["errors"]] == ["e1", "e2"]
    assert [e["attempt"] for e in j["errors"]] == [1, 2]


def test_heartbeat_extends_and_stores_progress(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"timeout": 1})
    job = api.lease_one(q)
    r = api.heartbeat(jid, job["lease"], extend=30, progress={"pct": 50})
    assert r.status == 200
    exp = r.json()["lease_expires_at"]
    assert set(r.json()) == {"lease_expires_at"}
    assert exp > job["lease_expires_at"] + 25
    j = api.job(jid)
    assert j["lease_expires_at"] == pytest.approx(exp) and j["progress"] == {"pct": 50}
    time.sleep(1.3)  # past the original expiry: still held
    j = api.job(jid)
    assert j["state"] == "active" and j["errors"] == []
    # default extension is the job's timeout (1 s)
    r = api.heartbeat(jid, job["lease"])
    assert r.status == 200
    assert r.json()["lease_expires_at"] < exp - 25
    assert api.job(jid)["progress"] == {"pct": 50}  # no progress sent: kept
    assert api.heartbeat(jid, job["lease"], extend=30, progress=[1, "two"]).status == 200
    assert api.job(jid)["progress"] == [1, "two"]
    assert api.heartbeat(jid, job["lease"], extend=30, progress=None).status == 200
    assert api.job(jid)["progress"] is None  # an explicit null clears it
    assert api.ack(jid, job["lease"]).status == 200


def test_heartbeat_can_shorten_the_lease(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"timeout": 600, "max_attempts": 1})
    job = api.lease_one(q)
    r = api.heartbeat(jid, job["lease"], extend=0.3)
    assert r.status == 200
    j = api.wait_for(jid, lambda j: j["state"] != "active")
    assert j["state"] == "dead" and j["errors"][0]["error"] == "lease_expired"


def test_bulk_ack_mixed(api: Api, q: str) -> None:
    a = api.enqueue_ok(q)
    b = api.enqueue_ok(q)
    c = api.enqueue_ok(q)
    la, lb, lc = api.lease_jobs([q], max=3)
    assert api.ack(b, lb["lease"]).status == 200  # b's line repeats this ack: ok again
    lines = [{"id": a, "lease": la["lease"], "result": 1}, {"id": b, "lease": lb["lease"]},
             {"id": "nope-" + q, "lease": "x"}, {"id": c, "lease": lc["lease"] + "x"},
             {"id": c, "lease": lc["lease"]}]
    r = api.request("POST", "/v1/ack", raw=b"\n".join(json.dumps(x).encode() for x in lines),
                    ctype=NDJSON)
    assert r.status == 200 and r.ctype == NDJSON
    assert r.lines() == [{"id": a, "ok": True}, {"id": b, "ok": True},
                         {"id": "nope-" + q, "ok": False, "error": "not_found"},
                         {"id": c, "ok": False, "error": "lease_lost"}, {"id": c, "ok": True}]
    assert api.job(a)["result"] == 1 and api.job(a)["state"] == "completed"
    assert api.job(c)["state"] == "completed"
    assert api.stats(q)["completed_total"] == 3  # b once


# ---- fencing --------------------------------------------------------------------------------


def _all_stale(api: Api, jid: str, token: str) -> None:
    """Every lease-fenced call with this token is 409 lease_lost and changes nothing."""
    before = api.job(jid)
    assert_error(api.ack(jid, token, "r"), 409, "lease_lost")
    assert_error(api.fail(jid, token, error="e", retry=False), 409, "lease_lost")
    assert_error(api.heartbeat(jid, token, extend=100, progress="p"), 409, "lease_lost")
    r = api.request("POST", "/v1/ack", raw=json.dumps({"id": jid, "lease": token}).encode(), ctype=NDJSON)
    assert r.lines() == [{"id": jid, "ok": False, "error": "lease_lost"}]
    assert api.job(jid) == before


def test_stale_token_after_expiry(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 1})
    job = api.lease_one(q, timeout=0.3)
    time.sleep(0.35)  # expired; the reaper may or may not have acted yet
    assert_error(api.ack(jid, job["lease"]), 409, "lease_lost")
    assert_error(api.heartbeat(jid, job["lease"]), 409, "lease_lost")
    j = api.wait_for(jid, lambda j: j["state"] != "active")
    assert j["state"] == "dead" and j["result"] is None and j["progress"] is None
    _all_stale(api, jid, job["lease"])


def test_stale_token_after_release_to_another_worker(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 5})
    old = api.lease_one(q, timeout=0.3, worker="w-old")
    new = api.lease_one(q, wait=20, worker="w-new")  # after expiry + backoff
    assert new["id"] == jid and new["attempt"] == 2 and new["lease"] != old["lease"]
    _all_stale(api, jid, old["lease"])
    j = api.job(jid)
    assert j["state"] == "active" and j["worker"] == "w-new"
    assert j["lease_expires_at"] == new["lease_expires_at"] and j["progress"] is None
    assert api.ack(jid, new["lease"], "done").status == 200


def test_stale_token_after_cancel(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    r = api.request("DELETE", f"/v1/jobs/{jid}")
    assert (r.status, r.json()) == (200, {"state": "cancelled"})
    _all_stale(api, jid, job["lease"])
    j = api.job(jid)
    assert j["state"] == "cancelled" and j["result"] is None and j["lease_expires_at"] is None
    st = api.stats(q)
    assert (st["active"], st["cancelled"]) == (0, 1)


def _repeat_only(api: Api, q: str, jid: str, token: str, first: Any) -> None:
    """The call that ended the lease, sent again (other arguments), answers as it did and
    changes nothing; every other lease-fenced call with that token is 409 lease_lost."""
    before, stats = api.job(jid), api.stats(q)
    acked = first == {"state": "completed"}
    again = api.ack(jid, token, "second") if acked else api.fail(jid, token, error="again")
    assert (again.status, again.json()) == (200, first)
    r = api.request("POST", "/v1/ack", raw=json.dumps({"id": jid, "lease": token}).encode(),
                    ctype=NDJSON)
    assert r.lines() == [{"id": jid, "ok": True} if acked
                         else {"id": jid, "ok": False, "error": "lease_lost"}]
    if acked:  # an ack after the ack is no fail
        assert_error(api.fail(jid, token, error="e", retry=False), 409, "lease_lost")
    else:  # nor is an ack after the fail an ack
        assert_error(api.ack(jid, token, "r"), 409, "lease_lost")
    assert_error(api.heartbeat(jid, token, extend=100, progress="p"), 409, "lease_lost")
    assert (api.job(jid), api.stats(q)) == (before, stats)


def test_repeated_ack_answers_as_the_first(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    r = api.ack(jid, job["lease"], "first")
    assert (r.status, r.json()) == (200, {"state": "completed"})
    _repeat_only(api, q, jid, job["lease"], {"state": "completed"})
    assert api.job(jid)["result"] == "first"
    assert api.stats(q)["completed_total"] == 1


def test_repeated_fail_answers_as_the_first(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 3})
    job = api.lease_one(q)
    r = api.fail(jid, job["lease"], error="boom", retry_in=30)
    assert r.status == 200 and r.json()["state"] == "scheduled"
    _repeat_only(api, q, jid, job["lease"], r.json())
    j = api.job(jid)
    assert [e["error"] for e in j["errors"]] == ["boom"] and j["attempt"] == 1
    assert api.stats(q)["failed_total"] == 1
    jid2 = api.enqueue_ok(q, {"max_attempts": 3})
    job2 = api.lease_one(q)
    assert api.fail(jid2, job2["lease"], error="fatal", retry=False).json() == {"state": "dead"}
    _repeat_only(api, q, jid2, job2["lease"], {"state": "dead"})
    assert [e["error"] for e in api.job(jid2)["errors"]] == ["fatal"]
    assert api.stats(q)["failed_total"] == 2


def test_token_that_finished_is_stale_once_the_job_moves_on(api: Api, q: str) -> None:
    """Leased again, cancelled or retried: a repeat of the ending call is then just stale."""
    jid = api.enqueue_ok(q, {"max_attempts": 3})
    old = api.lease_one(q)
    assert api.fail(jid, old["lease"], error="e1", retry_in=0).json()["state"] == "queued"
    new = api.lease_one(q)
    assert new["id"] == jid and new["lease"] != old["lease"]
    _all_stale(api, jid, old["lease"])
    assert api.ack(jid, new["lease"], "done").status == 200
    _all_stale(api, jid, old["lease"])
    assert api.ack(jid, new["lease"]).status == 200  # the finishing token still repeats
    assert api.job(jid)["result"] == "done" and api.stats(q)["failed_total"] == 1
    jid2 = api.enqueue_ok(q, {"max_attempts": 3})
    job2 = api.lease_one(q)
    assert api.fail(jid2, job2["lease"], error="x", retry_in=30).status == 200
    assert api.request("DELETE", f"/v1/jobs/{jid2}").status == 200
    _all_stale(api, jid2, job2["lease"])
    jid3 = api.enqueue_ok(q, {"max_attempts": 3})
    job3 = api.lease_one(q)
    assert api.fail(jid3, job3["lease"], error="x", retry=False).json() == {"state": "dead"}
    assert api.request("POST", f"/v1/jobs/{jid3}/retry").status == 200
    _all_stale(api, jid3, job3["lease"])
    assert api.job(jid3)["state"] == "queued"


def test_wrong_token_and_unknown_job(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    _all_stale(api, jid, "not-a-token")
    _all_stale(api, jid, job["lease"] + "0")
    assert api.job(jid)["state"] == "active"
    for r in (api.ack("no-such-job", "t"), api.fail("no-such-job", "t"),
              api.heartbeat("no-such-job", "t")):
        assert_error(r, 404, "not_found")
    # a queued (never leased) job has no valid token either
    jid2 = api.enqueue_ok(q)
    _all_stale(api, jid2, job["lease"])
    assert api.ack(jid, job["lease"]).status == 200


# ---- lease expiry ----------------------------------------------------------------------------


def test_lease_expiry_retries_with_backoff(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 3, "timeout": 1})
    job = api.lease_one(q)
    j = api.wait_for(jid, lambda j: j["state"] != "active", timeout=10)
    assert j["state"] in ("scheduled", "queued")
    assert len(j["errors"]) == 1
    err = j["errors"][0]
    assert err["error"] == "lease_expired" and err["attempt"] == 1
    # acted on "within a second" of the expiry (server-side times; slack for a loaded machine)
    assert job["lease_expires_at"] <= err["at"] <= job["lease_expires_at"] + 1.5
    assert j["lease_expires_at"] is None
    # backoff: it became ready no sooner than base*2^1*0.75 after the expiry
    j = api.wait_for(jid, lambda j: j["state"] == "queued")
    assert j["run_at"] - err["at"] >= BACKOFF_BASE_S * 2 * 0.75 - 0.002
    st = api.stats(q)
    assert (st["active"], st["queued"], st["failed_total"]) == (0, 1, 1)
    again = api.lease_one(q)
    assert again["attempt"] == 2 and again["errors"] == [err]


def test_lease_expiry_last_attempt_is_dead(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 1})
    job = api.lease_one(q, timeout=1)
    j = api.wait_for(jid, lambda j: j["state"] != "active", timeout=10)
    assert j["state"] == "dead"
    assert [(e["error"], e["attempt"]) for e in j["errors"]] == [("lease_expired", 1)]
    assert job["lease_expires_at"] <= j["errors"][0]["at"] <= job["lease_expires_at"] + 1.5
    st = api.stats(q)
    assert (st["active"], st["dead"]) == (0, 1)
    assert _ids(api.jobs(q, "?state=dead")["jobs"]) == [jid]


# ---- inspecting and managing ------------------------------------------------------------------


def test_cancel_each_unfinished_state(api: Api, q: str) -> None:
    queued = api.enqueue_ok(q, {"priority": 0})
    scheduled = api.enqueue_ok(q, {"delay": 600})
    active = api.enqueue_ok(q, {"priority": 9})
    assert api.lease_one(q)["id"] == active
    dead = api.enqueue_ok(f"{q}-d", {"max_attempts": 1})
    lj = api.lease_one(f"{q}-d")
    api.fail(dead, lj["lease"], error="x")
    for jid in (queued, scheduled, active, dead):
        r = api.request("DELETE", f"/v1/jobs/{jid}")
        assert (r.status, r.json()) == (200, {"state": "cancelled"}), jid
        j = api.job(jid)
        assert j["state"] == "cancelled" and j["finished_at"] is not None
    st = api.stats(q)
    assert (st["queued"], st["scheduled"], st["active"], st["cancelled"]) == (0, 0, 0, 3)
    assert api.stats(f"{q}-d")["dead"] == 0
    assert api.lease_jobs([q]) == []


def test_cancel_finished_is_invalid_state(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    api.ack(jid, job["lease"])
    assert_error(api.request("DELETE", f"/v1/jobs/{jid}"), 409, "invalid_state")
    assert api.job(jid)["state"] == "completed"
    jid2 = api.enqueue_ok(q)
    assert api.request("DELETE", f"/v1/jobs/{jid2}").status == 200
    assert_error(api.request("DELETE", f"/v1/jobs/{jid2}"), 409, "invalid_state")
    assert_error(api.request("DELETE", "/v1/jobs/no-such"), 404, "not_found")


def test_retry_dead_and_cancelled(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"max_attempts": 1})
    job = api.lease_one(q)
    api.fail(jid, job["lease"], error="bad")
    r = api.request("POST", f"/v1/jobs/{jid}/retry")
    assert (r.status, r.json()) == (200, {"state": "queued"})
    j = api.job(jid)
    assert j["state"] == "queued" and j["attempt"] == 0 and [e["error"] for e in j["errors"]] == ["bad"]
    assert j["finished_at"] is None
    st = api.stats(q)
    assert (st["dead"], st["queued"]) == (0, 1)
    assert api.lease_one(q)["attempt"] == 1
    jid2 = api.enqueue_ok(q)
    api.request("DELETE", f"/v1/jobs/{jid2}")
    assert api.request("POST", f"/v1/jobs/{jid2}/retry").json() == {"state": "queued"}
    assert api.lease_one(q)["id"] == jid2


def test_retry_other_states_is_invalid_state(api: Api, q: str) -> None:
    done = api.enqueue_ok(q, {"priority": 9})
    active = api.enqueue_ok(q, {"priority": 8})
    queued = api.enqueue_ok(q, {"priority": 0})
    scheduled = api.enqueue_ok(q, {"delay": 600})
    dj = api.lease_one(q)
    assert dj["id"] == done and api.ack(done, dj["lease"]).status == 200
    assert api.lease_one(q)["id"] == active
    for jid, state in ((queued, "queued"), (scheduled, "scheduled"), (active, "active"),
                       (done, "completed")):
        before = api.job(jid)
        assert before["state"] == state
        assert_error(api.request("POST", f"/v1/jobs/{jid}/retry"), 409, "invalid_state")
        assert api.job(jid) == before
    assert_error(api.request("POST", "/v1/jobs/no-such/retry"), 404, "not_found")


def _make_dead(api: Api, q: str, n: int) -> list[str]:
    ids = [api.enqueue_ok(q, {"max_attempts": 1, "payload": i}) for i in range(n)]
    for job in api.lease_jobs([q], max=n):
        assert api.fail(job["id"], job["lease"], error="x").json() == {"state": "dead"}
    return ids


def test_redrive(api: Api, q: str) -> None:
    ids = _make_dead(api, q, 3)
    r = api.request("POST", f"/v1/queues/{q}/redrive", {"limit": 2})
    assert (r.status, r.json()) == (200, {"moved": 2})
    st = api.stats(q)
    assert (st["dead"], st["queued"]) == (1, 2)
    r = api.request("POST", f"/v1/queues/{q}/redrive", raw=b"")  # no body: default limit
    assert r.json() == {"moved": 1}
    assert api.request("POST", f"/v1/queues/{q}/redrive").json() == {"moved": 0}
    for jid in ids:
        j = api.job(jid)
        assert j["state"] == "queued" and j["attempt"] == 0 and len(j["errors"]) == 1
    assert sorted(_ids(api.lease_jobs([q], max=10))) == sorted(ids)


def test_purge(api: Api, q: str) -> None:
    dead = _make_dead(api, q, 2)
    done = api.enqueue_ok(q)
    job = api.lease_one(q)
    api.ack(done, job["lease"])
    cancelled = api.enqueue_ok(q)
    api.request("DELETE", f"/v1/jobs/{cancelled}")
    keep = api.enqueue_ok(q)
    for state, ids in (("dead", dead), ("completed", [done]), ("cancelled", [cancelled])):
        r = api.request("DELETE", f"/v1/queues/{q}/jobs?state={state}")
        assert (r.status, r.json()) == (200, {"deleted": len(ids)}), state
        for jid in ids:
            assert_error(api.request("GET", f"/v1/jobs/{jid}"), 404, "not_found")
        assert api.stats(q)[state] == 0
        r = api.request("DELETE", f"/v1/queues/{q}/jobs?state={state}")
        assert r.json() == {"deleted": 0}
    assert _ids(api.jobs(q)["jobs"]) == [keep]
    for bad in ("", "?state=queued", "?state=active", "?state=scheduled", "?state=bogus"):
        assert_error(api.request("DELETE", f"/v1/queues/{q}/jobs{bad}"), 400, "invalid_request")
    assert api.job(keep)["state"] == "queued"


def test_list_jobs_filter_and_paging(api: Api, q: str) -> None:
    ids = [api.enqueue_ok(q, {"payload": i}) for i in range(7)]
    for job in api.lease_jobs([q], max=2):
        api.ack(job["id"], job["lease"])
    page = api.jobs(q)
    assert set(page) == {"jobs", "next"} and page["next"] is None
    assert _ids(page["jobs"]) == ids
    assert set(page["jobs"][0]) == JOB_FIELDS
    assert _ids(api.jobs(q, "?state=completed")["jobs"]) == ids[:2]
    assert _ids(api.jobs(q, "?state=queued")["jobs"]) == ids[2:]
    assert api.jobs(q, "?state=dead") == {"jobs": [], "next": None}
    # paging
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        qs = "?limit=3" + ("" if cursor is None else "&after=" + urllib.parse.quote(cursor, safe=""))
        page = api.jobs(q, qs)
        pages += 1
        assert len(page["jobs"]) <= 3
        seen += _ids(page["jobs"])
        cursor = page["next"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert seen == ids and pages >= 3
    # paging with a state filter
    seen = []
    cursor = None
    while True:
        qs = "?state=queued&limit=2" + ("" if cursor is None else "&after=" + urllib.parse.quote(cursor))
        page = api.jobs(q, qs)
        seen += _ids(page["jobs"])
        assert all(j["state"] == "queued" for j in page["jobs"])
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ids[2:]
    assert api.jobs(f"{q}-empty") == {"jobs": [], "next": None}


def test_queue_stats(api: Api, q: str) -> None:
    empty = api.stats(f"{q}-unknown")
    assert set(empty) == STATS_FIELDS
    assert empty == {
        "name": f"{q}-unknown", "paused": False, "queued": 0,
        "queued_by_priority": {str(p): 0 for p in range(10)}, "scheduled": 0, "active": 0,
        "dead": 0, "completed": 0, "cancelled": 0, "oldest_queued_age": None,
        "enqueued_total": 0, "completed_total": 0, "failed_total": 0,
    }
    for p in (9, 9, 3, 0):
        api.enqueue_ok(q, {"priority": p})
    api.enqueue_ok(q, {"delay": 600})
    time.sleep(0.05)
    st = api.stats(q)
    assert st["queued"] == 4 and st["scheduled"] == 1
    assert st["queued_by_priority"] == {"9": 2, "8": 0, "7": 0, "6": 0, "5": 0, "4": 0, "3": 1,
                                        "2": 0, "1": 0, "0": 1}
    assert isinstance(st["oldest_queued_age"], (int, float)) and 0 < st["oldest_queued_age"] < 60
    assert st["enqueued_total"] == 5
    all_q = api.request("GET", "/v1/queues")
    assert all_q.status == 200
    mine = [s for s in all_q.json()["queues"] if s["name"] == q]
    assert len(mine) == 1 and set(mine[0]) == STATS_FIELDS and mine[0]["queued"] == 4


# ---- servers with their own settings ----------------------------------------------------------


def test_retention_purges_finished_jobs(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--retention-s", "1") as (_, a):
        q = "ret"
        done = a.enqueue_ok(q, {"key": "k"})
        job = a.lease_one(q)
        assert a.ack(done, job["lease"]).status == 200
        cancelled = a.enqueue_ok(q)
        a.request("DELETE", f"/v1/jobs/{cancelled}")
        dead = _make_dead(a, q, 1)[0]
        queued = a.enqueue_ok(q)
        assert a.job(done)["state"] == "completed"
        deadline = time.monotonic() + 10
        while a.request("GET", f"/v1/jobs/{cancelled}").status != 404 or \
                a.request("GET", f"/v1/jobs/{done}").status != 404:
            assert time.monotonic() < deadline, "finished jobs were not purged after retention"
            time.sleep(0.1)
        st = a.stats(q)
        assert (st["completed"], st["cancelled"], st["dead"], st["queued"]) == (0, 0, 1, 1)
        assert st["completed_total"] == 1
        assert a.job(dead)["state"] == "dead" and a.job(queued)["state"] == "queued"
        assert set(_ids(a.jobs(q)["jobs"])) == {dead, queued}
        r = a.enqueue(q, {"key": "k"})  # the purged job's key is free again
        assert r.status == 201 and r.json()["id"] != done


def _counts(st: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in st.items() if k != "oldest_queued_age"}


def test_storage_full_is_507_and_harms_nothing(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--map-size-bytes", "1048576") as (_, a):
        q = "full"
        keep = a.enqueue_ok(q, {"payload": {"keep": True}, "key": "kept"})
        held_id = a.enqueue_ok(q, {"payload": "held"})
        leased = a.lease_jobs([q], max=2)
        assert _ids(leased) == [keep, held_id]
        assert a.fail(keep, leased[0]["lease"], error="back", retry_in=0).status == 200
        before = {jid: a.job(jid) for jid in (keep, held_id)}
        big = "x" * 60_000
        full = None
        for i in range(40):
            r = a.bulk(q, [{"payload": big, "id": f"b{i}-{n}"} for n in range(4)])
            if r.status != 201:
                full = r
                break
        assert full is not None, "a 1 MiB map never filled"
        assert_error(full, 507, "storage_full")
        # nothing of the refused request was stored
        for n in range(4):
            assert_error(a.request("GET", f"/v1/jobs/b{i}-{n}"), 404, "not_found")
        singles = 0
        while (r := a.enqueue(q, {"payload": big})).status == 201:
            singles += 1
            assert singles < 10
        assert_error(r, 507, "storage_full")
        stats_full = a.stats(q)
        assert_error(a.enqueue(q, {"payload": big, "key": "new"}), 507, "storage_full")
        assert _counts(a.stats(q)) == _counts(stats_full)
        # the server keeps serving reads; nothing already stored is harmed
        assert a.request("GET", "/healthz").status == 200
        for jid, rec in before.items():
            assert a.job(jid) == rec
        assert a.request("GET", "/v1/queues").status == 200
        page = a.jobs(q, "?limit=1000")
        assert len(page["jobs"]) == stats_full["enqueued_total"] == 2 + 4 * i + singles
        assert all(j["payload"] == big for j in page["jobs"][2:])
        assert a.enqueue(q, {"key": "kept"}).json() == {"id": keep, "state": "queued", "created": False}


def test_a_store_full_of_small_jobs_is_emptied_and_takes_writes_again(tmp_path: Path) -> None:
    """The way out of a full store is deleting: a forced queue delete (a purge in steps)
    must fit, though every step writes a log entry. A purge that finds the map full makes
    the writer shed the log to what followers need, and a step that does not fit is halved."""
    with running(tmp_path / "d", "--map-size-bytes", "1048576") as (_, a):
        q = "small"
        for _ in range(1000):
            if a.bulk(q, [{"payload": "x" * 60} for _ in range(100)]).status != 201:
                break
        while (r := a.enqueue(q, {"payload": 1})).status == 201:
            pass
        assert_error(r, 507, "storage_full")
        queued = a.stats(q)["queued"]
        assert queued > 1000
        r = a.request("DELETE", f"/v1/queues/{q}?force=true")
        assert r.status == 200 and r.json() == {"deleted": True, "purged": queued}, r.body
        assert a.enqueue(q, {"payload": 1}).status == 201


def test_restart_keeps_everything(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    d = tmp_path / "d"
    s = server_factory(d).start()
    a = Api(s.url)
    q = "rs"
    queued = a.enqueue_ok(q, {"payload": "queued", "priority": 8, "key": "kq"})
    low = a.enqueue_ok(q, {"payload": "low", "priority": 1})
    scheduled = a.enqueue_ok(q, {"payload": "sched", "delay": 600})
    dead = a.enqueue_ok(q, {"payload": "dead", "max_attempts": 1, "priority": 9})
    lj = a.lease_one(q)
    assert lj["id"] == dead
    a.fail(dead, lj["lease"], error="gone", details="tb")
    active = a.enqueue_ok(f"{q}-a", {"payload": "active"})
    held = a.lease_one(f"{q}-a", timeout=600, worker="w")
    done = a.enqueue_ok(f"{q}-a")
    dj = a.lease_one(f"{q}-a")
    a.ack(done, dj["lease"], {"r": 1})
    a.request("POST", f"/v1/queues/{q}-p/pause")
    before = {jid: a.job(jid) for jid in (queued, low, scheduled, dead, active, done)}
    stats_before = {x: a.stats(x) for x in (q, f"{q}-a", f"{q}-p")}
    assert s.stop() == 0
    assert b"Traceback" not in s.log

    s2 = server_factory(d).start()
    a = Api(s2.url)
    for jid, rec in before.items():
        assert a.job(jid) == rec
    for x, st in stats_before.items():
        now = a.stats(x)
        assert now | {"oldest_queued_age": None} == st | {"oldest_queued_age": None}
    assert a.enqueue(q, {"key": "kq"}).json() == {"id": queued, "state": "queued", "created": False}
    # the lease taken before the restart still holds and acks with its old token
    r = a.heartbeat(active, held["lease"], progress="after restart")
    assert r.status == 200
    assert a.ack(active, held["lease"], "ok").status == 200
    assert a.job(active)["result"] == "ok"
    assert _ids(a.lease_jobs([q], max=10)) == [queued, low]
    assert a.request("POST", f"/v1/jobs/{dead}/retry").status == 200
    nxt = a.enqueue_ok(q)
    assert nxt > max(before)  # ids keep growing after a restart
    assert a.stats(f"{q}-p")["paused"] is True
    assert s2.stop() == 0
    assert b"Traceback" not in s2.log, s2.log.decode(errors="replace")


def test_release_hands_a_job_back_without_an_attempt(server: ServerProcess) -> None:
    api = Api(server.url)
    jid = api.enqueue_ok("rel", {"payload": 1, "max_attempts": 1})
    job = api.lease_one("rel")
    r = api.request("POST", f"/v1/jobs/{jid}/release", {"lease": job["lease"]})
    assert r.status == 200 and r.json() == {"state": "queued"}, r
    rec = api.job(jid)
    assert rec["state"] == "queued" and rec["attempt"] == 0 and rec["errors"] == []
    assert_error(api.request("POST", f"/v1/jobs/{jid}/release", {"lease": job["lease"]}),
                 409, "lease_lost")  # fenced like every finishing call
    again = api.lease_one("rel")  # max_attempts 1: the release did not use it up
    assert again["attempt"] == 1
    r = api.request("POST", f"/v1/jobs/{jid}/release", {"lease": again["lease"], "delay": 30})
    assert r.status == 200 and r.json()["state"] == "scheduled", r
    assert_error(api.request("POST", f"/v1/jobs/{jid}/release", {"lease": "x", "delay": -1}),
                 400, "invalid_request")
