"""A snapshot of the replicated state, for a follower that cannot continue from the log.

A follower that is new, has diverged from the leader (a zombie's unreplicated tail), or
has fallen behind the log the leader still keeps, starts again from a snapshot: every
key of every replicated sub-database as of one commit, and that commit's log position.
It then fetches the log from that position.

The snapshot is written by ``export`` inside one read transaction (so it is exactly the
store at one commit while the writer goes on) to a file, which the leader then streams
(a slow follower must not hold a read transaction open: that pins pages and grows the
file). ``restore`` applies a snapshot file in one write transaction on the follower: the
replicated sub-databases are emptied and refilled, the log is emptied and starts after
the snapshot's position. A truncated or corrupt file changes nothing.

The file: ``MAGIC``, then frames (u32 little-endian length, msgpack body): a header
``[format, term, seq]``, data frames of flat ``db, key, value`` triples as in a log entry
(tqd.storage.log), and a trailer ``[-1, triples, blake2b hex of every frame before it]``.
Unlike a copy of the LMDB file, it does not depend on LMDB's page layout or map size.
"""

from __future__ import annotations

import hashlib
import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

from .log import LOG_FORMAT, REPLICATED, LocalMeta, Position
from .store import Store, _read_local

MAGIC = b"TQDSNAP1"
_LEN = struct.Struct("<I")
_FRAME_BYTES = 1 << 20  # data per frame, about
_enc = msgspec.msgpack.Encoder()


class SnapshotInvalid(Exception):
    """A snapshot file that is truncated, corrupt, or of another format."""


def export(store: Store, path: Path) -> Position:
    """Write a snapshot of ``store`` to ``path`` (replaced); its position. Blocking: run it
    in a thread."""
    tmp = path.with_name(path.name + ".part")
    try:
        pos = _export(store, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # (a failed export, say a full disk, leaves nothing)
    return pos


def _export(store: Store, tmp: Path) -> Position:
    h = hashlib.blake2b(digest_size=16)
    n = 0
    with tmp.open("wb") as f, store.env.begin() as t:
        pos = _read_local(t, store.dbs["local"]).position
        f.write(MAGIC)
        _frame(f, h, [LOG_FORMAT, pos.term, pos.seq])
        fx: list[Any] = []
        size = 0
        for code, db in enumerate(store.codes):
            with t.cursor(db=db) as c:
                for k, v in c:
                    fx += (code, k, v)
                    size += len(k) + len(v) + 8
                    n += 1
                    if size >= _FRAME_BYTES:
                        _frame(f, h, fx)
                        fx, size = [], 0
        if fx:
            _frame(f, h, fx)
        _frame(f, None, [-1, n, h.hexdigest()])
        f.flush()
        os.fsync(f.fileno())
    return pos


def _frame(f: BinaryIO, h: Any, obj: Any) -> None:
    body = _enc.encode(obj)
    if h is not None:
        h.update(body)
    f.write(_LEN.pack(len(body)))
    f.write(body)


def _frames(f: BinaryIO) -> Any:
    while True:
        head = f.read(4)
        if not head:
            return
        if len(head) < 4:
            raise SnapshotInvalid("the snapshot ends inside a frame header")
        (n,) = _LEN.unpack(head)
        body = f.read(n)
        if len(body) < n:
            raise SnapshotInvalid("the snapshot ends inside a frame")
        yield body


def restore(store: Store, path: str | Path) -> Position:
    """Replace the replicated state of ``store`` (the writer's) with the snapshot at ``path``,
    in one synced transaction; the log starts again after the snapshot's position. Raises
    SnapshotInvalid (nothing changed) for a bad file."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f, store.env.begin(write=True) as t:
        if f.read(len(MAGIC)) != MAGIC:
            raise SnapshotInvalid("not a tqd snapshot")
        frames = _frames(f)
        try:
            head = msgspec.msgpack.decode(next(frames), type=tuple[int, int, int])
        except (StopIteration, msgspec.DecodeError, msgspec.ValidationError) as e:
            raise SnapshotInvalid(f"unreadable snapshot header: {e}") from None
        fmt, term, seq = head
        if fmt != LOG_FORMAT:
            raise SnapshotInvalid(f"snapshot of store format {fmt}; this tqd reads {LOG_FORMAT}")
        h.update(_enc.encode(list(head)))
        for name in REPLICATED + ("log",):
            t.drop(store.dbs[name], delete=False)
        n = 0
        done = False
        for body in frames:
            if done:
                raise SnapshotInvalid("data after the snapshot's trailer")
            fx = msgspec.msgpack.decode(body)
            if isinstance(fx, list) and fx[:1] == [-1]:
                if fx != [-1, n, h.hexdigest()]:
                    raise SnapshotInvalid("the snapshot's checksum or count does not match")
                done = True
                continue
            h.update(body)
            if not isinstance(fx, list) or len(fx) % 3:
                raise SnapshotInvalid("a snapshot frame is not a list of triples")
            dbs = store.codes
            for i in range(0, len(fx), 3):
                code, k, v = fx[i], fx[i + 1], fx[i + 2]
                if (type(code) is not int or not 0 <= code < len(dbs) or type(k) is not bytes
                        or type(v) is not bytes or not k):
                    raise SnapshotInvalid("a snapshot frame holds a malformed key or value")
                t.put(k, v, db=dbs[code])
                n += 1
        if not done:
            raise SnapshotInvalid("the snapshot has no trailer (truncated)")
        local = LocalMeta(term=term, log_seq=seq, log_first=seq + 1, log_bytes=0)
        t.put(b"local", _enc.encode(local), db=store.dbs["local"])
    return local.position
