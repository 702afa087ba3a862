"""GET /v1/events (Server-Sent Events of state changes, read from the replication log) and
GET /v1/history (each queue's counters sampled), against the real server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _http import Api, Events, assert_error, running
from conftest import ServerProcess
from test_auth import TokenApi, make_tokens


@pytest.fixture
def events_of(server: ServerProcess) -> Iterator[Any]:
    opened: list[Events] = []

    def open_(query: str = "", headers: dict[str, str] | None = None) -> Events:
        ev = Events(server.url, query, headers)
        opened.append(ev)
        return ev
    yield open_
    for ev in opened:
        ev.close()


def _job(state: str, jid: str) -> Any:
    return lambda e: e["event"] == "job" and e["data"]["id"] == jid and e["data"]["state"] == state


def test_a_jobs_life_arrives_as_events_with_its_queue_counters(server: ServerProcess,
                                                                events_of: Any) -> None:
    api = Api(server.url)
    ev = events_of("queues=q")
    assert ev.status == 200 and ev.resp.headers["Content-Type"].startswith("text/event-stream")
    jid = api.enqueue_ok("q", {"payload": 1, "type": "mail"})
    got = ev.until(_job("queued", jid))
    assert got[-1]["data"] == {"id": jid, "queue": "q", "state": "queued", "attempt": 0,
                               "worker": None}
    got = ev.until(lambda e: e["event"] == "queue")
    assert got[-1]["data"]["name"] == "q" and got[-1]["data"]["queued"] == 1
    job = api.lease_one("q", worker="w1")
    active = ev.until(_job("active", jid))[-1]["data"]
    assert active["worker"] == "w1" and active["attempt"] == 1
    assert api.ack(jid, job["lease"]).status == 200
    ev.until(_job("completed", jid))
    q = ev.until(lambda e: e["event"] == "queue" and e["data"]["completed"] == 1)[-1]["data"]
    assert q["queued"] == 0 and q["active"] == 0 and q["completed_total"] == 1


def test_a_stream_shows_only_the_queues_and_job_it_asked_for(server: ServerProcess,
                                                             events_of: Any) -> None:
    api = Api(server.url)
    only_a, one_job, queues_only = events_of("queues=a"), None, events_of("types=queue")
    api.enqueue_ok("b", {"payload": 1})
    mine = api.enqueue_ok("a", {"payload": 2})
    other = api.enqueue_ok("a", {"payload": 3})
    one_job = events_of(f"job={other}")
    got = only_a.until(_job("queued", other))
    assert {e["data"].get("queue") or e["data"].get("name") for e in got} == {"a"}
    assert [e["data"]["id"] for e in got if e["event"] == "job"] == [mine, other]
    assert {e["event"] for e in queues_only.until(
        lambda e: e["data"]["name"] == "a" and e["data"]["queued"] == 2)} == {"queue"}
    api.request("DELETE", f"/v1/jobs/{mine}")
    api.request("DELETE", f"/v1/jobs/{other}")
    got = one_job.until(_job("cancelled", other))
    assert [e["data"]["id"] for e in got] == [other]  # not `mine`, no queue events


def test_a_stream_resumes_after_its_last_event_id_and_resets_when_that_is_gone(
        tmp_path: Path) -> None:
    with running(tmp_path / "d", "--log-keep-entries", "20", "--log-keep-bytes", "4096") as (s, api):
        ev = Events(s.url, "types=job")
        jid = api.enqueue_ok("q", {"payload": 1})
        last = ev.until(_job("queued", jid))[-1]["id"]
        assert last is not None
        ev.close()
        job = api.lease_one("q")  # while nobody listens
        api.ack(jid, job["lease"])
        ev = Events(s.url, "types=job", {"Last-Event-ID": last})
        got = ev.until(_job("completed", jid))
        assert [e["data"]["state"] for e in got] == ["active", "completed"]
        ev.close()
        for i in range(60):  # more commits than the log keeps
            api.enqueue_ok("q", {"payload": i})
        ev = Events(s.url, "types=job", {"Last-Event-ID": last})
        reset = ev.next()
        assert reset["event"] == "reset" and int(reset["id"]) == reset["data"]["seq"] > int(last)
        ev.close()
        with Events(s.url, "", {"Last-Event-ID": str(10**12)}) as ev:  # not of this log
            assert ev.next()["event"] == "reset"


@pytest.mark.parametrize("query, headers", [
    ("types=jobs", {}), ("queues=bad%20name", {}), ("after=-1", {}), ("", {"Last-Event-ID": "x1"}),
    ("job=" + "x" * 401, {}), ("after=%C2%B2", {}), ("", {"Last-Event-ID": "\u00b2"}),
])
def test_bad_stream_requests_are_400(server: ServerProcess, query: str,
                                     headers: dict[str, str]) -> None:
    r = Api(server.url).request("GET", "/v1/events?" + query, headers=headers)
    assert r.status == 400 and r.json()["error"] in ("invalid_request", "invalid_queue"), r


def test_a_server_with_streams_open_stops_promptly_and_cleanly(tmp_path: Path) -> None:
    with running(tmp_path / "d") as (s, api):
        streams = [Events(s.url) for _ in range(3)]
        api.enqueue_ok("q", {"payload": 1})
        streams[0].next()
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 10  # (not a speed bound: the ping interval is 15 s)
    for ev in streams:
        with pytest.raises((EOFError, OSError)):
            while True:
                ev.next()
        ev.close()


def test_a_token_sees_only_its_queues_events(tmp_path: Path) -> None:
    toks = make_tokens(tmp_path / "tokens.toml", {"v": ("viewer", ["emails*"]),
                                                  "p": ("producer", ["*"])})
    with running(tmp_path / "d", "--auth", str(tmp_path / "tokens.toml")) as (s, _):
        prod = TokenApi(s.url, toks["p"])
        auth = {"Authorization": f"Bearer {toks['v']}"}
        for query, headers, status in (("", {}, 401), ("queues=reports", auth, 403)):
            with Events(s.url, query, headers) as refused:
                assert refused.status == status
        ev = Events(s.url, "", auth)
        prod.enqueue_ok("reports", {"payload": 1})
        jid = prod.enqueue_ok("emails.eu", {"payload": 2})
        got = ev.until(_job("queued", jid))
        assert {e["data"].get("queue") or e["data"].get("name") for e in got} == {"emails.eu"}
        hist = TokenApi(s.url, toks["v"]).request("GET", "/v1/history").json()
        assert set(hist["series"]) <= {"emails.eu"}
        ev.close()


def test_history_samples_each_queue(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--history-interval-s", "0.1") as (_, api):
        api.enqueue_ok("a", {"payload": 1})
        api.enqueue_ok("b", {"payload": 1})
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            h = api.request("GET", "/v1/history").json()
            if all(h["series"].get(q) and h["series"][q][-1]["queued"] == 1 for q in "ab"):
                break
            time.sleep(0.05)
        assert h["interval_s"] == 0.1
        last = h["series"]["a"][-1]
        assert last["enqueued_total"] == 1 and last["t"] > time.time() - 60
        only_b = api.request("GET", "/v1/history?queues=b").json()
        assert set(only_b["series"]) == {"b"}
        assert_error(api.request("GET", "/v1/history?queues=no%20such"), 400, "invalid_queue")


def test_a_queues_jobs_filter_by_type_and_priority(server: ServerProcess) -> None:
    api = Api(server.url)
    ids = {(t, pr): api.enqueue_ok("q", {"payload": 1, "type": t, "priority": pr})
           for t in ("mail", "pdf") for pr in (1, 7)}
    def listed(query: str) -> set[str]:
        return {j["id"] for j in api.jobs("q", "?" + query)["jobs"]}
    assert listed("type=mail") == {ids["mail", 1], ids["mail", 7]}
    assert listed("priority=7") == {ids["mail", 7], ids["pdf", 7]}
    assert listed("type=pdf&priority=1&state=queued") == {ids["pdf", 1]}
    assert listed("type=none") == set()
    assert_error(api.request("GET", "/v1/queues/q/jobs?priority=10"), 400, "invalid_request")
    assert_error(api.request("GET", "/v1/queues/q/jobs?type="), 400, "invalid_request")


def test_a_follower_streams_the_same_events_with_the_same_ids(tmp_path: Path) -> None:
    from _cluster import Cluster

    with Cluster(tmp_path, n=2, sync=1).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        with Events(leader.url, "types=job") as on_leader, \
                Events(follower.url, "types=job") as on_follower:
            jid = Api(leader.url).enqueue_ok("q", {"payload": 1})
            a = on_leader.until(_job("queued", jid))
            b = on_follower.until(_job("queued", jid))  # before its next ping (15 s)
            assert [(e["data"], e["id"]) for e in a] == [(e["data"], e["id"]) for e in b]


def test_history_since_gives_only_newer_samples(tmp_path: Path) -> None:
    with running(tmp_path / "d", "--history-interval-s", "0.1") as (_, api):
        api.enqueue_ok("a", {"payload": 1})
        time.sleep(0.5)
        first = api.request("GET", "/v1/history?queues=a").json()["series"]["a"]
        assert len(first) >= 2
        cut = first[-2]["t"]
        newer = api.request("GET", f"/v1/history?queues=a&since={cut}").json()["series"]["a"]
        assert newer and all(x["t"] > cut for x in newer) and newer[0] == first[-1]
        assert_error(api.request("GET", "/v1/history?since=nan"), 400, "invalid_request")


def test_a_reused_id_never_shows_the_old_jobs_changes_under_the_new_jobs_queue(
        tmp_path: Path) -> None:
    """A custom id may be used again once its job is deleted: a token that may read only
    the new job's queue must not see the old job's history (its worker, say) as if it were
    the new job's, from any point of a replay."""
    toks = make_tokens(tmp_path / "tokens.toml", {"v": ("viewer", ["pub*"]),
                                                  "a": ("admin", ["*"])})
    with running(tmp_path / "d", "--auth", str(tmp_path / "tokens.toml")) as (s, _):
        admin = TokenApi(s.url, toks["a"])
        seq = lambda: admin.request("GET", "/v1/cluster").json()["applied_seq"]  # noqa: E731
        admin.enqueue_ok("secret", {"payload": 1, "id": "invoice-7"})
        after_create = seq()
        (job,) = admin.request("POST", "/v1/lease", {"queues": ["secret"],
                                                     "worker": "secret-host"}).lines()
        assert admin.ack("invoice-7", job["lease"]).status == 200
        assert admin.request("DELETE", "/v1/queues/secret/jobs?state=completed").json() == {
            "deleted": 1}
        admin.enqueue_ok("pub1", {"payload": 2, "id": "invoice-7"})
        auth = {"Authorization": f"Bearer {toks['v']}"}
        for start in (0, after_create):
            with Events(s.url, f"types=job&after={start}", auth) as ev:
                got = ev.until(lambda e: e["data"]["state"] == "queued" and
                               e["data"]["queue"] == "pub1")
                assert [e["data"] for e in got] == [
                    {"id": "invoice-7", "queue": "pub1", "state": "queued", "attempt": 0,
                     "worker": None}], start


def test_an_encrypted_store_names_the_queue_of_a_new_job(tmp_path: Path) -> None:
    """The queue of a job created in an entry is read from its spec's put, sealed there."""
    from test_encryption import keys

    kf = tmp_path / "keys.toml"
    assert keys("create", kf).returncode == 0
    with running(tmp_path / "d", "--encryption-key-file", str(kf)) as (s, api):
        with Events(s.url, "types=job&queues=q") as ev:
            jid = api.enqueue_ok("q", {"payload": 1})
            assert ev.until(_job("queued", jid))[-1]["data"]["queue"] == "q"
