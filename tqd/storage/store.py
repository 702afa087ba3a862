"""LMDB schema, key encoding and typed transactions.

Sub-databases (keys are sortable bytes; ``q`` is the queue name, never
containing NUL; integers are big-endian):

=========  =========================================  ===========================
db         key                                        value
=========  =========================================  ===========================
spec       id                                         JobSpec (written once)
state      id                                         JobState (small)
extra      id NUL kind(r|p|e)                         result / progress / errors
ready      q NUL (9-priority):u8 ready_seq:u64        ready_ms:u64 id
due        ms:u64 kind:u8 id                          -
qidx       q NUL qseq:u64                             id   (listing, oldest first)
dead       q NUL qseq:u64                             id
keys       q NUL key                                  id   (idempotency)
log        seq:u64                                    msgpack Op
qstat      q                                          QStat (counters, paused)
meta       b"meta"                                    Meta (sequences)
=========  =========================================  ===========================

Leasing takes the first entries under ``q NUL``: O(log n) whatever the backlog.
Every put and delete is counted (``Tx.puts``/``Tx.dels``) so benchmarks and
tests can report write amplification per transition.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lmdb
import msgspec

from ..queue.records import DUE_BATCH, JobSpec, JobState, Meta, QStat

_U64 = struct.Struct(">Q")
_DUE = struct.Struct(">QB")
_READY = struct.Struct(">BQ")
_enc = msgspec.msgpack.Encoder()
_spec_dec = msgspec.msgpack.Decoder(JobSpec)
_state_dec = msgspec.msgpack.Decoder(JobState)
_qstat_dec = msgspec.msgpack.Decoder(QStat)
_meta_dec = msgspec.msgpack.Decoder(Meta)
_DBS = ("spec", "state", "extra", "ready", "due", "qidx", "dead", "keys", "log", "qstat", "meta")


class StorageFailed(Exception):
    """A commit failed in the filesystem (full, or an I/O error): LMDB kept the last commit."""


def _qp(queue: str) -> bytes:
    return queue.encode() + b"\x00"


class Store:
    """The LMDB environment. Writes only through ``write()``, from the one writer (a process
    of its own, or a thread of the server)."""

    def __init__(self, path: Path, map_size: int, readonly: bool = False) -> None:
        """``readonly``: this process only reads; another one (the writer process) writes."""
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path / "lmdb"),
            readonly=readonly,
            map_size=map_size,
            max_dbs=len(_DBS),
            subdir=True,
            sync=True,
            metasync=True,
            readahead=False,
            max_readers=512,
        )
        self.dbs: dict[str, Any] = {name: self.env.open_db(name.encode()) for name in _DBS}

    def close(self) -> None:
        self.env.close()

    def read(self) -> ReadTx:
        return ReadTx(self, self.env.begin(buffers=False))

    def write(self, meta: Meta, qstats: dict[str, QStat]) -> Tx:
        return Tx(self, self.env.begin(write=True), meta, qstats)

    def load_meta(self) -> Meta:
        with self.env.begin() as t:
            raw = t.get(b"meta", db=self.dbs["meta"])
        return _meta_dec.decode(raw) if raw else Meta()


class ReadTx:
    """Read-only view; also the read half of Tx."""

    def __init__(self, store: Store, txn: Any) -> None:
        self.store = store
        self.txn = txn
        d = store.dbs
        self._spec, self._state, self._extra = d["spec"], d["state"], d["extra"]
        self._ready, self._due, self._qidx, self._dead = d["ready"], d["due"], d["qidx"], d["dead"]
        self._keys, self._log, self._qstat, self._meta = d["keys"], d["log"], d["qstat"], d["meta"]

    def close(self) -> None:
        self.txn.abort()

    def __enter__(self) -> ReadTx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # jobs
    def get_spec(self, jid: str) -> JobSpec | None:
        raw = self.txn.get(jid.encode(), db=self._spec)
        return None if raw is None else _spec_dec.decode(raw)

    def get_state(self, jid: str) -> JobState | None:
        raw = self.txn.get(jid.encode(), db=self._state)
        return None if raw is None else _state_dec.decode(raw)

    def get_extra(self, jid: str, kind: bytes) -> bytes | None:
        raw = self.txn.get(jid.encode() + b"\x00" + kind, db=self._extra)
        return None if raw is None else bytes(raw)

    def key_get(self, queue: str, key: str) -> str | None:
        raw = self.txn.get(_qp(queue) + key.encode(), db=self._keys)
        return None if raw is None else bytes(raw).decode()

    # queues
    def get_qstat(self, queue: str) -> QStat | None:
        raw = self.txn.get(queue.encode(), db=self._qstat)
        return None if raw is None else _qstat_dec.decode(raw)

    def all_qstats(self) -> Iterator[tuple[str, QStat]]:
        with self.txn.cursor(db=self._qstat) as c:
            for k, v in c:
                yield bytes(k).decode(), _qstat_dec.decode(v)

    def qstats_after(self, after: str, limit: int) -> list[tuple[str, QStat]]:
        """Up to limit queues whose names sort after `after` ("" = from the first), in order."""
        out: list[tuple[str, QStat]] = []
        with self.txn.cursor(db=self._qstat) as c:
            if not c.set_range(after.encode() + b"\x00" if after else b""):
                return out
            for k, v in c:
                out.append((bytes(k).decode(), _qstat_dec.decode(v)))
                if len(out) >= limit:
                    break
        return out

    def oldest_ready_ms(self, queue: str) -> int | None:
        """Earliest ready time among the queue's queued jobs (one seek per priority)."""
        best = None
        p = _qp(queue)
        with self.txn.cursor(db=self._ready) as c:
            for inv in range(10):
                prefix = p + bytes([inv])
                if c.set_range(prefix) and bytes(c.key()).startswith(prefix):
                    ms = _U64.unpack_from(c.value())[0]
                    best = ms if best is None or ms < best else best
        return best

    def scan_index(self, which: str, queue: str, after: int) -> Iterator[tuple[int, str]]:
        """(qseq, id) of the per-queue listing index ('qidx') or dead index ('dead')."""
        db = self._qidx if which == "qidx" else self._dead
        p = _qp(queue)
        with self.txn.cursor(db=db) as c:
            if not c.set_range(p + _U64.pack(after + 1)):
                return
            for k, v in c:
                k = bytes(k)
                if not k.startswith(p):
                    return
                yield _U64.unpack_from(k, len(p))[0], bytes(v).decode()

    def first_due_ms(self) -> int | None:
        with self.txn.cursor(db=self._due) as c:
            return _U64.unpack_from(c.key())[0] if c.first() else None

    def log_entries(self, after: int, limit: int) -> list[tuple[int, bytes]]:
        out = []
        with self.txn.cursor(db=self._log) as c:
            if c.set_range(_U64.pack(after + 1)):
                for k, v in c:
                    out.append((_U64.unpack(k)[0], bytes(v)))
                    if len(out) >= limit:
                        break
        return out


