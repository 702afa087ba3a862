"""What a log entry changed, as a reader of events sees it: jobs that moved and queues whose
counters changed.

The replication log (tqd.storage.log) already holds every change in commit order, so the
event stream (``GET /v1/events``, tqd.observe.events) is a reader of the log, not a second
record kept by the writer: it costs the writer nothing, it is the same on a follower as on
the leader, and its position is the log's seq, which is what ``Last-Event-ID`` resumes from.

An entry's effects are raw puts and deletes. This module turns them back into meaning:

- a put to ``state``: the job's new state (its last put in the entry wins);
- a delete from ``state``: the job is gone (retention, purge, queue deleted);
- a put to ``qstat``: the queue's counters now; a delete: the queue is gone.

A job's queue is named by the log itself where it can be: an entry that creates a job puts
its spec, whose queue is read from that put (opened if sealed), and remembered for the
job's later changes (``QueueMemo``; a deletion forgets it). A job created before the
reader started is looked up in the current spec, but only trusted when the change is
provably of that incarnation: a custom id may be reused after its job is deleted, and the
old job's changes must not be shown as the new job's queue's (to a token that may read
only that queue, say). Op times never go back, so a change whose ``started_at`` or
``finished_at`` is later than the spec's ``created_at`` happened to the job that spec
describes; anything else is named with no queue (``None``), which a queue-filtered or
restricted reader does not get.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from typing import NamedTuple

import msgspec

from ..queue.records import JobSpec, JobState, QStat
from .log import QSTAT, SPEC, STATE, TERM_START, entry_decoder
from .store import ReadTx

DELETED = -1  # JobChange.state of a job that is gone

_state_dec = msgspec.msgpack.Decoder(JobState)
_qstat_dec = msgspec.msgpack.Decoder(QStat)


class JobChange(NamedTuple):
    id: str
    queue: str | None  # None: not known any more (a deleted job never seen before)
    state: int  # records.QUEUED... or DELETED
    attempt: int
    worker: str | None


class QueueChange(NamedTuple):
    queue: str
    stat: QStat | None  # None: the queue was deleted


class EntryChanges(NamedTuple):
    seq: int
    jobs: list[JobChange]
    queues: list[QueueChange]


class QueueMemo:
    """The queue of recently seen jobs (bounded): names the queue of a job whose spec is
    already gone when its deletion is read."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._q: OrderedDict[str, str] = OrderedDict()

    def get(self, jid: str) -> str | None:
        return self._q.get(jid)

    def put(self, jid: str, queue: str) -> None:
        self._q[jid] = queue
        if len(self._q) > self._size:
            self._q.popitem(last=False)

    def pop(self, jid: str) -> str | None:
        return self._q.pop(jid, None)


def read_changes(t: ReadTx, raws: list[tuple[int, bytes]], memo: QueueMemo,
                 jobs: bool = True, queues: bool = True,
                 only_job: str | None = None) -> list[EntryChanges]:
    """The changes of these log entries ((seq, raw) as ReadTx.log_entries gives them), in
    order; ``jobs``/``queues`` False skips that kind (and its cost), ``only_job`` every
    other job's changes."""
    only = None if only_job is None else only_job.encode()
    out = []
    for seq, raw in raws:
        e = entry_decoder.decode(raw)
        if e.kind == TERM_START:
            out.append(EntryChanges(seq, [], []))
            continue
        states: dict[bytes, bytes | None] = {}
        specs: dict[bytes, bytes] = {}
        stats: dict[str, bytes | None] = {}
        fx = e.fx
        for i in range(0, len(fx), 3):
            code, key, value = fx[i], fx[i + 1], fx[i + 2]
            if not isinstance(key, bytes):
                continue
            if code == STATE:
                if jobs and (only is None or key == only):
                    states[key] = value if isinstance(value, bytes) else None
            elif code == SPEC:
                if jobs and (only is None or key == only) and isinstance(value, bytes):
                    specs[key] = value
            elif code == QSTAT and queues:
                stats[key.decode()] = value if isinstance(value, bytes) else None
        for key, value in specs.items():  # the jobs this entry creates: their queue, for sure
            memo.put(key.decode(), sys.intern(t.decode_spec(key, value).queue))
        out.append(EntryChanges(seq, [_job(t, k.decode(), v, memo) for k, v in states.items()],
                                [QueueChange(q, None if v is None else _qstat_dec.decode(v))
                                 for q, v in stats.items()]))
    return out


def _job(t: ReadTx, jid: str, value: bytes | None, memo: QueueMemo) -> JobChange:
    if value is None:
        return JobChange(jid, memo.pop(jid), DELETED, 0, None)
    st = _state_dec.decode(value)
    queue = memo.get(jid)
    if queue is None:
        spec = t.get_spec(jid)
        if spec is not None and _of(st, spec):
            queue = sys.intern(spec.queue)
            memo.put(jid, queue)
    return JobChange(jid, queue, st.state, st.attempt, st.worker)


def _of(st: JobState, spec: JobSpec) -> bool:
    """This state is provably of the job ``spec`` describes (not of an earlier job with the
    same id): something happened to it after that job was created."""
    at = max(st.started_at or 0.0, st.finished_at or 0.0)
    return at > spec.created_at
