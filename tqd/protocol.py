"""Wire messages of docs/protocol.md as msgspec Structs, with encoders/decoders built once.

Decoding here checks types and the body's bytes (encoding, UTF-8, size); ranges and
cross-field rules are tqd.queue.validate's, whose limits (with their reasons) are defined
here with the body limits. Payloads stay raw JSON bytes from the request to the disk and
back (never decoded by the server).
"""

from __future__ import annotations

import codecs
import re
import zlib
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import msgspec
from msgspec import Raw, Struct

from .config import MiB, Settings
from .errors import (
    InvalidJob,
    InvalidRequest,
    PayloadTooLarge,
    TqdError,
    UnsupportedMediaType,
)

NULL = Raw(b"null")
NOT_SENT = Raw(b"")  # a Raw field's default when absent (msgspec cannot decode `Raw | None`)
QUEUE_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")
ID_RE = QUEUE_RE
PRIORITY_NAMES = {"high": 7, "normal": 5, "low": 3}
STATES = ("queued", "scheduled", "active", "completed", "dead", "cancelled")


# ---- field limits -------------------------------------------------------------
# Every limit on a request's fields, with its reason. The rules that apply them are
# tqd.queue.validate's; the numbers are here, next to the body limits below.

MAX_PRIORITY = 9  # priorities are 0..9, 9 first; the names map into that range
MAX_ATTEMPTS = 1000  # a job leased more often than this is a loop, not a retry policy
MAX_TIMEOUT_S = 7 * 86400.0  # a lease's length (timeout, extend): a worker silent a week is gone
MAX_DELAY_S = 10 * 365 * 86400.0  # delay, run_at, retry_in: further ahead is a mistake, not a plan
MAX_KEY_BYTES = 255  # with the queue name (128) and a NUL, one LMDB key (511 bytes at most)
MAX_TYPE_CHARS = 255  # a job's type is a name, stored with every job
MAX_WORKER_CHARS = 255  # a lease's worker is a label, stored with every job it takes
MAX_LEASE_QUEUES = 100  # queues one lease may name (each is a cursor the writer walks)
MAX_LEASE_JOBS = 1000  # jobs one lease may take (max_lease_bytes also bounds the answer)
MAX_WAIT_S = 60.0  # a long-poll's wait: under the usual 60-75 s proxy idle timeouts
MAX_REDRIVE = 100_000  # dead jobs one redrive moves back (one write transaction)
MAX_PAGE = 1000  # items in one page of a listing (queues, jobs)


# ---- body limits --------------------------------------------------------------
# Every route has a body limit, enforced from Content-Length before the body is read
# (413 at once, also for `Expect: 100-continue`), while reading (chunked bodies stop
# there) and after decompression (a gzip bomb stops there). The README's table of
# limits is this one.

FIELD_ROOM_BYTES = 64 * 1024  # one payload-sized value plus the other fields and whitespace
SMALL_BODY_BYTES = 64 * 1024  # a few fields: 100 queue names of 128 chars fit five times over
MAX_ERROR_CHARS = 2_000  # fail `error`: kept per attempt (max_errors_kept of them), clipped
MAX_DETAILS_CHARS = 32_000  # fail `details` (a traceback): clipped, not refused
# a fail body carries error + details, which are clipped rather than refused: room for a whole
# traceback (the clipped texts are at most ~200 kB even \u-escaped), still a bound
FAIL_BODY_BYTES = 1 * MiB
MAX_ACK_LINES = 10_000  # lines in one bulk ack, as many as a bulk enqueue's default


class BodyLimit(NamedTuple):
    what: str  # for messages: "<what> is larger than N bytes"
    size: Callable[[Settings], int]
    reason: str