class Tx(ReadTx):
    """A write transaction with typed mutations, counters cached per transaction.

    ``meta`` and ``qstats`` passed in are the writer's committed copies; this
    transaction changes private copies, and the writer adopts them only after
    a successful commit (``dirty_qstats``/``meta``).
    """

    def __init__(self, store: Store, txn: Any, meta: Meta, qstats: dict[str, QStat]) -> None:
        super().__init__(store, txn)
        self.meta = msgspec.structs.replace(meta)
        self._committed_qstats = qstats
        self.dirty_qstats: dict[str, QStat] = {}
        self.deleted_qstats: set[str] = set()  # queues deleted by this transaction
        self.puts = 0
        self.dels = 0
        self.ready_queues: dict[str, int] = {}  # queue -> jobs made ready (wake-ups)
        self.min_due_ms: int | None = None  # earliest due entry added

    @property
    def writes(self) -> int:
        return self.puts + self.dels

    def _put(self, key: bytes, value: bytes, db: Any) -> None:
        self.txn.put(key, value, db=db)
        self.puts += 1

    def _del(self, key: bytes, db: Any) -> None:
        if self.txn.delete(key, db=db):
            self.dels += 1

    # counters
    def next_seq(self) -> int:
        self.meta.seq += 1  # meta is written once per commit, not per use
        return self.meta.seq

    def qstat(self, queue: str) -> QStat:
        """The queue's counters, for change (written once at commit)."""
        qs = self.dirty_qstats.get(queue)
        if qs is None:
            base = self._committed_qstats.get(queue)
            if queue in self.deleted_qstats:  # deleted, then used again: a new queue
                self.deleted_qstats.discard(queue)
                base = QStat()
            elif base is None:
                base = self.get_qstat(queue) or QStat()
            qs = msgspec.structs.replace(base, by_prio=list(base.by_prio))
            self.dirty_qstats[queue] = qs
        return qs

    def peek_qstat(self, queue: str) -> QStat | None:
        if queue in self.deleted_qstats:
            return None
        qs = self.dirty_qstats.get(queue) or self._committed_qstats.get(queue)
        return qs if qs is not None else self.get_qstat(queue)

    def delete_qstat(self, queue: str) -> None:
        """Forget a queue (its counters and paused flag); it must hold no jobs."""
        self.dirty_qstats.pop(queue, None)
        self.deleted_qstats.add(queue)
        self._del(queue.encode(), self._qstat)

    # jobs
    def put_spec(self, jid: str, spec: JobSpec) -> None:
        self.txn.put(jid.encode(), _enc.encode(spec), db=self._spec)
        self.puts += 1

    def put_state(self, jid: str, st: JobState) -> None:
        self.txn.put(jid.encode(), _enc.encode(st), db=self._state)
        self.puts += 1

    def put_fresh(self, queue: str, ready_ms: int,
                  rows: list[tuple[str, JobSpec, JobState, int]]) -> None:
        """New ready jobs of one queue: per row (id, spec, state, priority) the spec, the
        state, the listing entry (spec.qseq) and the ready entry (state.ready_seq). The same
        writes as put_spec + put_state + index_put + ready_put, in one tight loop."""
        put, enc = self.txn.put, _enc.encode
        sdb, tdb, qdb, rdb = self._spec, self._state, self._qidx, self._ready
        qp, ready_val, u64, rkey = _qp(queue), _U64.pack(ready_ms), _U64.pack, _READY.pack
        for jid, spec, st, prio in rows:
            k = jid.encode()
            put(k, enc(spec), db=sdb)
            put(k, enc(st), db=tdb)
            put(qp + u64(spec.qseq), k, db=qdb)
            put(qp + rkey(9 - prio, st.ready_seq), ready_val + k, db=rdb)
        self.puts += 4 * len(rows)
        self.ready_queues[queue] = self.ready_queues.get(queue, 0) + len(rows)

    def put_extra(self, jid: str, kind: bytes, value: bytes) -> None:
        self._put(jid.encode() + b"\x00" + kind, value, self._extra)

    def delete_job(self, jid: str, extras: int) -> None:
        k = jid.encode()
        self._del(k, self._spec)
        self._del(k, self._state)
        for bit, kind in ((1, b"r"), (2, b"p"), (4, b"e")):
            if extras & bit:
                self._del(k + b"\x00" + kind, self._extra)

    def key_put(self, queue: str, key: str, jid: str) -> None:
        self._put(_qp(queue) + key.encode(), jid.encode(), self._keys)

    def key_del(self, queue: str, key: str) -> None:
        self._del(_qp(queue) + key.encode(), self._keys)

    # ready index
    def ready_put(self, queue: str, priority: int, seq: int, ready_ms: int, jid: str) -> None:
        self._put(_qp(queue) + _READY.pack(9 - priority, seq), _U64.pack(ready_ms) + jid.encode(),
                  self._ready)
        self.ready_queues[queue] = self.ready_queues.get(queue, 0) + 1

    def ready_del(self, queue: str, priority: int, seq: int) -> None:
        self._del(_qp(queue) + _READY.pack(9 - priority, seq), self._ready)

    def ready_take(self, queue: str, n: int) -> list[tuple[int, str]]:
        """Remove and return up to n (priority, id) in lease order."""
        p = _qp(queue)
        out: list[tuple[int, str]] = []
        with self.txn.cursor(db=self._ready) as c:
            if not c.set_range(p):
                return out
            lp = len(p)
            key, value, delete = c.key, c.value, c.delete
            while len(out) < n:
                k = key()
                if k[:lp] != p:  # also the end: key() is b"" past the last entry
                    break
                out.append((9 - k[lp], value()[8:].decode()))
                delete()  # moves to the next entry
            self.dels += len(out)
        return out

    # due index
    def due_put(self, ms: int, kind: int, jid: str) -> None:
        self.txn.put(_DUE.pack(ms, kind) + jid.encode(), b"", db=self._due)
        self.puts += 1
        if self.min_due_ms is None or ms < self.min_due_ms:
            self.min_due_ms = ms

    def due_del(self, ms: int, kind: int, jid: str) -> None:
        self._del(_DUE.pack(ms, kind) + jid.encode(), self._due)

    def due_put_batch(self, ms: int, kind: int, jids: list[str]) -> None:
        """One entry for many jobs due at the same ms (kind gets DUE_BATCH)."""
        key = _DUE.pack(ms, kind | DUE_BATCH) + _U64.pack(self.next_seq())
        self.txn.put(key, b"\x00".join(j.encode() for j in jids), db=self._due)
        self.puts += 1
        if self.min_due_ms is None or ms < self.min_due_ms:
            self.min_due_ms = ms

    def due_take(self, now_ms: int, n: int) -> list[tuple[int, int, str]]:
        """Remove the entries due by now_ms, oldest first, until about n jobs (a batch entry
        is taken whole); return (ms, kind, id) per job."""
        out: list[tuple[int, int, str]] = []
        with self.txn.cursor(db=self._due) as c:
            if not c.first():
                return out
            while len(out) < n:
                k = bytes(c.key())
                if not k:
                    break
                ms, kind = _DUE.unpack_from(k)
                if ms > now_ms:
                    break
                if kind & DUE_BATCH:
                    out += [(ms, kind, j.decode()) for j in bytes(c.value()).split(b"\x00")]
                else:
                    out.append((ms, kind, k[9:].decode()))
                c.delete()
                self.dels += 1
        return out

    # listing and dead indexes
    def index_put(self, which: str, queue: str, qseq: int, jid: str) -> None:
        self._put(_qp(queue) + _U64.pack(qseq), jid.encode(), self._qidx if which == "qidx" else self._dead)

    def index_del(self, which: str, queue: str, qseq: int) -> None:
        self._del(_qp(queue) + _U64.pack(qseq), self._qidx if which == "qidx" else self._dead)

    # log
    def log_append(self, record: bytes) -> int:
        self.meta.log_seq += 1
        self.meta.log_bytes += len(record)
        self._put(_U64.pack(self.meta.log_seq), record, self._log)
        return self.meta.log_seq

    def log_truncate(self, keep_entries: int, keep_bytes: int) -> None:
        """Drop the oldest entries beyond both bounds; in chunks, not at every commit."""
        m = self.meta
        over_count = (m.log_seq - m.log_first + 1) - keep_entries
        if over_count < 1024 and m.log_bytes <= keep_bytes + keep_bytes // 4:
            return
        with self.txn.cursor(db=self._log) as c:
            if not c.first():
                return
            while c.key():
                count = m.log_seq - m.log_first + 1
                if count <= keep_entries and m.log_bytes <= keep_bytes:
                    break
                m.log_bytes -= len(c.value())
                m.log_first = _U64.unpack(c.key())[0] + 1
                c.delete()

    # commit
    def finish(self) -> None:
        """Write the counters this transaction changed (once per commit)."""
        for q, qs in self.dirty_qstats.items():
            self.txn.put(q.encode(), _enc.encode(qs), db=self._qstat)
        self.txn.put(b"meta", _enc.encode(self.meta), db=self._meta)

    def commit(self) -> None:
        try:
            self.txn.commit()
        except lmdb.Error as e:  # ENOSPC, or EIO as a full tmpfs reports it: nothing committed
            raise StorageFailed(str(e)) from e

    def abort(self) -> None:
        self.txn.abort()
