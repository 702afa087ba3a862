"""Bulk enqueue: NDJSON batches of 100 jobs per request, 8 connections (2 processes x 4).

Peers get their closest batch: beanstalkd 100 pipelined puts, SAQ 100 concurrent enqueues.
Standalone: python bench/enqueue_bulk.py [--quick] [--peers]
"""

from __future__ import annotations

from typing import Any

from load import spec_for, timed_enqueue

SCENARIO = "enqueue_bulk"
PROCS, CONNS, BATCH = 2, 4, 100


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    with target.running() as srv:
        spec = spec_for(target.kind, srv)
        s = timed_enqueue(spec, srv, PROCS, CONNS, BATCH, opts.duration_s, opts.max_jobs * 10)
    return [{"scenario": SCENARIO, "target": target.name, "connections": PROCS * CONNS,
             "batch": BATCH, **s}]


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
