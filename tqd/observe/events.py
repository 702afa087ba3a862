"""``GET /v1/events``: Server-Sent Events of state changes, read from the replication log.

Each stream is a reader of the log (tqd.storage.changes) with its own cursor, the log's
seq. That choice gives the stream its properties for free:

- **Resumable**: the SSE ``id`` is a log seq; a client that reconnects with
  ``Last-Event-ID`` goes on from there for as long as the log keeps the entries
  (``--log-keep-entries``/``--log-keep-bytes``, longer while followers pin it). Past that
  the stream says ``event: reset`` and goes on from now: the client reads the state again.
- **Bounded per connection**: a stream reads at most ``BATCH_ENTRIES`` entries
  (``BATCH_BYTES``) at a time and writes them before it reads more, so a slow client is
  held back by TCP, not buffered; the log is its only backlog.
- **The same on every node**: a follower applies the same log, so its streams say the
  same things with the same ids.
- **Free for the writer**: no subscriber costs the writer anything; decoding happens in
  the server process, off the event loop (on threads of its own), and only while someone
  listens.

The ``id`` comes once per batch, on its last event: a stream cut in the middle of a batch
is resumed from the batch's start (an event may come twice, never not at all). Queue
events are coalesced: at most one per queue per batch, with its counters at the end of
the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

from ..protocol import STATES, EventsReset, JobEvent, QueueGone, json_encoder
from ..queue.records import QStat
from ..storage.changes import DELETED, QueueMemo, read_changes

if TYPE_CHECKING:
    from ..service import QueueService

BATCH_ENTRIES = 256
BATCH_BYTES = 4 * 1024 * 1024
PING_S = 15.0  # a comment line this often when nothing happens (proxies, dead peers)
KINDS = ("job", "queue")
POOL_THREADS = 2


_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    """The streams' own threads: however many streams read, the default executor (which
    serves the lease store and the followers' fetches) stays free."""
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="tqd-events")
    return _POOL


class Filter(NamedTuple):
    """What a stream wants: event kinds, queues (None: all it may see), one job only."""

    kinds: frozenset[str]
    queues: frozenset[str] | None
    job: str | None
    sees: Callable[[str], bool]  # the caller's queue globs (auth)

    def wants_queue(self, queue: str | None) -> bool:
        if queue is None:
            return self.queues is None and self.sees is _everything
        return (self.queues is None or queue in self.queues) and self.sees(queue)


def _everything(queue: str) -> bool:
    return True


def make_filter(kinds: frozenset[str], queues: frozenset[str] | None, job: str | None,
                sees: Callable[[str], bool] | None) -> Filter:
    return Filter(kinds, queues, job, sees or _everything)


def _event(kind: str, data: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"


class EventStream:
    """One client's stream: ``next()`` gives the SSE text of what happened since."""

    def __init__(self, service: QueueService, flt: Filter, after: int | None) -> None:
        self.service = service
        self.flt = flt
        self.cursor = service.position.seq if after is None else after
        self.memo = QueueMemo()

    async def next(self, timeout: float) -> bytes:
        """The SSE text of the next batch of changes, waiting up to ``timeout`` for one;
        b"" when nothing this stream wants happened."""
        svc = self.service
        if svc.position.seq < self.cursor:  # an id from another log than this one
            return self._reset()
        if svc.position.seq == self.cursor:
            await svc.wait_log(self.cursor, timeout)
            if svc.position.seq <= self.cursor:
                return b""
        return await asyncio.get_running_loop().run_in_executor(_pool(), self._read)

    def _reset(self) -> bytes:
        self.cursor = self.service.position.seq
        return _event("reset", json_encoder.encode(EventsReset(self.cursor)))[:-1] + (
            b"id: %d\n\n" % self.cursor)

    def _read(self) -> bytes:
        svc, flt = self.service, self.flt
        with svc.store.read() as t:
            raws = t.log_entries(self.cursor, BATCH_ENTRIES, BATCH_BYTES)
            if not raws or raws[0][0] != self.cursor + 1:  # the entries are gone
                return self._reset()
            changes = read_changes(t, raws, self.memo, jobs="job" in flt.kinds,
                                   queues="queue" in flt.kinds, only_job=flt.job)
            out: list[bytes] = []
            if "job" in flt.kinds:
                for c in changes:
                    for j in c.jobs:
                        if (flt.job is None or j.id == flt.job) and flt.wants_queue(j.queue):
                            state = "deleted" if j.state == DELETED else STATES[j.state]
                            ev = JobEvent(j.id, j.queue, state, j.attempt, j.worker)
                            out.append(_event("job", json_encoder.encode(ev)))
            if "queue" in flt.kinds:
                last: dict[str, QStat | None] = {}
                for c in changes:
                    for q in c.queues:
                        if flt.wants_queue(q.queue):
                            last[q.queue] = q.stat
                for name, stat in last.items():
                    body = json_encoder.encode(QueueGone(name) if stat is None
                                               else svc.stats_in(t, name, stat))
                    out.append(_event("queue", body))
        self.cursor = raws[-1][0]
        if not out:
            return b""
        out[-1] = out[-1][:-1] + b"id: %d\n\n" % self.cursor
        return b"".join(out)
