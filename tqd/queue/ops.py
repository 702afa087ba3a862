"""The ops: every mutation of the queue, as the writer applies it, and what each one answers.

An op carries everything that is chosen outside the state machine (the time, random salts
and jitter), so the rules stay testable without a clock. Ops are not what is replicated:
the writer logs the *effects* of each commit (tqd.storage.log), which a follower applies
without running the rules at all.

Each op class names its answer in ``Result`` (the return type of its rule in the core; a
test holds the two equal): the writer process decodes its answers by it, so the op → result
contract is written once, here.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec
from msgspec import Struct

from ..protocol import EnqueueResult, LeasedJob
from .records import JobState


class AckOutcome(msgspec.Struct):
    """One line of a bulk ack's answer."""

    id: str
    error: str | None  # None = ok




class NewJob(Struct, array_like=True):
    id: str | None
    type: str | None
    payload: bytes
    priority: int
    run_at: float | None  # None = ready now
    max_attempts: int
    timeout: float
    key: str | None
    trace: str | None = None  # W3C traceparent of the enqueue (tqd.queue.validate.traceparent)


class Enqueue(Struct, tag="enq", array_like=True):
    Result: ClassVar[Any] = list[EnqueueResult]
    now: float
    queue: str
    jobs: list[NewJob]


class Lease(Struct, tag="lease", array_like=True):
    Result: ClassVar[Any] = list[LeasedJob]
    now: float
    queues: list[str]
    max: int
    worker: str | None
    timeout: float | None
    salt: int
    max_bytes: int = 0  # stop adding jobs once the answer is this big (0: no bound)


class AckItem(Struct, array_like=True):
    id: str
    lease: str
    result: bytes | None


class Ack(Struct, tag="ack", array_like=True):
    Result: ClassVar[Any] = list[AckOutcome]
    now: float
    items: list[AckItem]
    single: bool  # single ack raises errors; bulk reports them per line


class Fail(Struct, tag="fail", array_like=True):
    Result: ClassVar[Any] = JobState
    now: float
    id: str
    lease: str
    error: str
    details: str | None
    retry: bool
    retry_in: float | None
    jitter: float


class Release(Struct, tag="release", array_like=True):
    """Hand a leased job back unrun: the lease does not count as an attempt."""

    Result: ClassVar[Any] = JobState
    now: float
    id: str
    lease: str
    delay: float


class Heartbeat(Struct, tag="hb", array_like=True):
    Result: ClassVar[Any] = float
    now: float
    id: str
    lease: str
    extend: float | None
    progress: bytes | None


class Cancel(Struct, tag="cancel", array_like=True):
    Result: ClassVar[Any] = None
    now: float
    id: str


class Retry(Struct, tag="retry", array_like=True):
    Result: ClassVar[Any] = None
    now: float
    id: str


class Redrive(Struct, tag="redrive", array_like=True):
    Result: ClassVar[Any] = int
    now: float
    queue: str
    limit: int


class Purge(Struct, tag="purge", array_like=True):
    """One step of a purge: delete up to ``limit`` jobs in ``state``, looking at most at
    ``scan`` index entries (0: a default from limit) past the cursor ``after`` (a qseq)."""

    Result: ClassVar[Any] = tuple[int, int | None]
    now: float
    queue: str
    state: int
    limit: int
    after: int = 0
    scan: int = 0


class DeleteQueue(Struct, tag="delq", array_like=True):
    """Forget an empty queue (a queue with jobs: 409; purge them first with state ANY)."""

    Result: ClassVar[Any] = None
    now: float
    queue: str


class SetPaused(Struct, tag="pause", array_like=True):
    Result: ClassVar[Any] = None
    now: float
    queue: str
    paused: bool


class Tick(Struct, tag="tick", array_like=True):
    Result: ClassVar[Any] = int
    now: float
    limit: int


Op = (Enqueue | Lease | Ack | Fail | Heartbeat | Cancel | Retry | Redrive | Purge | SetPaused | Tick
      | DeleteQueue | Release)

op_encoder = msgspec.msgpack.Encoder()
op_decoder: msgspec.msgpack.Decoder[Op] = msgspec.msgpack.Decoder(Op)
