"""The job and queue commands of `tqd`: enqueue, job, jobs, retry, cancel; queues, top,
redrive, pause, resume, purge and queue delete.

tqd.client.commands registers them and tqd.client.cmdline runs them (connection flags,
exit statuses); the client library and rich are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cmdline import age, ago, client, console, json_arg

if TYPE_CHECKING:
    from .api import Job, QueueStats

# ---- producing ------------------------------------------------------------------


async def enqueue(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.payload is not None:
            raise ValueError("give PAYLOAD_JSON or --file, not both")
        return await _enqueue_file(args)
    payload = None if args.payload is None else json_arg(args.payload, "PAYLOAD_JSON")
    raw: str | None = args.priority
    prio: int | str | None = int(raw) if raw is not None and raw.isdigit() else raw
    async with client(args) as c:
        r = await c.enqueue(args.queue, args.type, payload, priority=prio, delay=args.delay, key=args.key,
                            max_attempts=args.max_attempts, timeout=args.timeout, id=args.id)
    print(json.dumps({"id": r.id, "state": r.state, "created": r.created}))
    return 0


def _read_jobs(path: Path) -> Iterator[dict[str, Any]]:
    f = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    with f:
        for n, line in enumerate(f, 1):
            if line.strip():
                obj = json_arg(line, f"{path} line {n}")
                if not isinstance(obj, dict):
                    raise ValueError(f"{path} line {n}: a job must be a JSON object")
                yield obj


async def _enqueue_file(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = list(_read_jobs(args.file))
    cols = (TextColumn("enqueue"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=console(), transient=False) as bar:
        task = bar.add_task("enqueue", total=len(jobs))
        async with client(args) as c:
            res = await c.enqueue_many(args.queue, jobs, chunk_size=args.chunk,
                                       on_chunk=lambda n: bar.update(task, completed=n))
    created = sum(r.created for r in res)
    print(f"{len(res)} jobs: {created} created, {len(res) - created} already present")
    return 0


# ---- inspecting -----------------------------------------------------------------


async def top(args: argparse.Namespace) -> int:
    from . import top as live

    async with client(args) as c:
        return await live.run(args, c, console())


async def list_queues(args: argparse.Namespace) -> int:
    import msgspec
    from rich.table import Table

    async with client(args) as c:
        stats = await c.queues()
    if args.json:
        print(msgspec.json.encode(stats).decode())
        return 0
    t = Table(title="tqd queues")
    for col in ("queue", "queued", "scheduled", "active", "dead", "completed", "cancelled", "oldest"):
        t.add_column(col, justify="left" if col == "queue" else "right")
    for s in stats:
        name = f"{s.name} [yellow](paused)[/]" if s.paused else s.name
        t.add_row(name, *(str(v) for v in (s.queued, s.scheduled, s.active, s.dead, s.completed,
                                           s.cancelled)), age(s.oldest_queued_age))
    console().print(t)
    return 0


async def show_job(args: argparse.Namespace) -> int:
    import msgspec
    from rich.table import Table
    from rich.text import Text

    async with client(args) as c:
        job = await c.get(args.id)
    if args.json:
        print(msgspec.json.encode(job).decode())
        return 0
    con = console()
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    enc = msgspec.json.encode
    rows = [("id", job.id), ("queue", job.queue), ("type", str(job.type)), ("state", job.state),
            ("priority", str(job.priority)), ("attempt", f"{job.attempt}/{job.max_attempts}"),
            ("timeout", f"{job.timeout:g}s"), ("key", str(job.key)), ("worker", str(job.worker)),
            ("created", ago(job.created_at)), ("run at", ago(job.run_at)),
            ("started", ago(job.started_at)), ("finished", ago(job.finished_at)),
            ("lease expires", ago(job.lease_expires_at)), ("payload", enc(job.payload).decode()),
            ("progress", enc(job.progress).decode()), ("result", enc(job.result).decode())]
    for k, v in rows:
        t.add_row(k, Text(v))
    con.print(t)
    if job.errors:
        et = Table(title="errors")
        for col in ("attempt", "at", "error"):
            et.add_column(col)
        for e in job.errors:
            et.add_row(str(e.attempt), ago(e.at), Text(e.error))
        con.print(et)
        last = job.errors[-1]
        if last.details:
            con.print(f"[bold]last traceback[/] (attempt {last.attempt}):")
            con.print(last.details, markup=False, highlight=False)
    return 0


def _row(j: Job) -> tuple[str, ...]:
    err = j.errors[-1].error if j.errors else ""
    return (j.id, str(j.type), j.state, str(j.priority), f"{j.attempt}/{j.max_attempts}",
            ago(j.created_at), err[:60])


async def list_jobs(args: argparse.Namespace) -> int:
    import msgspec
    from rich.table import Table
    from rich.text import Text

    rows = []
    async with client(args) as c:
        async for j in c.jobs(args.queue, state=args.state, limit=args.limit):
            if args.json:
                print(msgspec.json.encode(j).decode())
            else:
                rows.append(_row(j))
    if args.json:
        return 0
    t = Table(title=f"jobs in {args.queue}" + (f" ({args.state})" if args.state else ""))
    # Ids are never shortened (they are for pasting into `tqd job ID`): the other columns give way.
    t.add_column("id", no_wrap=True, min_width=max((len(r[0]) for r in rows), default=2))
    for col in ("type", "state", "prio", "attempt", "created", "last error"):
        t.add_column(col)
    for r in rows:
        t.add_row(*(Text(v) for v in r))
    console().print(t)
    return 0


# ---- managing -------------------------------------------------------------------


async def retry_job(args: argparse.Namespace) -> int:
    async with client(args) as c:
        print(f"{args.id}: {await c.retry(args.id)}")
    return 0


async def cancel_job(args: argparse.Namespace) -> int:
    async with client(args) as c:
        print(f"{args.id}: {await c.cancel(args.id)}")
    return 0


async def redrive(args: argparse.Namespace) -> int:
    async with client(args) as c:
        print(f"{args.queue}: {await c.redrive(args.queue, args.limit)} dead job(s) moved to queued")
    return 0


def _unknown(s: QueueStats) -> bool:
    """A queue that never had a job and holds no setting: pausing it is likely a typo."""
    return not s.paused and s.enqueued_total == 0 and not any(
        (s.queued, s.scheduled, s.active, s.dead, s.completed, s.cancelled))


async def _pause_or_resume(args: argparse.Namespace, pause: bool) -> int:
    async with client(args) as c:
        new = _unknown(await c.queue(args.queue))
        s = await (c.pause(args.queue) if pause else c.resume(args.queue))
    print(f"{s.name}: {'paused' if pause else 'resumed'} ({s.queued} queued)")
    if new:
        hint = f"; `tqd queue delete {s.name}` removes it" if pause else ""
        print(f"tqd: warning: queue {s.name!r} has never had a job (a typo?){hint}", file=sys.stderr)
    return 0


async def pause(args: argparse.Namespace) -> int:
    return await _pause_or_resume(args, True)


async def resume(args: argparse.Namespace) -> int:
    return await _pause_or_resume(args, False)


async def delete_queue(args: argparse.Namespace) -> int:
    async with client(args) as c:
        n = await c.delete_queue(args.queue, force=args.force)
    print(f"{args.queue}: deleted" + (f" with {n} job(s)" if n else ""))
    return 0


async def purge(args: argparse.Namespace) -> int:
    async with client(args) as c:
        print(f"{args.queue}: {await c.purge(args.queue, args.state)} {args.state} job(s) deleted")
    return 0