BODY_LIMITS: dict[str, BodyLimit] = {
    "job": BodyLimit("a job body", lambda s: s.max_payload_bytes + FIELD_ROOM_BYTES,
                     "max_payload_bytes + 64 KiB for the other fields"),
    "bulk": BodyLimit("a bulk enqueue body", lambda s: s.max_bulk_bytes, "max_bulk_bytes"),
    "bulk_ack": BodyLimit("a bulk ack body", lambda s: s.max_bulk_bytes,
                          f"max_bulk_bytes, like a bulk enqueue (up to {MAX_ACK_LINES} results)"),
    "result": BodyLimit("an ack or heartbeat body", lambda s: s.max_payload_bytes + FIELD_ROOM_BYTES,
                        "a result/progress is held to max_payload_bytes; + 64 KiB for the rest"),
    "fail": BodyLimit("a fail body", lambda s: FAIL_BODY_BYTES,
                      "1 MiB: error and details are clipped, not refused"),
    "small": BodyLimit("a lease or redrive body", lambda s: SMALL_BODY_BYTES,
                       "64 KiB: a few small fields"),
    "none": BodyLimit("a body", lambda s: SMALL_BODY_BYTES,
                      "64 KiB: routes that read no body (a stray `-d '{}'` is fine)"),
}


def body_limit(kind: str, s: Settings) -> tuple[int, str]:
    """The byte limit of a body of this kind (a BODY_LIMITS key) and what to call it."""
    row = BODY_LIMITS[kind]
    return row.size(s), row.what


# ---- body bytes ---------------------------------------------------------------------

_UTF8_SLICE = 1 * MiB  # validate big bodies a slice at a time: no second copy of the body
_JSON_STARTS = frozenset(b'{["-0123456789tfn')  # t, f, n: true, false, null


def content_coding(header: str) -> str:
    """A Content-Encoding header as "" (none), "gzip" or "deflate"; 415 for anything else."""
    coding = header.strip().lower()
    if coding in ("", "identity"):
        return ""
    if coding in ("gzip", "x-gzip"):
        return "gzip"
    if coding == "deflate":
        return "deflate"
    raise UnsupportedMediaType(f"unsupported Content-Encoding {header.strip()[:100]!r}; send gzip, "
                               "deflate or none")


def decode_content(body: bytes, coding: str, limit: int) -> bytes:
    """The body with its content coding (from content_coding) undone, held to `limit` bytes.

    Corrupt or truncated data is 400, more than `limit` bytes out 413: the decompressor
    stops there, so a bomb costs at most `limit` bytes of memory.
    """
    if coding == "gzip":
        wbits = 16 + zlib.MAX_WBITS
    else:  # deflate: RFC 9110 says zlib-wrapped; some clients send it raw
        wbits = zlib.MAX_WBITS if _zlib_header(body) else -zlib.MAX_WBITS
    out: list[bytes] = []
    room = limit + 1
    data = body
    try:
        while True:
            d = zlib.decompressobj(wbits)
            chunk = d.decompress(data, room)
            out.append(chunk)
            room -= len(chunk)
            if room <= 0 or d.unconsumed_tail:
                raise PayloadTooLarge(f"the body is larger than {limit} bytes once decompressed")
            if not d.eof:
                raise InvalidRequest(f"the {coding} body is truncated")
            data = d.unused_data
            if not data or coding != "gzip":  # gzip may come in several members
                break
    except zlib.error as e:
        raise InvalidRequest(f"the body is not valid {coding} data ({e})") from None
    if data:
        raise InvalidRequest(f"the {coding} body has trailing data")
    return out[0] if len(out) == 1 else b"".join(out)


def _zlib_header(b: bytes) -> bool:
    return len(b) >= 2 and b[0] & 0x0F == 8 and (b[0] << 8 | b[1]) % 31 == 0


def first_bad_utf8(body: bytes) -> int | None:
    """The offset of the first byte that is not UTF-8 (overlong forms and surrogates count)."""
    if body.isascii():  # the common case, checked a word at a time
        return None
    dec = codecs.getincrementaldecoder("utf-8")()
    view = memoryview(body)
    for start in range(0, len(body), _UTF8_SLICE):
        pending = len(dec.getstate()[0])
        try:
            dec.decode(view[start:start + _UTF8_SLICE], final=start + _UTF8_SLICE >= len(body))
        except UnicodeDecodeError as e:
            return start - pending + e.start
    return None


