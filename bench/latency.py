"""Enqueue->start latency at a fixed offered load (default 2,000 jobs/s), 2 workers long-polling.

A producer process sends single-job enqueues on a fixed schedule over 32
connections, each payload carrying its send time (time.time()); two worker
processes (2 lease loops each, SAQ 10) long-poll lease(max 100, wait 1; beanstalkd and SAQ
one job per reserve/dequeue, as their workers do) and ack. latency = time the worker
received the job - the producer's send time, same machine clock. The first
0.5 s is warm-up and not counted.
Standalone: python bench/latency.py [--quick] [--peers] [--rate 2000]
"""

from __future__ import annotations

import time
from typing import Any

from clients import WORKER_CONCURRENCY
from common import percentile, run_procs
from load import GRACE_S, drainer, paced_producer, spec_for

SCENARIO = "latency"
# 32 producer connections: at a few ms per durable enqueue, fewer could not keep the schedule
WORKERS, PRODUCER_CONNS, WARMUP_S, LATENCY_LOOPS = 2, 32, 0.5, 2
# each system leases the way its workers do: tqd long-polls for up to 100 (a loop back from
# an ack takes whatever queued meanwhile), beanstalkd reserves one job (a "lease of 100" would
# be 1 blocking reserve + 99 that time out, per job), SAQ dequeues one
LEASE_MAX = {"tqd": 100, "beanstalkd": 1, "saq": 1}


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    dur = opts.latency_s
    with target.running() as srv:
        spec = spec_for(target.kind, srv)
        start_at = time.time() + 0.8
        cpu0 = srv.cpu_s()
        # every worker process keeps a lease waiting while it acks (as tqd.Worker does: its
        # lease loop runs beside its batched acks), so a job that arrives during an ack is
        # not held back by the worker: LATENCY_LOOPS loops (SAQ keeps its own 10)
        conc = max(LATENCY_LOOPS, WORKER_CONCURRENCY[target.kind])
        fns = [drainer] * WORKERS + [paced_producer]
        kws: list[dict[str, Any]] = [
            dict(spec=spec, conc=conc, max_n=LEASE_MAX[target.kind], wait_s=1.0, start_at=start_at, dur_s=dur + 3,
                 idle_after=start_at + dur + 0.5, latency=True) for _ in range(WORKERS)]
        kws.append(dict(spec=spec, conns=PRODUCER_CONNS, rate=opts.rate, start_at=start_at, dur_s=dur))
        res = run_procs(fns, kws, dur + GRACE_S + 10)
        srv_cpu = srv.cpu_s() - cpu0
    prod = res[-1]
    workers = res[:-1]
    # drop warm-up: latencies of jobs received in the first WARMUP_S (approximately: the first
    # rate * WARMUP_S samples per worker are the oldest)
    lat = sorted(x for w in workers for x in w["lat"][int(opts.rate * WARMUP_S / WORKERS):])
    received = sum(w["jobs"] for w in workers)
    window = prod["t_end"] - start_at
    ms = [x * 1000 for x in lat]
    return [{
        "scenario": SCENARIO, "target": target.name, "offered_jobs_per_s": opts.rate,
        "jobs_per_s": prod["jobs"] / max(window, 1e-9), "jobs": prod["jobs"], "received": received,
        "p50_ms": percentile(ms, 0.50), "p90_ms": percentile(ms, 0.90),
        "p99_ms": percentile(ms, 0.99), "p999_ms": percentile(ms, 0.999),
        "max_ms": ms[-1] if ms else None, "producer_max_late_ms": prod["max_late_s"] * 1000,
        "server_cpu_pct": 100 * srv_cpu / max(window, 1e-9),
        "client_cpu_pct": 100 * sum(r["cpu_s"] for r in res) / max(window, 1e-9),
    }]


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
