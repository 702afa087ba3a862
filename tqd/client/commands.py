"""Client subcommands of `tqd` (worker, enqueue, queues, job, jobs, ...), registered into the CLI.

This module is their table (every command and its flags, in `register`) and the `tqd worker`
command; the job and queue commands are in jobcommands.py, `tqd cluster` in
clustercommands.py, what they all share (connection flags, exit statuses) in cmdline.py.

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
import importlib
import os
import sys
from pathlib import Path

# Not `from . import ...`: that would ask tqd.client's lazy __getattr__, which loads the client.
from .clustercommands import cluster
from .cmdline import add_command as _cmd
from .cmdline import tls_options
from .jobcommands import (
    cancel_job,
    delete_queue,
    enqueue,
    list_jobs,
    list_queues,
    pause,
    purge,
    redrive,
    resume,
    retry_job,
    show_job,
    top,
)

STATES = ("queued", "scheduled", "active", "completed", "dead", "cancelled")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the `tqd` parser."""
    p = _cmd(sub, "worker", _worker, "run a worker: tqd worker module:worker_object")
    p.add_argument("target", metavar="MODULE:OBJ", help="import path of a tqd.Worker, e.g. app.tasks:worker")
    p.add_argument("--concurrency", type=int, help="jobs run at once (default: the worker's)")
    p.add_argument("--queues", help="comma-separated queues, tried in this order")
    p.add_argument("--burst", action="store_true", help="exit once the queues are empty")
    p.add_argument("--grace", type=float, metavar="S", help="seconds running jobs get on SIGTERM")
    p.add_argument("--log-format", choices=("text", "json"),
                   help="text (default) or json: one JSON object per line (env TQD_LOG_FORMAT)")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                   help="default info (env TQD_LOG_LEVEL)")

    p = _cmd(sub, "enqueue", enqueue, "enqueue one job, or many from an NDJSON file")
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

    p = _cmd(sub, "queues", list_queues, "table of queues: depth by state, oldest age")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = _cmd(sub, "top", top, "a live view of the queues: depth, rates, oldest job; the node")
    p.add_argument("--interval", "-i", type=float, default=1.0, metavar="S",
                   help="seconds between readings (default 1)")
    p.add_argument("--iterations", "-n", type=int, metavar="N",
                   help="stop after N readings (default: until Ctrl-C)")

    p = _cmd(sub, "cluster", cluster, "the nodes of a cluster: role, term, position, lag")
    p.add_argument("--json", action="store_true", help="print the nodes' status as a JSON list")

    p = _cmd(sub, "job", show_job, "show one job with its error log")
    p.add_argument("id")
    p.add_argument("--json", action="store_true", help="print the raw record")

    p = _cmd(sub, "jobs", list_jobs, "list a queue's jobs, oldest first")
    p.add_argument("queue")
    p.add_argument("--state", "-s", choices=STATES)
    p.add_argument("--limit", "-n", type=int, default=50, help="at most this many (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON record per line")

    for name, fn, what in (("retry", retry_job, "put a dead or cancelled job back in its queue"),
                           ("cancel", cancel_job, "cancel a queued, scheduled, active or dead job")):
        _cmd(sub, name, fn, what).add_argument("id")
    for name, fn, what in (("redrive", redrive, "move a queue's dead jobs back to queued"),
                           ("pause", pause, "stop leasing from a queue"),
                           ("resume", resume, "resume leasing from a queue")):
        p = _cmd(sub, name, fn, what)
        p.add_argument("queue")
    sub.choices["redrive"].add_argument("--limit", type=int, default=1000)
    p = _cmd(sub, "purge", purge, "delete a queue's dead, completed or cancelled jobs")
    p.add_argument("queue")
    p.add_argument("--state", "-s", required=True, choices=("dead", "completed", "cancelled"))

    qp = sub.add_parser("queue", help="manage one queue: tqd queue delete NAME",
                        description="manage one queue")
    qsub = qp.add_subparsers(dest="queue_command", required=True, metavar="{delete}")
    p = _cmd(qsub, "delete", delete_queue, "delete a queue (refused while it holds jobs unless --force)")
    p.add_argument("queue")
    p.add_argument("--force", action="store_true", help="delete its jobs too, whatever their state")


# ---- worker -------------------------------------------------------------------


def _worker(args: argparse.Namespace) -> int:
    from ..observe import logs
    from .worker import Worker

    env = os.environ  # (an env value outside the choices: ValueError, exit 1)
    logs.setup(args.log_format or env.get("TQD_LOG_FORMAT") or "text",
               args.log_level or env.get("TQD_LOG_LEVEL") or "info", text=logs.WORKER_TEXT)
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
    for name, v in tls_options(args).items():
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
