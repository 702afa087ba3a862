"""Client subcommands of `tqd` (worker, enqueue, queues, job, jobs, ...), registered into the CLI.

Every command takes `--url` (env TQD_URL, several comma-separated; `http://`
is assumed when there is no scheme), `--token` (env TQD_TOKEN), and for https
`--ca-file` (env TQD_CA_FILE; else the system CAs), `--client-cert` and
`--client-key` (env TQD_CLIENT_CERT, TQD_CLIENT_KEY; mutual TLS). The client
library is imported only when a client command runs, so `tqd serve` never
loads it. An error becomes one line on stderr and an exit status:

    0  done
    1  the server refused the request (`tqd: not_found: ...`), or bad input
    2  usage error (argparse)
    3  no answer from the server: cannot connect, or the connection broke
       (tried once per URL, no waiting: a CLI call against a server that is
       down fails at once; one against a cluster between leaders waits for
       the new leader, as the client does, up to 30 s; `tqd worker --burst`
       gives up after the client's retries)
    130  interrupted (Ctrl-C)

`tqd cluster` asks every node it hears of (the URLs given, the leader a node names,
the followers the leader lists) and exits 1 when none of them leads (a standalone
server counts as leading: it takes writes).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Client, Job, QueueStats

Command = Callable[[argparse.Namespace], "Coroutine[Any, Any, int] | int"]
STATES = ("queued", "scheduled", "active", "completed", "dead", "cancelled")
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 2, 3, 130


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the `tqd` parser."""
    p = _cmd(sub, "worker", _worker, "run a worker: tqd worker module:worker_object")
    p.add_argument("target", metavar="MODULE:OBJ", help="import path of a tqd.Worker, e.g. app.tasks:worker")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default: the worker's)")
    p.add_argument("--queues", help="comma-separated queues, tried in this order")
    p.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    p.add_argument("--grace", type=float, metavar="S", help="seconds running jobs get on SIGTERM")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    p = _cmd(sub, "enqueue", _enqueue, "enqueue one job, or many from an NDJSON file")
    p.add_argument("queue")
    p.add_argument("payload", nargs="?", metavar="PAYLOAD_JSON", help="the job's payload (JSON)")
    p.add_argument("--type", "-t", help="job type (what the worker routes on)")
    p.add_argument("--priority", "-p", help="0..9 or high/normal/low")
    p.add_argument("--delay", type=float, metavar="S", help="run no earlier than S seconds from now")
    p.add_argument("--key", help="idempotency key")
    p.add_argument("--id", help="your own job id ([A-Za-z0-9_.:-], at most 128); enqueued once")
    p.add_argument("--max-attempts", type=int)
    p.add_argument("--timeout", type=float, metavar="S", help="lease length")
    p.add_argument("--file", "-f", type=Path, help="NDJSON file of job objects ('-' for stdin)")
    p.add_argument("--chunk", type=int, default=1000, help="jobs per request with --file")

    p = _cmd(sub, "queues", _queues, "table of queues: depth by state, oldest age")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = _cmd(sub, "top", _top, "a live view of the queues: depth, rates, oldest job; the node")
    p.add_argument("--interval", "-i", type=float, default=1.0, metavar="S",
                   help="seconds between readings (default 1)")
    p.add_argument("--iterations", "-n", type=int, metavar="N",
                   help="stop after N readings (default: until Ctrl-C)")

    p = _cmd(sub, "cluster", _cluster, "the nodes of a cluster: role, term, position, lag")
    p.add_argument("--json", action="store_true", help="print the nodes' status as a JSON list")

    p = _cmd(sub, "job", _job, "show one job with its error log")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print the raw record")

    p = _cmd(sub, "jobs", _jobs, "list a queue's jobs, oldest first")
    p.add_argument("queue")
    p.add_argument("--state", "-s", choices=STATES)
    p.add_argument("--limit", "-n", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON record per line")

    for name, fn, what in (("retry", _retry, "put a dead or cancelled job back in its queue"),
                           ("cancel", _cancel, "cancel a queued, scheduled, active or dead job")):
        _cmd(sub, name, fn, what).add_argument("id")
    for name, fn, what in (("redrive", _redrive, "move a queue's dead jobs back to queued"),
                           ("pause", _pause, "stop leasing from a queue"),
                           ("resume", _resume, "resume leasing from a queue")):
        p = _cmd(sub, name, fn, what)
        p.add_argument("queue")
    sub.choices["redrive"].add_argument("--limit", type=int, default=1000)
    p = _cmd(sub, "purge", _purge, "delete a queue's dead, completed or cancelled jobs")
    p.add_argument("queue")
    p.add_argument("--state", "-s", required=True, choices=("dead", "completed", "cancelled"))

    qp = sub.add_parser("queue", help="manage one queue: tqd queue delete NAME",
                        description="manage one queue")
    qsub = qp.add_subparsers(dest="queue_command", required=True, metavar="{delete}")
    p = _cmd(qsub, "delete", _delete_queue, "delete a queue (refused while it holds jobs unless --force)")
    p.add_argument("queue")
    p.add_argument("--force", action="store_true", help="delete its jobs too, whatever their state")


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options stand between positionals: `tqd enqueue q --type t '{"a": 1}'`."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def _cmd(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, fn: Command,
         help: str) -> argparse.ArgumentParser:
    cls, sub._parser_class = sub._parser_class, _IntermixedParser
    try:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    finally:
        sub._parser_class = cls
    p.add_argument("--url", help="server URL(s), comma-separated (env TQD_URL, default "
                   "http://127.0.0.1:7070)")
    p.add_argument("--token", default=os.environ.get("TQD_TOKEN"), help="bearer token (env TQD_TOKEN)")
    p.add_argument("--ca-file", metavar="PEM", help="CA bundle to verify an https server with "
                   "(env TQD_CA_FILE; default the system CAs)")
    p.add_argument("--client-cert", metavar="PEM", help="client certificate, for a server that "
                   "asks for one (mutual TLS; env TQD_CLIENT_CERT)")
    p.add_argument("--client-key", metavar="PEM", help="the private key of --client-cert, if "
                   "not in its file (env TQD_CLIENT_KEY)")
    p.set_defaults(func=lambda args: _main(fn, args))
    return p


