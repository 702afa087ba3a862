"""Load-generator coroutines (each runs inside its own process, see common.run_procs).

Every loop is bounded twice: by a job count and by a wall-clock deadline.
Each returns a dict with ``jobs``, ``t_end`` (wall time of its last completed
operation) and ``cpu_s`` (its CPU time inside the measured window).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

from clients import WORKER_CONCURRENCY, connect
from common import Server, run_procs, sleep_until

GRACE_S = 30.0  # a run may overrun its duration by at most this much before it is cut off


async def producer(spec: dict[str, Any], conns: int, batch: int, start_at: float, dur_s: float,
                   max_jobs: int, priorities: bool = False, seed: int = 0) -> dict[str, Any]:
    """``conns`` connections each enqueueing ``batch`` jobs per request until time or count."""
    clients = [await connect(spec) for _ in range(conns)]
    per_conn = max(1, max_jobs // conns)
    counts = [0] * conns
    t_end = [start_at] * conns
    await sleep_until(start_at)
    c0 = os.times()
    end = start_at + dur_s

    async def loop(i: int, c: Any) -> None:
        n = 0
        while n < per_conn and time.time() < end:
            k = min(batch, per_conn - n)
            if batch == 1 and k == 1:
                pr = (seed + i * per_conn + n) * 7919 % 10 if priorities else None
                await c.enqueue_one({"n": n, "c": i, "t": time.time()}, pr)
            else:
                ids = range(n, n + k)
                prs = [(seed + i * per_conn + j) * 7919 % 10 for j in ids] if priorities else None
                now = time.time()
                await c.enqueue_many([{"n": j, "c": i, "t": now} for j in ids], prs)
            n += k
            counts[i] = n
            t_end[i] = time.time()

    await asyncio.wait_for(asyncio.gather(*(loop(i, c) for i, c in enumerate(clients))),
                           dur_s + GRACE_S + max(0.0, start_at - time.time()))
    c1 = os.times()
    for c in clients:
        await c.close()
    return {"jobs": sum(counts), "t_end": max(t_end),
            "cpu_s": (c1.user - c0.user) + (c1.system - c0.system)}


async def drainer(spec: dict[str, Any], conc: int, max_n: int, wait_s: float, start_at: float,
                  dur_s: float, record: bool = False, stop_when_empty: bool = True,
                  idle_after: float = 0.0, latency: bool = False) -> dict[str, Any]:
    """``conc`` loops of lease(max_n, long-poll wait_s) + bulk ack, until empty, time or count.

    ``record``: return the payloads in lease order (for ordering checks).
    ``idle_after``: keep long-polling until this wall time even when empty
    (latency runs: the producer is still sending).
    ``latency``: collect receive time minus the payload's send time ``t``.
    """
    clients = [await connect(spec) for _ in range(conc)]
    counts = [0] * conc
    t_end = [start_at] * conc
    seen: list[list[Any]] = [[] for _ in range(conc)]
    lat: list[float] = []
    await sleep_until(start_at)
    c0 = os.times()
    end = start_at + dur_s

    async def loop(i: int, c: Any) -> None:
        for _ in range(10_000_000):  # bounded; the deadline ends it far sooner
            if time.time() >= end:
                return
            got = await c.lease(max_n, wait_s)
            now = time.time()
            if not got:
                if stop_when_empty and now >= idle_after:
                    return
                continue
            if latency:
                lat.extend(now - p["t"] for _h, p in got)
            if record:
                seen[i].extend(p for _h, p in got)
            await c.ack([h for h, _p in got])
            counts[i] += len(got)
            t_end[i] = time.time()

    await asyncio.wait_for(asyncio.gather(*(loop(i, c) for i, c in enumerate(clients))),
                           dur_s + GRACE_S + max(0.0, start_at - time.time()))
    c1 = os.times()
    ack_errors = sum(getattr(c, "ack_errors", 0) for c in clients)
    for c in clients:
        await c.close()
    out: dict[str, Any] = {"jobs": sum(counts), "t_end": max(t_end), "ack_errors": ack_errors,
                           "cpu_s": (c1.user - c0.user) + (c1.system - c0.system), "lat": lat}
    if record:
        out["seen"] = seen
    return out


async def paced_producer(spec: dict[str, Any], conns: int, rate: float, start_at: float,
                         dur_s: float) -> dict[str, Any]:
    """Offer ``rate`` single-job enqueues per second (a fixed schedule) for ``dur_s``."""
    clients = [await connect(spec) for _ in range(conns)]
    total = int(rate * dur_s)
    ticket = itertools.count()
    sent = [0] * conns
    late = [0.0] * conns
    await sleep_until(start_at)
    c0 = os.times()

    async def loop(i: int, c: Any) -> None:
        for k in ticket:
            if k >= total:
                return
            due = start_at + k / rate
            d = due - time.time()
            if d > 0:
                await asyncio.sleep(d)
            else:
                late[i] = max(late[i], -d)
            await c.enqueue_one({"n": k, "t": time.time()})
            sent[i] += 1

    await asyncio.wait_for(asyncio.gather(*(loop(i, c) for i, c in enumerate(clients))),
                           dur_s + GRACE_S)
    t_end = time.time()
    c1 = os.times()
    for c in clients:
        await c.close()
    return {"jobs": sum(sent), "t_end": t_end, "max_late_s": max(late),
            "cpu_s": (c1.user - c0.user) + (c1.system - c0.system)}


# ---- orchestration helpers (parent side) -------------------------------------------


def spec_for(target_kind: str, srv: Server, queue: str = "bench") -> dict[str, Any]:
    return {"kind": target_kind, "port": srv.port, "queue": queue}


def summarize(results: list[dict[str, Any]], start_at: float, srv: Server, cpu0: float,
              procs: int) -> dict[str, Any]:
    jobs = sum(r["jobs"] for r in results)
    window = max(1e-9, max(r["t_end"] for r in results) - start_at)
    srv_cpu = srv.cpu_s() - cpu0
    cl = [r["cpu_s"] for r in results]
    return {
        "jobs": jobs,
        "seconds": window,
        "jobs_per_s": jobs / window,
        "server_cpu_pct": 100 * srv_cpu / window,
        "server_cpu_us_per_job": 1e6 * srv_cpu / jobs if jobs else None,
        "client_procs": procs,
        "client_cpu_pct": 100 * sum(cl) / window,
        "client_max_proc_cpu_pct": 100 * max(cl) / window,
    }


def timed_enqueue(spec: dict[str, Any], srv: Server, procs: int, conns: int, batch: int,
                  dur_s: float, max_jobs: int, warmup_s: float = 1.0) -> dict[str, Any]:
    """A short unmeasured warm-up (connections, LMDB file growth), then the measured run."""
    for measured, d in ((False, warmup_s), (True, dur_s)):
        if d <= 0:
            continue
        start_at = time.time() + 0.7
        cpu0 = srv.cpu_s()
        kws = [dict(spec=spec, conns=conns, batch=batch, start_at=start_at, dur_s=d,
                    max_jobs=max_jobs, seed=i) for i in range(procs)]
        res = run_procs(producer, kws, d + GRACE_S + 10)
        if measured:
            return summarize(res, start_at, srv, cpu0, procs)
    raise ValueError("dur_s must be > 0")


def fill(spec: dict[str, Any], n: int, timeout_s: float, priorities: bool = False,
         procs: int = 2, conns: int = 4) -> dict[str, Any]:
    """Pre-fill ``n`` jobs in batches of 100 (not part of any measured window)."""
    start_at = time.time() + 0.3
    per = n // procs
    kws = [dict(spec=spec, conns=conns, batch=100, start_at=start_at, dur_s=timeout_s,
                max_jobs=per + (n - per * procs if i == 0 else 0), priorities=priorities,
                seed=i * 1_000_003) for i in range(procs)]
    res = run_procs(producer, kws, timeout_s + GRACE_S + 5)
    jobs = sum(r["jobs"] for r in res)
    secs = max(r["t_end"] for r in res) - start_at
    return {"jobs": jobs, "seconds": secs, "jobs_per_s": jobs / max(secs, 1e-9)}


def drain(spec: dict[str, Any], srv: Server, workers: int, dur_s: float, max_n: int = 100,
          wait_s: float = 1.0, record: bool = False) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``workers`` processes leasing+acking until the queue is empty or ``dur_s`` passes."""
    conc = WORKER_CONCURRENCY[spec["kind"]]
    start_at = time.time() + 0.5
    cpu0 = srv.cpu_s()
    kws = [dict(spec=spec, conc=conc, max_n=max_n, wait_s=wait_s, start_at=start_at, dur_s=dur_s,
                record=record) for _ in range(workers)]
    res = run_procs(drainer, kws, dur_s + GRACE_S + 10)
    s = summarize(res, start_at, srv, cpu0, workers)
    s["ack_errors"] = sum(r["ack_errors"] for r in res)
    return s, res
