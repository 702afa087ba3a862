"""Wire messages of PROTOCOL.md as msgspec Structs, with encoders/decoders built once.

Decoding here checks types; `validate_*` functions check ranges and cross-field
rules and raise the protocol's 4xx errors. Payloads stay raw JSON bytes from the
request to the disk and back (never decoded by the server).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import msgspec
from msgspec import Raw, Struct

from .errors import InvalidJob, InvalidQueue, InvalidRequest, PayloadTooLarge

NULL = Raw(b"null")
NOT_SENT = Raw(b"")  # a Raw field's default when absent (msgspec cannot decode `Raw | None`)
QUEUE_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
ID_RE = QUEUE_RE
PRIORITY_NAMES = {"high": 7, "normal": 5, "low": 3}
STATES = ("queued", "scheduled", "active", "completed", "dead", "cancelled")
MAX_TIMEOUT_S = 7 * 86400.0
MAX_DELAY_S = 10 * 365 * 86400.0
MAX_KEY_BYTES = 255
MAX_TYPE_CHARS = 255
MAX_WORKER_CHARS = 255


# ---- requests ---------------------------------------------------------------


class EnqueueRequest(Struct):
    type: str | None = None
    payload: Raw = NULL
    priority: int | str = 5
    delay: float | None = None
    run_at: float | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    key: str | None = None
    id: str | None = None


class LeaseRequest(Struct):
    queues: list[str]
    max: int = 1
    wait: float = 0.0
    worker: str | None = None
    timeout: float | None = None


class AckRequest(Struct):
    lease: str
    result: Raw = NULL


class BulkAckLine(Struct):
    id: str
    lease: str
    result: Raw = NULL


class FailRequest(Struct):
    lease: str
    error: str | None = None
    details: str | None = None
    retry: bool = True
    retry_in: float | None = None


class HeartbeatRequest(Struct):
    lease: str
    extend: float | None = None
    progress: Raw = NOT_SENT


class RedriveRequest(Struct):
    limit: int = 1000


# ---- responses ----------------------------------------------------------------


class ErrorEntry(Struct, array_like=True):
    attempt: int
    at: float
    error: str
    details: str | None = None


class ErrorEntryWire(Struct):
    attempt: int
    at: float
    error: str
    details: str | None


class JobRecord(Struct):
    id: str
    queue: str
    type: str | None
    payload: Raw
    priority: int
    state: str
    attempt: int
    max_attempts: int
    timeout: float
    key: str | None
    errors: list[ErrorEntryWire]
    result: Raw | None
    progress: Raw | None
    created_at: float
    run_at: float | None
    started_at: float | None
    finished_at: float | None
    lease_expires_at: float | None
    worker: str | None


class LeasedJob(JobRecord):
    lease: str = ""


class EnqueueResult(Struct):
    id: str
    state: str
    created: bool


class AckLineResult(Struct, omit_defaults=True):
    id: str
    ok: bool
    error: str | None = None


class QueueStats(Struct):
    name: str
    paused: bool
    queued: int
    queued_by_priority: dict[str, int]
    scheduled: int
    active: int
    dead: int
    completed: int
    cancelled: int
    oldest_queued_age: float | None
    enqueued_total: int
    completed_total: int
    failed_total: int


class JobPage(Struct):
    jobs: list[JobRecord]
    next: str | None


# ---- codecs (built once) ----------------------------------------------------

json_encoder = msgspec.json.Encoder()
_enqueue_dec = msgspec.json.Decoder(EnqueueRequest)
_lease_dec = msgspec.json.Decoder(LeaseRequest)
_ack_dec = msgspec.json.Decoder(AckRequest)
_bulk_ack_dec = msgspec.json.Decoder(BulkAckLine)
_fail_dec = msgspec.json.Decoder(FailRequest)
_heartbeat_dec = msgspec.json.Decoder(HeartbeatRequest)
_redrive_dec = msgspec.json.Decoder(RedriveRequest)
_any_dec = msgspec.json.Decoder()


def encode(obj: Any) -> bytes:
    return json_encoder.encode(obj)


def encode_lines(objs: list[Any]) -> bytes:
    buf = bytearray()
    for o in objs:
        json_encoder.encode_into(o, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


def iter_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank NDJSON lines with their 1-based line numbers."""
    for n, line in enumerate(body.split(b"\n"), 1):
        if line.strip():
            yield n, line


