"""Access control at the HTTP edge: each request's caller (tqd.auth.policy) against what its
route needs, the checks the lease, bulk ack and queue list handlers make, SIGHUP, audit.

Answers (docs/protocol.md, "Auth"):

- ``401 unauthorized`` (with ``WWW-Authenticate: Bearer``): no token, a malformed header,
  an unknown or revoked token.
- ``403 forbidden``: the role lacks the right, or the queue of the path, or one queue of
  a lease, is outside the token's globs; a client token on ``/v1/_repl/*``.
- A job route (``/v1/jobs/{id}...``) for a job outside the globs answers ``404 not_found``
  exactly as for a job that does not exist, and a bulk ack line for one fails with
  ``not_found``: job ids are ordered (time and counter), so a ``403`` would let a token
  learn which ids exist in queues it may not see. A missing right (a viewer's cancel)
  is still ``403``: that is checked before the job is looked up.

Every denial is audited (tqd.auth.audit), and so is every managing call and its outcome.

What a route's requests need here is worked out once, at start (``gate``): a route with no
token to check, no rate limit to count and no managing call to audit gets no gate, and
its requests skip ``authorize`` altogether (a server without ``--auth`` and without
``--rate-limit-rps`` pays nothing for this module but on the few routes that audit).
``guard(request)`` then gives the handlers that ask an open Guard (no caller).

Rate limits (tqd.auth.limits) are checked here too, once the caller is known (its token,
or without auth its address) and before its rights: ``429 rate_limited`` with
``Retry-After``. The lease handler parks through ``Guard.parking`` (the per-caller cap on
parked long-polls).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from aiohttp import web

from ..auth import audit
from ..auth.limits import Limits, Refusal
from ..auth.policy import CLUSTER, Authenticator, Need, Principal, Right, Scope
from ..errors import Forbidden, NotFound, RateLimited, TqdError, Unauthorized
from ..protocol import QueuePage
from ..queue import validate
from ..service import QueueService

log = logging.getLogger("tqd.http")
AUTH = web.AppKey("auth", Authenticator)
LIMITS = web.AppKey("limits", Limits)  # absent: no limits (no --auth, no --rate-limit-rps)
GUARD = "tqd.guard"
_VERB = {Right.READ: "read", Right.ENQUEUE: "enqueue", Right.WORK: "lease or finish jobs",
         Right.MANAGE: "manage queues and jobs"}
_MAX_SCAN_PAGES = 10  # GET /v1/queues: pages of queues read for one filtered answer


class Guard:
    """One request's caller (None: auth is off) and the checks handlers make with it."""

    def __init__(self, request: web.Request, who: Principal | None, action: str) -> None:
        self.request = request
        self.who = who
        self.action = action

    def sees(self, queue: str) -> bool:
        return self.who is None or self.who.all_queues or self.who.sees(queue)

    @property
    def caller(self) -> str:
        """Whom limits count against: the token, or without one the TCP peer's address."""
        return f"token:{self.who.name}" if self.who is not None else f"addr:{self.request.remote}"

    def limit(self) -> None:
        """One request against the caller's rate limit; RateLimited past it."""
        limits = self.request.app.get(LIMITS)
        if limits is None:
            return
        who = self.who
        refusal = limits.take(self.caller, who.rate if who else None, who.burst if who else None)
        if refusal is not None:
            raise self._refuse(refusal, f"more than {refusal.rate:g} requests per second "
                               f"(burst {refusal.burst:g}); retry in {refusal.retry_after_s} s")

    @contextmanager
    def parking(self, wait: float) -> Iterator[None]:
        """Around a long-poll of `wait` seconds: RateLimited if the caller has the most
        parked already."""
        limits = self.request.app.get(LIMITS)
        if wait <= 0 or limits is None:
            yield
            return
        key = self.caller
        refusal = limits.park(key)
        if refusal is not None:
            raise self._refuse(refusal, f"{limits.max_parked} long-polls (wait > 0) of this "
                               "caller are waiting already; wait for one to end")
        try:
            yield
        finally:
            limits.unpark(key)

    def _refuse(self, refusal: Refusal, message: str) -> TqdError:
        err = RateLimited(message, retry_after=refusal.retry_after_s)
        if refusal.audit:  # at most one line per caller per second, counting the rest
            self.deny(err, refused=refusal.audit)
        return err

    def deny(self, err: TqdError, **more: object) -> TqdError:
        """err, audited as a denial."""
        r, who = self.request, self.who
        audit.record("denied", err.code, who=who.name if who else None,
                     role=who.role if who else None, method=r.method, path=r.path,
                     remote=r.remote, status=err.http_status, **more)
        return err

    def check_queues(self, queues: list[str]) -> None:
        """A lease: every queue it names within the globs, or 403 as a whole."""
        for q in queues:
            if not self.sees(q):
                raise self.deny(Forbidden(f"this token may not use queue {q!r}", queue=q))

    async def hidden_jobs(self, service: QueueService, ids: list[str]) -> set[str]:
        """The ids among these of jobs in queues outside the globs (a bulk ack fails those
        lines). Jobs that do not exist are not hidden: their lines fail as not_found anyway."""
        if self.who is None or self.who.all_queues:
            return set()

        def look() -> set[str]:
            out = set()
            for jid in ids:
                try:
                    if not self.sees(service.get_job(jid).queue):
                        out.add(jid)
                except NotFound:
                    pass
            return out

        hidden = await asyncio.get_running_loop().run_in_executor(None, look)
        if hidden:
            self.deny(NotFound("bulk ack lines for jobs outside the token's queues"),
                      lines=len(hidden), ids=sorted(hidden)[:10])
        return hidden

    def queue_page(self, service: QueueService, after: str, limit: int) -> QueuePage:
        """GET /v1/queues: the queues within the globs. Reads at most _MAX_SCAN_PAGES pages;
        then the answer may hold fewer than limit queues (even none) with a cursor to go on."""
        if self.who is None or self.who.all_queues:
            return service.queue_page(after, limit)
        out = []
        for _ in range(_MAX_SCAN_PAGES):
            page = service.queue_page(after, limit)
            for q in page.queues:
                if self.sees(q.name):
                    out.append(q)
                    if len(out) == limit:
                        more = q is not page.queues[-1] or page.next is not None
                        return QueuePage(out, q.name if more else None)
            if page.next is None:
                return QueuePage(out, None)
            after = page.next
        return QueuePage(out, after)

    def done(self, status: int, code: str | None) -> None:
        """After the answer: a managing call is audited with its outcome."""
        if self.action:
            r, who = self.request, self.who
            outcome = code or ("ok" if status < 300 else "redirected" if status < 400 else "error")
            audit.record(self.action, outcome, who=who.name if who else None,
                         role=who.role if who else None, method=r.method, path=r.path,
                         remote=r.remote, status=status)


