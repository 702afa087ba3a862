"""What the route table does not say about each route, for the OpenAPI document
(tqd.http.openapi, which explains how the two combine): one typed ``Op`` per route in
``OPS`` (its request body, query parameters with their bounds, answers and extra error
codes), the shapes of the answers handlers build as plain dicts, and the error codes
derived from a route's kind. tests/test_openapi.py holds OPS to the route table.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from msgspec import Struct

from .. import protocol as p
from .body import NDJSON

JSON = "application/json"
NAME_RE = "^[A-Za-z0-9_.:\\-]{1,128}$"  # protocol.QUEUE_RE, anchored (a JSON Schema pattern searches)
OPENAPI_PATH = "/openapi.json"


# ---- answers the handlers build as plain dicts ------------------------------------------
# Described here as Structs so that their schema is generated like the protocol's. (They could
# move to tqd.protocol if the handlers came to encode them.)


class ErrorAnswer(Struct, omit_defaults=True):
    """Every error answer: a stable code and a message for people. Bulk requests add the
    1-based `line` at fault; a 307 from a follower adds the `leader` it sends writes to;
    `429 rate_limited` adds `retry_after`, the seconds of its `Retry-After` header."""

    error: str
    message: str
    line: int | None = None
    leader: str | None = None
    retry_after: int | None = None


class StateAnswer(Struct):
    """The job's state after the call."""

    state: str


class FailAnswer(Struct, omit_defaults=True):
    """The job's state after a fail or a release: `run_at` when it is scheduled."""

    state: Literal["queued", "scheduled", "dead"]
    run_at: float | None = None


class HeartbeatAnswer(Struct):
    lease_expires_at: float


class DeletedAnswer(Struct):
    deleted: int


class QueueDeletedAnswer(Struct):
    deleted: Literal[True]
    purged: int


class MovedAnswer(Struct):
    moved: int


class HealthAnswer(Struct):
    ok: Literal[True]


class ReadyAnswer(Struct, omit_defaults=True):
    """`reason` when not ready (503)."""

    ready: bool
    role: Literal["standalone", "leader", "follower"]
    reason: str | None = None


class ClusterStatus(Struct, omit_defaults=True):
    """A standalone server gives node, role, term, leader, url, applied_seq, writable,
    followers and loops only; a cluster node gives every field."""

    node: str | None
    role: Literal["standalone", "leader", "follower"]
    term: int
    leader: str | None
    url: str | None
    applied_seq: int
    writable: bool
    followers: list[dict[str, Any]]
    log_term: int | None = None
    lease_age_s: float | None = None
    lease_store: str | None = None
    lease_store_ok: bool | None = None
    sync_replicas: int | None = None
    isr: list[str] | None = None
    snapshots_restored: int | None = None
    loops: list[dict[str, Any]] | None = None


# ---- the mapping: what the route table does not say ------------------------------------


class Query(NamedTuple):
    """A query parameter."""

    name: str
    type: type[int] | type[float] | type[str]
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    default: int | str | None = None
    description: str = ""


class Body(NamedTuple):
    """An answer's body: `type` (a Struct or a type msgspec knows) encoded as JSON, or one per
    line (NDJSON); a JSON Schema dict of its own (a text body); None: no body (204), or the
    bytes of another media type."""

    type: Any
    media: str = JSON
    description: str = ""
    headers: tuple[str, ...] = ()  # names of HEADERS


_NONE: Mapping[int, tuple[str, ...]] = MappingProxyType({})


class Op(NamedTuple):
    """One route: what it is for, its request, its answers."""

    summary: str
    answers: Mapping[int, Body | None]  # 2xx (and a 503 that is an answer, not an error)
    errors: Mapping[int, tuple[str, ...]] = _NONE  # codes beyond those every route gives
    json: Any = None  # the type of a JSON request body (None: the route reads no body)
    ndjson: Any = None  # the type of one line of an NDJSON request body
    query: tuple[Query, ...] = ()
    internal: bool = False
    tag: str = "jobs"
    token_optional_unless: str = ""  # a setting that makes the token required (else optional)


