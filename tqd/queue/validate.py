"""What a valid request is: the rules every front end applies before the service is called.

The HTTP API uses them today; an SQS-compatible API or the CLI use the same ones, so a job
refused by one is refused by all, with the same message. Each function takes what the wire
decoded (a ``tqd.protocol`` struct, or a plain value a front end already parsed) and returns
what the queue takes (a ``NewJob``, an ``AckItem``, a checked value), or raises the 4xx
``TqdError`` naming the rule. The messages name fields as the wire does; docs/protocol.md
quotes them, so they stay word for word.

Where an item sits in its request (an NDJSON line, a batch entry) is the front end's to add
to the error: nothing here knows the framing.

Imports tqd.protocol, tqd.errors, tqd.config, tqd.queue.records, msgspec and the stdlib only.
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from msgspec import Raw

from .. import protocol as p
from ..config import Settings
from ..errors import InvalidJob, InvalidQueue, InvalidRequest, PayloadTooLarge, TqdError

# the limits the rules below apply are defined, with their reasons, in tqd.protocol (with the
# body limits); named here too (`X as X`: re-exported) for the front ends that use them
from ..protocol import MAX_ATTEMPTS as MAX_ATTEMPTS
from ..protocol import MAX_LEASE_JOBS as MAX_LEASE_JOBS
from ..protocol import MAX_LEASE_QUEUES as MAX_LEASE_QUEUES
from ..protocol import MAX_PAGE as MAX_PAGE
from ..protocol import MAX_PRIORITY as MAX_PRIORITY
from ..protocol import MAX_REDRIVE as MAX_REDRIVE
from ..protocol import MAX_WAIT_S as MAX_WAIT_S
from .ops import AckItem, NewJob

# ---- what the rules accept ----------------------------------------------------------------

LAST_JOB_CURSOR = (1 << 64) - 2  # positions are u64 and a page starts after its cursor
PURGE_STATES = ("dead", "completed", "cancelled")  # the finished states a purge may empty

BAD_PRIORITY = "priority must be 0..9 or one of high, normal, low"
BAD_CURSOR = "after must be a cursor from a previous page"


# ---- names ------------------------------------------------------------------------------


def queue_name(name: str) -> str:
    """A queue's name as given, if it is one."""
    if not p.QUEUE_RE.fullmatch(name):
        raise InvalidQueue(f"queue name must match [A-Za-z0-9_.:-]{{1,128}}, got {name[:140]!r}")
    return name


def queue_cursor(after: str) -> str:
    """The cursor of a page of queues: "" (the first page) or the last name of a page."""
    if after and not p.QUEUE_RE.fullmatch(after):
        raise InvalidRequest(BAD_CURSOR)
    return after


# ---- jobs -------------------------------------------------------------------------------


def priority(value: int | str) -> int:
    """A priority 0..9, given as such or by name (high 7, normal 5, low 3)."""
    if isinstance(value, str):
        if value not in p.PRIORITY_NAMES:
            raise InvalidJob(BAD_PRIORITY)
        return p.PRIORITY_NAMES[value]
    if not 0 <= value <= MAX_PRIORITY:
        raise InvalidJob(BAD_PRIORITY)
    return value


_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")


def traceparent(header: str | None) -> str | None:
    """A W3C ``traceparent`` worth keeping, or None. As the Trace Context spec asks of a
    receiver, a malformed one is ignored (not an error); version ff is invalid."""
    if header is None:
        return None
    h = header.strip()
    if h[:2] == "ff" or not _TRACEPARENT.fullmatch(h[:55]):
        return None
    if len(h) > 55 and (h[:2] == "00" or h[55] != "-"):  # a newer version may add fields
        return None
    return h[:55]


def new_job(req: p.EnqueueRequest, s: Settings, now: float, trace: str | None = None) -> NewJob:
    """The job to enqueue: the request checked, with the server's defaults filled in.
    ``trace``: the request's traceparent (see ``traceparent``), kept with the job."""
    prio = req.priority
    if (req.delay is None and req.run_at is None and req.max_attempts is None
            and req.timeout is None and req.key is None and req.id is None
            and type(prio) is int and 0 <= prio <= MAX_PRIORITY
            and len(req.payload) <= s.max_payload_bytes
            and (req.type is None or len(req.type) <= p.MAX_TYPE_CHARS)):
        # the common job, valid as it stands: skip the checks below (bulk: once per line)
        return NewJob(None, req.type, bytes(req.payload), prio, None, s.max_attempts,
                      s.lease_timeout_s, None, trace)
    return _checked_job(req, s, now, trace)


def _checked_job(req: p.EnqueueRequest, s: Settings, now: float, trace: str | None = None) -> NewJob:
    # the order of the checks is the order of the answers: the first rule broken is named
    if len(req.payload) > s.max_payload_bytes:
        raise PayloadTooLarge(f"payload is larger than {s.max_payload_bytes} bytes")
    prio = priority(req.priority)
    run_at = _run_at(req.delay, req.run_at, now)
    max_attempts = s.max_attempts if req.max_attempts is None else req.max_attempts
    if not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise InvalidJob(f"max_attempts must be 1..{MAX_ATTEMPTS}")
    timeout = _timeout(s.lease_timeout_s if req.timeout is None else req.timeout, InvalidJob)
    if req.key is not None and not 1 <= len(req.key.encode()) <= p.MAX_KEY_BYTES:
        raise InvalidJob(f"key must be 1..{p.MAX_KEY_BYTES} bytes")
    if req.id is not None and not p.ID_RE.fullmatch(req.id):
        raise InvalidJob("id must match [A-Za-z0-9_.:-]{1,128}")
    if req.type is not None and len(req.type) > p.MAX_TYPE_CHARS:
        raise InvalidJob(f"type must be at most {p.MAX_TYPE_CHARS} characters")
    return NewJob(req.id, req.type, bytes(req.payload), prio, run_at, max_attempts, timeout, req.key,
                  trace)


