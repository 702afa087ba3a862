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
frames of messages (tqd.engine.link: ops, long-poll parks and unparks, log pins,
the cluster's write gate, term, apply and restore, stop). All messages
waiting form one round: its small writes go in transactions of up to
``max_batch_ops`` (``Writer.apply_batch``: one transaction, one fsync),
then each big bulk enqueue in one of its own, and each transaction is
answered as soon as it is committed. A reply frame carries the
transaction's results, JSON-encoded (a lease's jobs as raw JSON, passed
through), and the earliest due time it wrote. Parked long-polls wait in the
child (``Writer``'s waiting lists; a parked lease is known by its request id).
The cluster's messages (apply a leader's entries, restore a snapshot, begin a term)
are handled after the round's writes, in the order sent; the gate takes effect at once
(closing it answers every parked long-poll with nothing). The server's side of the
socket is ``RemoteWriter`` (tqd.engine.remote).

A message or an answer that does not decode fails that request with a 500
and one log line; the link, and every other request on it, go on.

The child ignores SIGINT/SIGTERM (the parent drains and then sends STOP) and
exits when the parent's socket closes, so a parent killed with SIGKILL takes
it along; it holds the inherited data-dir lock until it is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from collections.abc import Callable
from typing import Any

import msgspec

from ..config import Settings
from ..errors import Internal, LogDiverged, StorageFull, TqdError
from ..queue import ops
from ..queue.core import Core
from ..storage import crypt
from ..storage.log import LogRejected, Position
from ..storage.snapshot import SnapshotInvalid
from ..storage.store import Store
from . import stats
from .link import (
    ERR,
    OK,
    READY,
    ApplyMsg,
    BadMsg,
    Control,
    GateMsg,
    OpMsg,
    ParkMsg,
    PinMsg,
    RestoreMsg,
    StatsMsg,
    TermMsg,
    UnparkAllMsg,
    UnparkMsg,
    WatchMsg,
    _frame,
    _head_dec,
    _json,
    _msg_dec,
    _msgs_dec,
    _msgs_enc,
    _raw_list_dec,
    _split,
)
from .remote import WriterHandle
from .writer import _STORAGE_ERRORS, PARKED, Commit, Parked, Writer

log = logging.getLogger("tqd.writer")
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
    store = Store(settings.data_dir, settings.map_size_bytes,
                  keys=crypt.load(settings.encryption_key_file))
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
        elif isinstance(m, WatchMsg):
            if m.rid:
                w.watched.update(m.ids)
                r.out.append((m.rid, OK, b"null"))
            else:
                w.watched.difference_update(m.ids)
        elif isinstance(m, StatsMsg):
            w.stats.parked = w.parked_entries()[1]
            w.stats.log_pins = len(w.log_pins)
            r.out.append((m.rid, OK, stats.encode(w.stats)))
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
        due, pos, finished = _apply(w, chunk, parked, out)
        if finished:
            sock.sendall(_frame(_msgs_enc.encode((due, pos.term, pos.seq, out, finished))))
            out = []
        elif out or due is not None:
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
           out: list[tuple[int, int, bytes]]) -> tuple[int | None, Position, list[str]]:
    """Apply one transaction; answers go to out. Returns the earliest due ms it wrote, the
    log's position after it, and the watched jobs it finished."""
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
    return commit.min_due_ms, commit.position, commit.finished


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
