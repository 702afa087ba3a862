"""``GET /metrics``: the Prometheus exposition, written by prometheus-client.

Two kinds of metric:

- Read at scrape time, from what is stored or kept anyway (a custom collector, so that
  nothing is counted twice and the stored totals survive a restart): per queue, the jobs
  by state and the queued ones by priority, the stored totals (enqueued, completed,
  failed), the oldest queued job's age; the writer process's own numbers (commits, their
  size and fsync time, busy time, parked long-polls, the latency histograms per queue:
  ready to leased, leased to completed — cumulative since the writer started); the
  background loops; the node's role, term, log position, lease age and each follower's
  lag.
- Counted as requests go (``HTTP_TIMES``, module-level): HTTP request duration by route
  template, method and status. Every request pays for this, so it is kept as plain
  numbers rather than in a prometheus-client Histogram (whose ``labels()`` checks and
  hashes the labels and whose ``observe`` takes two locks): the HTTP layer finds a
  route's series once at start, and a request is one dict lookup by status, one bisect
  and two additions. Only the event loop's thread observes and renders, so no lock.

``render`` needs the writer's numbers, asked for over the socket first (``collect``).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..engine.stats import BATCH_OPS, COMMIT_S, RUN_S, WAIT_S, Stats
from ..engine.stats import Histogram as Counts
from ..protocol import STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HTTP_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
          30.0, 60.0)
NO_ROUTE = "(no route)"
# the method label of requests that match no route: aiohttp's Python parser (used without
# its C extensions) takes any token as a method, and a series per made-up method would let a
# client grow the server's memory without bound
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RouteTimes:
    """The request durations of one route and method, a histogram per answer status."""

    __slots__ = ("by_status",)

    def __init__(self) -> None:
        self.by_status: dict[int, Counts] = {}

    def observe(self, status: int, seconds: float) -> None:
        h = self.by_status.get(status)
        if h is None:
            h = self.by_status[status] = Counts.new(HTTP_S)
        h.counts[bisect.bisect_left(HTTP_S, seconds)] += 1  # (Counts.observe, inlined)
        h.sum += seconds


class RequestTimes:
    """``tqd_http_request_duration_seconds{route, method, status}``: a RouteTimes per route
    template and method, asked for once (``series``) and kept by the caller."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str], RouteTimes] = {}

    def series(self, route: str, method: str) -> RouteTimes:
        if route == NO_ROUTE and method not in _METHODS:
            method = "other"
        got = self._series.get((route, method))
        if got is None:
            got = self._series[route, method] = RouteTimes()
        return got

    def family(self) -> HistogramMetricFamily:
        rows = [([route, method, str(status)], h)
                for (route, method), rt in self._series.items()
                for status, h in sorted(rt.by_status.items())]
        return _hist("tqd_http_request_duration_seconds",
                     "HTTP requests by route template, method and status",
                     ["route", "method", "status"], rows, HTTP_S)


HTTP_TIMES = RequestTimes()


def _hist(name: str, doc: str, labels: list[str], rows: list[tuple[list[str], Counts]],
          bounds: tuple[float, ...]) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc, labels=labels)
    for values, h in rows:
        cum, buckets = 0, []
        for bound, n in zip(bounds, h.counts, strict=False):
            cum += n
            buckets.append((repr(float(bound)), cum))
        buckets.append(("+Inf", cum + h.counts[-1]))
        fam.add_metric(values, buckets, h.sum)
    return fam


