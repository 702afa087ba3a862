"""HTTP API: aiohttp app factory, error replies, the route table and thin handlers.

A handler decodes (tqd.protocol), has the queue's rules check what it read
(tqd.queue.validate, shared with every front end), makes one service call and encodes. What
stays here is HTTP: query strings, the line of an NDJSON body an error is about, statuses.

Who may call a route is a column of the route table (``need``, checked by tqd.http.auth
before anything else, the leader's redirect included); the lease, bulk ack and queue list
handlers check the queues they read through ``auth.guard(request)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiohttp import HttpVersion11, web
from aiohttp.typedefs import Middleware

from .. import protocol as p
from ..auth.limits import Limits
from ..auth.policy import Authenticator, Need, Right, Scope
from ..config import Settings
from ..errors import (
    Internal,
    InvalidJob,
    InvalidRequest,
    MethodNotAllowed,
    NoLeader,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    TqdError,
    Unauthorized,
)
from ..observe.metrics import CONTENT_TYPE, HTTP_TIMES, NO_ROUTE, RouteTimes, render
from ..queue import validate
from ..queue.ops import AckItem, AckOutcome, NewJob
from ..service import QueueService
from . import access, auth, events, openapi, repl, ui
from . import body as httpbody
from .body import DROP, NDJSON, BodyRule
from .keys import SERVICE, svc

log = logging.getLogger("tqd.http")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InFlight:
    """Requests being handled, so shutdown can wait for exactly those."""

    def __init__(self) -> None:
        self.n = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.n += 1
        self._idle.clear()

    def leave(self) -> None:
        self.n -= 1
        if self.n == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False


IN_FLIGHT = web.AppKey("in_flight", InFlight)


# ---- framing ------------------------------------------------------------------


def reply(obj: Any, status: int = 200) -> web.Response:
    return web.Response(body=p.encode(obj), status=status, content_type="application/json")


def reply_lines(objs: list[Any], status: int = 200) -> web.Response:
    return web.Response(body=p.encode_lines(objs), status=status, content_type=NDJSON)


def error_reply(e: TqdError) -> web.Response:
    resp = web.Response(body=p.encode(e.to_wire()), status=e.http_status,
                        content_type="application/json")
    if e.close_connection:
        resp.force_close()
    if isinstance(e, Unauthorized):
        auth.www_authenticate(resp)
    elif isinstance(e, RateLimited):
        resp.headers["Retry-After"] = str(e.extra.get("retry_after", 1))
    return resp


WRITE, READ = True, False


class Route(NamedTuple):
    method: str
    path: str
    handler: Handler
    # changes state: the cluster sends it to the leader, the security layer wants a writer's
    # role for it. No default: a new route must say which it is.
    write: bool
    # who may call it (tqd.auth.policy: a right, and where the queue it touches comes from).
    # No default either: a new route must say who may call it.
    need: Need
    body: BodyRule = BodyRule()  # the routes that take no body still have a limit

    @property
    def limited(self) -> bool:
        """Held to the caller's rate limit (tqd.auth.limits): the /v1 API, but not the
        cluster's replication; health, metrics and this document never."""
        return self.path.startswith("/v1/") and self.need.right is not Right.CLUSTER


def _route(request: web.Request) -> Route | None:
    return _BY_HANDLER.get(request.match_info.handler)


