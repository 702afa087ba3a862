"""Backlog scaling: lease+ack rate from an almost empty queue vs behind a large backlog, and RSS.

One server: fill a small queue and drain it (the "empty-ish" rate); then fill
``--backlog`` jobs (default 1,000,000; the full run is ``--backlog 10000000``)
and drain for the same time from the front of that backlog. Server RSS
(VmRSS from /proc/PID/status, server and writer process summed) is read before and
after each phase, and split: RssAnon (the processes' own memory: must stay flat) and
RssFile (pages of the LMDB map, i.e. the kernel's page cache: grows with the data).
Standalone: python bench/backlog.py [--quick] [--backlog N]
"""

from __future__ import annotations

from typing import Any

from load import drain, fill, spec_for

SCENARIO = "backlog"
WORKERS = 4


def run(target: Any, opts: Any) -> list[dict[str, Any]]:
    out = []
    with target.running() as srv:
        spec = spec_for(target.kind, srv)
        rss0 = srv.rss_mib()
        anon0 = srv.rss_mib("RssAnon")
        f1 = fill(spec, opts.backlog_small, opts.fill_timeout_s)
        rss1 = srv.rss_mib()
        small, _ = drain(spec, srv, WORKERS, opts.duration_s)
        rss2 = srv.rss_mib()
        out.append({"scenario": SCENARIO, "target": target.name, "phase": "empty-ish",
                    "queued_at_start": f1["jobs"], "fill_jobs_per_s": f1["jobs_per_s"],
                    "rss_idle_mib": rss0, "rss_before_mib": rss1, "rss_after_mib": rss2,
                    "workers": WORKERS, **small})
        f2 = fill(spec, opts.backlog, opts.backlog_fill_timeout_s, procs=2, conns=4)
        rss3 = srv.rss_mib()
        big, _ = drain(spec, srv, WORKERS, opts.duration_s)
        rss4 = srv.rss_mib()
        anon, file = srv.rss_mib("RssAnon"), srv.rss_mib("RssFile")
        out.append({"scenario": SCENARIO, "target": target.name, "phase": "backlog",
                    "queued_at_start": f2["jobs"], "fill_jobs_per_s": f2["jobs_per_s"],
                    "rss_idle_mib": rss0, "rss_before_mib": rss3, "rss_after_mib": rss4,
                    "rss_bytes_per_backlog_job": (rss3 - rss2) * 1024 * 1024 / max(1, f2["jobs"]),
                    "rss_anon_idle_mib": anon0, "rss_anon_after_mib": anon,
                    "rss_file_after_mib": file,
                    "workers": WORKERS, **big})
        out[-1]["rate_vs_empty"] = out[-1]["jobs_per_s"] / max(out[0]["jobs_per_s"], 1e-9)
        disk = sum(p.stat().st_size for p in (srv.workdir / "data").rglob("*") if p.is_file())
        out[-1]["data_dir_mib"] = disk / 1024 / 1024
    return out


if __name__ == "__main__":
    from run import main

    raise SystemExit(main(only=SCENARIO))
