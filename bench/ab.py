"""Same-run A/B of two commits: the working tree against an older revision.

    python bench/ab.py c187147 --only enqueue_single,enqueue_bulk,drain --rounds 3

Checks the revision out in a temporary git worktree, then runs `bench/run.py --quick`
alternately with each tree's `tqd` (TQD_BENCH_PYTHON is a wrapper that puts the tree
first on PYTHONPATH; the harness itself is this tree's), and prints per scenario every
run's rate, the medians and their ratio (new / old), and server CPU per job.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def wrapper(tmp: Path, name: str, tree: Path) -> Path:
    w = tmp / f"py-{name}"
    w.write_text(f'#!/bin/sh\nPYTHONPATH={tree} exec {sys.executable} "$@"\n')
    w.chmod(0o755)
    return w


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev", help="the older revision (old); the working tree is new")
    ap.add_argument("--only", default="enqueue_single,enqueue_bulk,drain")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration-s", default="5")
    ap.add_argument("--drain-jobs", default=None, help="passed on to run.py (its full size: 300000)")
    ap.add_argument("--workers", default=None, help="passed on to run.py (drain's worker processes)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        old = tmp / "old"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(old), a.rev],
                       check=True, capture_output=True)
        try:
            trees = {"old": wrapper(tmp, "old", old), "new": wrapper(tmp, "new", ROOT)}
            for _ in range(a.rounds):
                for name, py in trees.items():
                    subprocess.run([sys.executable, str(HERE / "run.py"), "--quick", "--only", a.only,
                                    "--duration-s", a.duration_s, "--json", str(tmp / f"{name}.jsonl"),
                                    *(["--drain-jobs", a.drain_jobs] if a.drain_jobs else []),
                                    *(["--workers", a.workers] if a.workers else [])],
                                   env={**os.environ, "TQD_BENCH_PYTHON": str(py)}, check=True,
                                   stdout=subprocess.DEVNULL, cwd=tmp)
            runs = {n: [json.loads(x) for x in (tmp / f"{n}.jsonl").read_text().splitlines()]
                    for n in trees}
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=False, capture_output=True)
    for sc in a.only.split(","):
        rate = {n: [r["jobs_per_s"] for r in rs if r["scenario"] == sc] for n, rs in runs.items()}
        cpu = {n: [r.get("server_cpu_us_per_job", 0) for r in rs if r["scenario"] == sc]
               for n, rs in runs.items()}
        med = {n: statistics.median(v) for n, v in rate.items()}
        print(f"{sc}: old {[round(x) for x in rate['old']]} new {[round(x) for x in rate['new']]} "
              f"median new/old {med['new'] / med['old']:.2f}; server CPU us/job median "
              f"old {statistics.median(cpu['old']):.1f} new {statistics.median(cpu['new']):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