def _main(fn: Command, args: argparse.Namespace) -> int:
    from .api import ClientError, ConnectionFailed

    try:
        rc = fn(args)
        return rc if isinstance(rc, int) else asyncio.run(rc)
    except ConnectionFailed as e:
        print(f"tqd: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ClientError, ValueError, OSError) as e:
        print(f"tqd: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _client(args: argparse.Namespace) -> Client:
    from .api import Client

    # One connection attempt per URL: a server that is down is reported at once.
    return Client(args.url, token=args.token, connect_retries=0, **_tls(args))


def _tls(args: argparse.Namespace) -> dict[str, Any]:
    """The Client's TLS options from the flags (None: the Client reads TQD_*)."""
    return {"ca_file": args.ca_file, "cert_file": args.client_cert, "key_file": args.client_key}


def _console() -> Any:
    from rich.console import Console

    return Console()


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _age(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.1f}{unit}"
    return f"{s:.1f}s"


# ---- worker -------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    import logging

    from .worker import Worker

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(message)s")
    mod_name, _, attr = args.target.partition(":")
    if not mod_name or not attr:
        raise ValueError(f"worker target must look like module:object, got {args.target!r}")
    sys.path.insert(0, os.getcwd())
    try:
        obj = getattr(importlib.import_module(mod_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load {args.target}: {e}") from None
    if not isinstance(obj, Worker):
        raise ValueError(f"{args.target} is a {type(obj).__name__}, not a tqd.Worker")
    if args.url is not None:
        obj.url = args.url
    if args.token is not None:
        obj.token = args.token
    for name, v in _tls(args).items():
        if v is not None:
            setattr(obj, name, v)
    if args.concurrency is not None:
        obj.concurrency = args.concurrency
    if args.queues:
        obj.queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    if args.grace is not None:
        obj.grace_s = args.grace
    obj.burst = obj.burst or args.burst
    obj.run_forever()
    return 0


# ---- producing ------------------------------------------------------------------


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not JSON: {e}") from None


async def _enqueue(args: argparse.Namespace) -> int:
    if args.file is not None:
        if args.payload is not None:
            raise ValueError("give PAYLOAD_JSON or --file, not both")
        return await _enqueue_file(args)
    payload = None if args.payload is None else _json_arg(args.payload, "PAYLOAD_JSON")
    raw: str | None = args.priority
    prio: int | str | None = int(raw) if raw is not None and raw.isdigit() else raw
    async with _client(args) as c:
        r = await c.enqueue(args.queue, args.type, payload, priority=prio, delay=args.delay, key=args.key,
                            max_attempts=args.max_attempts, timeout=args.timeout, id=args.id)
    print(json.dumps({"id": r.id, "state": r.state, "created": r.created}))
    return 0


def _read_jobs(path: Path) -> Iterator[dict[str, Any]]:
    f = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    with f:
        for n, line in enumerate(f, 1):
            if line.strip():
                obj = _json_arg(line, f"{path} line {n}")
                if not isinstance(obj, dict):
                    raise ValueError(f"{path} line {n}: a job must be a JSON object")
                yield obj


async def _enqueue_file(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    jobs = list(_read_jobs(args.file))
    cols = (TextColumn("enqueue"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*cols, console=_console(), transient=False) as bar:
        task = bar.add_task("enqueue", total=len(jobs))
        async with _client(args) as c:
            res = await c.enqueue_many(args.queue, jobs, chunk_size=args.chunk,
                                       on_chunk=lambda n: bar.update(task, completed=n))
    created = sum(r.created for r in res)
    print(f"{len(res)} jobs: {created} created, {len(res) - created} already present")
    return 0


# ---- inspecting -----------------------------------------------------------------


async def _top(args: argparse.Namespace) -> int:
    from . import top

    async with _client(args) as c:
        return await top.run(args, c, _console())


async def _queues(args: argparse.Namespace) -> int:
    import msgspec
    from rich.table import Table

    async with _client(args) as c:
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
                                           s.cancelled)), _age(s.oldest_queued_age))
    _console().print(t)
    return 0


async def _job(args: argparse.Namespace) -> int:
    import msgspec
    from rich.table import Table
    from rich.text import Text

    async with _client(args) as c:
        job = await c.get(args.id)
    if args.json:
        print(msgspec.json.encode(job).decode())
        return 0
    con = _console()
    t = Table(show_header=False, box=None)
    t.add_column(style="bold")
    t.add_column()
    enc = msgspec.json.encode
    rows = [("id", job.id), ("queue", job.queue), ("type", str(job.type)), ("state", job.state),
            ("priority", str(job.priority)), ("attempt", f"{job.attempt}/{job.max_attempts}"),
            ("timeout", f"{job.timeout:g}s"), ("key", str(job.key)), ("worker", str(job.worker)),
            ("created", _ago(job.created_at)), ("run at", _ago(job.run_at)),
            ("started", _ago(job.started_at)), ("finished", _ago(job.finished_at)),
            ("lease expires", _ago(job.lease_expires_at)), ("payload", enc(job.payload).decode()),
            ("progress", enc(job.progress).decode()), ("result", enc(job.result).decode())]
    for k, v in rows:
        t.add_row(k, Text(v))
    con.print(t)
    if job.errors:
        et = Table(title="errors")
        for col in ("attempt", "at", "error"):
            et.add_column(col)
        for e in job.errors:
            et.add_row(str(e.attempt), _ago(e.at), Text(e.error))
        con.print(et)
        last = job.errors[-1]
        if last.details:
            con.print(f"[bold]last traceback[/] (attempt {last.attempt}):")
            con.print(last.details, markup=False, highlight=False)
    return 0


def _row(j: Job) -> tuple[str, ...]:
    err = j.errors[-1].error if j.errors else ""
    return (j.id, str(j.type), j.state, str(j.priority), f"{j.attempt}/{j.max_attempts}",
            _ago(j.created_at), err[:60])


async def _jobs(args: argparse.Namespace) -> int:
    import msgspec
    from rich.table import Table
    from rich.text import Text

    rows = []
    async with _client(args) as c:
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
    _console().print(t)
    return 0


# ---- cluster --------------------------------------------------------------------

# One slow node must not hold up the picture of the others for long.
CLUSTER_TIMEOUT_S = 3.0


async def _node_status(url: str, token: str | None, tls: dict[str, Any]) -> dict[str, Any]:
    """One node's `GET /v1/cluster`, or {"url", "role": "down", "error"} if it does not answer."""
    from .api import Client, ClientError

    try:
        async with Client(url, token=token, timeout_s=CLUSTER_TIMEOUT_S, retries=0,
                          connect_retries=0, failover_s=0, **tls) as c:
            st = await c.cluster()
    except ClientError as e:
        return {"url": url, "role": "down", "error": str(e)}
    st.setdefault("url", url)  # a standalone server does not say
    return st


async def _cluster_nodes(urls: list[str], token: str | None,
                         tls: dict[str, Any]) -> list[dict[str, Any]]:
    """The status of every node heard of: the URLs given, then the leader each names and the
    followers a leader lists, each node once (by the URL it advertises)."""
    from .api import base_url

    asked: set[str] = set()
    nodes: dict[str, dict[str, Any]] = {}
    todo = urls
    while todo:
        batch = list(dict.fromkeys(u for u in todo if u not in asked))
        asked.update(batch)
        todo = []
        for st in await asyncio.gather(*(_node_status(u, token, tls) for u in batch)):
            nodes.setdefault(str(st["url"]), st)
            asked.add(str(st["url"]))
            named = [st.get("leader")] + [f.get("url") for f in st.get("followers") or []]
            for v in named:
                try:
                    todo += [base_url(v)] if isinstance(v, str) and v else []
                except ValueError:
                    pass
    return list(nodes.values())


def _leads(st: dict[str, Any]) -> bool:
    return st.get("role") == "standalone" or (st.get("role") == "leader" and bool(st.get("writable")))


async def _cluster(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .api import DEFAULT_URL, base_url

    raw = args.url or os.environ.get("TQD_URL") or DEFAULT_URL
    urls = [base_url(u) for u in raw.split(",") if u.strip()]
    nodes = await _cluster_nodes(urls, args.token, _tls(args))
    leaders = sorted((n for n in nodes if _leads(n)), key=lambda n: -int(n.get("term") or 0))
    if args.json:
        print(json.dumps(nodes))
        return 0 if leaders else EXIT_REFUSED
    leader = leaders[0] if leaders else None
    seen = {f.get("url"): f for f in (leader or {}).get("followers") or []}
    if leader is None:
        title = "tqd cluster: no leader"
    elif leader.get("role") == "standalone":
        title = f"tqd: a standalone server at {leader['url']}"
    else:
        title = f"tqd cluster: leader {leader.get('node')} at {leader['url']}, term {leader.get('term')}"
    t = Table(title=title)
    for col in ("node", "url", "role", "term", "applied seq", "lag", "in sync", "writable"):
        t.add_column(col, no_wrap=col in ("node", "url"),
                     justify="right" if col in ("term", "applied seq", "lag") else "left")
    for n in sorted(nodes, key=lambda n: (str(n.get("node") or ""), str(n["url"]))):
        t.add_row(*_node_row(n, leader, seen.get(n["url"])))
    _console().print(t)
    if leader is None:
        why = "no node answers" if all(n.get("role") == "down" for n in nodes) else \
            "no node leads (a failover may be under way)"
        print(f"tqd: {why}", file=sys.stderr)
    return 0 if leader else EXIT_REFUSED


_ROLE_STYLE = {"leader": "bold green", "down": "bold red", "standalone": "green"}


def _node_row(n: dict[str, Any], leader: dict[str, Any] | None,
              f: dict[str, Any] | None) -> tuple[str, ...]:
    """A node's row; `f` is the leader's entry for it as a follower (lag, in-sync), if any."""
    role = str(n.get("role"))
    name = str(n.get("node") or (f or {}).get("node") or "-")
    style = _ROLE_STYLE.get(role)
    shown = f"[{style}]{role}[/]" if style else role
    if role == "down":
        return (name, n["url"], shown, *("-" * 5))
    if f is not None:
        lag, in_sync = f"{f.get('lag')} ({float(f.get('lag_s') or 0):.2f}s)", _yes(f.get("in_sync"))
    elif n is leader:
        lag, in_sync = "-", "yes" if role == "leader" else "-"
    else:  # not (yet) fetching from the leader: its in-sync set still says whether it counts
        lag, in_sync = "?", _yes(name in leader.get("isr", ())) if leader else "-"
    return (name, n["url"], shown, str(n.get("term", "-")), str(n.get("applied_seq", "-")), lag,
            in_sync, _yes(n.get("writable", role == "standalone")))


def _yes(v: Any) -> str:
    return "yes" if v else "no"


# ---- managing -------------------------------------------------------------------


async def _retry(args: argparse.Namespace) -> int:
    async with _client(args) as c:
        print(f"{args.id}: {await c.retry(args.id)}")
    return 0


async def _cancel(args: argparse.Namespace) -> int:
    async with _client(args) as c:
        print(f"{args.id}: {await c.cancel(args.id)}")
    return 0


async def _redrive(args: argparse.Namespace) -> int:
    async with _client(args) as c:
        print(f"{args.queue}: {await c.redrive(args.queue, args.limit)} dead job(s) moved to queued")
    return 0


def _unknown(s: QueueStats) -> bool:
    """A queue that never had a job and holds no setting: pausing it is likely a typo."""
    return not s.paused and s.enqueued_total == 0 and not any(
        (s.queued, s.scheduled, s.active, s.dead, s.completed, s.cancelled))


async def _pause_or_resume(args: argparse.Namespace, pause: bool) -> int:
    async with _client(args) as c:
        new = _unknown(await c.queue(args.queue))
        s = await (c.pause(args.queue) if pause else c.resume(args.queue))
    print(f"{s.name}: {'paused' if pause else 'resumed'} ({s.queued} queued)")
    if new:
        hint = f"; `tqd queue delete {s.name}` removes it" if pause else ""
        print(f"tqd: warning: queue {s.name!r} has never had a job (a typo?){hint}", file=sys.stderr)
    return 0


async def _pause(args: argparse.Namespace) -> int:
    return await _pause_or_resume(args, True)


async def _resume(args: argparse.Namespace) -> int:
    return await _pause_or_resume(args, False)


async def _delete_queue(args: argparse.Namespace) -> int:
    async with _client(args) as c:
        n = await c.delete_queue(args.queue, force=args.force)
    print(f"{args.queue}: deleted" + (f" with {n} job(s)" if n else ""))
    return 0


async def _purge(args: argparse.Namespace) -> int:
    async with _client(args) as c:
        print(f"{args.queue}: {await c.purge(args.queue, args.state)} {args.state} job(s) deleted")
    return 0
