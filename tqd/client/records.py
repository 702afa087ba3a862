"""The records the tqd client hands out, and their codecs, each built once.

Client-side views of the wire records (tqd.protocol has the server's): payload, result
and progress decoded, every field defaulted so an older or newer server still decodes.
`job_body` is the enqueue body for one job; `lines`/`ndjson` read and write NDJSON.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

import msgspec
from msgspec import Struct

from ..protocol import AckLineResult, EnqueueResult, QueueStats

T = TypeVar("T")


class JobError(Struct):
    attempt: int = 0
    at: float = 0.0
    error: str = ""
    details: str | None = None


class Job(Struct):
    id: str
    queue: str = ""
    type: str | None = None
    payload: Any = None
    priority: int = 5
    state: str = ""
    attempt: int = 0
    max_attempts: int = 0
    timeout: float = 0.0
    key: str | None = None
    errors: list[JobError] = []
    result: Any = None
    progress: Any = None
    created_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    worker: str | None = None
    traceparent: str | None = None  # the W3C trace context the job was enqueued with


class LeasedJob(Job):
    lease: str = ""


class JobPage(Struct):
    jobs: list[Job]
    next: str | None = None


class FailResult(Struct):
    state: str
    run_at: float | None = None


class QueuePage(Struct):
    queues: list[QueueStats]
    next: str | None = None  # servers before queue paging send every queue and no cursor


enc = msgspec.json.Encoder()
job_dec = msgspec.json.Decoder(Job)
leased_dec = msgspec.json.Decoder(LeasedJob)
page_dec = msgspec.json.Decoder(JobPage)
enq_dec = msgspec.json.Decoder(EnqueueResult)
stats_dec = msgspec.json.Decoder(QueueStats)
qpage_dec = msgspec.json.Decoder(QueuePage)
ackline_dec = msgspec.json.Decoder(AckLineResult)
fail_dec = msgspec.json.Decoder(FailResult)
any_dec = msgspec.json.Decoder()


def lines(body: bytes, dec: msgspec.json.Decoder[T]) -> list[T]:
    return [dec.decode(ln) for ln in body.split(b"\n") if ln.strip()]


def ndjson(objs: Iterable[Any]) -> bytes:
    buf = bytearray()
    for o in objs:
        enc.encode_into(o, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


def job_body(type: str | None = None, payload: Any = None, *, priority: int | str | None = None,
             delay: float | None = None, run_at: float | None = None, key: str | None = None,
             max_attempts: int | None = None, timeout: float | None = None,
             id: str | None = None) -> dict[str, Any]:
    """The enqueue body for one job, leaving out unset fields (the server's defaults apply)."""
    body: dict[str, Any] = {"type": type, "payload": payload}
    for name, v in (("priority", priority), ("delay", delay), ("run_at", run_at), ("key", key),
                    ("max_attempts", max_attempts), ("timeout", timeout), ("id", id)):
        if v is not None:
            body[name] = v
    return body
