"""Mixed priorities: N jobs with priorities 0-9 (bulk, one connection), then one worker drains.

Checks the lease order: priority never rises between consecutive leased jobs
(9 first) and, within one priority, jobs come in enqueue order (FIFO).
Reports the fill and drain rates and the number of violations (should be 0).
Standalone: python bench/priority_order.py [--quick] [--peers]
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from load import drain, fill, spec_for

SCENARIO = "priority"


def expected_priority(n: int) -> int:
    return n * 7919 % 10  # what load.producer assigns with procs=1, conns=1, seed=0


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    if not target.supports_priority:
        return []
    with target.running() as srv:
        spec = spec_for(target.kind, srv)
        f = fill(spec, int(opts.priority_jobs * target.fill_scale), opts.fill_timeout_s, priorities=True, procs=1, conns=1)
        s, res = drain(spec, srv, 1, opts.drain_timeout_s, record=True)
    seen = [p["n"] for p in res[0]["seen"][0]]
    order_bad = fifo_bad = 0
    for a, b in pairwise(seen):
        pa, pb = expected_priority(a), expected_priority(b)
        if pb > pa:
            order_bad += 1
        elif pb == pa and b < a:
            fifo_bad += 1
    return [{"scenario": SCENARIO, "target": target.name, "prefilled": f["jobs"],
             "fill_jobs_per_s": f["jobs_per_s"], "order_violations": order_bad,
             "fifo_violations": fifo_bad, "missing": f["jobs"] - len(seen), **s}]


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
