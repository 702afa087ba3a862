"""Enqueue, one job per HTTP request: 16 keep-alive connections (2 processes x 8).

Standalone: python bench/enqueue_single.py [--quick] [--peers]
"""

from __future__ import annotations

from typing import Any

from load import spec_for, timed_enqueue

SCENARIO = "enqueue_single"
PROCS, CONNS = 2, 8


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    with target.running() as srv:
        spec = spec_for(target.kind, srv)
        s = timed_enqueue(spec, srv, PROCS, CONNS, 1, opts.duration_s, opts.max_jobs)
    return [{"scenario": SCENARIO, "target": target.name, "connections": PROCS * CONNS, **s}]


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
