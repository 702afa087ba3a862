"""The HTTP ceiling: the enqueue_single load (one job per request, 16 keep-alive connections
in 2 processes, same client) against a no-op aiohttp + uvloop server (bench/noop_http.py)
that stores nothing: in 1 process, what one tqd event-loop process could at most reach on
this machine (the summary reports tqd's single-request rate as a fraction of it); in 2
processes sharing the port (SO_REUSEPORT), what more front processes could add.
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
    out = []
    for procs, name in ((1, "aiohttp-noop"), (2, "aiohttp-noop-2procs")):
        tmp = TempDir("bench-noop-")
        try:
            with Server(name, [PY, str(NOOP), "--procs", str(procs)], tmp.path,
                        ready_re=r"tqd (?:\S+ )?listening on http://[\d.]+:(\d+)") as srv:
                s = timed_enqueue(spec_for("tqd", srv), srv, PROCS, CONNS, 1, opts.duration_s,
                                  opts.max_jobs)
        finally:
            tmp.cleanup()
        out.append({"scenario": SCENARIO, "target": name, "server_procs": procs,
                    "connections": PROCS * CONNS, **s})
    return out


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
