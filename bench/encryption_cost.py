"""What --encryption-key-file costs: bulk enqueue and drain with and without it, same run.

    python bench/encryption_cost.py [--duration-s 5] [--workers 2] [--rounds 3]

Each round starts a fresh server per mode (plain, then encrypted; every other round the
other order: the machine is noisy), measures bulk enqueue as enqueue_bulk.py does (NDJSON
batches of 100, 8 connections, ``--duration-s`` after a 1 s warm-up), then drains what was
enqueued with ``--workers`` worker processes as drain.py does (lease 100 + bulk ack).
Prints each run, the medians and the ratios (encrypted / plain) of jobs/s and of server
CPU per job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PY, TempDir, interleaved, median_of, print_table, start_tqd  # noqa: E402
from load import drain, spec_for, timed_enqueue  # noqa: E402

ENQ_PROCS, ENQ_CONNS, BATCH = 2, 4, 100


def one(encrypted: bool, duration_s: float, workers: int) -> dict[str, Any]:
    import subprocess

    tmp = TempDir("tqd-crypt-")
    try:
        extra: list[str] = []
        if encrypted:
            kf = tmp.path / "keys.json"
            subprocess.run([PY, "-m", "tqd", "keys", "create", "--file", str(kf)], check=True,
                           capture_output=True)
            extra = ["--encryption-key-file", str(kf)]
        srv = start_tqd(tmp.path, extra)
        try:
            spec = spec_for("tqd", srv)
            e = timed_enqueue(spec, srv, ENQ_PROCS, ENQ_CONNS, BATCH, duration_s, 10_000_000)
            d, _ = drain(spec, srv, workers, 120)
        finally:
            srv.stop()
    finally:
        tmp.cleanup()
    return {"encrypted": encrypted, "enq_jobs_per_s": e["jobs_per_s"],
            "enq_cpu_us_per_job": e["server_cpu_us_per_job"], "drained": d["jobs"],
            "drain_jobs_per_s": d["jobs_per_s"], "drain_cpu_us_per_job": d["server_cpu_us_per_job"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration-s", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rows = interleaved(a.rounds, [False, True], lambda enc: one(enc, a.duration_s, a.workers),
                       lambda x: f"encrypted={x['encrypted']}: enqueue {x['enq_jobs_per_s']:,.0f} "
                                 f"jobs/s, drain {x['drain_jobs_per_s']:,.0f} jobs/s")
    cols = ["enq_jobs_per_s", "enq_cpu_us_per_job", "drain_jobs_per_s", "drain_cpu_us_per_job"]
    print_table("bulk enqueue and drain, with and without encryption at rest", rows,
                ["round", "encrypted", "drained", *cols])
    for c in cols:
        off = median_of(rows, c, lambda x: not x["encrypted"])
        on = median_of(rows, c, lambda x: x["encrypted"])
        print(f"median {c}: {off:,.1f} plain, {on:,.1f} encrypted: ratio {on / off:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
