"""`tqd top`: a live terminal view of the queues, their rates and the node (rich).

Every ``--interval`` seconds it reads ``GET /v1/queues`` (all pages) and ``GET
/v1/cluster``, and shows each queue's depth by state, the oldest queued job's age and,
from the stored totals' change since the last reading, enqueued, completed and failed
jobs per second; above them the node it asks (role, term, log position, followers'
lag). ``--iterations N`` stops after N readings (for scripts; the first has no rates).
On a terminal the table is redrawn in place; otherwise each reading is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..protocol import QueueStats
from .api import Client, ClientError

_Totals = dict[str, tuple[int, int, int]]  # queue -> (enqueued, completed, failed) totals


def _rate(now: int, before: int | None, dt: float) -> str:
    if before is None or dt <= 0:
        return "–"
    return f"{max(0, now - before) / dt:,.1f}"


def _age(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.1f}m" if s < 7200 else f"{s / 3600:.1f}h"


def render(stats: list[QueueStats], node: dict[str, Any] | None, prev: _Totals, dt: float) -> Group:
    """One reading as a rich renderable."""
    head = Text("tqd top", style="bold")
    if node is not None:
        head.append(f"  node {node.get('node') or '-'}  {node.get('role')}  term {node.get('term')}"
                    f"  log {node.get('applied_seq')}")
        for f in node.get("followers") or []:
            head.append(f"  {f['node']} lag {f['lag']} ({f['lag_s']:.2f}s)")
    t = Table(expand=False)
    for col in ("queue", "queued", "scheduled", "active", "dead", "enq/s", "done/s", "fail/s", "oldest"):
        t.add_column(col, justify="left" if col == "queue" else "right")
    for s in stats:
        before = prev.get(s.name)
        b = before if before is not None else (None, None, None)
        name = f"{s.name} [yellow](paused)[/]" if s.paused else s.name
        t.add_row(name, f"{s.queued:,}", f"{s.scheduled:,}", f"{s.active:,}", f"{s.dead:,}",
                  _rate(s.enqueued_total, b[0], dt), _rate(s.completed_total, b[1], dt),
                  _rate(s.failed_total, b[2], dt), _age(s.oldest_queued_age))
    return Group(head, t)


async def _reading(c: Client) -> tuple[list[QueueStats], dict[str, Any] | None]:
    stats = await c.queues()
    try:
        node: dict[str, Any] | None = await c.cluster()
    except ClientError:
        node = None
    return stats, node


async def run(args: argparse.Namespace, client: Client, console: Console) -> int:
    interval = max(0.2, float(args.interval))
    prev: _Totals = {}
    t_prev = 0.0
    n = 0
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    try:
        if live is not None:
            live.start()
        while args.iterations is None or n < args.iterations:
            if n:
                await asyncio.sleep(interval)
            stats, node = await _reading(client)
            now = time.monotonic()
            view = render(stats, node, prev, now - t_prev if t_prev else 0.0)
            if live is not None:
                live.update(view, refresh=True)
            else:
                console.print(view)
            prev = {s.name: (s.enqueued_total, s.completed_total, s.failed_total) for s in stats}
            t_prev = now
            n += 1
    finally:
        if live is not None:
            live.stop()
    return 0
