"""tqd benchmark harness: one entry point for every scenario.

    python bench/run.py --quick                 # tqd only, about 2 minutes
    python bench/run.py --peers --json out.jsonl
    python bench/run.py --backlog 10000000 --only backlog   # the full backlog run

Scenarios (one module each, named by what it measures):
    enqueue_single  one job per request, 16 keep-alive connections in 2 processes
    enqueue_bulk    NDJSON batches of 100
    drain           pre-filled queue, W worker processes lease 100 (long-poll) + bulk ack
    latency         enqueue->start p50/p99 at a fixed 2,000 jobs/s, 2 workers
    backlog         lease+ack rate empty-ish vs behind --backlog jobs, server RSS
    priority        priorities 0-9: lease order checked, rate reported
    raw_lmdb        msgspec + LMDB puts in fsync'd transactions, no HTTP (the ceiling)
    http_ceiling    the enqueue_single load against a no-op aiohttp server (the HTTP ceiling)

With --peers the first five that make sense for them also run against
beanstalkd (in memory and fsync), and SAQ on Redis (appendfsync always),
started in private temp dirs on loopback ports in the same run; a summary
gives tqd/peer ratios. Each result is printed as one JSON line (and appended
to --json), each scenario as a table. tqd always runs with its durable
defaults (every acknowledged write fsync'd, group commit).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Report, fmt, print_table  # noqa: E402
from targets import PEERS, TQD, ensure_peers_installed  # noqa: E402

SCENARIOS = {  # name -> module; raw_lmdb first, before the servers leave dirty pages behind
    "raw_lmdb": "raw_lmdb",
    "http_ceiling": "http_ceiling",
    "enqueue_single": "enqueue_single",
    "enqueue_bulk": "enqueue_bulk",
    "drain": "drain",
    "latency": "latency",
    "backlog": "backlog",
    "priority": "priority_order",
}
PEER_SCENARIOS = {"enqueue_single", "enqueue_bulk", "drain", "latency", "priority"}
_RATE = ["jobs", "seconds", "jobs_per_s", "server_cpu_pct", "server_cpu_us_per_job",
         "client_cpu_pct", "client_max_proc_cpu_pct"]
COLUMNS = {
    "enqueue_single": ["target", "connections", *_RATE],
    "enqueue_bulk": ["target", "connections", "batch", *_RATE],
    "drain": ["target", "workers", "prefilled", "fill_jobs_per_s", "missing", "ack_errors", *_RATE],
    "latency": ["target", "offered_jobs_per_s", "jobs_per_s", "received", "p50_ms", "p90_ms",
                "p99_ms", "p999_ms", "max_ms", "producer_max_late_ms", "server_cpu_pct",
                "client_cpu_pct"],
    "backlog": ["target", "phase", "queued_at_start", "fill_jobs_per_s", "jobs", "jobs_per_s",
                "rate_vs_empty", "server_cpu_us_per_job", "rss_idle_mib", "rss_before_mib",
                "rss_after_mib", "rss_bytes_per_backlog_job", "data_dir_mib"],
    "priority": ["target", "prefilled", "fill_jobs_per_s", "jobs", "jobs_per_s", "missing",
                 "order_violations", "fifo_violations", "server_cpu_us_per_job"],
    "raw_lmdb": ["target", "puts_per_txn", "puts", "txns", "seconds", "jobs_per_s", "txn_per_s"],
    "http_ceiling": ["target", "server_procs", "connections", *_RATE],
}


def parse(argv: list[str] | None, only: str | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs (about 2 minutes for tqd alone)")
    ap.add_argument("--peers", action="store_true", help="also run beanstalkd and SAQ/Redis")
    ap.add_argument("--targets", help="comma-separated subset of tqd," + ",".join(p.name for p in PEERS))
    ap.add_argument("--json", metavar="FILE", help="append the JSON result lines to FILE")
    ap.add_argument("--only", default=only, help="comma-separated scenarios: " + ",".join(SCENARIOS))
    ap.add_argument("--duration-s", type=float, help="length of each timed run (quick 3, else 10)")
    ap.add_argument("--drain-jobs", type=int, help="jobs pre-filled for drain (quick 60k, else 300k)")
    ap.add_argument("--workers", help="worker-process counts for drain, e.g. 2,8 (quick 4)")
    ap.add_argument("--rate", type=float, default=2000.0, help="offered load of the latency run")
    ap.add_argument("--backlog", type=int,
                    help="backlog jobs (default 1,000,000; quick 100,000; full run 10000000)")
    ap.add_argument("--priority-jobs", type=int, help="jobs in the priority run (quick 10k, else 50k)")
    ap.add_argument("--max-jobs", type=int, default=5_000_000,
                    help="cap on jobs per producer process in timed enqueue runs")
    a = ap.parse_args(argv)
    q = a.quick
    a.duration_s = a.duration_s or (3.0 if q else 10.0)
    a.latency_s = a.duration_s + (1.0 if q else 0.0)
    a.drain_jobs = a.drain_jobs or (60_000 if q else 300_000)
    a.workers = [int(x) for x in (a.workers or ("4" if q else "2,8")).split(",")]
    a.backlog = a.backlog or (100_000 if q else 1_000_000)
    a.backlog_small = 20_000 if q else 100_000
    a.priority_jobs = a.priority_jobs or (10_000 if q else 50_000)
    a.raw_s = 1.5 if q else 4.0
    a.fill_timeout_s = 120.0
    a.backlog_fill_timeout_s = max(120.0, a.backlog / 5_000)
    a.drain_timeout_s = 60.0 if q else 120.0
    names = a.only.split(",") if a.only else list(SCENARIOS)
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        ap.error(f"unknown scenario(s) {bad}; choose from {list(SCENARIOS)}")
    a.scenarios = names
    return a


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, Linux {platform.release()}, Python {platform.python_version()}"


def _val(results: list[dict[str, Any]], scn: str, tgt: str, key: str, **match: Any) -> Any:
    for r in results:
        if r.get("scenario") == scn and r.get("target") == tgt and "error" not in r and \
                all(r.get(k) == v for k, v in match.items()):
            return r.get(key)
    return None


def summary(results: list[dict[str, Any]], peers: list[str]) -> None:
    """One row per headline number: tqd, each peer, and tqd/peer."""
    def val(scn: str, tgt: str, key: str, **match: Any) -> Any:
        return _val(results, scn, tgt, key, **match)

    rows = []
    lines: list[tuple[str, str, str, dict[str, Any], bool]] = [
        ("enqueue, 1 job/request (jobs/s)", "enqueue_single", "jobs_per_s", {}, True),
        ("enqueue, batches of 100 (jobs/s)", "enqueue_bulk", "jobs_per_s", {}, True),
    ]
    for w in sorted({r["workers"] for r in results if r.get("scenario") == "drain" and "workers" in r}):
        lines.append((f"drain, {w} workers (jobs/s)", "drain", "jobs_per_s", {"workers": w}, True))
    lines += [("latency p50 at 2k/s (ms)", "latency", "p50_ms", {}, False),
              ("latency p99 at 2k/s (ms)", "latency", "p99_ms", {}, False),
              ("priority drain (jobs/s)", "priority", "jobs_per_s", {}, True)]
    for label, scn, key, match, higher_better in lines:
        t = val(scn, "tqd", key, **match)
        if t is None:
            continue
        row: dict[str, Any] = {"metric": label, "tqd": t}
        for p in peers:
            v = val(scn, p, key, **match)
            row[p] = v
            if v:
                row[f"tqd/{p}"] = (t / v) if higher_better else (v / t)
        rows.append(row)
    cols = ["metric", "tqd", *peers, *(f"tqd/{p}" for p in peers)]
    if rows:
        print_table("summary (ratios > 1 mean tqd is better; for latency it is peer/tqd)", rows, cols)
    fractions(results)


def fractions(results: list[dict[str, Any]]) -> None:
    """tqd as a fraction of the limits measured in the same run."""
    def val(scn: str, tgt: str, key: str, **match: Any) -> Any:
        return _val(results, scn, tgt, key, **match)

    raw100 = val("raw_lmdb", "lmdb+msgspec", "jobs_per_s", puts_per_txn=100)
    raw1 = val("raw_lmdb", "lmdb+msgspec", "jobs_per_s", puts_per_txn=1)
    frac = []
    for label, scn, raw in (("enqueue, 1 job/request", "enqueue_single", raw1),
                            ("enqueue, batches of 100", "enqueue_bulk", raw100)):
        t = val(scn, "tqd", "jobs_per_s")
        if t and raw:
            frac.append({"metric": label, "tqd_jobs_per_s": t, "limit_per_s": raw,
                         "tqd_fraction_of_limit": t / raw})
    for r in results:
        if r.get("scenario") == "drain" and r.get("target") == "tqd" and raw100 and "jobs_per_s" in r:
            frac.append({"metric": f"drain, {r['workers']} workers", "tqd_jobs_per_s": r["jobs_per_s"],
                         "limit_per_s": raw100, "tqd_fraction_of_limit": r["jobs_per_s"] / raw100})
    noop = val("http_ceiling", "aiohttp-noop", "jobs_per_s")
    single = val("enqueue_single", "tqd", "jobs_per_s")
    if noop and single:
        frac.append({"metric": "enqueue, 1 job/request vs a no-op aiohttp server",
                     "tqd_jobs_per_s": single, "limit_per_s": noop,
                     "tqd_fraction_of_limit": single / noop})
    if frac:
        print_table("tqd as a fraction of a limit (raw LMDB: 1 put/txn for single, 100 puts/txn "
                    "otherwise; or a no-op aiohttp server)", frac, ["metric", "tqd_jobs_per_s", "limit_per_s",
                                         "tqd_fraction_of_limit"])


def main(argv: list[str] | None = None, only: str | None = None) -> int:
    a = parse(argv, only)
    targets = [TQD]
    if a.peers:
        ensure_peers_installed()
        targets += PEERS
    if a.targets:
        want = a.targets.split(",")
        targets = [t for t in [TQD, *PEERS] if t.name in want and (t is TQD or a.peers)]
    report = Report(a.json)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# tqd bench {when}; {machine()}; argv: {' '.join(sys.argv)}", flush=True)
    t_start = time.monotonic()
    failed = 0
    for name in a.scenarios:
        mod = importlib.import_module(SCENARIOS[name])
        rows = []
        for t in targets:
            if t is not TQD and name not in PEER_SCENARIOS:
                continue
            t0 = time.monotonic()
            try:
                res = mod.run(t, a)
            except Exception as e:  # noqa: BLE001 - one failed run must not lose the others
                traceback.print_exc()
                failed += 1
                res = [{"scenario": name, "target": t.name, "error": f"{type(e).__name__}: {e}"}]
            for r in res:
                rows.append(report.add(r))
            label = {"raw_lmdb": "lmdb+msgspec", "http_ceiling": "aiohttp-noop"}.get(name, t.name)
            print(f"  ({name} / {label}: {time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
            if name in ("raw_lmdb", "http_ceiling"):  # no target: once
                break
        if rows:
            cols = COLUMNS[name] + (["error"] if any("error" in r for r in rows) else [])
            print_table(name, rows, cols)
    summary(report.results, [t.name for t in targets if t is not TQD])
    print(f"# total {fmt(time.monotonic() - t_start)} s", flush=True)
    report.close()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
