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

A job's queue is in its spec, read in the same read transaction (a job whose spec is
already gone by then, or one deleted, is named with the queue remembered from an earlier
entry, if any: ``QueueMemo``).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

import msgspec

from ..queue.records import JobState, QStat
from .log import QSTAT, STATE, TERM_START, entry_decoder
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

    def __init__(self, size: int = 50_000) -> None:
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
                 jobs: bool = True, queues: bool = True) -> list[EntryChanges]:
    """The changes of these log entries ((seq, raw) as ReadTx.log_entries gives them), in
    order; ``jobs``/``queues`` False skips that kind (and its cost)."""
    out = []
    for seq, raw in raws:
        e = entry_decoder.decode(raw)
        if e.kind == TERM_START:
            out.append(EntryChanges(seq, [], []))
            continue
        states: dict[str, bytes | None] = {}
        stats: dict[str, bytes | None] = {}
        fx = e.fx
        for i in range(0, len(fx), 3):
            code, key = fx[i], fx[i + 1]
            if code == STATE and jobs and isinstance(key, bytes):
                value = fx[i + 2]
                states[key.decode()] = value if isinstance(value, bytes) else None
            elif code == QSTAT and queues and isinstance(key, bytes):
                value = fx[i + 2]
                stats[key.decode()] = value if isinstance(value, bytes) else None
        out.append(EntryChanges(seq, [_job(t, jid, v, memo) for jid, v in states.items()],
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
        if spec is not None:
            queue = spec.queue
            memo.put(jid, queue)
    return JobChange(jid, queue, st.state, st.attempt, st.worker)
