"""The service's reads: a job (and waiting for it to finish), a queue's stats, the queues
and a queue's jobs a page at a time.

A mixin of QueueService (tqd.service), apart because it is one concern: what is answered
from the store in the server process, without the writer (but for ``wait_job``, which
asks the writer to report a finish). The HTTP handlers, the metrics, the history sampler
and the event streams call it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .clock import Clock
from .engine.remote import RemoteWriter
from .protocol import STATES, JobPage, JobRecord, QueuePage, QueueStats
from .queue import records as r
from .queue.core import Core
from .storage.store import Store

FINISHED = ("completed", "dead", "cancelled")  # (a record's state)


class ReadFace:
    # what QueueService gives the mixin
    store: Store
    core: Core
    clock: Clock
    writer: RemoteWriter
    _job_waiters: dict[str, list[asyncio.Future[None]]]

    @property
    def leading(self) -> bool:
        raise NotImplementedError

    def get_job(self, jid: str) -> JobRecord:
        with self.store.read() as t:
            return self.core.get(t, jid)

    async def wait_job(self, jid: str, timeout: float) -> JobRecord:
        """The job once it is finished (completed, dead or cancelled), or as it is after
        ``timeout`` seconds. On the leader the writer reports the commit that finishes it
        (no polling); elsewhere (a follower applying the leader's log) it is read again
        every 0.1 s."""
        rec = self.get_job(jid)
        deadline = time.monotonic() + timeout
        if rec.state in FINISHED or timeout <= 0:
            return rec
        if not self.leading:
            while rec.state not in FINISHED and time.monotonic() < deadline:
                await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                rec = self.get_job(jid)
            return rec
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._job_waiters.setdefault(jid, [])
        waiters.append(fut)
        try:
            if len(waiters) == 1:
                await self.writer.watch([jid])  # watched from now on: the read below misses nothing
            rec = self.get_job(jid)
            if rec.state not in FINISHED:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await asyncio.shield(fut)
        except TimeoutError:
            pass
        finally:
            left = self._job_waiters.get(jid)
            if left is not None and fut in left:
                left.remove(fut)
                if not left:
                    del self._job_waiters[jid]
                    self.writer.unwatch([jid])
        return self.get_job(jid)

    def queue_stats(self, queue: str) -> QueueStats:
        with self.store.read() as t:
            qs = t.get_qstat(queue) or r.QStat()
            return self.stats_in(t, queue, qs)

    def all_queue_stats(self) -> list[QueueStats]:
        """Every queue's stats (for /metrics), in one read transaction."""
        with self.store.read() as t:
            return [self.stats_in(t, q, qs) for q, qs in t.all_qstats()]

    def queue_page(self, after: str, limit: int) -> QueuePage:
        """Queues in name order after the cursor `after` ("" = from the first)."""
        with self.store.read() as t:
            rows = t.qstats_after(after, limit + 1)
            page = [self.stats_in(t, q, qs) for q, qs in rows[:limit]]
        return QueuePage(page, page[-1].name if len(rows) > limit else None)

    def stats_in(self, t: Any, queue: str, qs: r.QStat) -> QueueStats:
        """A queue's stats as answered, from its counters, in read transaction ``t``."""
        oldest = t.oldest_ready_ms(queue) if qs.queued else None
        age = None if oldest is None else max(0.0, self.clock.now() - oldest / 1000)
        return QueueStats(
            name=queue, paused=qs.paused, queued=qs.queued,
            queued_by_priority={str(p): qs.by_prio[p] for p in range(9, -1, -1)},
            scheduled=qs.scheduled, active=qs.active, dead=qs.dead, completed=qs.completed,
            cancelled=qs.cancelled, oldest_queued_age=age, enqueued_total=qs.enqueued_total,
            completed_total=qs.completed_total, failed_total=qs.failed_total,
        )

    async def list_jobs(self, queue: str, state: str | None, limit: int, after: int,
                        type: str | None = None, priority: int | None = None) -> JobPage:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._list_jobs, queue, state, limit, after,
                                          type, priority)

    def _list_jobs(self, queue: str, state: str | None, limit: int, after: int,
                   type: str | None = None, priority: int | None = None,
                   scan_budget: int = 50_000) -> JobPage:
        """Oldest first by enqueue order; a filter (state, type, priority) scans at most
        scan_budget entries per page (the cursor then points past what was scanned)."""
        code = None if state is None else STATES.index(state)
        which = "dead" if code == r.DEAD else "qidx"
        jobs: list[JobRecord] = []
        last = after
        more = False
        with self.store.read() as t:
            for scanned, (qseq, jid) in enumerate(t.scan_index(which, queue, after), 1):
                if len(jobs) >= limit or scanned > scan_budget:
                    more = True
                    break
                last = qseq
                spec, st = t.get_spec(jid), t.get_state(jid)
                if (spec is None or st is None or (code is not None and st.state != code)
                        or (type is not None and spec.type != type)
                        or (priority is not None and spec.priority != priority)):
                    continue
                jobs.append(self.core.record(t, jid, spec, st))
        return JobPage(jobs, format(last, "x") if more else None)
