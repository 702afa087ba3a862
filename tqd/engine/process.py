"""The LMDB writer in its own process.

Why a process: py-lmdb releases the GIL around every put and delete, and
CPython hands the GIL to a waiting thread on each release. With the writer
as a thread of the server (as it once was), every put of a batch gave the
event loop a slice before the writer could go on: while HTTP was busy, a
batch of 3 ops (17 puts) took 0.42 ms of wall time, 0.15 ms of it on the
CPU, for ~0.03 ms of work. In a process of its own the writer runs in
parallel with the event loop, on its own core.

``spawn`` forks the child before the event loop starts; the child opens LMDB
(creating it on first use), says READY, then applies what the parent sends:
frames of messages (ops, long-poll parks and unparks, stop). All messages
waiting form one round: its small writes go in transactions of up to
``max_batch_ops`` (``Writer.apply_batch``: one transaction, one fsync),
then each big bulk enqueue in one of its own, and each transaction is
answered as soon as it is committed. A reply frame carries the
transaction's results, JSON-encoded (a lease's jobs as raw JSON, passed
through), and the earliest due time it wrote. Parked long-polls wait in the
child (``Writer``'s waiting lists; a parked lease is known by its request id).

A message or an answer that does not decode fails that request with a 500
and one log line; the link, and every other request on it, go on.

The child ignores SIGINT/SIGTERM (the parent drains and then sends STOP) and
exits when the parent's socket closes, so a parent killed with SIGKILL takes
it along; it holds the inherited data-dir lock until it is gone.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import socket
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from ..config import Settings
from ..errors import BY_CODE, Internal, LogDiverged, NotReady, StorageFull, TqdError
from ..queue import ops
from ..queue.core import Core
from ..storage.log import LogRejected, Position
from ..storage.snapshot import SnapshotInvalid
from ..storage.store import Store
from .writer import _STORAGE_ERRORS, PARKED, Commit, Parked, Writer

log = logging.getLogger("tqd.writer")
_LEN = struct.Struct("<I")
READY = b"tqd-writer-ready"


# ---- messages (parent -> child) ------------------------------------------------


class OpMsg(msgspec.Struct, tag=0, array_like=True):
    rid: int
    op: ops.Op


class ParkMsg(msgspec.Struct, tag=1, array_like=True):
    rid: int
    queues: list[str]
    max: int
    worker: str | None
    timeout: float | None


class UnparkMsg(msgspec.Struct, tag=2, array_like=True):
    rid: int


class UnparkAllMsg(msgspec.Struct, tag=3, array_like=True):
    pass


class StopMsg(msgspec.Struct, tag=4, array_like=True):
    pass


class PinMsg(msgspec.Struct, tag=5, array_like=True):
    """Keep the log from ``seq`` on for ``follower`` (seq 0: let go of it)."""

    follower: str
    seq: int


class ApplyMsg(msgspec.Struct, tag=6, array_like=True):
    """Follower: apply these log entries of the leader (answer: the position after them)."""

    rid: int
    entries: list[bytes]


class RestoreMsg(msgspec.Struct, tag=7, array_like=True):
    """Follower: replace the store with the snapshot file at ``path`` (answer: its position)."""

    rid: int
    path: str


class TermMsg(msgspec.Struct, tag=8, array_like=True):
    """Leader: begin ``term`` (write its marker; answer: the position after it)."""

    rid: int
    term: int


class GateMsg(msgspec.Struct, tag=9, array_like=True):
    """Take writes until ``until`` (time.monotonic(), shared by the host's processes); 0
    closes the gate and answers every parked long-poll with nothing."""

    until: float


class BadMsg:
    """A message that failed to decode (never sent; made by the receiver)."""

    def __init__(self, rid: int, message: str) -> None:
        self.rid, self.message = rid, message


Msg = (OpMsg | ParkMsg | UnparkMsg | UnparkAllMsg | StopMsg | PinMsg | ApplyMsg | RestoreMsg
       | TermMsg | GateMsg)
Control = ApplyMsg | RestoreMsg | TermMsg
OK, ERR = 0, 1
# reply frame: (earliest due ms written or None, term, seq, [(rid, OK|ERR, JSON bytes)]); the
# position (term, seq) is the log's after the transaction that the answers come from
Reply = tuple[int | None, int, int, list[tuple[int, int, bytes]]]

_msgs_enc = msgspec.msgpack.Encoder()
_msgs_dec = msgspec.msgpack.Decoder(list[Msg])
_raw_list_dec = msgspec.msgpack.Decoder(list[msgspec.Raw])
_msg_dec = msgspec.msgpack.Decoder(Msg)
_head_dec = msgspec.msgpack.Decoder(list[Any])
_reply_dec = msgspec.msgpack.Decoder(Reply)
_json = msgspec.json.Encoder()
_ERR_DEC = msgspec.json.Decoder(dict[str, Any])
# Each answer is decoded as its op's declared Result (ops.py), except a lease's jobs: they
# cross as raw JSON, because the server only writes them out again as NDJSON lines, so
# decoding them here would cost time and tie this link to the record's field types.
_DEC: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(list[msgspec.Raw] if t is ops.Lease else t.Result)
    for t in ops.Op.__args__
}
_LEASE_DEC = _DEC[ops.Lease]


class _PosDecoder:
    """The answer of a cluster message: a position."""

    def decode(self, body: bytes) -> Position:
        return Position(*_pos_dec.decode(body))


_pos_dec = msgspec.json.Decoder(tuple[int, int])
_POS_DEC: Any = _PosDecoder()


def _frame(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def _split(buf: bytearray) -> list[bytes]:
    """Take the complete frames off the front of buf."""
    out = []
    pos = 0
    while len(buf) - pos >= 4:
        (n,) = _LEN.unpack_from(buf, pos)
        if len(buf) - pos - 4 < n:
            break
        out.append(bytes(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    del buf[:pos]
    return out


# ---- child ---------------------------------------------------------------------


def spawn(settings: Settings, make_writer: Callable[[Store, Core], Writer]) -> WriterHandle:
    """Fork the writer process (before any event loop or thread exists) and wait for READY."""
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            parent_sock.close()
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            _child(child_sock, settings, make_writer)
            code = 0
        except (BrokenPipeError, ConnectionResetError):
            code = 0  # the parent is gone: what was committed stays committed
        except BaseException:  # noqa: BLE001 - report, then leave without running the parent's code
            log.exception("writer process failed")
        finally:
            os._exit(code)
    child_sock.close()
    parent_sock.settimeout(60.0)
    got = b""
    try:
        while len(got) < len(READY):
            chunk = parent_sock.recv(len(READY) - len(got))
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    if got != READY:
        os.waitpid(pid, 0)
        parent_sock.close()
        raise SystemExit("tqd: the writer process could not open the store (see the log above)")
    parent_sock.settimeout(None)
    parent_sock.setblocking(False)
    return WriterHandle(pid, parent_sock)


def _child(sock: socket.socket, settings: Settings,
           make_writer: Callable[[Store, Core], Writer]) -> None:
    store = Store(settings.data_dir, settings.map_size_bytes)
    w = make_writer(store, Core(settings))
    sock.sendall(READY)
    buf = bytearray()
    parked: dict[int, Parked] = {}
    stopping = False
    try:
        while not stopping:
            frames = _split(buf)
            if not frames:  # block for more
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return  # the parent is gone
                buf += chunk
                try:  # and take whatever else is already there
                    while True:
                        chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
                        if not chunk:
                            break
                        buf += chunk
                except BlockingIOError:
                    pass
                continue
            msgs: list[Any] = []
            for f in frames:
                msgs += _decode_msgs(f)
            stopping = _serve(w, msgs, parked, sock)
    finally:
        store.close()


def _decode_msgs(frame: bytes) -> list[Any]:
    """The messages of one frame. One that does not decode is answered with a 500 of its own
    (a bug on this link) instead of taking the frame, or the link, down with it."""
    try:
        return _msgs_dec.decode(frame)
    except (msgspec.DecodeError, ValueError):
        pass
    out: list[Any] = []
    try:
        raws = _raw_list_dec.decode(frame)
    except (msgspec.DecodeError, ValueError):  # not even a list: its requests get their 503
        log.exception("bug: unreadable frame from the server")  # from the write deadline
        return out
    for raw in raws:
        try:
            out.append(_msg_dec.decode(raw))
        except (msgspec.DecodeError, ValueError) as e:
            out.append(BadMsg(_rid_of(raw), f"the writer could not read this request: {e}"))
    return out


def _rid_of(raw: msgspec.Raw) -> int:
    """The request id of an undecodable message ([tag, rid, ...]); 0 if even that is unreadable."""
    try:
        head = _head_dec.decode(raw)
        return head[1] if len(head) > 1 and isinstance(head[1], int) else 0
    except (msgspec.DecodeError, ValueError):
        return 0


class _Round:
    """One round of messages, sorted by what is done with them."""

    def __init__(self) -> None:
        self.out: list[tuple[int, int, bytes]] = []  # answers ready before any commit
        self.small: Writer.Batch = []
        self.big: Writer.Batch = []
        self.unparks: list[int] = []
        self.control: list[Control] = []
        self.stop = self.unpark_all = False


def _sort(w: Writer, msgs: list[Any], parked: dict[int, Parked]) -> _Round:
    """Sort a round's messages; pins and the gate take effect at once."""
    r = _Round()
    for m in msgs:
        if isinstance(m, OpMsg):
            (r.big if _is_big(m.op) else r.small).append((m.op, m.rid))
        elif isinstance(m, ParkMsg):
            r.small.append((Parked(m.queues, m.max, m.worker, m.timeout, m.rid), m.rid))
        elif isinstance(m, UnparkMsg):
            r.unparks.append(m.rid)
        elif isinstance(m, UnparkAllMsg):
            r.unpark_all = True
        elif isinstance(m, PinMsg):
            w.pin_log(m.follower, m.seq)
        elif isinstance(m, GateMsg):
            w.set_gate(m.until)
            if m.until == 0:  # no longer the leader: the long-polls get nothing from here
                for p in w.stop_parking(for_good=False):
                    parked.pop(p.rid, None)
                    r.out.append((p.rid, OK, b"[]"))
        elif isinstance(m, ApplyMsg | RestoreMsg | TermMsg):
            r.control.append(m)
        elif isinstance(m, BadMsg):
            r.out += _refused(m)
        else:
            r.stop = True
    return r


def _serve(w: Writer, msgs: list[Any], parked: dict[int, Parked], sock: socket.socket) -> bool:
    """Apply one round of messages, answering each transaction as soon as it is committed.
    True on STOP."""
    r = _sort(w, msgs, parked)
    out, small, big = r.out, r.small, r.big
    # Small writes first, in transactions of up to max_batch_ops, each answered at once; then
    # each big bulk alone. Requests of one round came concurrently (no order among them), so
    # a 64 MiB bulk that arrived with them need not hold their answers for its own commit.
    chunks = [small[i:i + w.max_batch_ops] for i in range(0, len(small), w.max_batch_ops)]
    for chunk in chunks + [[b] for b in big]:
        due, pos = _apply(w, chunk, parked, out)
        if out or due is not None:
            sock.sendall(_frame(_msgs_enc.encode((due, pos.term, pos.seq, out))))
            out = []
    for c in r.control:
        out.append(_control(w, c))
    for rid in r.unparks:  # after the batch: a park and its unpark may share a frame
        p = parked.pop(rid, None)
        if p is not None and w.unpark(p):
            out.append((rid, OK, b"[]"))
    if r.unpark_all or r.stop:
        for p in w.stop_parking():
            parked.pop(p.rid, None)
            out.append((p.rid, OK, b"[]"))
    if out:
        pos = w.position
        sock.sendall(_frame(_msgs_enc.encode((None, pos.term, pos.seq, out))))
    return r.stop


def _control(w: Writer, m: Control) -> tuple[int, int, bytes]:
    """A cluster message: its answer is the log position after it, or its error."""
    try:
        if isinstance(m, ApplyMsg):
            pos = w.follow(m.entries)
        elif isinstance(m, RestoreMsg):
            pos = w.restore(m.path)
        else:
            pos = w.begin_term(m.term)
    except (LogRejected, SnapshotInvalid) as e:
        return m.rid, ERR, _json.encode(LogDiverged(str(e)).to_wire())
    except _STORAGE_ERRORS as e:
        return m.rid, ERR, _json.encode(StorageFull(f"storage full or failing: {e}").to_wire())
    except Exception as e:  # noqa: BLE001 - a bug: that request fails, not the writer
        log.exception("writer: %s failed", type(m).__name__)
        return m.rid, ERR, _json.encode(Internal(f"internal error: {e}").to_wire())
    return m.rid, OK, _json.encode(list(pos))


def _refused(m: BadMsg) -> list[tuple[int, int, bytes]]:
    """The answer to a message that did not decode (a 500: a bug on this link)."""
    log.error("bug: %s", m.message)
    return [(m.rid, ERR, _json.encode(Internal(m.message).to_wire()))] if m.rid else []


BIG_OP_JOBS = 1000  # an enqueue of more jobs than this is big: it gets its own transaction
BIG_OP_BYTES = 1 << 20  # ... or of more payload bytes than this


def _is_big(op: ops.Op) -> bool:
    if type(op) is not ops.Enqueue or len(op.jobs) == 1:
        return False
    return len(op.jobs) > BIG_OP_JOBS or sum(len(j.payload) for j in op.jobs) > BIG_OP_BYTES


def _apply(w: Writer, chunk: Writer.Batch, parked: dict[int, Parked],
           out: list[tuple[int, int, bytes]]) -> tuple[int | None, Position]:
    """Apply one transaction; answers go to out. Returns the earliest due ms it wrote and
    the log's position after it."""
    try:
        results, served, commit = w.apply_batch(chunk)
    except BaseException as e:  # noqa: BLE001 - a writer must never die silently
        log.exception("writer batch failed")
        results, served, commit = [Internal(str(e))] * len(chunk), [], Commit(w.position)
    for (item, rid), res in zip(chunk, results, strict=True):
        if res is PARKED:
            parked[rid] = item
        else:
            out.append(_result(rid, res))
    for rid, res in served:
        parked.pop(rid, None)
        out.append(_result(rid, res))
    return commit.min_due_ms, commit.position


def _result(rid: int, res: Any) -> tuple[int, int, bytes]:
    if isinstance(res, TqdError):
        return rid, ERR, _json.encode(res.to_wire())
    if isinstance(res, BaseException):
        return rid, ERR, _json.encode(Internal(f"internal error: {res}").to_wire())
    try:
        return rid, OK, _json.encode(res)
    except (TypeError, ValueError, OverflowError) as e:  # a bug: that request fails, not the link
        log.exception("bug: cannot encode the answer to request %d", rid)
        return rid, ERR, _json.encode(Internal(f"internal error: {e}").to_wire())


# ---- parent --------------------------------------------------------------------


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

    def _control(self, msg: Callable[[int], Any]) -> asyncio.Future[Position]:
        assert self._loop is not None, "writer not started"
        rid = next(self._rid)
        fut: asyncio.Future[Any] = self._loop.create_future()
        if not self._gone(fut):
            self._pending[rid] = (fut, _POS_DEC, False)
            self._send(msg(rid))
        return fut

    def apply_entries(self, entries: list[bytes]) -> asyncio.Future[Position]:
        """Follower: apply a leader's log entries (LogDiverged if they do not continue the
        log); the position after them."""
        return self._control(lambda rid: ApplyMsg(rid, entries))

    def restore(self, path: str) -> asyncio.Future[Position]:
        """Follower: replace the store with a snapshot file; its position."""
        return self._control(lambda rid: RestoreMsg(rid, path))

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
                due, term, seq, items = _reply_dec.decode(f)
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
