"""The cluster's HTTP face: log shipping (``/v1/_repl/...``, internal), ``GET /v1/cluster``,
and where a write goes on a node that does not take it (``307`` to the leader).

``GET /v1/_repl/log?after=S&term=T&node=ID&url=U&lease_term=L&wait=W`` (leader only):
the follower ``ID`` holds the log up to ``(S, T)``. The position is checked before any
wait: ``409 log_diverged`` if it is not on the leader's log (or ahead of it), ``410
log_gone`` if the leader no longer keeps the entry at ``S``; the follower must then start
again from ``GET /v1/_repl/snapshot``. Else the answer is the entries after ``S`` (a
msgpack array of entries as stored, ``200``), or ``204`` after ``W`` seconds without any.
Both carry the leader's position (``X-Tqd-Term``, ``X-Tqd-Seq``). The fetch is the
follower's acknowledgement of ``S``, and pins the leader's log from ``S + 1`` for it.
A node that does not lead answers ``503 no_leader`` (with ``X-Tqd-Leader`` if it knows),
as does one whose term is older than the ``lease_term`` the follower has seen.

These endpoints take no client token once auth exists: they are for the cluster's own
credential (the security issue).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

from aiohttp import web

from .. import protocol as p
from ..cluster.node import Node
from ..errors import InvalidRequest, LogDiverged, LogGone, NoLeader, StorageFull, TqdError
from ..service import QueueService

NODE = web.AppKey("node", Node)
LOG_CTYPE = "application/x-tqd-log"
MAX_FETCH_ENTRIES = 2000
MAX_FETCH_BYTES = 8 << 20


def _int(request: web.Request, name: str, lo: int = 0, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None and default is not None:
        return default
    try:
        v = int(raw or "")
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer >= {lo}") from None
    if v < lo:
        raise InvalidRequest(f"{name} must be an integer >= {lo}")
    return v


def _node(request: web.Request) -> Node:
    node = request.app.get(NODE)
    if node is None:
        raise NoLeader("this server is standalone: it ships no log")
    return node


def _leader_node(request: web.Request) -> Node:
    """This node, if it holds the lease. Its gate may be closed (a hand-over, a renew late):
    what it shipped was committed while it led, and the followers still catch up from it."""
    node = _node(request)
    if node.role != "leader":
        raise NoLeader("this node is not the leader")
    lease_term = _int(request, "lease_term", 0, 0)
    if lease_term > node.term:
        raise NoLeader(f"this node's term {node.term} is older than the lease's {lease_term}")
    return node


def _follower(request: web.Request) -> tuple[str, str]:
    fid = request.query.get("node", "")
    url = request.query.get("url", "")
    if not fid or len(fid) > 200 or len(url) > 2000:
        raise InvalidRequest("node (the follower's id, at most 200 bytes) is required")
    return fid, url


def check_position(service: QueueService, after: int, term: int) -> None:
    """Raise unless the log continues after (after, term)."""
    first, last = service.log_bounds()
    if after > last:
        raise LogDiverged(f"position {after} is ahead of the leader's log (last {last})")
    if after == 0:
        if last > 0:  # a new node starts from a snapshot, not from a replay of everything
            raise LogGone("a new follower starts from a snapshot")
        return
    if after < first:
        raise LogGone(f"the leader keeps its log from {first} on only")
    have = service.log_term_at(after)
    if have is None:
        raise LogGone(f"the leader no longer keeps entry {after}")
    if have != term:
        raise LogDiverged(f"entry {after} is of term {have} on the leader, {term} here")


def _position_headers(service: QueueService) -> dict[str, str]:
    pos = service.position
    return {"X-Tqd-Term": str(pos.term), "X-Tqd-Seq": str(pos.seq)}


async def repl_log(request: web.Request) -> web.Response:
    node = _leader_node(request)
    service = node.service
    fid, url = _follower(request)
    after, term = _int(request, "after"), _int(request, "term")
    # at most the in-sync lag: a follower that died in a fetch is then seen gone in time
    wait = min(node.replicas.lag_s, float(_int(request, "wait", 0, 0)))
    check_position(service, after, term)
    info = node.replicas.on_fetch(fid, url, after)
    service.pin_log(fid, max(after, 1))  # the entry at `after` too: its term is checked
    info.polling += 1
    try:
        await service.wait_log(after, wait)
    finally:
        info.polling -= 1
        node.replicas.fetched(info)
    if node.role != "leader":
        raise NoLeader("this node stopped being the leader")
    body = await service.log_batch(after, MAX_FETCH_ENTRIES, MAX_FETCH_BYTES)
    if not body:
        return web.Response(status=204, headers=_position_headers(service))
    return web.Response(body=body, content_type=LOG_CTYPE, headers=_position_headers(service))


async def repl_snapshot(request: web.Request) -> web.StreamResponse:
    node = _leader_node(request)
    service = node.service
    fid, url = _follower(request)
    node.replicas.seen_by(fid, url)
    service.pin_log(fid, max(service.position.seq, 1))  # held from before the snapshot's position
    snaps = service.s.data_dir / "snapshots"
    path = snaps / f"{uuid.uuid4().hex}.snap"
    try:
        snaps.mkdir(exist_ok=True)
    except OSError as e:
        raise StorageFull(f"cannot write a snapshot: {e}") from None
    export = asyncio.ensure_future(service.snapshot(path))
    try:
        pos = await asyncio.shield(export)
    except asyncio.CancelledError:  # the follower left: the file goes once it is written
        export.add_done_callback(lambda _: path.unlink(missing_ok=True))
        raise
    except OSError as e:
        raise StorageFull(f"cannot write a snapshot: {e}") from None
    service.pin_log(fid, max(pos.seq, 1))  # the follower goes on from there
    try:
        f = path.open("rb")
    finally:
        path.unlink(missing_ok=True)  # (an open file stays readable)
    loop = asyncio.get_running_loop()
    with f:
        resp = web.StreamResponse(headers={"X-Tqd-Term": str(pos.term), "X-Tqd-Seq": str(pos.seq),
                                           "Content-Type": "application/octet-stream"})
        resp.content_length = os.fstat(f.fileno()).st_size
        await resp.prepare(request)
        while chunk := await loop.run_in_executor(None, f.read, 1 << 20):
            await resp.write(chunk)
        await resp.write_eof()
    return resp


def cluster_status(request: web.Request, service: QueueService) -> web.Response:
    node = request.app.get(NODE)
    if node is None:
        pos = service.position
        body: dict[str, Any] = {"node": service.s.node_id or None, "role": "standalone",
                                "term": pos.term, "leader": None, "url": None,
                                "applied_seq": pos.seq, "writable": service.leading,
                                "followers": [],
                                "loops": [st.as_dict() for st in service.loops.states.values()]}
    else:
        body = node.status()
    return web.Response(body=p.encode(body), content_type="application/json")


def not_leader_reply(service: QueueService, request: web.Request, err: TqdError) -> web.Response:
    """A write on a node that does not take writes: 307 to the leader when one is known
    (not this node), else the error (503)."""
    leader = service.leader_url
    me = request.app.get(NODE)
    if leader and (me is None or leader != me.advertise):
        location = leader + request.path_qs
        body = {"error": "no_leader", "message": f"writes go to the leader at {leader}",
                "leader": leader}
        return web.Response(status=307, body=p.encode(body), content_type="application/json",
                            headers={"Location": location, "X-Tqd-Leader": leader})
    return web.Response(status=err.http_status, body=p.encode(err.to_wire()),
                        content_type="application/json")
