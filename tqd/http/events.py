"""``GET /v1/events`` (Server-Sent Events of state changes) and ``GET /v1/history`` (each
queue's counters over the last hour): what the dashboard and ``tqd top`` watch.

Thin: the stream itself is tqd.observe.events (a reader of the replication log), the
samples tqd.observe.history. Both show only the queues the caller's token may read.
"""

from __future__ import annotations

import asyncio
import math
import time

from aiohttp import web

from .. import protocol as p
from ..errors import InvalidRequest
from ..observe.events import KINDS, PING_S, EventStream, make_filter
from ..queue import validate
from . import auth
from .keys import svc

MAX_QUEUES = 100  # queues one stream may name
MAX_JOB_ID = 400  # bytes: no job id is longer
MAX_TIMEOUT_S = 86400.0  # ?timeout=: the stream ends after that many seconds
RETRY_MS = 2000  # how soon a browser's EventSource reconnects


def _queues(raw: str | None) -> frozenset[str] | None:
    if raw is None or raw == "":
        return None
    names = raw.split(",")
    if len(names) > MAX_QUEUES:
        raise InvalidRequest(f"queues names at most {MAX_QUEUES} queues")
    return frozenset(validate.queue_name(n) for n in names)


def _kinds(raw: str | None, job: str | None) -> frozenset[str]:
    if raw is None or raw == "":
        return frozenset(("job",)) if job else frozenset(KINDS)
    kinds = frozenset(raw.split(","))
    if not kinds <= set(KINDS):
        raise InvalidRequest(f"types must be a comma-separated list of {', '.join(KINDS)}")
    return kinds


def _after(request: web.Request) -> int | None:
    """Where to resume: Last-Event-ID (a log seq), or ?after=; None: from now."""
    raw = request.headers.get("Last-Event-ID") or request.query.get("after")
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise InvalidRequest("Last-Event-ID (or after) must be an event id this server sent")
    return int(raw)


async def events(request: web.Request) -> web.StreamResponse:
    q = request.query
    job = q.get("job") or None
    if job is not None and len(job.encode()) > MAX_JOB_ID:
        raise InvalidRequest("job must be a job id")
    kinds = _kinds(q.get("types"), job)
    queues = _queues(q.get("queues"))
    after = _after(request)
    raw = q.get("timeout")
    end = None
    if raw is not None:
        try:
            limit = float(raw)
        except ValueError:
            limit = -1.0
        if not 0 < limit <= MAX_TIMEOUT_S:  # (NaN too)
            raise InvalidRequest(f"timeout must be a number of seconds, 0 < timeout <= "
                                 f"{MAX_TIMEOUT_S:g}")
        end = time.monotonic() + limit
    g = auth.guard(request)
    if queues is not None:
        g.check_queues(sorted(queues))
    restricted = g.who is not None and not g.who.all_queues
    service = svc(request)
    stream = EventStream(service, make_filter(kinds, queues, job, g.sees if restricted else None),
                         after)
    with g.parking(PING_S):  # counts against the caller's parked long-polls
        resp = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        await resp.write(b"retry: %d\n: tqd events from seq %d\n\n" % (RETRY_MS, stream.cursor))
        last_write = time.monotonic()
        while not service.draining:
            now = time.monotonic()
            wait = PING_S if end is None else min(PING_S, end - now)
            if wait <= 0:
                break
            chunk = await stream.next(wait)
            now = time.monotonic()
            if not chunk and now - last_write >= PING_S:  # only when quiet: a ping says
                chunk = b": ping\n\n"  # nothing of changes the stream does not show
            if chunk:
                await resp.write(chunk)
                last_write = now
    return resp


async def history(request: web.Request) -> web.Response:
    queues = _queues(request.query.get("queues"))
    raw = request.query.get("since", "0")
    try:
        since = float(raw)
    except ValueError:
        since = math.nan
    if not math.isfinite(since):
        raise InvalidRequest("since must be a time (seconds since the epoch)")
    g = auth.guard(request)
    h = svc(request).history.history(
        lambda name: (queues is None or name in queues) and g.sees(name), since)
    # up to 36,000 samples: encoded off the event loop (h holds copies, not the live rings)
    body = await asyncio.get_running_loop().run_in_executor(None, p.json_encoder.encode, h)
    return web.Response(body=body, content_type="application/json")
