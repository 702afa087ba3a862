"""The HTTP ceiling: the enqueue_single load (one job per request, 16 keep-alive connections
in 2 processes, same client) against a no-op aiohttp + uvloop server (bench/noop_http.py)
that stores nothing. What one tqd event-loop process could at most reach on this machine;
the summary reports tqd's single-request rate as a fraction of it.
Standalone: python bench/http_ceiling.py [--quick]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from common import PY, Server, TempDir
from enqueue_single import CONNS, PROCS
from load import spec_for, timed_enqueue

SCENARIO = "http_ceiling"
NOOP = Path(__file__).resolve().parent / "noop_http.py"


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    tmp = TempDir("bench-noop-")
    try:
        with Server("noop-http", [PY, str(NOOP)], tmp.path,
                    ready_re=r"tqd listening on http://[\d.]+:(\d+)") as srv:
            s = timed_enqueue(spec_for("tqd", srv), srv, PROCS, CONNS, 1, opts.duration_s,
                              opts.max_jobs)
    finally:
        tmp.cleanup()
    return [{"scenario": SCENARIO, "target": "aiohttp-noop", "connections": PROCS * CONNS, **s}]


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