def check_utf8(body: bytes, err: type[TqdError], ndjson: bool) -> None:
    """Raise err (400) if body is not UTF-8, naming the line of an NDJSON body."""
    pos = first_bad_utf8(body)
    if pos is None:
        return
    if not ndjson:
        raise err(f"the body is not valid UTF-8 (byte {pos})")
    line = body.count(b"\n", 0, pos) + 1
    raise err(f"line {line}: not valid UTF-8 (byte {pos} of the body)", line=line)


def looks_like_json(body: bytes) -> bool:
    """Whether a form- or text-typed body (what `curl -d` sends) is meant as JSON.

    It is when its first non-blank byte can start a JSON value: `{`, `[`, `"`, a digit,
    `-`, or the t, f, n of true/false/null. Such a body is then parsed as JSON, so a
    typo gets a 400 that says where the JSON is broken; only bodies that clearly are
    something else (`payload=1`, `<job/>`, most prose) get 415. An empty body is `{}`.
    """
    head = body.lstrip()
    return not head or head[0] in _JSON_STARTS


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


class ReleaseRequest(Struct):
    lease: str
    delay: float = 0.0


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
    traceparent: str | None = None  # the W3C trace context it was enqueued with


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



class JobEvent(Struct):
    """``event: job`` of GET /v1/events: a job's new state ("deleted": it is gone)."""
    id: str
    queue: str | None
    state: str
    attempt: int
    worker: str | None


class QueueGone(Struct):
    """``event: queue`` of GET /v1/events when the queue was deleted."""
    queue: str
    deleted: bool = True


class EventsReset(Struct):
    """``event: reset`` of GET /v1/events: events were missed; read the state again."""
    seq: int


class HistorySample(Struct):
    """One sample of a queue's counters (GET /v1/history)."""
    t: float
    queued: int
    scheduled: int
    active: int
    dead: int
    enqueued_total: int
    completed_total: int
    failed_total: int


class History(Struct):
    interval_s: float
    series: dict[str, list[HistorySample]]

class JobPage(Struct):
    jobs: list[JobRecord]
    next: str | None


class QueuePage(Struct):
    queues: list[QueueStats]
    next: str | None


# ---- codecs (built once) ----------------------------------------------------

json_encoder = msgspec.json.Encoder()
_enqueue_dec = msgspec.json.Decoder(EnqueueRequest)
_lease_dec = msgspec.json.Decoder(LeaseRequest)
_ack_dec = msgspec.json.Decoder(AckRequest)
_bulk_ack_dec = msgspec.json.Decoder(BulkAckLine)
_fail_dec = msgspec.json.Decoder(FailRequest)
_heartbeat_dec = msgspec.json.Decoder(HeartbeatRequest)
_release_dec = msgspec.json.Decoder(ReleaseRequest)
_redrive_dec = msgspec.json.Decoder(RedriveRequest)


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
    return _decode(_lease_dec, body, InvalidRequest)  # type: ignore[no-any-return]


def decode_ack(body: bytes) -> AckRequest:
    return _decode(_ack_dec, body, InvalidRequest)  # type: ignore[no-any-return]


def decode_bulk_ack_line(line: bytes, n: int) -> BulkAckLine:
    return _decode(_bulk_ack_dec, line, InvalidRequest, line=n)  # type: ignore[no-any-return]


def decode_fail(body: bytes) -> FailRequest:
    return _decode(_fail_dec, body, InvalidRequest)  # type: ignore[no-any-return]


def decode_heartbeat(body: bytes) -> HeartbeatRequest:
    return _decode(_heartbeat_dec, body, InvalidRequest)  # type: ignore[no-any-return]


def decode_release(body: bytes) -> ReleaseRequest:
    return _decode(_release_dec, body, InvalidRequest)  # type: ignore[no-any-return]


def decode_redrive(body: bytes) -> RedriveRequest:
    return _decode(_redrive_dec, body, InvalidRequest)  # type: ignore[no-any-return]