class _Snapshot(Collector):
    """One scrape's view: the service's store and loops, the writer's numbers, the node."""

    def __init__(self, service: Any, node: Any, stats: Stats | None) -> None:
        self.service, self.node, self.stats = service, node, stats

    def collect(self) -> Iterator[Metric]:
        yield from self._queues()
        if self.stats is not None:
            yield from self._writer(self.stats)
        yield from self._loops()
        yield from self._cluster()
        yield HTTP_TIMES.family()

    def _queues(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("tqd_queue_jobs", "Jobs in a queue by state",
                                  labels=["queue", "state"])
        prio = GaugeMetricFamily("tqd_queue_queued_by_priority", "Queued jobs by priority",
                                 labels=["queue", "priority"])
        oldest = GaugeMetricFamily("tqd_queue_oldest_queued_age_seconds",
                                   "Age of the oldest queued job", labels=["queue"])
        paused = GaugeMetricFamily("tqd_queue_paused", "1 if the queue is paused", labels=["queue"])
        totals = {k: CounterMetricFamily(f"tqd_jobs_{k}", f"Jobs {k} in this queue (stored: "
                                         "kept across restarts)", labels=["queue"])
                  for k in ("enqueued", "completed", "failed")}
        for qs in self.service.all_queue_stats():
            q = qs.name
            for state in STATES:
                depth.add_metric([q, state], getattr(qs, state, 0))
            for p, n in qs.queued_by_priority.items():
                prio.add_metric([q, p], n)
            if qs.oldest_queued_age is not None:
                oldest.add_metric([q], qs.oldest_queued_age)
            paused.add_metric([q], 1 if qs.paused else 0)
            totals["enqueued"].add_metric([q], qs.enqueued_total)
            totals["completed"].add_metric([q], qs.completed_total)
            totals["failed"].add_metric([q], qs.failed_total)
        yield from (depth, prio, oldest, paused, *totals.values())

    def _writer(self, s: Stats) -> Iterator[Metric]:
        yield CounterMetricFamily("tqd_writer_transactions", "Write transactions applied",
                                  value=s.batches)
        yield CounterMetricFamily("tqd_writer_requests", "Requests applied by the writer",
                                  value=s.ops)
        yield CounterMetricFamily("tqd_writer_busy_seconds", "Time the writer spent applying",
                                  value=s.busy_s)
        yield GaugeMetricFamily("tqd_parked_long_polls", "Long-poll leases waiting for a job",
                                value=s.parked)
        yield GaugeMetricFamily("tqd_log_pins", "Followers holding the replication log",
                                value=s.log_pins)
        yield _hist("tqd_commit_seconds", "Commit (fsync) time of a write transaction", [],
                    [([], s.commit_s)], COMMIT_S)
        yield _hist("tqd_commit_requests", "Requests in one write transaction (group commit)",
                    [], [([], s.batch_ops)], BATCH_OPS)
        rows = sorted(s.queues.items())
        yield _hist("tqd_job_wait_seconds", "From ready (enqueued or due) to leased, per queue",
                    ["queue"], [([q], lat.wait) for q, lat in rows], WAIT_S)
        yield _hist("tqd_job_run_seconds", "From leased to completed, per queue",
                    ["queue"], [([q], lat.run) for q, lat in rows], RUN_S)

    def _loops(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("tqd_loop_running", "1 while a background loop runs",
                                    labels=["loop"])
        restarts = CounterMetricFamily("tqd_loop_restarts", "Times a loop failed and was restarted",
                                       labels=["loop"])
        errors = CounterMetricFamily("tqd_loop_errors", "Errors a loop handled", labels=["loop"])
        for name, st in self.service.loops.states.items():
            running.add_metric([name], 1 if st.running else 0)
            restarts.add_metric([name], st.restarts)
            errors.add_metric([name], st.errors)
        yield from (running, restarts, errors)

    def _cluster(self) -> Iterator[Metric]:
        svc = self.service
        role = GaugeMetricFamily("tqd_role", "1 for this node's role", labels=["role"])
        for r in ("standalone", "leader", "follower"):
            role.add_metric([r], 1 if svc.role == r else 0)
        yield role
        yield GaugeMetricFamily("tqd_writable", "1 if this node takes writes now",
                                value=1 if svc.leading else 0)
        yield GaugeMetricFamily("tqd_log_seq", "Last entry of this node's log",
                                value=svc.position.seq)
        node = self.node
        st = node.status() if node is not None else {"term": svc.position.term, "followers": []}
        yield GaugeMetricFamily("tqd_term", "Highest lease term this node has seen (standalone: "
                                "its log's)", value=st["term"])
        age = GaugeMetricFamily("tqd_lease_age_seconds", "Leader: since its last renew was "
                                "sent; follower: since the lease last changed (cluster only)")
        if "lease_age_s" in st:
            age.add_metric([], st["lease_age_s"])
        yield age
        lag = GaugeMetricFamily("tqd_follower_lag_entries", "Leader: a follower's lag in log "
                                "entries", labels=["follower"])
        lag_s = GaugeMetricFamily("tqd_follower_lag_seconds", "Leader: since a follower last "
                                  "held everything", labels=["follower"])
        in_sync = GaugeMetricFamily("tqd_follower_in_sync", "Leader: 1 if the follower is in "
                                    "the in-sync set", labels=["follower"])
        for f in st["followers"]:
            lag.add_metric([f["node"]], f["lag"])
            lag_s.add_metric([f["node"]], f["lag_s"])
            in_sync.add_metric([f["node"]], 1 if f["in_sync"] else 0)
        yield from (lag, lag_s, in_sync)


def render(service: Any, node: Any, stats: Stats | None) -> bytes:
    """The exposition text: the scrape-time collector, the request histograms last."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Snapshot(service, node, stats))
    t0 = time.perf_counter()
    body = generate_latest(reg)
    scrape = (f"# HELP tqd_scrape_seconds Time to render this page\n# TYPE tqd_scrape_seconds "
              f"gauge\ntqd_scrape_seconds {time.perf_counter() - t0:.6f}\n")
    return body + scrape.encode()