HEADERS: dict[str, dict[str, Any]] = {
    "Location": {"description": "the same request on the leader", "schema": {"type": "string"}},
    "X-Tqd-Leader": {"description": "the leader's URL", "schema": {"type": "string"}},
    "X-Tqd-Term": {"description": "the leader's log term", "required": True,
                   "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "X-Tqd-Seq": {"description": "the leader's last log entry", "required": True,
                  "schema": {"type": "string", "pattern": "^[0-9]+$"}},
    "ETag": {"description": "the file's version: send it in If-None-Match to get 304 while "
                     "it is current", "required": True, "schema": {"type": "string"}},
    "Content-Security-Policy": {"description": "default-src 'self', no inline script or style",
                                "required": True, "schema": {"type": "string"}},
    "Retry-After": {"description": "rate_limited: whole seconds to wait before calling again",
                    "schema": {"type": "string", "pattern": "^[0-9]+$"}},
}

_LIMIT = functools.partial(Query, "limit", int, minimum=1, maximum=p.MAX_PAGE)
_UI_HEADERS = ("ETag", "Content-Security-Policy")
_UI_SAME = Body(None, description="not modified: the ETag of If-None-Match is current",
                headers=("ETag",))
_UI_PAGE: Mapping[int, Body | None] = {
    200: Body({"type": "string"}, "text/html", "the page", _UI_HEADERS), 304: _UI_SAME}
_REPL_ID = (Query("node", str, True, description="the follower's id (at most 200 bytes)"),
            Query("url", str, description="the follower's advertised URL"),
            Query("lease_term", int, minimum=0, default=0,
                  description="the highest lease term the follower has seen"))
_POSITION = ("X-Tqd-Term", "X-Tqd-Seq")
_JOB_GONE = {404: ("not_found",), 409: ("lease_lost",)}  # the calls that hold a lease token

# one Server-Sent Event, as schemathesis reads a text/event-stream (OpenAPI 3.2's itemSchema)
_SSE_EVENT = {"type": "object", "required": ["data"], "properties": {
    "event": {"type": "string", "enum": ["job", "queue", "reset"]},
    "data": {"type": "string", "contentMediaType": "application/json"},
    "id": {"type": "string", "pattern": "^[0-9]+$"}}}

