"""The /v1 handlers (and health, metrics): thin. Each decodes (tqd.protocol), has the
queue's rules check what it read (tqd.queue.validate, shared with every front end), makes
one service call and encodes. What stays here is HTTP: query strings, the line of an
NDJSON body an error is about, statuses. The route table that names them, the middleware
and the app are tqd.http.app.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import protocol as p
from ..errors import InvalidJob, InvalidRequest, PayloadTooLarge, TqdError
from ..observe.metrics import CONTENT_TYPE, render
from ..queue import validate
from ..queue.ops import AckItem, AckOutcome, NewJob
from . import auth, repl
from . import body as httpbody
from .body import NDJSON
from .keys import BODY_RULES, svc

# ---- framing ------------------------------------------------------------------


def reply(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=p.encode(obj), status=status, content_type="application/json")


def reply_lines(objs: list[Any], status: int = 200) -> web.Response:
    return web.Response(body=p.encode_lines(objs), status=status, content_type=NDJSON)


async def read_body(request: web.Request) -> tuple[bytes, bool]:
    """The body, checked at the door (see httpbody.read), and whether it is NDJSON."""
    rule = request.app[BODY_RULES][request.match_info.handler]
    return await httpbody.read(request, rule, svc(request).s)


def _queue(request: web.Request) -> str:
    return validate.queue_name(request.match_info["queue"])


def _at_line(e: TqdError, n: int) -> TqdError:
    """A rule's error as the answer about line n of a bulk body: `line` among its fields and,
    for a job field out of range, "line n: " before its message. The payload limit (413) and
    the priority rule have never named the line in their message; their answers stay as
    they are (docs/protocol.md)."""
    numbered = isinstance(e, InvalidJob) and e.message != validate.BAD_PRIORITY
    return type(e)(f"line {n}: {e.message}" if numbered else e.message, **e.extra, line=n)


def _int_param(raw: str, name: str, lo: int, hi: int) -> int:
    try:
        v = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer {lo}..{hi}") from None
    if not lo <= v <= hi:
        raise InvalidRequest(f"{name} must be an integer {lo}..{hi}")
    return v


# ---- enqueue ------------------------------------------------------------------


async def enqueue(request: web.Request) -> web.Response:
    queue = _queue(request)
    body, bulk = await read_body(request)
    service = svc(request)
    s, now = service.s, service.clock.now()
    trace = validate.traceparent(request.headers.get("traceparent"))  # kept with every job
    if not bulk:
        job = validate.new_job(p.decode_enqueue(body), s, now, trace)
        (res,) = await service.enqueue(queue, [job])
        return reply(res, 201 if res.created else 200)
    jobs: list[NewJob] = []
    for n, line in p.iter_lines(body):
        if len(jobs) >= s.max_bulk_lines:
            raise PayloadTooLarge(f"more than {s.max_bulk_lines} lines in one bulk request", line=n)
        if len(line) > s.max_payload_bytes + p.FIELD_ROOM_BYTES:
            raise PayloadTooLarge(f"line {n} is larger than {s.max_payload_bytes} bytes", line=n)
        req = p.decode_enqueue(line, n)
        try:
            jobs.append(validate.new_job(req, s, now, trace))
        except TqdError as e:
            raise _at_line(e, n) from None
    if not jobs:
        raise InvalidJob("bulk body has no jobs")
    return reply_lines(await service.enqueue(queue, jobs), 201)


# ---- lease and finishing ------------------------------------------------------


async def lease(request: web.Request) -> web.Response:
    body, _ = await read_body(request)
    req = validate.lease(p.decode_lease(body))
    g = auth.guard(request)
    g.check_queues(req.queues)
    with g.parking(req.wait):
        jobs = await svc(request).lease(req.queues, req.max, req.wait, req.worker, req.timeout)
    if not jobs:
        return web.Response(status=204)
    return reply_lines(jobs)


async def ack(request: web.Request) -> web.Response:
    body, _ = await read_body(request)
    service = svc(request)
    req = p.decode_ack(body)
    await service.ack(request.match_info["id"], req.lease, validate.result(req, service.s))
    return reply({"state": "completed"})


async def ack_bulk(request: web.Request) -> web.Response:
    body, _ = await read_body(request)
    service = svc(request)
    items: list[AckItem] = []
    for n, line in p.iter_lines(body):
        if len(items) >= p.MAX_ACK_LINES:
            raise PayloadTooLarge(f"more than {p.MAX_ACK_LINES} lines in one bulk ack", line=n)
        a = p.decode_bulk_ack_line(line, n)
        try:
            items.append(validate.ack_item(a, service.s))
        except TqdError as e:
            raise _at_line(e, n) from None
    if not items:
        raise InvalidRequest("bulk ack has no lines")
    hidden = await auth.guard(request).hidden_jobs(service, [i.id for i in items])
    shown = [i for i in items if i.id not in hidden]
    done = iter(await service.ack_many(shown) if shown else [])
    # the lines in order; a line for a job the token may not see fails as a missing job would
    outcomes = [AckOutcome(i.id, "not_found") if i.id in hidden else next(done) for i in items]
    return reply_lines([p.AckLineResult(o.id, o.error is None, o.error) for o in outcomes])


async def fail(request: web.Request) -> web.Response:
    body, _ = await read_body(request)
    req = p.decode_fail(body)
    f = validate.failure(req)
    st = await svc(request).fail(request.match_info["id"], req.lease, f.error, f.details, f.retry,
                                 f.retry_in)
    state = p.STATES[st.state]
    return reply({"state": state} if state == "dead" else {"state": state, "run_at": st.run_at})


async def heartbeat(request: web.Request) -> web.Response:
    body, _ = await read_body(request)
    service = svc(request)
    req = p.decode_heartbeat(body)
    beat = validate.heartbeat(req, service.s)
    exp = await service.heartbeat(request.match_info["id"], req.lease, beat.extend, beat.progress)
    return reply({"lease_expires_at": exp})


async def release(request: web.Request) -> web.Response:
    body, _ = await read_body(request)
    req = validate.release(p.decode_release(body))
    st = await svc(request).release(request.match_info["id"], req.lease, req.delay)
    state = p.STATES[st.state]
    return reply({"state": state} if state == "queued" else {"state": state, "run_at": st.run_at})


# ---- inspecting and managing --------------------------------------------------


async def get_job(request: web.Request) -> web.Response:
    """With ``?wait=S`` (0..60): a long-poll until the job has finished, or S seconds."""
    raw = request.query.get("wait")
    if raw is None:
        return reply(svc(request).get_job(request.match_info["id"]))
    wait = _seconds_param(raw, "wait", MAX_JOB_WAIT_S)
    return reply(await svc(request).wait_job(request.match_info["id"], wait))


MAX_JOB_WAIT_S = 60.0


def _seconds_param(raw: str, name: str, hi: float) -> float:
    try:
        v = float(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a number of seconds 0..{hi:g}") from None
    if not 0 <= v <= hi:  # (NaN too)
        raise InvalidRequest(f"{name} must be a number of seconds 0..{hi:g}")
    return v


async def cancel_job(request: web.Request) -> web.Response:
    await svc(request).cancel(request.match_info["id"])
    return reply({"state": "cancelled"})


async def retry_job(request: web.Request) -> web.Response:
    await svc(request).retry(request.match_info["id"])
    return reply({"state": "queued"})


async def list_queues(request: web.Request) -> web.Response:
    """Queues in name order, a page at a time: {"queues": [...], "next": cursor or null}."""
    q = request.query
    limit = _int_param(q.get("limit", str(validate.MAX_PAGE)), "limit", 1, validate.MAX_PAGE)
    after = validate.queue_cursor(q.get("after", ""))
    return reply(auth.guard(request).queue_page(svc(request), after, limit))


async def delete_queue(request: web.Request) -> web.Response:
    queue = _queue(request)
    force = request.query.get("force", "false").lower()
    if force not in ("true", "false", "1", "0"):
        raise InvalidRequest("force must be true or false")
    purged = await svc(request).delete_queue(queue, force in ("true", "1"))
    return reply({"deleted": True, "purged": purged})


async def queue_stats(request: web.Request) -> web.Response:
    return reply(svc(request).queue_stats(_queue(request)))


async def pause(request: web.Request) -> web.Response:
    return reply(await svc(request).set_paused(_queue(request), True))


async def resume(request: web.Request) -> web.Response:
    return reply(await svc(request).set_paused(_queue(request), False))


async def redrive(request: web.Request) -> web.Response:
    queue = _queue(request)
    body, _ = await read_body(request)
    req = validate.redrive(p.decode_redrive(body))
    return reply({"moved": await svc(request).redrive(queue, req.limit)})


async def list_jobs(request: web.Request) -> web.Response:
    queue = _queue(request)
    q = request.query
    state = validate.job_state(q.get("state") or None)
    limit = _int_param(q.get("limit", "100"), "limit", 1, validate.MAX_PAGE)
    after = validate.job_cursor(q.get("after", ""))
    type_ = q.get("type")
    if type_ is not None and not 0 < len(type_) <= p.MAX_TYPE_CHARS:
        raise InvalidRequest(f"type must be 1..{p.MAX_TYPE_CHARS} characters")
    raw = q.get("priority")
    priority = None if raw is None else _int_param(raw, "priority", 0, 9)
    return reply(await svc(request).list_jobs(queue, state, limit, after, type_, priority))


async def purge(request: web.Request) -> web.Response:
    queue = _queue(request)
    state = validate.purge_state(request.query.get("state", ""))
    return reply({"deleted": await svc(request).purge(queue, state)})


async def healthz(request: web.Request) -> web.Response:
    return reply({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    service = svc(request)
    reason = service.not_ready_reason()
    if reason is not None:
        return reply({"ready": False, "role": service.role, "reason": reason}, 503)
    return reply({"ready": True, "role": service.role})


async def metrics(request: web.Request) -> web.Response:
    """The Prometheus exposition (tqd.observe.metrics)."""
    service = svc(request)
    body = render(service, request.app.get(repl.NODE), await service.writer_stats())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def cluster(request: web.Request) -> web.Response:
    return repl.cluster_status(request, svc(request))
