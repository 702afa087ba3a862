"""Replication log bytes per job: the log of effects (now) against the old log of ops.

In-process, no HTTP: a Store and a Writer in a temp dir as tests/conftest.py's ``writer``
fixture makes them, fed a job lifecycle with ``Writer.apply_batch`` (one fsync'd commit per
``--ops-per-commit`` ops; 1 = each request alone, the server's worst case; under load
its group commit puts more ops in one commit, which shares the per-commit part of an
entry). Phases: enqueue (``--jobs`` jobs with a ``--payload-bytes`` JSON payload, bulks of
``--batch``), lease (batches of ``--batch``), ack (bulks of ``--batch``, each with a
``--result-bytes`` JSON result).

Per phase and in total, per job:

- ``log_bytes``: growth of ``LocalMeta.log_bytes`` (the entries written; the log is kept
  whole, nothing truncated, which is checked);
- ``old_log_bytes``: the same ops encoded with ``records.op_encoder``, summed: what the old
  log of ops (up to ff15008) stored, one entry per op that changed something;
- ``lmdb_writes``: puts + deletes to LMDB (the log entry counts as one put per commit);
- ``lmdb_write_bytes``: bytes this process handed to write syscalls (``wchar`` of
  /proc/self/io) while the phase ran: the pages LMDB writes at commit (it does not use a
  writable map), the log's pages included; ``nolog_write_bytes``: the same, in a second run
  of the same workload in which the log entry is not put (``Tx._log_append`` patched to
  keep only its bookkeeping: a counterfactual, not a mode of tqd), so the difference is
  what the log adds to the disk writes;
- ``cpu_us`` and ``nolog_cpu_us``: this process's CPU time (user + system, fsync waits not
  included) in each of those runs, the median over ``--rounds`` alternating pairs of runs:
  the writer-side CPU the log entry costs (encoding and putting it; the effects list is
  still built in the counterfactual).

Standalone: python bench/log_bytes.py [--jobs 10000] [--ops-per-commit 1] [--rounds 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's tqd

from common import Report, print_table  # noqa: E402

from tqd.config import Settings  # noqa: E402
from tqd.engine.writer import Writer  # noqa: E402
from tqd.queue import ops as qops  # noqa: E402
from tqd.queue.core import Core  # noqa: E402
from tqd.storage import log as L  # noqa: E402
from tqd.storage import store as S  # noqa: E402

SCENARIO = "log_bytes"
QUEUE = "bench"
T0 = 1_700_000_000.0
COLUMNS = ["phase", "commits", "log_bytes_per_job", "old_log_bytes_per_job",
           "new_over_old", "log_bytes_per_commit", "lmdb_writes_per_job",
           "lmdb_write_bytes_per_job", "nolog_write_bytes_per_job", "cpu_us_per_job",
           "nolog_cpu_us_per_job"]


def json_text(i: int, size: int, head: str) -> bytes:
    """A JSON object of about ``size`` bytes (exactly, unless head alone is longer)."""
    base = f'{{"{head}":{i},"pad":""}}'
    return f'{{"{head}":{i},"pad":"{"x" * max(0, size - len(base))}"}}'.encode()


def wchar() -> int | None:
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("wchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_s() -> float:
    return time.process_time()  # (os.times() ticks in 10 ms: too coarse for a phase)


@contextmanager
def no_log_put() -> Iterator[None]:
    """Counterfactual: commits keep the log's position but neither encode nor put its entry."""
    orig = S.Tx._log_append

    def bookkeeping_only(self: S.Tx, e: L.Entry) -> None:
        m = self.local
        L.check_next(m, e)
        m.term, m.log_seq = e.term, e.seq

    S.Tx._log_append = bookkeeping_only  # type: ignore[method-assign]
    try:
        yield
    finally:
        S.Tx._log_append = orig  # type: ignore[method-assign]