def guard(request: web.Request) -> Guard:
    """The request's Guard: authorize's, or for a route without a gate an open one."""
    g: Guard | None = request.get(GUARD)
    if g is None:
        g = request[GUARD] = Guard(request, None, "")
    return g


class Gate(NamedTuple):
    """What ``authorize`` does for one route of one server (see ``gate``)."""

    need: Need
    action: str  # a managing call's name for the audit log; "" for the others
    limited: bool  # its requests count against the caller's rate limit


def gate(auth: Authenticator | None, limits: Limits | None, need: Need, action: str,
         limited: bool) -> Gate | None:
    """A route's Gate on a server with this `auth` and these `limits`, or None if its
    requests need none: no token to check, no limit to count, nothing to audit. Decided
    at start: SIGHUP re-reads tokens, never whether auth or limits are on."""
    action = action if need.right is Right.MANAGE else ""  # audited, with or without auth
    limited = limited and limits is not None
    checked = auth is not None and need.right is not Right.OPEN and (
        auth.guards_cluster if need.right is Right.CLUSTER else auth.enabled)
    return Gate(need, action, limited) if checked or limited or action else None


async def authorize(request: web.Request, gate: Gate, service: QueueService) -> Guard:
    """The request's Guard once its caller may call a route needing `gate.need`, else
    401/403 (or 404 for a job it may not see), or 429 if `gate.limited` and past its rate
    limit."""
    if GUARD in request:  # done already (Expect: 100-continue)
        return guard(request)
    auth = request.app.get(AUTH)
    need, limited = gate.need, gate.limited
    g = Guard(request, None, gate.action)
    cluster = need.right is Right.CLUSTER
    if auth is not None and need.right is not Right.OPEN and (
            auth.guards_cluster if cluster else auth.enabled):
        try:
            g.who = await auth.authenticate(request.headers.get("Authorization"))
        except Unauthorized as e:
            raise g.deny(e) from None
        if cluster and g.who is not CLUSTER:
            raise g.deny(Forbidden("the replication endpoints take the cluster token only"))
    if limited:  # a known caller, before any work for it (a job lookup)
        g.limit()
    if g.who is not None and not cluster:
        _check_rights(g, need, service)
    request[GUARD] = g
    return g


def _check_rights(g: Guard, need: Need, service: QueueService) -> None:
    assert g.who is not None
    if need.right not in g.who.rights:
        raise g.deny(Forbidden(f"role {g.who.role} may not {_VERB[need.right]}"))
    if need.scope is Scope.PATH:
        queue = validate.queue_name(g.request.match_info["queue"])
        if not g.sees(queue):
            raise g.deny(Forbidden(f"this token may not use queue {queue!r}"))
    elif need.scope is Scope.JOB:
        jid = g.request.match_info["id"]
        if not g.sees(service.get_job(jid).queue):  # NotFound for a job that does not exist
            raise g.deny(NotFound(f"no job {jid}"))


def www_authenticate(resp: web.StreamResponse) -> None:
    resp.headers["WWW-Authenticate"] = 'Bearer realm="tqd"'


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: SIGHUP re-reads the token and cluster token files (without auth it
    only says so: SIGHUP's default would end the server)."""
    auth = app.get(AUTH)
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()

    def hup() -> None:
        if auth is None:
            log.info("SIGHUP: no --auth or --cluster-token-file to re-read")
            return
        t = loop.create_task(auth.reload())
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    loop.add_signal_handler(signal.SIGHUP, hup)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGHUP)
        for t in tasks:
            t.cancel()
        if auth is not None:
            auth.close()
