"""What the writer measures about itself, for /metrics: counters and histograms kept as
plain numbers in the writer process, sent to the server on request (StatsMsg) and turned
into Prometheus families there (tqd.observe.metrics).

Histograms are cumulative from the writer's start, as Prometheus expects; the bucket
bounds are fixed here. Per queue: how long each leased job had waited since it was
ready (enqueue or retry time to start), and how long each completed job ran (lease to
ack). Per commit: how many requests it held and how long the commit (fsync) took.
"""

from __future__ import annotations

import bisect
from typing import Any

import msgspec

COMMIT_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_OPS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
WAIT_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
          900.0, 3600.0)
RUN_S = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
MAX_QUEUES = 1000  # queues with their own latency histograms; the rest are counted as "_other"


class Histogram(msgspec.Struct, array_like=True):
    """Counts per bucket (the last one: above every bound), their sum, cumulative."""

    counts: list[int]
    sum: float = 0.0

    @classmethod
    def new(cls, bounds: tuple[float, ...]) -> Histogram:
        return cls([0] * (len(bounds) + 1))

    def observe(self, bounds: tuple[float, ...], v: float) -> None:
        self.counts[bisect.bisect_left(bounds, v)] += 1
        self.sum += v


class QueueLatency(msgspec.Struct, array_like=True):
    wait: Histogram  # WAIT_S
    run: Histogram  # RUN_S


class Stats(msgspec.Struct):
    """The writer's numbers since it started."""

    batches: int = 0  # transactions applied (committed or not)
    ops: int = 0  # requests in them
    puts: int = 0
    dels: int = 0
    busy_s: float = 0.0  # time spent applying batches
    commits: int = 0  # transactions committed
    commit_s: Histogram = msgspec.field(default_factory=lambda: Histogram.new(COMMIT_S))
    batch_ops: Histogram = msgspec.field(default_factory=lambda: Histogram.new(BATCH_OPS))
    queues: dict[str, QueueLatency] = msgspec.field(default_factory=dict)
    parked: int = 0  # long-poll leases waiting in the writer (at the time of asking)
    log_pins: int = 0  # followers holding the log

    def commit(self, ops: int, seconds: float) -> None:
        self.commits += 1
        self.commit_s.observe(COMMIT_S, seconds)
        self.batch_ops.observe(BATCH_OPS, ops)

    def latencies(self, waits: list[tuple[str, float]], runs: list[tuple[str, float]]) -> None:
        for q, v in waits:
            self._queue(q).wait.observe(WAIT_S, v)
        for q, v in runs:
            self._queue(q).run.observe(RUN_S, v)

    def _queue(self, q: str) -> QueueLatency:
        got = self.queues.get(q)
        if got is None:
            if len(self.queues) >= MAX_QUEUES:
                q = "_other"
                got = self.queues.get(q)
            if got is None:
                got = self.queues[q] = QueueLatency(Histogram.new(WAIT_S), Histogram.new(RUN_S))
        return got


def encode(s: Stats) -> bytes:
    return msgspec.json.encode(s)


stats_decoder: Any = msgspec.json.Decoder(Stats)
