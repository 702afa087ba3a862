"""`tqd cluster`: the nodes of a cluster, their role, term, log position and lag.

It asks every node it hears of (the URLs given, the leader a node names, the followers
the leader lists), shows one row a node, and exits 1 when none of them leads (a standalone
server counts as leading: it takes writes). Registered by tqd.client.commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from .cmdline import EXIT_REFUSED, console, tls_options

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


async def cluster(args: argparse.Namespace) -> int:
    from rich.table import Table

    from .api import DEFAULT_URL, base_url

    raw = args.url or os.environ.get("TQD_URL") or DEFAULT_URL
    urls = [base_url(u) for u in raw.split(",") if u.strip()]
    nodes = await _cluster_nodes(urls, args.token, tls_options(args))
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
    console().print(t)
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