def _run_at(delay: float | None, run_at: float | None, now: float) -> float | None:
    """When the job is due (None: now), from a delay or a time."""
    if delay is not None and run_at is not None:
        raise InvalidJob("give delay or run_at, not both")
    if delay is not None:
        if not 0 <= delay <= p.MAX_DELAY_S:
            raise InvalidJob(f"delay must be 0..{p.MAX_DELAY_S:.0f} seconds")
        return now + delay if delay > 0 else None
    if run_at is not None:
        if not (0 <= run_at <= now + p.MAX_DELAY_S) or math.isnan(run_at):
            raise InvalidJob("run_at must be epoch seconds, at most 10 years ahead")
    return run_at


def _timeout(v: float, err: type[TqdError], name: str = "timeout") -> float:
    """A lease length: a job's timeout, a lease's, a heartbeat's extension."""
    if not (0 < v <= p.MAX_TIMEOUT_S) or math.isnan(v):
        raise err(f"{name} must be > 0 and <= {p.MAX_TIMEOUT_S:.0f} seconds")
    return v


def _payload_sized(v: Raw, s: Settings, what: str) -> bytes:
    """A result or progress value as bytes, held to the payload limit."""
    raw = bytes(v)
    if len(raw) > s.max_payload_bytes:
        raise PayloadTooLarge(f"{what} is larger than {s.max_payload_bytes} bytes")
    return raw


# ---- leases and their end ---------------------------------------------------------------


def lease(req: p.LeaseRequest) -> p.LeaseRequest:
    """A lease request, checked."""
    if not req.queues:
        raise InvalidRequest("queues must name at least one queue")
    if len(req.queues) > MAX_LEASE_QUEUES:
        raise InvalidRequest(f"at most {MAX_LEASE_QUEUES} queues per lease")
    for q in req.queues:
        queue_name(q)
    if not 1 <= req.max <= MAX_LEASE_JOBS:
        raise InvalidRequest(f"max must be 1..{MAX_LEASE_JOBS}")
    if not 0 <= req.wait <= MAX_WAIT_S:
        raise InvalidRequest(f"wait must be 0..{MAX_WAIT_S:.0f} seconds")
    if req.timeout is not None:
        _timeout(req.timeout, InvalidRequest)
    if req.worker is not None and len(req.worker) > p.MAX_WORKER_CHARS:
        raise InvalidRequest(f"worker is longer than {p.MAX_WORKER_CHARS} characters")
    return req


def result(req: p.AckRequest, s: Settings) -> bytes:
    """An ack's result (JSON null when none was sent), held to the payload limit."""
    return _payload_sized(req.result, s, "result")


def ack_item(line: p.BulkAckLine, s: Settings) -> AckItem:
    """One ack of a bulk ack."""
    return AckItem(line.id, line.lease, _payload_sized(line.result, s, "result"))


class Failure(NamedTuple):
    """A fail request, checked, with its texts clipped to their limits."""

    error: str
    details: str | None
    retry: bool
    retry_in: float | None


def failure(req: p.FailRequest) -> Failure:
    """error and details are clipped rather than refused: a worker reporting a failure with
    a long traceback must not fail to report it."""
    if req.retry_in is not None and not (0 <= req.retry_in <= p.MAX_DELAY_S):
        raise InvalidRequest("retry_in must be >= 0 seconds (and at most 10 years)")
    return Failure(_clip(req.error, p.MAX_ERROR_CHARS) or "failed",
                   _clip(req.details, p.MAX_DETAILS_CHARS), req.retry, req.retry_in)


def _clip(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"


class Beat(NamedTuple):
    extend: float | None  # None: by the job's own timeout
    progress: bytes | None  # None: not sent (the last progress stays)


def heartbeat(req: p.HeartbeatRequest, s: Settings) -> Beat:
    """A heartbeat, checked (an empty progress is one not sent)."""
    if req.extend is not None:
        _timeout(req.extend, InvalidRequest, "extend")
    return Beat(req.extend, _payload_sized(req.progress, s, "progress") or None)


def release(req: p.ReleaseRequest) -> p.ReleaseRequest:
    """A release request, checked."""
    if not (0 <= req.delay <= p.MAX_DELAY_S):
        raise InvalidRequest("delay must be >= 0 seconds (and at most 10 years)")
    return req


# ---- managing queues ----------------------------------------------------------------


def redrive(req: p.RedriveRequest) -> p.RedriveRequest:
    """A redrive request, checked."""
    if not 1 <= req.limit <= MAX_REDRIVE:
        raise InvalidRequest(f"limit must be 1..{MAX_REDRIVE}")
    return req


def job_state(state: str | None) -> str | None:
    """A state to filter a listing by (None: all)."""
    if state is not None and state not in p.STATES:
        raise InvalidRequest(f"state must be one of {', '.join(p.STATES)}")
    return state


def job_cursor(after: str) -> int:
    """The cursor of a page of jobs ("": the first page) as the position it stands for."""
    try:
        pos = int(after, 16) if after else 0
    except ValueError:
        raise InvalidRequest(BAD_CURSOR) from None
    if not 0 <= pos <= LAST_JOB_CURSOR:  # the last u64 has no position after it
        raise InvalidRequest(BAD_CURSOR)
    return pos


def purge_state(state: str) -> str:
    """The state a purge empties: only finished jobs are purged by state."""
    if state not in PURGE_STATES:
        raise InvalidRequest(f"state must be one of {', '.join(PURGE_STATES)}")
    return state
