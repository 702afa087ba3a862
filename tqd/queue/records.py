"""What is stored.

Stored records are compact msgpack arrays. A job is split so that state
changes rewrite only a small record:

- ``JobSpec``  written once at enqueue (queue, type, payload, limits)
- ``JobState`` rewritten on each transition (~60 bytes)
- result / progress / errors live in their own entries, written only if sent

What changes it are the ops of ops.py.
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
    trace: str | None = None  # the W3C traceparent the job was enqueued with


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