def _decode(dec: msgspec.json.Decoder[Any], body: bytes, err: type[Exception], **extra: Any) -> Any:
    try:
        return dec.decode(body if body.strip() else b"{}")
    except msgspec.DecodeError as e:  # ValidationError is a DecodeError
        raise err(f"{e}", **extra) from None
    except RecursionError:  # msgspec's answer to JSON nested ~1000 deep
        raise err("JSON nested too deeply", **extra) from None


def decode_enqueue(body: bytes, line: int | None = None) -> EnqueueRequest:
    extra = {} if line is None else {"line": line}
    if body.strip() and body.lstrip()[:1] != b"{":
        raise InvalidJob("a job must be a JSON object", **extra)
    return _decode(_enqueue_dec, body, InvalidJob, **extra)  # type: ignore[no-any-return]


def decode_lease(body: bytes) -> LeaseRequest:
    req: LeaseRequest = _decode(_lease_dec, body, InvalidRequest)
    if not req.queues:
        raise InvalidRequest("queues must name at least one queue")
    if len(req.queues) > 100:
        raise InvalidRequest("at most 100 queues per lease")
    for q in req.queues:
        check_queue(q)
    if not 1 <= req.max <= 1000:
        raise InvalidRequest("max must be 1..1000")
    if not 0 <= req.wait <= 60:
        raise InvalidRequest("wait must be 0..60 seconds")
    if req.timeout is not None:
        _check_timeout(req.timeout, InvalidRequest)
    if req.worker is not None and len(req.worker) > MAX_WORKER_CHARS:
        raise InvalidRequest(f"worker is longer than {MAX_WORKER_CHARS} characters")
    return req


def decode_ack(body: bytes) -> AckRequest:
    return _decode(_ack_dec, body, InvalidRequest)  # type: ignore[no-any-return]


def decode_bulk_ack_line(line: bytes, n: int) -> BulkAckLine:
    return _decode(_bulk_ack_dec, line, InvalidRequest, line=n)  # type: ignore[no-any-return]


def decode_fail(body: bytes) -> FailRequest:
    req: FailRequest = _decode(_fail_dec, body, InvalidRequest)
    if req.retry_in is not None and not (0 <= req.retry_in <= MAX_DELAY_S):
        raise InvalidRequest("retry_in must be >= 0 seconds (and at most 10 years)")
    return req


def decode_heartbeat(body: bytes) -> HeartbeatRequest:
    req: HeartbeatRequest = _decode(_heartbeat_dec, body, InvalidRequest)
    if req.extend is not None:
        _check_timeout(req.extend, InvalidRequest, "extend")
    return req


def decode_redrive(body: bytes) -> RedriveRequest:
    req: RedriveRequest = _decode(_redrive_dec, body, InvalidRequest)
    if not 1 <= req.limit <= 100_000:
        raise InvalidRequest("limit must be 1..100000")
    return req


def check_json(body: bytes) -> None:
    """Raise msgspec.DecodeError unless body is one JSON value."""
    _any_dec.decode(body)


def check_queue(name: str) -> str:
    if not QUEUE_RE.fullmatch(name):
        raise InvalidQueue(f"queue name must match [A-Za-z0-9_.:-]{{1,128}}, got {name[:140]!r}")
    return name


def _check_timeout(v: float, err: type[Exception], name: str = "timeout") -> None:
    if not (0 < v <= MAX_TIMEOUT_S) or math.isnan(v):
        raise err(f"{name} must be > 0 and <= {MAX_TIMEOUT_S:.0f} seconds")


def parse_priority(p: int | str, err: type[Exception] = InvalidJob, **extra: Any) -> int:
    if isinstance(p, str):
        if p not in PRIORITY_NAMES:
            raise err("priority must be 0..9 or one of high, normal, low", **extra)
        return PRIORITY_NAMES[p]
    if not 0 <= p <= 9:
        raise err("priority must be 0..9 or one of high, normal, low", **extra)
    return p


def check_payload_size(req: EnqueueRequest, limit: int, line: int | None = None) -> None:
    if len(req.payload) > limit:
        extra = {} if line is None else {"line": line}
        raise PayloadTooLarge(f"payload is larger than {limit} bytes", **extra)
