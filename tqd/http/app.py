"""HTTP API: the aiohttp app factory, the route table, the middleware and error replies.

The handlers are thin and live apart (tqd.http.handlers for the queue's /v1 API and health,
events.py, repl.py, openapi.py, ui.py). What a route is — method, path, handler, whether it
writes, who may call it, its body limits — is one row of ROUTES here, and everything else
(the leader's redirect, auth, rate limits, body checks, the OpenAPI document, the docs'
tests) reads it from there.

Who may call a route is a column of the route table (``need``, checked by tqd.http.auth
before anything else, the leader's redirect included); the lease, bulk ack, queue list and
event handlers check the queues they read through ``auth.guard(request)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

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
from ..observe.metrics import HTTP_TIMES, NO_ROUTE, RouteTimes
from ..service import QueueService
from . import access, auth, events, openapi, repl, ui
from . import body as httpbody
from . import handlers as h
from .body import DROP, BodyRule
from .keys import BODY_RULES, SERVICE, svc

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
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False


IN_FLIGHT = web.AppKey("in_flight", InFlight)


# ---- framing ------------------------------------------------------------------


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
    if route.handler is h.metrics and not s.metrics_auth:
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
    Route("POST", "/v1/queues/{queue}/jobs", h.enqueue, WRITE, ENQUEUE, BodyRule("job", "bulk", InvalidJob)),
    Route("GET", "/v1/queues/{queue}/jobs", h.list_jobs, READ, READ_QUEUE),
    Route("DELETE", "/v1/queues/{queue}/jobs", h.purge, WRITE, MANAGE_QUEUE),
    Route("GET", "/v1/queues", h.list_queues, READ, READ_LISTED),
    Route("GET", "/v1/queues/{queue}", h.queue_stats, READ, READ_QUEUE),
    Route("DELETE", "/v1/queues/{queue}", h.delete_queue, WRITE, MANAGE_QUEUE),
    Route("POST", "/v1/queues/{queue}/pause", h.pause, WRITE, MANAGE_QUEUE),
    Route("POST", "/v1/queues/{queue}/resume", h.resume, WRITE, MANAGE_QUEUE),
    Route("POST", "/v1/queues/{queue}/redrive", h.redrive, WRITE, MANAGE_QUEUE, BodyRule("small")),
    Route("POST", "/v1/lease", h.lease, WRITE, WORK_LISTED, BodyRule("small")),
    Route("POST", "/v1/ack", h.ack_bulk, WRITE, WORK_LISTED, BodyRule("bulk_ack")),
    Route("GET", "/v1/jobs/{id}", h.get_job, READ, READ_JOB),
    Route("DELETE", "/v1/jobs/{id}", h.cancel_job, WRITE, MANAGE_JOB),
    Route("POST", "/v1/jobs/{id}/ack", h.ack, WRITE, WORK_JOB, BodyRule("result")),
    Route("POST", "/v1/jobs/{id}/fail", h.fail, WRITE, WORK_JOB, BodyRule("fail")),
    Route("POST", "/v1/jobs/{id}/heartbeat", h.heartbeat, WRITE, WORK_JOB, BodyRule("result")),
    Route("POST", "/v1/jobs/{id}/release", h.release, WRITE, WORK_JOB, BodyRule("small")),
    Route("POST", "/v1/jobs/{id}/retry", h.retry_job, WRITE, MANAGE_JOB),
    Route("GET", "/v1/events", events.events, READ, READ_LISTED),
    Route("GET", "/v1/history", events.history, READ, READ_LISTED),
    Route("GET", "/v1/cluster", h.cluster, READ, READ_ANY),
    Route("GET", "/v1/_repl/log", repl.repl_log, READ, CLUSTER),
    Route("GET", "/v1/_repl/snapshot", repl.repl_snapshot, READ, CLUSTER),
    Route("GET", "/metrics", h.metrics, READ, READ_ANY),  # OPEN unless --metrics-auth
    Route("GET", "/openapi.json", openapi.openapi, READ, OPEN),
    Route("GET", "/healthz", h.healthz, READ, OPEN),
    Route("GET", "/readyz", h.readyz, READ, OPEN),
    Route("GET", "/ui", ui.ui_root, READ, OPEN),  # the dashboard's files: no data in them
    Route("GET", "/ui/", ui.ui_index, READ, OPEN),
    Route("GET", "/ui/{file}", ui.ui_file, READ, OPEN),
]


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
    app[BODY_RULES] = {r.handler: r.body for r in ROUTES}
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
