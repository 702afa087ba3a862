"""The server's side of the writer process: ``RemoteWriter`` sends messages over the
socket (tqd.engine.link) and settles each request's future from the reply frames."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import BY_CODE, Internal, NotReady, TqdError
from ..queue import ops
from ..storage.log import Position
from .link import (
    _DEC,
    _ERR_DEC,
    _LEASE_DEC,
    _POS_DEC,
    OK,
    ApplyMsg,
    GateMsg,
    OpMsg,
    ParkMsg,
    PinMsg,
    RestoreMsg,
    StatsMsg,
    StopMsg,
    TermMsg,
    UnparkAllMsg,
    UnparkMsg,
    WatchMsg,
    _frame,
    _msgs_enc,
    _reply_dec,
    _split,
)
from .stats import Stats, stats_decoder
from .writer import Commit

log = logging.getLogger("tqd.writer")
_NULL_DEC: Any = msgspec.json.Decoder()


class WriterHandle:
    """The forked child, before the event loop owns its socket."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid, self.sock = pid, sock


class RemoteParked:
    __slots__ = ("rid", "fut")

    def __init__(self, rid: int, fut: asyncio.Future[Any]) -> None:
        self.rid, self.fut = rid, fut


class RemoteWriter(asyncio.Protocol):
    """The parent's face of the writer process: ops, long-poll parks and unparks, over the
    socket; each answer comes on its future."""

    def __init__(self, handle: WriterHandle, on_commit: Callable[[Commit], None]) -> None:
        self.handle = handle
        self.on_commit = on_commit
        self._rid = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], msgspec.json.Decoder[Any], bool]] = {}
        self._out: list[Any] = []
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed: asyncio.Future[None] | None = None
        self._stopping = False
        self.lost = False  # the child went away without being asked to

    async def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._closed = loop.create_future()
        await loop.create_unix_connection(lambda: self, sock=self.handle.sock)

    # ---- calls (event loop) ----------------------------------------------------

    def submit(self, op: ops.Op, *, position: bool = False) -> asyncio.Future[Any]:
        assert self._loop is not None, "writer not started"
        rid = next(self._rid)
        fut = self._loop.create_future()
        if self._gone(fut):
            return fut
        self._pending[rid] = (fut, _DEC[type(op)], position)
        self._send(OpMsg(rid, op))
        return fut

    def park(self, queues: list[str], max_jobs: int, worker: str | None,
             timeout: float | None) -> RemoteParked:
        assert self._loop is not None, "writer not started"
        rid = next(self._rid)
        fut = self._loop.create_future()
        if not self._gone(fut):
            self._pending[rid] = (fut, _LEASE_DEC, False)
            self._send(ParkMsg(rid, queues, max_jobs, worker, timeout))
        return RemoteParked(rid, fut)

    @property
    def closed(self) -> bool:
        return self._closed is not None and self._closed.done()

    def _gone(self, fut: asyncio.Future[Any]) -> bool:
        """After the socket closed nothing can be answered: fail at once, do not wait."""
        if self.closed:
            fut.set_exception(NotReady("the writer process is gone; this server is stopping"))
            return True
        return False

    def unpark(self, p: RemoteParked) -> None:
        """Ask the child to give up; its answer ([] or the jobs it just leased) comes on p.fut."""
        if not p.fut.done():
            self._send(UnparkMsg(p.rid))

    def unpark_all(self) -> None:
        self._send(UnparkAllMsg())

    def pin_log(self, follower: str, seq: int) -> None:
        """Keep the log from ``seq`` on for this follower (0: forget it); see Writer.pin_log.
        Takes effect before any write sent after it."""
        self._send(PinMsg(follower, seq))

    def set_gate(self, until: float) -> None:
        """Let writes commit until ``until`` (time.monotonic()); 0: none from now on, and
        every parked long-poll is answered with nothing."""
        self._send(GateMsg(until))

    def _ask(self, msg: Callable[[int], Any], dec: Any) -> asyncio.Future[Any]:
        """Send the message made for a new request id; its answer, decoded, on the future."""
        assert self._loop is not None, "writer not started"
        rid = next(self._rid)
        fut: asyncio.Future[Any] = self._loop.create_future()
        if not self._gone(fut):
            self._pending[rid] = (fut, dec, False)
            self._send(msg(rid))
        return fut

    def _control(self, msg: Callable[[int], Any]) -> asyncio.Future[Position]:
        return self._ask(msg, _POS_DEC)

    def apply_entries(self, entries: list[bytes]) -> asyncio.Future[Position]:
        """Follower: apply a leader's log entries (LogDiverged if they do not continue the
        log); the position after them."""
        return self._control(lambda rid: ApplyMsg(rid, entries))

    def restore(self, path: str) -> asyncio.Future[Position]:
        """Follower: replace the store with a snapshot file; its position."""
        return self._control(lambda rid: RestoreMsg(rid, path))

    def watch(self, ids: list[str]) -> asyncio.Future[None]:
        """Have commits that finish these jobs say so (Commit.finished); answered once the
        writer watches them, so that a read after the answer misses no finish."""
        return self._ask(lambda rid: WatchMsg(rid, ids), _NULL_DEC)

    def unwatch(self, ids: list[str]) -> None:
        self._send(WatchMsg(0, ids))

    def stats(self) -> asyncio.Future[Stats]:
        """What the writer measured (tqd.engine.stats)."""
        return self._ask(StatsMsg, stats_decoder)

    def begin_term(self, term: int) -> asyncio.Future[Position]:
        """Leader: write the marker of ``term``; the position after it."""
        return self._control(lambda rid: TermMsg(rid, term))

    async def stop(self) -> None:
        """Everything sent so far is applied and answered, then the child exits."""
        if self._transport is not None and not self._stopping:
            self._stopping = True
            self._send(StopMsg())
            self._flush()
            assert self._closed is not None
            await self._closed
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _reap, self.handle.pid)

    def _send(self, m: Any) -> None:
        if not self._out:
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        self._out.append(m)

    def _flush(self) -> None:
        if not self._out:
            return
        msgs, self._out = self._out, []
        if self._transport is None or self._transport.is_closing():
            return
        self._transport.write(_frame(_msgs_enc.encode(msgs)))

    # ---- protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        for f in _split(self._buf):
            try:
                frame = _reply_dec.decode(f)
                due, term, seq, items = frame.due, frame.term, frame.seq, frame.items
            except (msgspec.DecodeError, ValueError):
                # frames are length-prefixed, so the next one still lines up; the requests
                # this one answered are unknown: they get their 503 from the write deadline
                log.exception("bug: unreadable reply frame from the writer process")
                continue
            pos = Position(term, seq)
            for rid, status, body in items:
                entry = self._pending.pop(rid, None)
                if entry is None:
                    continue
                fut, dec, with_pos = entry
                if not fut.done():
                    _settle(fut, dec, status, body, pos if with_pos else None)
            c = Commit(pos)
            c.min_due_ms = due
            c.finished = frame.finished
            self.on_commit(c)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        pending, self._pending = self._pending, {}
        for fut, _, _ in pending.values():
            if not fut.done():  # it may or may not have committed: 503, as for a timeout
                fut.set_exception(NotReady("the writer process is gone; this server is "
                                           "stopping (the write may have been applied)"))
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if not self._stopping:
            self.lost = True
            log.critical("the writer process exited; stopping")
            os.kill(os.getpid(), signal.SIGTERM)


def _settle(fut: asyncio.Future[Any], dec: msgspec.json.Decoder[Any], status: int,
            body: bytes, pos: Position | None = None) -> None:
    """Answer one request (with its commit's position if asked). An answer that does not
    decode fails that request alone (500)."""
    try:
        if status == OK:
            res = dec.decode(body)
            fut.set_result(res if pos is None else (res, pos))
        else:
            fut.set_exception(_error(body))
    except (msgspec.DecodeError, ValueError, TypeError) as e:
        log.error("bug: cannot read the writer's answer (%s): %r", e, body[:200])
        fut.set_exception(Internal(f"internal error: unreadable answer from the writer: {e}"))


def _error(body: bytes) -> TqdError:
    wire = _ERR_DEC.decode(body)
    cls = BY_CODE.get(wire.pop("error", ""), Internal)
    return cls(str(wire.pop("message", "")), **wire)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
