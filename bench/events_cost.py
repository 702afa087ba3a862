"""What GET /v1/events costs: drain with and without event streams open, same run.

    python bench/events_cost.py [--jobs 60000] [--workers 2] [--rounds 3] [--streams 1]
                                [--types queue]

Each round starts a fresh server, fills ``--jobs`` jobs (not timed), then drains them
with ``--workers`` worker processes (lease 100 + bulk ack, as drain.py), once with no
stream and once with ``--streams`` clients reading ``GET /v1/events?types=...`` (a
dashboard's overview reads ``queue`` events; ``job,queue`` is every job's every move);
every other round runs the two in the other order (the machine is noisy). Prints each
run, the medians and their ratio (with / without), and how many events the streams got.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import TempDir, interleaved, median_of, print_table, start_tqd  # noqa: E402
from load import drain, fill, spec_for  # noqa: E402


def _reader(port: int, types: str, stop: threading.Event, counts: list[int]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/v1/events?types={types}")
    resp = conn.getresponse()
    n = 0
    while not stop.is_set():
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"event:"):
            n += 1
    counts.append(n)
    conn.close()


def one(jobs: int, workers: int, streams: int, types: str) -> dict[str, Any]:
    tmp = TempDir("tqd-events-")
    try:
        srv = start_tqd(tmp.path)
        try:
            spec = spec_for("tqd", srv)
            fill(spec, jobs, 120)
            stop, counts = threading.Event(), []
            readers = [threading.Thread(target=_reader, args=(srv.port, types, stop, counts))
                       for _ in range(streams)]
            for t in readers:
                t.start()
            s, _ = drain(spec, srv, workers, 120)
            stop.set()
        finally:
            srv.stop()  # ends the streams
            for t in readers:
                t.join()
    finally:
        tmp.cleanup()
    return {"streams": streams, "jobs": s["jobs"], "jobs_per_s": s["jobs_per_s"],
            "server_cpu_us_per_job": s["server_cpu_us_per_job"],
            "events_per_stream": statistics.median(counts) if counts else 0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=60_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--streams", type=int, default=1)
    ap.add_argument("--types", default="queue")
    a = ap.parse_args()
    rows = interleaved(a.rounds, [0, a.streams], lambda n: one(a.jobs, a.workers, n, a.types),
                       lambda x: f"streams={x['streams']}: {x['jobs_per_s']:,.0f} jobs/s")
    print_table(f"drain with and without {a.streams} stream(s) of {a.types} events", rows,
                ["round", "streams", "jobs", "jobs_per_s", "server_cpu_us_per_job",
                 "events_per_stream"])
    off = median_of(rows, "jobs_per_s", lambda x: not x["streams"])
    on = median_of(rows, "jobs_per_s", lambda x: x["streams"])
    print(f"median drain: {off:,.0f} jobs/s without, {on:,.0f} with {a.streams} stream(s) "
          f"of {a.types} events: ratio {on / off:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
