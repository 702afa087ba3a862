"""The queue's request rules (tqd.queue.validate) as plain functions: no server, no body.

Tables pin the answers (the messages are the protocol's, quoted by docs/protocol.md);
Hypothesis checks the contract every front end relies on: whatever a decoder hands over,
a rule returns something the queue can store or raises a 4xx TqdError, nothing else.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from msgspec import Raw

from tqd import protocol as p
from tqd.config import Settings
from tqd.errors import InvalidJob, InvalidQueue, InvalidRequest, PayloadTooLarge, TqdError
from tqd.queue import validate as v
from tqd.queue.ops import AckItem, NewJob

S = replace(Settings(), max_payload_bytes=100)
NOW = 1_700_000_000.0


def job(**fields: Any) -> p.EnqueueRequest:
    return p.EnqueueRequest(**{"payload": Raw(b"1"), **fields})


# ---- tables ---------------------------------------------------------------------------------

GOOD_JOBS = [
    (job(), NewJob(None, None, b"1", 5, None, S.max_attempts, S.lease_timeout_s, None)),
    (job(priority="high", key="k", id="a:b", type="t"),
     NewJob("a:b", "t", b"1", 7, None, S.max_attempts, S.lease_timeout_s, "k")),
    (job(priority="low", delay=0.0), NewJob(None, None, b"1", 3, None, S.max_attempts, 60.0, None)),
    (job(delay=5.0, max_attempts=1, timeout=0.5),
     NewJob(None, None, b"1", 5, NOW + 5, 1, 0.5, None)),
    (job(run_at=0.0, max_attempts=1000, timeout=604800.0),
     NewJob(None, None, b"1", 5, 0.0, 1000, 604800.0, None)),
    (job(payload=Raw(b'"' + b"x" * 98 + b'"'), priority=9, key="é" * 127),
     NewJob(None, None, b'"' + b"x" * 98 + b'"', 9, None, S.max_attempts, 60.0, "é" * 127)),
]


@pytest.mark.parametrize("req,want", GOOD_JOBS)
def test_good_jobs(req: p.EnqueueRequest, want: NewJob) -> None:
    assert v.new_job(req, S, NOW) == want


BAD_JOBS = [
    (job(payload=Raw(b"1" * 101)), PayloadTooLarge, "payload is larger than 100 bytes"),
    (job(priority=10), InvalidJob, "priority must be 0..9 or one of high, normal, low"),
    (job(priority="HIGH"), InvalidJob, "priority must be 0..9 or one of high, normal, low"),
    (job(delay=1.0, run_at=NOW), InvalidJob, "give delay or run_at, not both"),
    (job(delay=-1.0), InvalidJob, "delay must be 0..315360000 seconds"),
    (job(delay=math.nan), InvalidJob, "delay must be 0..315360000 seconds"),
    (job(run_at=NOW + 315360001), InvalidJob, "run_at must be epoch seconds, at most 10 years ahead"),
    (job(run_at=math.nan), InvalidJob, "run_at must be epoch seconds, at most 10 years ahead"),
    (job(max_attempts=0), InvalidJob, "max_attempts must be 1..1000"),
    (job(max_attempts=1001), InvalidJob, "max_attempts must be 1..1000"),
    (job(timeout=0.0), InvalidJob, "timeout must be > 0 and <= 604800 seconds"),
    (job(timeout=math.inf), InvalidJob, "timeout must be > 0 and <= 604800 seconds"),
    (job(key=""), InvalidJob, "key must be 1..255 bytes"),
    (job(key="é" * 128), InvalidJob, "key must be 1..255 bytes"),
    (job(id="a b"), InvalidJob, "id must match [A-Za-z0-9_.:-]{1,128}"),
    (job(id="x" * 129), InvalidJob, "id must match [A-Za-z0-9_.:-]{1,128}"),
    (job(type="t" * 256), InvalidJob, "type must be at most 255 characters"),
    # the first rule broken is the one named
    (job(priority=-1, delay=-1.0), InvalidJob, "priority must be 0..9 or one of high, normal, low"),
    (job(max_attempts=0, id="a b"), InvalidJob, "max_attempts must be 1..1000"),
]


@pytest.mark.parametrize("req,err,message", BAD_JOBS)
def test_bad_jobs(req: p.EnqueueRequest, err: type[TqdError], message: str) -> None:
    with pytest.raises(err) as e:
        v.new_job(req, S, NOW)
    assert type(e.value) is err and e.value.message == message and e.value.extra == {}


@pytest.mark.parametrize("call,err,message", [
    (lambda: v.queue_name("a b"), InvalidQueue, "queue name must match [A-Za-z0-9_.:-]{1,128}, got 'a b'"),
    (lambda: v.queue_name(""), InvalidQueue, "queue name must match [A-Za-z0-9_.:-]{1,128}, got ''"),
    (lambda: v.queue_cursor("a/b"), InvalidRequest, "after must be a cursor from a previous page"),
    (lambda: v.lease(p.LeaseRequest([])), InvalidRequest, "queues must name at least one queue"),
    (lambda: v.lease(p.LeaseRequest(["q"] * 101)), InvalidRequest, "at most 100 queues per lease"),
    (lambda: v.lease(p.LeaseRequest(["q", "?"])), InvalidQueue,
     "queue name must match [A-Za-z0-9_.:-]{1,128}, got '?'"),
    (lambda: v.lease(p.LeaseRequest(["q"], max=0)), InvalidRequest, "max must be 1..1000"),
    (lambda: v.lease(p.LeaseRequest(["q"], wait=60.5)), InvalidRequest, "wait must be 0..60 seconds"),
    (lambda: v.lease(p.LeaseRequest(["q"], timeout=0.0)), InvalidRequest,
     "timeout must be > 0 and <= 604800 seconds"),
    (lambda: v.lease(p.LeaseRequest(["q"], worker="w" * 256)), InvalidRequest,
     "worker is longer than 255 characters"),
    (lambda: v.result(p.AckRequest("l", Raw(b"1" * 101)), S), PayloadTooLarge,
     "result is larger than 100 bytes"),
    (lambda: v.failure(p.FailRequest("l", retry_in=-1.0)), InvalidRequest,
     "retry_in must be >= 0 seconds (and at most 10 years)"),
    (lambda: v.heartbeat(p.HeartbeatRequest("l", extend=604801.0), S), InvalidRequest,
     "extend must be > 0 and <= 604800 seconds"),
    (lambda: v.heartbeat(p.HeartbeatRequest("l", progress=Raw(b"1" * 101)), S), PayloadTooLarge,
     "progress is larger than 100 bytes"),
    (lambda: v.release(p.ReleaseRequest("l", delay=-0.5)), InvalidRequest,
     "delay must be >= 0 seconds (and at most 10 years)"),
    (lambda: v.redrive(p.RedriveRequest(100_001)), InvalidRequest, "limit must be 1..100000"),
    (lambda: v.job_state("done"), InvalidRequest,
     "state must be one of queued, scheduled, active, completed, dead, cancelled"),
    (lambda: v.job_cursor("zz"), InvalidRequest, "after must be a cursor from a previous page"),
    (lambda: v.job_cursor("1" + "0" * 16), InvalidRequest, "after must be a cursor from a previous page"),
    # the last u64: a page starts after its cursor, and no position follows that one
    (lambda: v.job_cursor("f" * 16), InvalidRequest, "after must be a cursor from a previous page"),
    (lambda: v.purge_state("queued"), InvalidRequest, "state must be one of dead, completed, cancelled"),
])
def test_other_rules_refuse(call: Any, err: type[TqdError], message: str) -> None:
    with pytest.raises(err) as e:
        call()
    assert type(e.value) is err and e.value.message == message


def test_other_rules_accept() -> None:
    req = p.LeaseRequest(["a", "b.c"] * 50, max=1000, wait=60.0, worker="w" * 255, timeout=604800.0)
    assert v.lease(req) is req
    assert v.queue_cursor("") == "" and v.queue_cursor("q:1") == "q:1"
    assert v.result(p.AckRequest("l"), S) == b"null"  # no result sent: JSON null
    assert v.ack_item(p.BulkAckLine("j", "l", Raw(b"[1]")), S) == AckItem("j", "l", b"[1]")
    assert v.failure(p.FailRequest("l")) == v.Failure("failed", None, True, None)
    clipped = v.failure(p.FailRequest("l", "e" * 5000, "d" * 50_000, False, 0.0))
    assert clipped.error == "e" * (p.MAX_ERROR_CHARS - 1) + "…" and len(clipped.error) == p.MAX_ERROR_CHARS
    assert len(clipped.details or "") == p.MAX_DETAILS_CHARS and (clipped.retry, clipped.retry_in) == (False, 0.0)
    assert v.heartbeat(p.HeartbeatRequest("l"), S) == v.Beat(None, None)  # progress not sent: kept
    assert v.heartbeat(p.HeartbeatRequest("l", 5.0, Raw(b"{}")), S) == v.Beat(5.0, b"{}")
    assert v.release(p.ReleaseRequest("l", p.MAX_DELAY_S)).delay == p.MAX_DELAY_S
    assert v.redrive(p.RedriveRequest(1)).limit == 1
    assert v.job_state(None) is None and v.job_state("dead") == "dead"
    assert v.job_cursor("") == 0 and v.job_cursor("ff") == 255
    assert v.job_cursor("f" * 15 + "e") == (1 << 64) - 2
    assert v.purge_state("completed") == "completed"


# ---- properties -----------------------------------------------------------------------------
# Requests are drawn valid but for one or two fields drawn wild (any value of the wire type, and
# the values on either side of each limit), so that most rules are met and the one broken is
# the one tested.

TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=300)  # JSON has no lone surrogates
EDGES = [0.0, -0.0, -1e-9, 1e-9, -1.0, 59.5, 60.0, 60.5, 61.0, p.MAX_TIMEOUT_S, p.MAX_TIMEOUT_S + 1,
         p.MAX_DELAY_S, p.MAX_DELAY_S + 1, NOW, NOW + p.MAX_DELAY_S, NOW + p.MAX_DELAY_S + 1,
         math.nan, math.inf, -math.inf]
FLOATS = st.floats() | st.sampled_from(EDGES)
INTS = st.integers() | st.integers(-2, 1002) | st.sampled_from([100_000, 100_001])
PRIORITIES = st.integers() | st.integers(-2, 11) | TEXT | st.sampled_from(list(p.PRIORITY_NAMES))


def refused_4xx(e: TqdError) -> bool:
    return 400 <= e.http_status < 500 and bool(e.message)


@st.composite
def mostly_valid(draw: st.DrawFn, cls: type[Any], valid: dict[str, Any], wild: dict[str, Any]) -> Any:
    fields = {name: draw(s) for name, s in valid.items()}
    for name in draw(st.lists(st.sampled_from(sorted(wild)), min_size=1, max_size=2)):
        fields[name] = draw(wild[name])
    return cls(**fields)


@given(PRIORITIES)
@example("normal")
@example(9)
def test_any_accepted_priority_is_0_to_9(value: int | str) -> None:
    try:
        prio = v.priority(value)
    except TqdError as e:
        assert type(e) is InvalidJob and refused_4xx(e)
        assert value not in p.PRIORITY_NAMES and not (type(value) is int and 0 <= value <= 9)
    else:
        assert type(prio) is int and 0 <= prio <= 9
        assert prio == p.PRIORITY_NAMES.get(value, value)  # type: ignore[call-overload]


JOBS = mostly_valid(p.EnqueueRequest, valid={
    "type": st.none() | st.text(max_size=20) | st.text("t", min_size=250, max_size=255),
    "payload": st.binary(max_size=100).map(Raw),
    "priority": st.integers(0, 9) | st.sampled_from(list(p.PRIORITY_NAMES)),
    "delay": st.none() | st.floats(0, p.MAX_DELAY_S),
    "run_at": st.none(),
    "max_attempts": st.none() | st.integers(1, 1000),
    "timeout": st.none() | st.floats(0, p.MAX_TIMEOUT_S, exclude_min=True),
    "key": st.none() | st.text(min_size=1, max_size=60) | st.text("é", min_size=100, max_size=127),
    "id": st.none() | st.from_regex(p.ID_RE, fullmatch=True),
}, wild={
    "type": TEXT | st.sampled_from(["t" * 255, "t" * 256]),
    "payload": st.binary(max_size=200).map(Raw) | st.sampled_from([Raw(b"1" * 100), Raw(b"1" * 101)]),
    "priority": PRIORITIES,
    "delay": FLOATS,
    "run_at": FLOATS,
    "max_attempts": INTS,
    "timeout": FLOATS,
    "key": TEXT | st.sampled_from(["", "é" * 127, "é" * 128]),
    "id": TEXT | st.sampled_from(["", "x" * 128, "x" * 129]),
})


@settings(max_examples=400)
@given(JOBS)
def test_a_job_is_stored_sane_or_refused_4xx(req: p.EnqueueRequest) -> None:
    try:
        nj = v.new_job(req, S, NOW)
    except TqdError as e:
        assert refused_4xx(e), e
        return
    assert 0 <= nj.priority <= 9 and 1 <= nj.max_attempts <= 1000
    assert 0 < nj.timeout <= p.MAX_TIMEOUT_S and len(nj.payload) <= S.max_payload_bytes
    assert nj.run_at is None or 0 <= nj.run_at <= NOW + p.MAX_DELAY_S
    assert nj.key is None or 1 <= len(nj.key.encode()) <= p.MAX_KEY_BYTES
    assert nj.id is None or p.ID_RE.fullmatch(nj.id)
    assert nj.type is None or len(nj.type) <= p.MAX_TYPE_CHARS
    # the common job's shortcut gives what the full checks give
    assert v._checked_job(req, S, NOW) == nj


LEASES = mostly_valid(p.LeaseRequest, valid={
    "queues": st.lists(st.from_regex(p.QUEUE_RE, fullmatch=True), min_size=1, max_size=100),
    "max": st.integers(1, 1000),
    "wait": st.floats(0, 60),
    "worker": st.none() | st.text(max_size=255),
    "timeout": st.none() | st.floats(0, p.MAX_TIMEOUT_S, exclude_min=True),
}, wild={
    "queues": st.lists(TEXT | st.from_regex(p.QUEUE_RE, fullmatch=True), max_size=102),
    "max": INTS,
    "wait": FLOATS,
    "worker": TEXT | st.sampled_from(["w" * 255, "w" * 256]),
    "timeout": FLOATS,
})


@settings(max_examples=300)
@given(LEASES)
def test_a_lease_is_sane_or_refused_4xx(req: p.LeaseRequest) -> None:
    try:
        assert v.lease(req) is req
    except TqdError as e:
        assert refused_4xx(e), e
        return
    assert 1 <= len(req.queues) <= 100 and all(p.QUEUE_RE.fullmatch(q) for q in req.queues)
    assert 1 <= req.max <= 1000 and 0 <= req.wait <= 60
    assert req.timeout is None or 0 < req.timeout <= p.MAX_TIMEOUT_S
    assert req.worker is None or len(req.worker) <= p.MAX_WORKER_CHARS


def within(x: float | None, lo: float, hi: float) -> bool:
    return x is None or lo <= x <= hi


@given(st.builds(p.FailRequest, lease=TEXT, error=st.none() | TEXT, retry_in=st.none() | FLOATS),
       st.builds(p.HeartbeatRequest, lease=TEXT, extend=st.none() | FLOATS,
                 progress=st.binary(max_size=103).map(Raw)),
       st.builds(p.ReleaseRequest, lease=TEXT, delay=FLOATS),
       st.builds(p.RedriveRequest, limit=INTS), TEXT)
def test_other_requests_pass_sane_or_are_refused_4xx(fail: p.FailRequest, beat: p.HeartbeatRequest,
                                                     rel: p.ReleaseRequest, red: p.RedriveRequest,
                                                     text: str) -> None:
    checks = [
        (lambda: v.failure(fail), lambda f: within(f.retry_in, 0, p.MAX_DELAY_S)),
        (lambda: v.heartbeat(beat, S), lambda b: (b.extend is None or 0 < b.extend <= p.MAX_TIMEOUT_S)
         and (b.progress is None or len(b.progress) <= S.max_payload_bytes)),
        (lambda: v.release(rel), lambda r: within(r.delay, 0, p.MAX_DELAY_S)),
        (lambda: v.redrive(red), lambda r: 1 <= r.limit <= 100_000),
        (lambda: v.queue_name(text), lambda q: p.QUEUE_RE.fullmatch(q)),
        (lambda: v.queue_cursor(text), lambda c: c == "" or p.QUEUE_RE.fullmatch(c)),
        (lambda: v.job_state(text), lambda s: s in p.STATES),
        (lambda: v.job_cursor(text), lambda n: 0 <= n and n + 1 < 1 << 64),  # n + 1 is a u64
        (lambda: v.purge_state(text), lambda s: s in ("dead", "completed", "cancelled")),
    ]
    for call, sane in checks:
        try:
            out = call()
        except TqdError as e:
            assert refused_4xx(e), e
        else:
            assert sane(out), out
