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
- Counted as requests go (module-level histogram): HTTP request duration by route
  template, method and status.

``render`` needs the writer's numbers, asked for over the socket first (``collect``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
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
REQUESTS = CollectorRegistry(auto_describe=True)
HTTP_SECONDS = Histogram(
    "tqd_http_request_duration_seconds", "HTTP requests by route template, method and status",
    ["route", "method", "status"], registry=REQUESTS,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def observe_request(route: str, method: str, status: int, seconds: float) -> None:
    HTTP_SECONDS.labels(route, method, str(status)).observe(seconds)


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
    """The exposition text: the scrape-time collector, then the request histograms."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Snapshot(service, node, stats))
    t0 = time.perf_counter()
    body = generate_latest(reg) + generate_latest(REQUESTS)
    scrape = (f"# HELP tqd_scrape_seconds Time to render this page\n# TYPE tqd_scrape_seconds "
              f"gauge\ntqd_scrape_seconds {time.perf_counter() - t0:.6f}\n")
    return body + scrape.encode()
