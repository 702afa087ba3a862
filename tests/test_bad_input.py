"""Bad input against the real server: each gets the protocol's JSON error and stores nothing.

One server with small limits (payload 1000 bytes, 5 bulk lines, 20 kB bulk) serves
the whole module; every test snapshots all queue counters and the job it aims at
before the bad request and checks they are unchanged after it.
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from _http import NDJSON, Api, Resp, assert_error, assert_well_formed_error, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

MAX_PAYLOAD = 1000
MAX_LINES = 5
MAX_BULK = 20_000


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    d = tmp_path_factory.mktemp("bad") / "data"
    with running(d, "--max-payload-bytes", str(MAX_PAYLOAD), "--max-bulk-lines", str(MAX_LINES),
                 "--max-bulk-bytes", str(MAX_BULK)) as (_, a):
        yield a


@pytest.fixture
def q() -> str:
    return "bad-" + uuid.uuid4().hex[:12]


def _snapshot(api: Api) -> list[dict[str, Any]]:
    r = api.request("GET", "/v1/queues")
    assert r.status == 200
    return sorted(({k: v for k, v in s.items() if k != "oldest_queued_age"}
                   for s in r.json()["queues"]), key=lambda s: s["name"])


class Held:
    """A leased job to aim finishing calls at."""

    def __init__(self, api: Api, q: str) -> None:
        self.id = api.enqueue_ok(q, {"payload": "held", "timeout": 600})
        job = api.lease_one(q)
        assert job["id"] == self.id
        self.lease: str = job["lease"]


@pytest.fixture
def held(api: Api, q: str) -> Held:
    return Held(api, q)


class Unchanged:
    """Asserts that nothing stored changed across a block (counters of every queue, given jobs)."""

    def __init__(self, api: Api, *job_ids: str) -> None:
        self.api = api
        self.job_ids = job_ids

    def __enter__(self) -> Unchanged:
        self.stats = _snapshot(self.api)
        self.jobs = [self.api.job(j) for j in self.job_ids]
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            assert _snapshot(self.api) == self.stats
            assert [self.api.job(j) for j in self.job_ids] == self.jobs


def _post(api: Api, path: str, raw: bytes, ctype: str | None = "application/json") -> Resp:
    return api.request("POST", path, raw=raw, ctype=ctype)


# ---- enqueue: bodies ------------------------------------------------------------------------

MALFORMED = [b"{", b'{"payload": }', b"{,}", b"nul", b'{"a": 1} x', b"{'payload': 1}", b"\xff\xfe{}",
             b'{"payload": NaN}', b'{"payload": 1,}']
NOT_OBJECTS = [b"[]", b"1", b'"job"', b"null", b"true", b"[{}]"]
BAD_FIELDS: list[dict[str, Any]] = [
    {"priority": 10}, {"priority": -1}, {"priority": "urgent"}, {"priority": "HIGH"},
    {"priority": 5.5}, {"priority": True}, {"priority": None}, {"priority": [7]},
    {"max_attempts": 0}, {"max_attempts": 1001}, {"max_attempts": "3"}, {"max_attempts": 2.5},
    {"timeout": 0}, {"timeout": -1}, {"timeout": "60"}, {"timeout": 1e9}, {"timeout": 1e400},
    {"delay": -1}, {"delay": "30"}, {"delay": 1e400}, {"delay": 30, "run_at": 2e9},
    {"delay": 0, "run_at": 0}, {"run_at": -5}, {"run_at": "tomorrow"}, {"run_at": 1e12},
    {"type": 1}, {"type": ["a"]}, {"type": "t" * 256}, {"key": 1}, {"key": ""}, {"key": "k" * 256},
    {"id": 7}, {"id": ""}, {"id": "has space"}, {"id": "slash/no"}, {"id": "x" * 129},
    {"priority": 99999999999999999999999},
]


@pytest.mark.parametrize("body", MALFORMED + NOT_OBJECTS, ids=repr)
def test_enqueue_malformed_or_not_an_object(api: Api, q: str, body: bytes) -> None:
    with Unchanged(api):
        assert_error(_post(api, f"/v1/queues/{q}/jobs", body), 400, "invalid_job")


@pytest.mark.parametrize("job", BAD_FIELDS, ids=json.dumps)
def test_enqueue_bad_fields(api: Api, q: str, job: dict[str, Any]) -> None:
    raw = json.dumps(job).encode()
    with Unchanged(api):
        body = assert_error(_post(api, f"/v1/queues/{q}/jobs", raw), 400, "invalid_job")
        assert "line" not in body
        # the same line in a bulk request names its line and stores nothing either
        bulk = b'{"payload": 1}\n' + raw + b"\n"
        assert_error(_post(api, f"/v1/queues/{q}/jobs", bulk, NDJSON), 400, "invalid_job", line=2)


def test_bad_key_does_not_shadow_a_good_job(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q, {"key": "k"})
    with Unchanged(api, jid):
        assert_error(api.enqueue(q, {"key": "k", "priority": 10}), 400, "invalid_job")


# ---- content types -----------------------------------------------------------------------------


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded",
                                   "application/json; charset=utf-8", "TEXT/PLAIN; charset=utf-8"])
def test_json_bodies_with_curl_style_types_are_accepted(api: Api, q: str, ctype: str | None) -> None:
    r = _post(api, f"/v1/queues/{q}/jobs", b'{"payload": {"curl": true}}', ctype)
    assert r.status == 201, r
    assert api.job(r.json()["id"])["payload"] == {"curl": True}
    r = _post(api, "/v1/lease", json.dumps({"queues": [q]}).encode(), ctype)
    assert r.status == 200 and r.lines()[0]["payload"] == {"curl": True}
    job = r.lines()[0]
    r = _post(api, f"/v1/jobs/{job['id']}/ack", json.dumps({"lease": job["lease"]}).encode(), ctype)
    assert r.status == 200


@pytest.mark.parametrize("ctype,body", [
    ("application/x-www-form-urlencoded", b"payload=1&priority=9"),
    ("text/plain", b"send an email please"),
    (None, b"payload=1"),
    ("text/plain", b"  <job/>"),
])
def test_form_or_text_bodies_that_are_not_json_are_415(api: Api, q: str, held: Held, ctype: str | None,
                                                       body: bytes) -> None:
    with Unchanged(api, held.id):
        for path in (f"/v1/queues/{q}/jobs", "/v1/lease", f"/v1/jobs/{held.id}/ack",
                     f"/v1/jobs/{held.id}/fail", f"/v1/jobs/{held.id}/heartbeat", "/v1/ack",
                     f"/v1/queues/{q}/redrive"):
            assert_error(_post(api, path, body, ctype), 415, "unsupported_media_type")


@pytest.mark.parametrize("ctype", ["application/xml", "text/html", "multipart/form-data; boundary=x",
                                   "application/octet-stream", "image/png", "nonsense"])
def test_unknown_content_types_are_415(api: Api, q: str, held: Held, ctype: str) -> None:
    good = json.dumps({"lease": held.lease}).encode()
    with Unchanged(api, held.id):
        assert_error(_post(api, f"/v1/queues/{q}/jobs", b'{"payload": 1}', ctype), 415,
                     "unsupported_media_type")
        assert_error(_post(api, "/v1/lease", json.dumps({"queues": [q]}).encode(), ctype), 415,
                     "unsupported_media_type")
        for what in ("ack", "fail", "heartbeat"):
            assert_error(_post(api, f"/v1/jobs/{held.id}/{what}", good, ctype), 415,
                         "unsupported_media_type")


# ---- sizes ---------------------------------------------------------------------------------------


def test_payload_over_limit_is_413(api: Api, q: str) -> None:
    big = "x" * MAX_PAYLOAD
    with Unchanged(api):
        body = assert_error(api.enqueue(q, {"payload": big}), 413, "payload_too_large")
        assert "line" not in body
    assert api.enqueue(q, {"payload": "x" * (MAX_PAYLOAD - 2)}).status == 201


def test_huge_body_is_413(api: Api, q: str, held: Held) -> None:
    huge = b'{"payload": "' + b"x" * 200_000 + b'"}'
    with Unchanged(api, held.id):
        assert_error(_post(api, f"/v1/queues/{q}/jobs", huge), 413, "payload_too_large")
        assert_error(_post(api, f"/v1/queues/{q}/jobs", huge, NDJSON), 413, "payload_too_large")
        assert_error(_post(api, f"/v1/jobs/{held.id}/ack", b'{"lease": "%s", "result": "%s"}' % (
            held.lease.encode(), b"x" * 200_000)), 413, "payload_too_large")


def test_bulk_line_over_payload_limit_is_413_with_line(api: Api, q: str) -> None:
    lines = [{"payload": 1}, {"payload": 2}, {"payload": "x" * MAX_PAYLOAD}, {"payload": 4}]
    with Unchanged(api):
        assert_error(api.bulk(q, lines), 413, "payload_too_large", line=3)


def test_too_many_bulk_lines_is_413(api: Api, q: str) -> None:
    with Unchanged(api):
        body = assert_error(api.bulk(q, [{"payload": i} for i in range(MAX_LINES + 1)]), 413,
                            "payload_too_large")
        assert body.get("line") in (None, MAX_LINES + 1)
    r = api.bulk(q, [{"payload": i} for i in range(MAX_LINES)])
    assert r.status == 201 and len(r.lines()) == MAX_LINES


def test_bulk_over_byte_limit_is_413(api: Api, q: str) -> None:
    line = json.dumps({"payload": "y" * (MAX_PAYLOAD - 20)}).encode()
    body = b"\n".join([line] * 4) + b"\n" + b" " * MAX_BULK  # few lines, too many bytes
    with Unchanged(api):
        assert_error(_post(api, f"/v1/queues/{q}/jobs", body, NDJSON), 413, "payload_too_large")


def test_empty_bulk_is_400(api: Api, q: str) -> None:
    with Unchanged(api):
        for body in (b"", b"\n\n", b"   \n"):
            assert_error(_post(api, f"/v1/queues/{q}/jobs", body, NDJSON), 400, "invalid_job")


# ---- queue names ---------------------------------------------------------------------------------

BAD_QUEUES = ["has%20space", "%FF", "y" * 600, "b%C3%BCro", "x" * 129, "semi;colon", "star*", "a%00b", "quote%22"]


@pytest.mark.parametrize("name", BAD_QUEUES)
def test_bad_queue_names_in_the_path(api: Api, name: str) -> None:
    with Unchanged(api):
        for method, path in (("POST", "/jobs"), ("GET", "/jobs"), ("DELETE", "/jobs?state=dead"),
                             ("GET", ""), ("POST", "/pause"), ("POST", "/resume"),
                             ("POST", "/redrive")):
            r = api.request(method, f"/v1/queues/{name}{path}", raw=b"{}" if method == "POST" else None)
            assert_error(r, 400, "invalid_queue")
        r = api.request("POST", f"/v1/queues/{name}/jobs", raw=b'{"payload": 1}\n', ctype=NDJSON)
        assert_error(r, 400, "invalid_queue")
    for s in _snapshot(api):
        assert "%" not in s["name"] and len(s["name"]) <= 128


# ---- lease ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    {}, {"queues": []}, {"queues": "q"}, {"queues": [1]}, {"queues": None}, {"queues": ["ok", "bad name"]},
    {"queues": ["x" * 129]}, {"queues": [f"q{i}" for i in range(101)]},
    {"queues": ["q"], "max": 0}, {"queues": ["q"], "max": 1001}, {"queues": ["q"], "max": "1"},
    {"queues": ["q"], "max": 1.5}, {"queues": ["q"], "max": -1},
    {"queues": ["q"], "wait": 61}, {"queues": ["q"], "wait": -1}, {"queues": ["q"], "wait": "5"},
    {"queues": ["q"], "wait": 1e400},
    {"queues": ["q"], "timeout": 0}, {"queues": ["q"], "timeout": -1}, {"queues": ["q"], "timeout": "x"},
    {"queues": ["q"], "timeout": 1e9},
    {"queues": ["q"], "worker": 5}, {"queues": ["q"], "worker": "w" * 256},
], ids=json.dumps)
def test_lease_bad_requests(api: Api, q: str, body: dict[str, Any]) -> None:
    if body.get("queues") == ["q"]:
        body = {**body, "queues": [q]}
    bad_name = body.get("queues") in (["ok", "bad name"], ["x" * 129])
    api.enqueue_ok(q)
    with Unchanged(api):
        r = api.request("POST", "/v1/lease", body)
        assert_error(r, 400, "invalid_queue" if bad_name else "invalid_request")


@pytest.mark.parametrize("raw", MALFORMED + [b"[]", b"1", b'"q"', b"null"], ids=repr)
def test_lease_malformed(api: Api, q: str, raw: bytes) -> None:
    api.enqueue_ok(q)
    with Unchanged(api):
        assert_error(_post(api, "/v1/lease", raw), 400, "invalid_request")


# ---- finishing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("what,extra", [
    ("ack", None), ("ack", {"lease": 5}), ("ack", {"lease": None}), ("ack", {"lease": ["t"]}),
    ("fail", None), ("fail", {"retry_in": -1}), ("fail", {"retry_in": "10"}), ("fail", {"retry_in": 1e400}),
    ("fail", {"retry": "no"}), ("fail", {"retry": 0}), ("fail", {"error": 5}), ("fail", {"details": {}}),
    ("fail", {"lease": 1}),
    ("heartbeat", None), ("heartbeat", {"extend": 0}), ("heartbeat", {"extend": -5}),
    ("heartbeat", {"extend": "60"}), ("heartbeat", {"extend": 1e9}), ("heartbeat", {"lease": False}),
])
def test_finishing_bad_fields(api: Api, held: Held, what: str, extra: dict[str, Any] | None) -> None:
    """A request with the live lease but one bad field is refused whole: nothing changes."""
    body: dict[str, Any] = {} if extra is None else {"lease": held.lease, **extra}
    with Unchanged(api, held.id):
        assert_error(api.request("POST", f"/v1/jobs/{held.id}/{what}", body), 400, "invalid_request")
    assert api.ack(held.id, held.lease).status == 200  # the lease was never disturbed


@pytest.mark.parametrize("raw", MALFORMED + NOT_OBJECTS, ids=repr)
def test_finishing_malformed(api: Api, held: Held, raw: bytes) -> None:
    with Unchanged(api, held.id):
        for what in ("ack", "fail", "heartbeat"):
            assert_error(_post(api, f"/v1/jobs/{held.id}/{what}", raw), 400, "invalid_request")


@pytest.mark.parametrize("lines,line", [
    (b"", None), (b"\n\n", None), (b'{"id": "x"}\n', 2), (b'{"lease": "t"}\n', 2), (b"not json\n", 2),
    (b'{"id": 1, "lease": "t"}\n', 2), (b"[]\n", 2), (b'{"id": "a", "lease": "t"}\n{"id": "b"\n', 3),
])
def test_bulk_ack_bad_lines(api: Api, held: Held, lines: bytes, line: int | None) -> None:
    """Any bad line refuses the whole bulk ack, naming the line; even the good first line is not acked."""
    first = json.dumps({"id": held.id, "lease": held.lease}).encode() + b"\n"
    with Unchanged(api, held.id):
        body = assert_error(_post(api, "/v1/ack", first + lines if line else lines, NDJSON),
                            400, "invalid_request")
        assert body.get("line") == line


def test_redrive_bad_bodies(api: Api, q: str) -> None:
    with Unchanged(api):
        for body in ({"limit": 0}, {"limit": -1}, {"limit": "5"}, {"limit": 1.5}, {"limit": 10**9}):
            assert_error(api.request("POST", f"/v1/queues/{q}/redrive", body), 400, "invalid_request")
        assert_error(_post(api, f"/v1/queues/{q}/redrive", b"{"), 400, "invalid_request")


# ---- query parameters ------------------------------------------------------------------------------


@pytest.mark.parametrize("query", [
    "state=bogus", "state=QUEUED", "limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1.5",
    "limit=", "after=zz", "after=-1", "after=" + "f" * 40, "after=%00", "state=dead&limit=0",
])
def test_list_bad_query(api: Api, q: str, query: str) -> None:
    api.enqueue_ok(q)
    assert_error(api.request("GET", f"/v1/queues/{q}/jobs?{query}"), 400, "invalid_request")


BAD_CURSOR = "after must be a cursor from a previous page"
LAST_POS = (1 << 64) - 1  # a job cursor is a u64 position; the listing starts at cursor + 1


@pytest.mark.parametrize("path,query,message", [
    # job listing: the last u64 has no position after it (was a 500: the scan overflowed on + 1)
    ("/jobs", f"after={LAST_POS:x}", BAD_CURSOR),
    ("/jobs", f"after={LAST_POS:X}", BAD_CURSOR),
    ("/jobs", f"state=dead&after={LAST_POS:x}", BAD_CURSOR),
    ("/jobs", f"after={'0' * 48}{LAST_POS:x}", BAD_CURSOR),
    ("/jobs", f"after={LAST_POS + 1:x}", BAD_CURSOR),
    ("/jobs", "limit=" + "9" * 30, "limit must be an integer 1..1000"),
    ("/jobs", "limit=" + "9" * 5000, "limit must be an integer 1..1000"),  # past int()'s digit limit
    ("/jobs", "limit=-0x10", "limit must be an integer 1..1000"),
    # queue listing: names are the cursor, at most 128 characters
    ("", "after=" + "z" * 129, BAD_CURSOR),
    ("", "limit=" + "9" * 30, "limit must be an integer 1..1000"),
    ("", "limit=" + "9" * 5000, "limit must be an integer 1..1000"),
    ("", "limit=0", "limit must be an integer 1..1000"),
    ("", "limit=1001", "limit must be an integer 1..1000"),
])
def test_listing_cursors_and_limits_past_their_range_are_400(api: Api, q: str, path: str, query: str,
                                                             message: str) -> None:
    api.enqueue_ok(q)
    where = f"/v1/queues/{q}{path}" if path else "/v1/queues"
    with Unchanged(api):
        body = assert_error(api.request("GET", f"{where}?{query}"), 400, "invalid_request")
    assert body["message"] == message


def test_listing_cursors_and_limits_at_their_range_ends(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    for query in ("after=0", "after=", f"after={LAST_POS - 1:x}", f"state=dead&after={LAST_POS - 1:x}",
                  "limit=1", "limit=1000", f"limit=1&after={LAST_POS - 1:x}"):
        r = api.request("GET", f"/v1/queues/{q}/jobs?{query}")
        assert r.status == 200, (query, r)
        want = [jid] if query in ("after=0", "after=", "limit=1", "limit=1000") else []
        assert [j["id"] for j in r.json()["jobs"]] == want, query
    for query in ("after=" + "z" * 128, "after=", "limit=1", "limit=1000"):
        r = api.request("GET", f"/v1/queues?{query}")
        assert r.status == 200, (query, r)
    assert api.request("GET", "/v1/queues?after=" + "z" * 128).json() == {"queues": [], "next": None}
    # a purge takes no cursor from the client: a stray one is ignored, not parsed
    r = api.request("DELETE", f"/v1/queues/{q}/jobs?state=dead&after={LAST_POS:x}")
    assert r.status == 200 and r.json() == {"deleted": 0}


@pytest.mark.parametrize("query", ["", "state=", "state=queued", "state=active", "state=scheduled",
                                   "state=bogus", "state=DEAD"])
def test_purge_bad_state(api: Api, q: str, query: str) -> None:
    api.enqueue_ok(q)
    with Unchanged(api):
        assert_error(api.request("DELETE", f"/v1/queues/{q}/jobs?{query}"), 400, "invalid_request")


# ---- routes and methods ------------------------------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/"), ("GET", "/nope"), ("GET", "/v1"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs"),
    ("GET", "/v1/queues/q/jobs/extra"), ("POST", "/v2/lease"), ("GET", "/v1/jobs/a/b/c"),
    ("POST", "/v1/jobs/x/explode"),
])
def test_unknown_routes_are_404_json(api: Api, method: str, path: str) -> None:
    with Unchanged(api):
        assert_error(api.request(method, path, raw=b"{}" if method == "POST" else None), 404, "not_found")


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/lease"), ("DELETE", "/v1/lease"), ("PUT", "/v1/queues/q/jobs"), ("GET", "/v1/ack"),
    ("GET", "/v1/jobs/x/ack"), ("PUT", "/v1/jobs/x"), ("PATCH", "/v1/jobs/x"), ("POST", "/healthz"),
    ("PUT", "/v1/queues/q"), ("GET", "/v1/queues/q/pause"), ("POST", "/v1/queues"),
])
def test_wrong_methods_are_405_json(api: Api, method: str, path: str) -> None:
    with Unchanged(api):
        r = api.request(method, path, raw=b"{}" if method in ("POST", "PUT", "PATCH") else None)
        assert_error(r, 405, "method_not_allowed")
        assert r.headers.get("Allow")


# ---- property: nothing is ever a 500 -----------------------------------------------------------------

JSON_SCALARS = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                | st.text(max_size=20))
JSON_VALUES = st.recursive(JSON_SCALARS, lambda c: st.lists(c, max_size=4)
                           | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=8)
QUEUE_NAMES = st.sampled_from(["prop", "prop-2", "", "bad name", "x" * 129]) | st.text(max_size=10)
TEXT = st.text(max_size=20) | JSON_VALUES
NUMBER = st.integers(-10, 10**6) | st.floats(allow_nan=False) | st.integers() | JSON_VALUES
BOOL = st.booleans() | JSON_VALUES
# a valid long `wait` would make a lease hang: keep waits short or invalid
WAITS = st.one_of(st.floats(0, 0.05), st.floats(60.0001, 1e6), st.floats(max_value=-0.0001), JSON_VALUES)
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "enqueue": {"type": TEXT, "payload": JSON_VALUES, "priority": st.integers(-2, 12)
                | st.sampled_from(["high", "low", "normal", "x"]) | JSON_VALUES,
                "delay": st.floats(-1, 2) | NUMBER, "run_at": NUMBER, "max_attempts": NUMBER,
                "timeout": NUMBER, "key": TEXT, "id": TEXT},
    "lease": {"queues": st.lists(QUEUE_NAMES, max_size=3) | JSON_VALUES, "max": NUMBER,
              "wait": WAITS, "worker": TEXT, "timeout": NUMBER},
    "ack": {"lease": TEXT, "result": JSON_VALUES},
    "fail": {"lease": TEXT, "error": TEXT, "details": TEXT, "retry": BOOL, "retry_in": NUMBER},
    "heartbeat": {"lease": TEXT, "extend": NUMBER, "progress": JSON_VALUES},
}
CTYPES = st.sampled_from([None, "application/json", NDJSON, "text/plain", "application/x-www-form-urlencoded",
                          "application/xml", "application/json; charset=latin-1", "multipart/form-data",
                          ";;;", "application/x-ndjson; charset=utf-8"])


def _body(endpoint: str) -> st.SearchStrategy[bytes]:
    def lease_safe(v: Any) -> bool:  # any top-level-valid lease with a long wait would hang
        return not (endpoint == "lease" and isinstance(v, dict) and "wait" in v
                    and isinstance(v["wait"], (int, float)) and not isinstance(v["wait"], bool)
                    and 0.05 < v["wait"] <= 60)

    as_dict = st.fixed_dictionaries({}, optional=FIELDS[endpoint])
    values = (as_dict | as_dict | JSON_VALUES).filter(lease_safe).map(lambda v: json.dumps(v).encode())
    lines = st.lists(as_dict.filter(lease_safe), min_size=1, max_size=3).map(
        lambda vs: b"\n".join(json.dumps(v).encode() for v in vs))
    return st.one_of(values, values, lines, st.binary(max_size=64))


@pytest.fixture(scope="module")
def prop_job(api: Api) -> tuple[str, str]:
    jid = api.enqueue_ok("prop-held", {"timeout": 3600})
    return jid, api.lease_one("prop-held")["lease"]


@pytest.mark.parametrize("endpoint", list(FIELDS))
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_no_input_makes_a_500(api: Api, prop_job: tuple[str, str], endpoint: str, data: st.DataObject) -> None:
    body = data.draw(_body(endpoint), label="body")
    ctype = data.draw(CTYPES, label="ctype")
    jid = data.draw(st.sampled_from([prop_job[0], "no-such-job"]), label="job")
    queue = data.draw(st.sampled_from(["prop", "prop-2", "bad%20name"]), label="queue")
    path = {"enqueue": f"/v1/queues/{queue}/jobs", "lease": "/v1/lease"}.get(endpoint, f"/v1/jobs/{jid}/{endpoint}")
    r = _post(api, path, body, ctype)
    assert_well_formed_error(r)
    assert r.status in (200, 201, 204, 400, 404, 409, 413, 415), r


@pytest.mark.parametrize("jid", ["x" * 600, "%FF", "%00", "a%2Fb", "%C3%BC" * 300, "no-such-job"])
def test_odd_job_ids_in_the_path_are_404(api: Api, jid: str) -> None:
    """jid is a path segment (percent-encoded)."""
    with Unchanged(api):
        for method, suffix in (("GET", ""), ("DELETE", ""), ("POST", "/retry"), ("POST", "/ack"),
                               ("POST", "/fail"), ("POST", "/heartbeat")):
            r = api.request(method, f"/v1/jobs/{jid}{suffix}",
                            raw=b'{"lease": "t"}' if method == "POST" else None)
            assert_error(r, 404, "not_found")
        raw_id = urllib.parse.unquote(jid)
        r = api.request("POST", "/v1/ack", raw=json.dumps({"id": raw_id, "lease": "t"}).encode(), ctype=NDJSON)
        assert r.status == 200 and r.lines() == [{"id": raw_id, "ok": False, "error": "not_found"}]


def test_deeply_nested_json_is_400(api: Api, q: str, held: Held) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    lease = json.dumps(held.lease).encode()
    with Unchanged(api, held.id):
        assert_error(_post(api, f"/v1/queues/{q}/jobs", b'{"payload": ' + deep + b"}"), 400, "invalid_job")
        assert_error(_post(api, f"/v1/queues/{q}/jobs", deep), 400, "invalid_job")
        assert_error(_post(api, f"/v1/queues/{q}/jobs", b'{}\n{"payload": ' + deep + b"}\n", NDJSON),
                     400, "invalid_job", line=2)
        assert_error(_post(api, "/v1/lease", b'{"queues": ["a"], "x": ' + deep + b"}"), 400,
                     "invalid_request")
        for what, field in (("ack", b"result"), ("fail", b"details"), ("heartbeat", b"progress")):
            body = b'{"lease": ' + lease + b', "' + field + b'": ' + deep + b"}"
            assert_error(_post(api, f"/v1/jobs/{held.id}/{what}", body), 400, "invalid_request")
        body = b'{"id": "%s", "lease": %s, "result": %s}\n' % (held.id.encode(), lease, deep)
        assert_error(_post(api, "/v1/ack", body, NDJSON), 400, "invalid_request", line=1)
        assert_error(_post(api, f"/v1/queues/{q}/redrive", b'{"limit": ' + deep + b"}"), 400,
                     "invalid_request")
        # a form-typed body that looks like JSON is read as JSON: too deep is 400 as above
        assert_error(_post(api, f"/v1/queues/{q}/jobs", deep, "text/plain"), 400, "invalid_job")


def test_result_and_progress_over_the_payload_limit_are_413(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    big = "x" * 2000  # the module's server has a 1000-byte payload limit
    r = api.request("POST", f"/v1/jobs/{jid}/heartbeat", {"lease": job["lease"], "progress": big})
    assert_error(r, 413, "payload_too_large")
    r = api.request("POST", f"/v1/jobs/{jid}/ack", {"lease": job["lease"], "result": big})
    assert_error(r, 413, "payload_too_large")
    line = json.dumps({"id": jid, "lease": job["lease"], "result": big}).encode()
    r = api.request("POST", "/v1/ack", raw=line, ctype=NDJSON)
    assert_error(r, 413, "payload_too_large")
    assert r.json()["line"] == 1
    rec = api.job(jid)
    assert rec["state"] == "active" and rec["progress"] is None and rec["result"] is None


def test_long_error_texts_are_clipped_not_refused(api: Api, q: str) -> None:
    jid = api.enqueue_ok(q)
    job = api.lease_one(q)
    r = api.request("POST", f"/v1/jobs/{jid}/fail",
                    {"lease": job["lease"], "error": "e" * 5000, "details": "d" * 50_000, "retry": False})
    assert r.status == 200 and r.json()["state"] == "dead"
    err = api.job(jid)["errors"][-1]
    assert len(err["error"]) == 2000 and len(err["details"]) == 32_000