async def read_body(request: web.Request) -> tuple[bytes, bool]:
    """The body, checked at the door (see httpbody.read), and whether it is NDJSON."""
    route = _route(request)
    assert route is not None, "read_body is for the routes of ROUTES"
    return await httpbody.read(request, route.body, svc(request).s)


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue`: refuse at once what read_body would refuse before reading."""
    expect = request.headers.get("Expect", "")
    if expect.lower() != "100-continue":
        return error_reply(InvalidRequest(f"unsupported Expect {expect[:100]!r}").with_status(417))
    st = request.app[SERVED].get(request.match_info.handler)
    try:
        if st is not None:
            if st.gate is not None:  # no body is asked for before the caller may send it
                await auth.authorize(request, st.gate, svc(request))
            httpbody.check_head(request, st.route.body, svc(request).s)
    except TqdError as e:
        request[DROP] = True  # the client waits for our word: no body is coming to drain
        return error_reply(e.closing())
    if request.version == HttpVersion11:
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer proper is still to come
    return None


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


# ---- app ----------------------------------------------------------------------

_HTTP_CODES = {404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge}


class Served(NamedTuple):
    """A route as one app serves it, worked out at start (make_app) so that a request
    pays one lookup for it: its access check and its request-duration series."""

    route: Route
    gate: auth.Gate | None  # None: nothing to check or count (tqd.http.auth.gate)
    times: RouteTimes


SERVED = web.AppKey("served", dict[Handler, Served])


def _served(route: Route, s: Settings, authn: Authenticator | None,
            limits: Limits | None) -> Served:
    need = route.need
    if route.handler is metrics and not s.metrics_auth:
        need = OPEN  # Prometheus scrapes without a token unless --metrics-auth
    return Served(route, auth.gate(authn, limits, need, route.handler.__name__, route.limited),
                  HTTP_TIMES.series(route.path, route.method))


def _middleware(service: QueueService, served: dict[Handler, Served],
                in_flight: InFlight) -> Middleware:
    """The one middleware: requests in flight, the answer (_answer), the audit line of a
    managing call, the request's duration, the request's log line (tqd.http.access)."""
    log_requests = access.enabled()  # once: the level is set before the app is made

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        st = served.get(request.match_info.handler)
        in_flight.enter()
        t0 = time.perf_counter()
        status = 499
        try:
            resp = await _answer(request, handler, service, st)
            status = resp.status
            if st is not None and st.gate is not None and st.gate.action:
                g = request.get(auth.GUARD)  # (absent when refused: audited as a denial)
                if g is not None:
                    g.done(status, request.get(_ERROR_CODE))
            return resp
        finally:
            in_flight.leave()
            times = st.times if st is not None else HTTP_TIMES.series(NO_ROUTE, request.method)
            elapsed = time.perf_counter() - t0
            times.observe(status, elapsed)
            if log_requests:
                access.line(request, st.route.path if st is not None else NO_ROUTE, status, elapsed)

    return middleware


_ERROR_CODE = "tqd.error_code"


async def _answer(request: web.Request, handler: Handler, service: QueueService,
                  st: Served | None) -> web.StreamResponse:
    route = st.route if st is not None else None
    try:
        if st is not None and st.gate is not None:  # before the leader's redirect: no token, no hint
            await auth.authorize(request, st.gate, service)
        if route is not None and route.write and not service.leading:
            return repl.not_leader_reply(service, request, NoLeader("this node is not the leader"))
        if route is not None and not route.body.takes_body:  # the others check in read_body
            httpbody.check_head(request, route.body, service.s)
        return await handler(request)
    except NoLeader as e:
        if route is not None and route.write:
            return repl.not_leader_reply(service, request, e)
        resp = error_reply(e)
        if service.leader_url:
            resp.headers["X-Tqd-Leader"] = service.leader_url or ""
        return resp
    except TqdError as e:
        request[_ERROR_CODE] = e.code
        return error_reply(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        cls = _HTTP_CODES.get(e.status)
        err: TqdError
        if cls is None:
            err = InvalidRequest(e.reason).with_status(e.status)
        elif e.status == 404:
            err = cls(f"no route for {request.method} {request.path}")
        else:
            err = cls(e.reason)
        resp = error_reply(err)
        if e.status == 405:
            resp.headers["Allow"] = e.headers.get("Allow", "")
        return resp
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("bug: unhandled error in %s %s", request.method, request.path)
        request[_ERROR_CODE] = Internal.code
        return error_reply(Internal("internal error (a bug); see the server log"))


# who may call what (docs/protocol.md "Auth"); tqd.auth.policy has the roles' rights
OPEN = Need(Right.OPEN, Scope.NONE)
CLUSTER = Need(Right.CLUSTER, Scope.NONE)
READ_ANY = Need(Right.READ, Scope.NONE)
READ_LISTED, READ_QUEUE, READ_JOB = (Need(Right.READ, s) for s in (Scope.BODY, Scope.PATH, Scope.JOB))
ENQUEUE = Need(Right.ENQUEUE, Scope.PATH)
WORK_LISTED, WORK_JOB = Need(Right.WORK, Scope.BODY), Need(Right.WORK, Scope.JOB)
MANAGE_QUEUE, MANAGE_JOB = Need(Right.MANAGE, Scope.PATH), Need(Right.MANAGE, Scope.JOB)

ROUTES: list[Route] = [
    Route("POST", "/v1/queues/{queue}/jobs", enqueue, WRITE, ENQUEUE, BodyRule("job", "bulk", InvalidJob)),
    Route("GET", "/v1/queues/{queue}/jobs", list_jobs, READ, READ_QUEUE),
    Route("DELETE", "/v1/queues/{queue}/jobs", purge, WRITE, MANAGE_QUEUE),
    Route("GET", "/v1/queues", list_queues, READ, READ_LISTED),
    Route("GET", "/v1/queues/{queue}", queue_stats, READ, READ_QUEUE),
    Route("DELETE", "/v1/queues/{queue}", delete_queue, WRITE, MANAGE_QUEUE),
    Route("POST", "/v1/queues/{queue}/pause", pause, WRITE, MANAGE_QUEUE),
    Route("POST", "/v1/queues/{queue}/resume", resume, WRITE, MANAGE_QUEUE),
    Route("POST", "/v1/queues/{queue}/redrive", redrive, WRITE, MANAGE_QUEUE, BodyRule("small")),
    Route("POST", "/v1/lease", lease, WRITE, WORK_LISTED, BodyRule("small")),
    Route("POST", "/v1/ack", ack_bulk, WRITE, WORK_LISTED, BodyRule("bulk_ack")),
    Route("GET", "/v1/jobs/{id}", get_job, READ, READ_JOB),
    Route("DELETE", "/v1/jobs/{id}", cancel_job, WRITE, MANAGE_JOB),
    Route("POST", "/v1/jobs/{id}/ack", ack, WRITE, WORK_JOB, BodyRule("result")),
    Route("POST", "/v1/jobs/{id}/fail", fail, WRITE, WORK_JOB, BodyRule("fail")),
    Route("POST", "/v1/jobs/{id}/heartbeat", heartbeat, WRITE, WORK_JOB, BodyRule("result")),
    Route("POST", "/v1/jobs/{id}/release", release, WRITE, WORK_JOB, BodyRule("small")),
    Route("POST", "/v1/jobs/{id}/retry", retry_job, WRITE, MANAGE_JOB),
    Route("GET", "/v1/events", events.events, READ, READ_LISTED),
    Route("GET", "/v1/history", events.history, READ, READ_LISTED),
    Route("GET", "/v1/cluster", cluster, READ, READ_ANY),
    Route("GET", "/v1/_repl/log", repl.repl_log, READ, CLUSTER),
    Route("GET", "/v1/_repl/snapshot", repl.repl_snapshot, READ, CLUSTER),
    Route("GET", "/metrics", metrics, READ, READ_ANY),  # OPEN unless --metrics-auth
    Route("GET", "/openapi.json", openapi.openapi, READ, OPEN),
    Route("GET", "/healthz", healthz, READ, OPEN),
    Route("GET", "/readyz", readyz, READ, OPEN),
    Route("GET", "/ui", ui.ui_root, READ, OPEN),  # the dashboard's files: no data in them
    Route("GET", "/ui/", ui.ui_index, READ, OPEN),
    Route("GET", "/ui/{file}", ui.ui_file, READ, OPEN),
]
_BY_HANDLER: dict[Handler, Route] = {r.handler: r for r in ROUTES}


async def _close_when_draining(request: web.Request, response: web.StreamResponse) -> None:
    """While draining, end keep-alive connections after each answer so clients reconnect
    (to another node, or to this one when it is back) instead of queueing behind shutdown."""
    if request.app[SERVICE].draining:
        response.force_close()


def make_app(service: QueueService) -> web.Application:
    s = service.s
    authn = limits = None
    if s.auth or s.cluster_token_file:
        try:
            authn = Authenticator(s.auth, s.cluster_token_file)
        except ValueError as e:  # (TokenFileError too) checked at start; changed since?
            raise SystemExit(f"tqd: bad setting: {e}") from None
    if s.auth or s.rate_limit_rps > 0:  # a token's (or its role's) own rate needs --auth
        limits = Limits(s.rate_limit_rps, s.rate_limit_burst)
    served = {r.handler: _served(r, s, authn, limits) for r in ROUTES}
    in_flight = InFlight()
    # read_body holds each route to its own limit; this only bounds aiohttp's request.read()
    app = web.Application(middlewares=[_middleware(service, served, in_flight)],
                          client_max_size=max(row.size(s) for row in p.BODY_LIMITS.values()))
    app[SERVICE] = service
    app[IN_FLIGHT] = in_flight
    app[SERVED] = served
    if authn is not None:
        app[auth.AUTH] = authn
    if limits is not None:
        app[auth.LIMITS] = limits
    app.cleanup_ctx.append(auth.auth_ctx)
    app.on_response_prepare.append(_close_when_draining)
    for r in ROUTES:
        if r.handler in ui.HANDLERS and not s.ui:
            continue  # --ui false: no dashboard
        app.router.add_route(r.method, r.path, r.handler, expect_handler=_expect)
    return app