class Phase:
    """Counters of one phase, read from the writer before and after."""

    def __init__(self, name: str, w: Writer) -> None:
        self.name, self.w = name, w
        self.jobs = self.ops = self.old_bytes = 0
        self.seq0, self.bytes0 = w.local.log_seq, w.local.log_bytes
        self.writes0 = w.stats.puts + w.stats.dels
        self.wchar0 = wchar()
        self.cpu0 = cpu_s()

    def apply(self, ops: list[qops.Op]) -> list[Any]:
        results, served, _ = self.w.apply_batch([(op, None) for op in ops])
        assert not served
        for op, res in zip(ops, results, strict=True):
            if isinstance(res, BaseException):
                raise res
            self.old_bytes += len(qops.op_encoder.encode(op))  # each changed something: logged
        self.ops += len(ops)
        return results

    def done(self) -> dict[str, Any]:
        w, wc, cpu = self.w, wchar(), cpu_s()
        return {"phase": self.name, "jobs": self.jobs, "ops": self.ops,
                "commits": w.local.log_seq - self.seq0,
                "log_bytes": w.local.log_bytes - self.bytes0, "old_log_bytes": self.old_bytes,
                "lmdb_writes": w.stats.puts + w.stats.dels - self.writes0,
                "lmdb_write_bytes": None if wc is None or self.wchar0 is None else wc - self.wchar0,
                "cpu_s": cpu - self.cpu0}


