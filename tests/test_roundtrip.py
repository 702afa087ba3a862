"""Every stored field crosses the writer process and comes back as it was sent.

The writer process answers the server over a socket; a field whose type that
link could not carry once stopped the server (a job leased again after a
heartbeat with `progress`). Hypothesis drives every field of a job through
its whole life over HTTP and compares what comes back with what was sent —
the model is the request itself, not the implementation.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _http import Api, running
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    d: Path = tmp_path_factory.mktemp("rt") / "data"
    with running(d) as (_, a):
        yield a


def _same(a: Any, b: Any) -> bool:
    """JSON equality, floats compared as the numbers they are (1.0 == 1 is not enough)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and (
            a == b or math.isclose(a, b, rel_tol=0, abs_tol=0))
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_releasing_a_job_with_progress_keeps_the_server_up(api: Api) -> None:
    """The reported crash: enqueue, lease, heartbeat with progress, fail with retry_in 0,
    lease again (the writer's answer then carries the progress)."""
    q = "rt-" + uuid.uuid4().hex[:8]
    jid = api.enqueue_ok(q, {"payload": {"n": 1}})
    job = api.lease_one(q)
    assert api.heartbeat(jid, job["lease"], progress={"pct": 40}).status == 200
    assert api.fail(jid, job["lease"], error="boom", retry_in=0).status == 200
    again = api.lease_one(q)
    assert again["id"] == jid and again["progress"] == {"pct": 40} and again["attempt"] == 2
    assert api.ack(jid, again["lease"], result=[1, "x"]).status == 200
    assert api.job(jid)["result"] == [1, "x"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON_VALUES, progress=JSON_VALUES, result=JSON_VALUES, typ=st.none() | TEXT,
       key=st.none() | TEXT.filter(lambda k: 0 < len(k.encode()) <= 255),
       worker=st.none() | TEXT, error=TEXT, details=st.none() | TEXT,
       priority=st.integers(0, 9), timeout=st.floats(0.5, 604800), max_attempts=st.integers(2, 1000))
def test_every_stored_field_round_trips(api: Api, payload: Any, progress: Any, result: Any,
                                        typ: str | None, key: str | None, worker: str | None,
                                        error: str, details: str | None, priority: int,
                                        timeout: float, max_attempts: int) -> None:
    q = "rt-" + uuid.uuid4().hex[:8]
    sent = {"type": typ, "payload": payload, "priority": priority, "key": key,
            "timeout": timeout, "max_attempts": max_attempts}
    jid = api.enqueue_ok(q, sent)
    lease_req: dict[str, Any] = {} if worker is None else {"worker": worker}
    first = api.lease_one(q, **lease_req)
    assert api.heartbeat(jid, first["lease"], progress=progress).status == 200
    r = api.fail(jid, first["lease"], error=error, details=details, retry_in=0)
    assert r.status == 200, r
    again = api.lease_one(q, max=10, **lease_req)  # through the writer: every field, stored
    assert again["id"] == jid
    r = api.ack(jid, again["lease"], result=result)
    assert r.status == 200, r
    for got in (again, api.job(jid)):
        for field in ("type", "priority", "key", "max_attempts", "queue"):
            assert got[field] == {**sent, "queue": q}[field], field
        assert _same(got["payload"], payload)
        assert _same(got["progress"], progress)
        assert got["timeout"] == timeout
        assert got["worker"] == worker
        assert got["errors"][0]["error"] == (error or "failed")
        assert got["errors"][0]["details"] == details
    assert _same(api.job(jid)["result"], result)
    assert json.loads(json.dumps(api.job(jid)))["state"] == "completed"


# ---- the link itself: one bad message fails one request ----------------------------------


def test_an_undecodable_message_fails_alone() -> None:
    from tqd.engine import process as wp
    from tqd.queue import ops

    good = wp.OpMsg(7, ops.Cancel(1.0, "a"))
    enc = wp._msgs_enc
    bad = enc.encode([0, 8, ["cancel", "not-a-time", "b"]])  # tag OpMsg, rid 8, broken op
    frame = b"\x92" + enc.encode(good) + bad  # a msgpack array of the two
    msgs = wp._decode_msgs(frame)
    assert msgs[0] == good
    assert isinstance(msgs[1], wp.BadMsg) and msgs[1].rid == 8
    assert wp._decode_msgs(b"\xc1") == []  # not even a list: logged, the writer goes on


async def test_an_unreadable_answer_fails_only_its_request() -> None:
    import asyncio

    from tqd.engine import link as wp
    from tqd.engine.remote import RemoteWriter, WriterHandle
    from tqd.errors import Internal
    from tqd.queue import ops

    commits: list[Any] = []
    rw = RemoteWriter(WriterHandle(0, None), commits.append)  # type: ignore[arg-type]
    rw._loop = asyncio.get_running_loop()
    rw._send = lambda m: None  # type: ignore[method-assign]
    f_bad = rw.submit(ops.Redrive(1.0, "q", 1))  # expects an int back
    f_good = rw.submit(ops.Redrive(1.0, "q", 1))
    reply = wp._msgs_enc.encode((None, 1, 7, [(1, wp.OK, b'{"not": "an int"}'), (2, wp.OK, b"3")]))
    rw.data_received(wp._frame(reply))
    assert f_good.result() == 3
    with pytest.raises(Internal):
        f_bad.result()
    rw.data_received(wp._frame(b"\xc1"))  # an unreadable frame: logged, the link goes on
    f_next = rw.submit(ops.Redrive(1.0, "q", 1))
    f_pos = rw.submit(ops.Redrive(1.0, "q", 1), position=True)
    rw.data_received(wp._frame(wp._msgs_enc.encode((None, 1, 8, [(3, wp.OK, b"1"), (4, wp.OK, b"2")]))))
    assert f_next.result() == 1
    assert f_pos.result() == (2, (1, 8))  # with the position of the commit that answered it
    assert [c.position for c in commits] == [(1, 7), (1, 8)]


def test_each_op_declares_the_answer_its_rule_returns() -> None:
    """ops.X.Result is the return type of the core's rule for X: the writer process decodes
    answers by it, so the two may not drift apart."""
    import typing

    from tqd.queue import ops
    from tqd.queue.core import _HANDLERS

    for op_type in ops.Op.__args__:
        hints = typing.get_type_hints(_HANDLERS[op_type])
        declared = type(None) if op_type.Result is None else op_type.Result
        assert hints["return"] == declared, f"{op_type.__name__}: rule returns {hints['return']}"
