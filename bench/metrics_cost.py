"""What /metrics costs: drain with and without a scrape every second, same run.

    python bench/metrics_cost.py [--jobs 60000] [--workers 2] [--rounds 3] [--every-s 1.0]

Each round starts a fresh server, fills ``--jobs`` jobs (not timed), then drains them
with ``--workers`` worker processes (lease 100 + bulk ack, as drain.py), once without
scraping and once with a thread scraping ``GET /metrics`` every ``--every-s`` seconds;
every other round runs the two in the other order (the machine is noisy). Prints each
run, the medians and their ratio (with / without), and the scrape time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TempDir, interleaved, median_of, print_table, start_tqd  # noqa: E402
from load import drain, fill, spec_for  # noqa: E402


def _scraper(port: int, every_s: float, stop: threading.Event, times: list[float]) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    while not stop.wait(every_s):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as r:
            r.read()
        times.append(time.perf_counter() - t0)


def one(jobs: int, workers: int, scrape_every: float | None) -> dict[str, Any]:
    tmp = TempDir("tqd-metrics-")
    try:
        srv = start_tqd(tmp.path)
        try:
            spec = spec_for("tqd", srv)
            fill(spec, jobs, 120)
            stop, times = threading.Event(), []
            t = None
            if scrape_every:
                t = threading.Thread(target=_scraper, args=(srv.port, scrape_every, stop, times))
                t.start()
            s, _ = drain(spec, srv, workers, 120)
            stop.set()
            if t is not None:
                t.join()
        finally:
            srv.stop()
    finally:
        tmp.cleanup()
    return {"scraping": bool(scrape_every), "jobs": s["jobs"], "jobs_per_s": s["jobs_per_s"],
            "server_cpu_us_per_job": s["server_cpu_us_per_job"], "scrapes": len(times),
            "scrape_ms_p50": 1000 * statistics.median(times) if times else None,
            "scrape_ms_max": 1000 * max(times) if times else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=60_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--every-s", type=float, default=1.0)
    a = ap.parse_args()
    rows = interleaved(a.rounds, [None, a.every_s], lambda every: one(a.jobs, a.workers, every),
                       lambda x: f"scraping={x['scraping']}: {x['jobs_per_s']:,.0f} jobs/s")
    print_table("drain with and without scraping /metrics", rows,
                ["round", "scraping", "jobs", "jobs_per_s", "server_cpu_us_per_job", "scrapes",
                 "scrape_ms_p50", "scrape_ms_max"])
    off = median_of(rows, "jobs_per_s", lambda x: not x["scraping"])
    on = median_of(rows, "jobs_per_s", lambda x: x["scraping"])
    print(f"median drain: {off:,.0f} jobs/s without, {on:,.0f} with a scrape every "
          f"{a.every_s:g} s: ratio {on / off:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