OPS: dict[tuple[str, str], Op] = {
    ("POST", "/v1/queues/{queue}/jobs"): Op(
        "enqueue one job (JSON), or many (NDJSON, atomic)",
        {200: Body(p.EnqueueResult, description="the job exists already (key or id): not made"),
         201: Body(p.EnqueueResult, description="made; NDJSON in, NDJSON out (one line per job)")},
        {400: ("invalid_job",), 429: ("queue_full",)}, json=p.EnqueueRequest,
        ndjson=p.EnqueueRequest),
    ("GET", "/v1/queues/{queue}/jobs"): Op(
        "a queue's jobs, oldest first, a page at a time",
        {200: Body(p.JobPage)},
        query=(Query("state", str, enum=p.STATES), Query("type", str),
               Query("priority", int, minimum=0, maximum=9), _LIMIT(default=100),
               Query("after", str, description="the `next` of the previous page"))),
    ("DELETE", "/v1/queues/{queue}/jobs"): Op(
        "purge a queue's jobs in one finished state", {200: Body(DeletedAnswer)},
        query=(Query("state", str, True, enum=("dead", "completed", "cancelled")),), tag="queues"),
    ("GET", "/v1/queues"): Op(
        "the queues with their stats, in name order, a page at a time", {200: Body(p.QueuePage)},
        query=(_LIMIT(default=p.MAX_PAGE),
               Query("after", str, pattern=NAME_RE, description="the `next` of the previous page")),
        tag="queues"),
    ("GET", "/v1/queues/{queue}"): Op(
        "a queue's stats (every count 0 for an unknown queue)", {200: Body(p.QueueStats)}, tag="queues"),
    ("DELETE", "/v1/queues/{queue}"): Op(
        "forget a queue (force: with its jobs)", {200: Body(QueueDeletedAnswer)},
        {404: ("not_found",), 409: ("invalid_state",)},
        query=(Query("force", str, enum=("true", "false", "1", "0"), default="false"),), tag="queues"),
    ("POST", "/v1/queues/{queue}/pause"): Op(
        "stop leasing from a queue", {200: Body(p.QueueStats)}, tag="queues"),
    ("POST", "/v1/queues/{queue}/resume"): Op(
        "lease from a queue again", {200: Body(p.QueueStats)}, tag="queues"),
    ("POST", "/v1/queues/{queue}/redrive"): Op(
        "dead jobs back to queued, oldest first", {200: Body(MovedAnswer)},
        json=p.RedriveRequest, tag="queues"),
    ("POST", "/v1/lease"): Op(
        "lease ready jobs, waiting up to `wait` seconds for one",
        {200: Body(p.LeasedJob, NDJSON, "one leased job per line"),
         204: Body(None, description="no job came within `wait`")},
        {400: ("invalid_queue",)}, json=p.LeaseRequest, tag="workers"),
    ("POST", "/v1/ack"): Op(
        "ack many jobs: each line stands alone", {200: Body(p.AckLineResult, NDJSON)},
        ndjson=p.BulkAckLine, tag="workers"),
    ("GET", "/v1/jobs/{id}"): Op(
        "a job's record; with `wait`, once it has finished or after `wait` seconds",
        {200: Body(p.JobRecord)}, {404: ("not_found",)},
        query=(Query("wait", float, minimum=0, maximum=p.MAX_WAIT_S,
                     description="long-poll: seconds to wait for the job to finish"),)),
    ("DELETE", "/v1/jobs/{id}"): Op(
        "cancel a job", {200: Body(StateAnswer)}, {404: ("not_found",), 409: ("invalid_state",)}),
    ("POST", "/v1/jobs/{id}/ack"): Op(
        "a job is done", {200: Body(StateAnswer)}, _JOB_GONE, json=p.AckRequest, tag="workers"),
    ("POST", "/v1/jobs/{id}/fail"): Op(
        "a job's attempt failed", {200: Body(FailAnswer)}, _JOB_GONE, json=p.FailRequest, tag="workers"),
    ("POST", "/v1/jobs/{id}/heartbeat"): Op(
        "extend a lease, report progress", {200: Body(HeartbeatAnswer)}, _JOB_GONE,
        json=p.HeartbeatRequest, tag="workers"),
    ("POST", "/v1/jobs/{id}/release"): Op(
        "hand a leased job back unrun", {200: Body(FailAnswer)}, _JOB_GONE, json=p.ReleaseRequest,
        tag="workers"),
    ("POST", "/v1/jobs/{id}/retry"): Op(
        "a dead or cancelled job back to queued", {200: Body(StateAnswer)},
        {404: ("not_found",), 409: ("invalid_state",)}),
    ("GET", "/v1/events"): Op(
        "Server-Sent Events of job and queue changes, resumable with Last-Event-ID",
        {200: Body(_SSE_EVENT, "text/event-stream",
                   "a stream of events, each as described: `event: job` (data: JobEvent), "
                   "`event: queue` (QueueStats or QueueGone), `event: reset` (EventsReset); "
                   "`id:` a log position")},
        {400: ("invalid_queue",), 403: ("forbidden",)},
        query=(Query("queues", str, description="comma-separated queue names (default: all)"),
               Query("types", str, description="comma-separated: job, queue (default: both)"),
               Query("job", str, description="only this job's events"),
               Query("after", str, pattern="^[0-9]{1,19}$",
                     description="resume after this event id (as Last-Event-ID)"),
               Query("timeout", float, minimum=0, maximum=86400,
                     description="end the stream after this many seconds (default: never)")),
        tag="queues"),
    ("GET", "/v1/history"): Op(
        "each queue's counters sampled over the last hour", {200: Body(p.History)},
        {400: ("invalid_queue",)},
        query=(Query("queues", str, description="comma-separated queue names (default: "
                     "the first 100 by name)"),
               Query("since", float, description="only samples taken after this time "
                     "(seconds since the epoch)")),
        tag="queues"),
    ("GET", "/v1/cluster"): Op("this node's view of the cluster", {200: Body(ClusterStatus)},
                               tag="cluster"),
    ("GET", "/v1/_repl/log"): Op(
        "the log entries after a follower's position (long-polls up to `wait`)",
        {200: Body(None, "application/x-tqd-log", "a msgpack array of log entries", _POSITION),
         204: Body(None, description="no entry within `wait`", headers=_POSITION)},
        {409: ("log_diverged",), 410: ("log_gone",), 503: ("no_leader",)},
        query=(*_REPL_ID, Query("after", int, True, minimum=0), Query("term", int, True, minimum=0),
               Query("wait", int, minimum=0, default=0)),
        internal=True, tag="internal"),
    ("GET", "/v1/_repl/snapshot"): Op(
        "the leader's replicated state as of one commit",
        {200: Body(None, "application/octet-stream", "tqd's own checksummed format", _POSITION)},
        {503: ("no_leader",), 507: ("storage_full",)}, query=_REPL_ID, internal=True, tag="internal"),
    ("GET", "/metrics"): Op(
        "the Prometheus exposition of the server's metrics",
        {200: Body({"type": "string"}, "text/plain", "Prometheus text format 0.0.4")},
        tag="health", token_optional_unless="--metrics-auth"),
    ("GET", "/healthz"): Op("the process is serving", {200: Body(HealthAnswer)}, tag="health"),
    ("GET", "/readyz"): Op(
        "whether this server can take writes",
        {200: Body(ReadyAnswer), 503: Body(ReadyAnswer, description="not ready: `reason` says why")},
        tag="health"),
    ("GET", OPENAPI_PATH): Op("this document", {200: Body(dict[str, Any])}, tag="health"),
    ("GET", "/ui"): Op("the web dashboard's page (open: the page holds no data)", _UI_PAGE, tag="ui"),
    ("GET", "/ui/"): Op("the web dashboard's page, as /ui", _UI_PAGE, tag="ui"),
    ("GET", "/ui/{file}"): Op(
        "a file of the web dashboard (its scripts and stylesheet)",
        {200: Body({"type": "string"}, "text/*", "text/javascript, text/css or text/html",
                   _UI_HEADERS), 304: _UI_SAME},
        {404: ("not_found",)}, tag="ui"),
}