def lifecycle(w: Writer, a: argparse.Namespace) -> list[dict[str, Any]]:
    """Enqueue, lease and ack ``a.jobs`` jobs; the counters of each phase."""
    s = w.core.s
    k, n, b = a.ops_per_commit, a.jobs, a.batch
    clock = iter(T0 + i * 0.001 for i in range(10 * n + 1000))  # 1 ms per op, well within a lease
    out = []

    ph = Phase("enqueue", w)
    ops: list[qops.Op] = []
    for i in range(0, n, b):
        jobs = [qops.NewJob(None, "send_email", json_text(j, a.payload_bytes, "user"), 0, None,
                         s.max_attempts, s.lease_timeout_s, None) for j in range(i, min(n, i + b))]
        ops.append(qops.Enqueue(next(clock), QUEUE, jobs))
        ph.jobs += len(jobs)
        if len(ops) == k or i + b >= n:
            ph.apply(ops)
            ops = []
    out.append(ph.done())

    ph = Phase("lease", w)
    leased: list[Any] = []
    salt = 0x5EED
    while len(leased) < n:
        ops = [qops.Lease(next(clock), [QUEUE], b, "worker-1", None, salt + i, s.max_lease_bytes)
               for i in range(min(k, -(-(n - len(leased)) // b)))]
        got = [j for res in ph.apply(ops) for j in res]
        if not got:
            raise RuntimeError(f"leased {len(leased)} of {n} jobs, then nothing")
        leased += got
    ph.jobs = len(leased)
    out.append(ph.done())

    ph = Phase("ack", w)
    ops = []
    for i in range(0, n, b):
        items = [qops.AckItem(j.id, j.lease, json_text(x, a.result_bytes, "sent"))
                 for x, j in enumerate(leased[i:i + b], i)]
        ops.append(qops.Ack(next(clock), items, False))
        ph.jobs += len(items)
        if len(ops) == k or i + b >= n:
            for res in ph.apply(ops):
                bad = [o for o in res if o.error is not None]
                if bad:
                    raise RuntimeError(f"ack failed: {bad[:3]}")
            ops = []
    out.append(ph.done())
    return out


def run_once(a: argparse.Namespace) -> tuple[list[dict[str, Any]], L.LocalMeta]:
    with tempfile.TemporaryDirectory(prefix="bench-logbytes-", dir=a.tmp) as t:
        path = Path(t)
        store = S.Store(path, 1 << 32)
        try:
            w = Writer(store, Core(Settings(data_dir=path)), max_batch_ops=max(100, a.ops_per_commit),
                       log_keep_entries=1 << 40, log_keep_bytes=1 << 50)
            rows = lifecycle(w, a)
            local = w.local
        finally:
            store.close()
    return rows, local


SUMMED = ("ops", "commits", "log_bytes", "old_log_bytes", "lmdb_writes", "lmdb_write_bytes", "cpu_s")


def with_total(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    total: dict[str, Any] = {"phase": "total", "jobs": rows[0]["jobs"]}  # every job, every phase
    for key in SUMMED:
        vals = [x[key] for x in rows]
        total[key] = None if None in vals else sum(vals)
    return [*rows, total]


def per_job(runs: list[list[dict[str, Any]]], nolog: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows per job: bytes from the first run (they do not vary), CPU the median over runs."""
    out = []
    for i, x in enumerate(runs[0]):
        j = x["jobs"]

        def div(v: Any, d: int = j) -> float | None:
            return None if v is None else v / d

        def cpu_us(rs: list[list[dict[str, Any]]], i: int = i, j: int = j) -> float | None:
            return statistics.median(r[i]["cpu_s"] for r in rs) * 1e6 / j if rs else None

        out.append({"scenario": SCENARIO, "phase": x["phase"], "jobs": j, "ops": x["ops"],
                    "commits": x["commits"], "log_bytes": x["log_bytes"],
                    "old_log_bytes": x["old_log_bytes"],
                    "log_bytes_per_job": div(x["log_bytes"]),
                    "old_log_bytes_per_job": div(x["old_log_bytes"]),
                    "new_over_old": x["log_bytes"] / x["old_log_bytes"],
                    "log_bytes_per_commit": div(x["log_bytes"], x["commits"]),
                    "lmdb_writes_per_job": div(x["lmdb_writes"]),
                    "lmdb_write_bytes_per_job": div(x["lmdb_write_bytes"]),
                    "nolog_write_bytes_per_job": div(nolog[0][i]["lmdb_write_bytes"]) if nolog else None,
                    "cpu_us_per_job": cpu_us(runs), "nolog_cpu_us_per_job": cpu_us(nolog),
                    "rounds": len(runs)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=100, help="jobs per enqueue, lease and ack op")
    ap.add_argument("--payload-bytes", type=int, default=100)
    ap.add_argument("--result-bytes", type=int, default=40)
    ap.add_argument("--ops-per-commit", type=int, default=1,
                    help="ops applied in one transaction (group commit)")
    ap.add_argument("--rounds", type=int, default=5,
                    help="pairs of runs (with the log, without it) for the CPU medians")
    ap.add_argument("--no-counterfactual", action="store_true",
                    help="skip the runs without log puts (nolog_* columns)")
    ap.add_argument("--tmp", default=None, help="parent of the temp dir (default $TMPDIR)")
    ap.add_argument("--json", default=None, help="append the JSON lines to this file")
    a = ap.parse_args(argv)
    if min(a.jobs, a.batch, a.ops_per_commit, a.rounds) < 1:
        ap.error("--jobs, --batch, --ops-per-commit and --rounds must be positive")

    runs: list[list[dict[str, Any]]] = []
    nolog: list[list[dict[str, Any]]] = []
    for _ in range(a.rounds):  # alternating, so drift on the machine hits both alike
        rows, local = run_once(a)
        if local.log_first != 1:
            raise RuntimeError(f"the log was truncated (first entry {local.log_first}): "
                               "bytes undercounted")
        runs.append(with_total(rows))
        if not a.no_counterfactual:
            with no_log_put():
                nolog.append(with_total(run_once(a)[0]))
    report = Report(a.json)
    try:
        out = [report.add({**x, "batch": a.batch, "payload_bytes": a.payload_bytes,
                           "result_bytes": a.result_bytes, "ops_per_commit": a.ops_per_commit})
               for x in per_job(runs, nolog)]
    finally:
        report.close()
    print_table(f"{SCENARIO}: {a.jobs:,} jobs, payload {a.payload_bytes} B, result {a.result_bytes} B, "
                f"batches of {a.batch}, {a.ops_per_commit} op(s) per commit, CPU: median of "
                f"{a.rounds} run(s)", out, COLUMNS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
