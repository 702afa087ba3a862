"""``GET /v1/history``: each queue's counters over the last hour, for the dashboard's charts.

A supervised loop (``history``) samples every queue's stored counters every
``INTERVAL_S`` and keeps the last ``KEEP`` samples per queue in memory: depth by state and
the stored totals, from which a reader gets throughput (the difference of totals between
two samples over their interval). Kept in memory, not stored: a restart starts the charts
again, while the totals themselves are stored and go on (and Prometheus, scraping
``/metrics``, is the place for history longer than an hour).

At most ``MAX_QUEUES`` queues are sampled (in name order), so that a node with a million
queues does not spend its memory on charts; one answer holds at most
``MAX_ANSWER_QUEUES`` of them, and ``since`` keeps a poller's answers small.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from ..protocol import History, HistorySample, QueueStats
from ..supervisor import LoopState

INTERVAL_S = 10.0
KEEP = 360  # one hour
MAX_QUEUES = 1000
MAX_ANSWER_QUEUES = 100  # in one answer (about 6 MB of JSON at most): name the others


class Sampler:
    def __init__(self, read: Callable[[], list[QueueStats]], now: Callable[[], float],
                 interval_s: float = INTERVAL_S, keep: int = KEEP) -> None:
        """``read``: every queue's stats now (blocking: run on a thread); ``now``: wall time."""
        self._read = read
        self._now = now
        self.interval_s = interval_s
        self._keep = keep
        self._series: dict[str, deque[HistorySample]] = {}

    def sample(self, stats: list[QueueStats]) -> None:
        """Add one sample of these queues; a queue no longer there is forgotten."""
        t = self._now()
        seen = set()
        for q in stats[:MAX_QUEUES]:
            seen.add(q.name)
            ring = self._series.get(q.name)
            if ring is None:
                ring = self._series[q.name] = deque(maxlen=self._keep)
            ring.append(HistorySample(t, q.queued, q.scheduled, q.active, q.dead,
                                      q.enqueued_total, q.completed_total, q.failed_total))
        for name in [n for n in self._series if n not in seen]:
            del self._series[name]

    def history(self, wanted: Callable[[str], bool], since: float = 0.0,
                max_queues: int = MAX_ANSWER_QUEUES) -> History:
        """The samples after ``since`` of the first ``max_queues`` wanted queues (by name)."""
        names = sorted(q for q in self._series if wanted(q))[:max_queues]
        return History(self.interval_s, {q: [x for x in self._series[q] if x.t > since]
                                         for q in names})

    async def loop(self, state: LoopState) -> None:
        """The supervised loop: one sample now, then one every interval."""
        loop = asyncio.get_running_loop()
        while True:
            self.sample(await loop.run_in_executor(None, self._read))
            state.runs += 1
            state.last_run = time.time()
            await asyncio.sleep(self.interval_s)
