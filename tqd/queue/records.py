"""What is stored, and the ops that change it.

Stored records are compact msgpack arrays. A job is split so that state
changes rewrite only a small record:

- ``JobSpec``  written once at enqueue (queue, type, payload, limits)
- ``JobState`` rewritten on each transition (~60 bytes)
- result / progress / errors live in their own entries, written only if sent

Mutations are ``Op`` structs. An op carries everything that is chosen outside
the state machine (the time, random salts and jitter), so the rules stay
testable without a clock. Ops are not what is replicated: the writer logs the
*effects* of each commit (tqd.storage.log), which a follower applies without
running the rules at all.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct

# state codes (index into protocol.STATES)
QUEUED, SCHEDULED, ACTIVE, COMPLETED, DEAD, CANCELLED = range(6)
FINISHED = (COMPLETED, CANCELLED)
ANY_STATE = -1  # Purge: every job of the queue, whatever its state

# due-index kinds: what to do when the time comes
DUE_READY, DUE_LEASE, DUE_PURGE = 1, 2, 3
# kind flag: one entry for a batch (the jobs of one lease or ack op that fall due at the same
# ms), its value the ids; a job whose state claims (ms, kind | DUE_BATCH) is in such an entry.
# Leaving the batch early just clears the claim: the entry is skipped for it when it fires.
DUE_BATCH = 0x80

# JobState.extras bits: which optional entries exist
HAS_RESULT, HAS_PROGRESS, HAS_ERRORS = 1, 2, 4


class JobSpec(Struct, array_like=True):
    queue: str
    type: str | None
    payload: bytes  # raw JSON text
    priority: int
    max_attempts: int
    timeout: float
    key: str | None
    created_at: float
    qseq: int  # enqueue sequence: key of the per-queue listing index


class JobState(Struct, array_like=True):
    state: int
    attempt: int = 0
    ready_seq: int = 0  # key part of the ready entry while queued
    due_ms: int = 0  # time of the due entry, 0 = none
    due_kind: int = 0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    token: str | None = None
    worker: str | None = None
    extras: int = 0
    # the token of the ack or fail that ended the last lease, until the job moves on (leased
    # again, cancelled, retried): a repeat of that call answers as the first one did
    done_token: str | None = None


class QStat(Struct, array_like=True):
    paused: bool = False
    by_prio: list[int] = msgspec.field(default_factory=lambda: [0] * 10)
    scheduled: int = 0
    active: int = 0
    dead: int = 0
    completed: int = 0
    cancelled: int = 0
    enqueued_total: int = 0
    completed_total: int = 0
    failed_total: int = 0

    @property
    def queued(self) -> int:
        return sum(self.by_prio)


class Meta(Struct, array_like=True):
    """Replicated counters (the node-local log bookkeeping is storage's LocalMeta)."""

    seq: int = 0  # monotonic counter for ready order, enqueue order and lease tokens
    id_ms: int = 0  # last generated id: time part
    id_n: int = 0  # last generated id: counter part
    hexlike_ids: bool = False  # a client id looked like a generated one: check for clashes
    now: float = 0.0  # the latest op time committed: ops never go back, even across leaders


class MetaV1(Struct, array_like=True):
    """Meta as tqd 0.1 stored it (log format 1), read once to migrate a data dir."""

    seq: int = 0
    log_seq: int = 0
    log_first: int = 1
    id_ms: int = 0
    id_n: int = 0
    log_bytes: int = 0
    hexlike_ids: bool = False


# ---- ops (mutations, applied by the writer) -----------------------------------


class NewJob(Struct, array_like=True):
    id: str | None
    type: str | None
    payload: bytes
    priority: int
    run_at: float | None  # None = ready now
    max_attempts: int
    timeout: float
    key: str | None


class Enqueue(Struct, tag="enq", array_like=True):
    now: float
    queue: str
    jobs: list[NewJob]


class Lease(Struct, tag="lease", array_like=True):
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
    now: float
    items: list[AckItem]
    single: bool  # single ack raises errors; bulk reports them per line


class Fail(Struct, tag="fail", array_like=True):
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

    now: float
    id: str
    lease: str
    delay: float


class Heartbeat(Struct, tag="hb", array_like=True):
    now: float
    id: str
    lease: str
    extend: float | None
    progress: bytes | None


class Cancel(Struct, tag="cancel", array_like=True):
    now: float
    id: str


class Retry(Struct, tag="retry", array_like=True):
    now: float
    id: str


class Redrive(Struct, tag="redrive", array_like=True):
    now: float
    queue: str
    limit: int


class Purge(Struct, tag="purge", array_like=True):
    """One step of a purge: delete up to ``limit`` jobs in ``state``, looking at most at
    ``scan`` index entries (0: a default from limit) past the cursor ``after`` (a qseq)."""

    now: float
    queue: str
    state: int
    limit: int
    after: int = 0
    scan: int = 0


class DeleteQueue(Struct, tag="delq", array_like=True):
    """Forget an empty queue (a queue with jobs: 409; purge them first with state ANY)."""

    now: float
    queue: str


class SetPaused(Struct, tag="pause", array_like=True):
    now: float
    queue: str
    paused: bool


class Tick(Struct, tag="tick", array_like=True):
    now: float
    limit: int


Op = (Enqueue | Lease | Ack | Fail | Heartbeat | Cancel | Retry | Redrive | Purge | SetPaused | Tick
      | DeleteQueue | Release)

op_encoder = msgspec.msgpack.Encoder()
op_decoder: msgspec.msgpack.Decoder[Op] = msgspec.msgpack.Decoder(Op)
