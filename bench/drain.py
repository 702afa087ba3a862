"""Drain: pre-fill N jobs, then W worker processes lease (max 100, long-poll wait 1 s) + bulk ack.

The rate is jobs acked / (last ack - start); the fill is not timed into it.
Standalone: python bench/drain.py [--quick] [--peers] [--drain-jobs N] [--workers 2,8]
"""

from __future__ import annotations

from typing import Any

from load import drain, fill, spec_for

SCENARIO = "drain"


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    out = []
    for workers in opts.workers:
        with target.running() as srv:
            spec = spec_for(target.kind, srv)
            f = fill(spec, int(opts.drain_jobs * target.fill_scale), opts.fill_timeout_s)
            s, _ = drain(spec, srv, workers, opts.drain_timeout_s)
        out.append({"scenario": SCENARIO, "target": target.name, "workers": workers,
                    "prefilled": f["jobs"], "fill_jobs_per_s": f["jobs_per_s"],
                    "missing": f["jobs"] - s["jobs"], **s})
    return out


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