# every route can give these (the body, the HTTP framing, a bug, the connection limit)
COMMON_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("invalid_request",), 408: ("request_timeout",), 413: ("payload_too_large",),
    417: ("invalid_request",), 500: ("internal",), 503: ("too_many_connections",),
}
BODY_ERRORS: dict[int, tuple[str, ...]] = {415: ("unsupported_media_type",)}
QUEUE_ERRORS: dict[int, tuple[str, ...]] = {400: ("invalid_queue",)}
AUTH_ERRORS: dict[int, tuple[str, ...]] = {401: ("unauthorized",), 403: ("forbidden",)}
RATE_ERRORS: dict[int, tuple[str, ...]] = {429: ("rate_limited",)}  # the caller's rate limit
WRITE_ERRORS: dict[int, tuple[str, ...]] = {
    503: ("no_leader", "not_ready", "not_replicated"), 507: ("storage_full",),
}
STATUS_TEXT = {200: "OK", 201: "Created", 204: "No Content", 307: "to the leader", 400: "Bad Request",
                401: "no token, or not a valid one (WWW-Authenticate: Bearer)",
                429: "Too Many Requests",
                403: "the token's role or queues do not allow it",
                404: "Not Found", 408: "Request Timeout", 409: "Conflict", 410: "Gone",
                413: "Payload Too Large", 415: "Unsupported Media Type", 417: "Expectation Failed",
                500: "Internal Server Error (a bug)", 503: "Service Unavailable",
                507: "Insufficient Storage"}
INFO_DESCRIPTION = (
    "tqd's HTTP API, generated from its msgspec Structs and route table "
    "(tqd/http/openapi.py); docs/protocol.md is the prose reference. Every error answer is "
    "`{\"error\": code, \"message\": text, ...}`. Before any route is known the server may "
    "answer 404 not_found (no such path), 405 method_not_allowed (with Allow), 414 and 431 "
    "invalid_request (URL or headers too long), 505 invalid_request (HTTP version). Routes "
    "marked x-internal are the cluster's replication, not for clients."
)
