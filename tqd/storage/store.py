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
qstat      q                                          QStat (counters, paused)
meta       b"meta"                                    Meta (sequences, last op time)
log        seq:u64                                    log.Entry (node-local)
local      b"local"                                   log.LocalMeta (node-local)
=========  =========================================  ===========================

Every put and delete to the replicated sub-databases (all but ``log`` and
``local``) is also recorded in the transaction (``Tx.fx``) and written as the
commit's log entry (see log.py).

With a keyring (``--encryption-key-file``, crypt.py) the ``spec`` and ``extra`` values are
sealed before they are put (so the log, the snapshots and the followers carry ciphertext
only) and opened when read: ``SealedReadTx``/``SealedTx``. Without one, the plain classes
do no extra work at all.

Leasing takes the first entries under ``q NUL``: O(log n) whatever the backlog.
Every put and delete is counted (``Tx.puts``/``Tx.dels``) so benchmarks and
tests can report write amplification per transition.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lmdb
import msgspec

from ..queue.records import DUE_BATCH, JobSpec, JobState, Meta, MetaV1, QStat
from .log import (
    DEAD,
    DUE,
    EFFECTS,
    EXTRA,
    KEYS,
    LOCAL,
    LOG_FORMAT,
    META,
    QIDX,
    QSTAT,
    READY,
    REPLICATED,
    SPEC,
    STATE,
    TERM_START,
    Effects,
    Entry,
    FormatTooNew,
    LocalMeta,
    LogRejected,
    Position,
    check_next,
    entry_decoder,
    entry_encoder,
    local_decoder,
)

if TYPE_CHECKING:
    from .crypt import Keyring

_U64 = struct.Struct(">Q")
_DUE = struct.Struct(">QB")
_READY = struct.Struct(">BQ")
_enc = msgspec.msgpack.Encoder()
_spec_dec = msgspec.msgpack.Decoder(JobSpec)
_state_dec = msgspec.msgpack.Decoder(JobState)
_qstat_dec = msgspec.msgpack.Decoder(QStat)
_meta_dec = msgspec.msgpack.Decoder(Meta)
_DBS = REPLICATED + LOCAL


MAX_ID_BYTES = 400  # a job id longer than this is no job's (LMDB keys end at 511 bytes)


class StorageFailed(Exception):
    """A commit failed in the filesystem (full, or an I/O error): LMDB kept the last commit."""


def _qp(queue: str) -> bytes:
    return queue.encode() + b"\x00"


class Store:
    """The LMDB environment. Writes only through ``write()``, from the one writer (the writer
    process), or ``apply_entries`` on a follower; the server process opens it read-only."""

    def __init__(self, path: Path, map_size: int, readonly: bool = False,
                 keys: Keyring | None = None) -> None:
        """``readonly``: this process only reads; another one (the writer process) writes.
        ``keys``: seal job data with them (and open it); None: store it as it is."""
        self.keys = keys
        self._read_tx: type[ReadTx] = ReadTx if keys is None else SealedReadTx
        self._write_tx: type[Tx] = Tx if keys is None else SealedTx
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
        self.codes: list[Any] = [self.dbs[name] for name in REPLICATED]  # by effect code
        if not readonly:
            self._upgrade()

    def _upgrade(self) -> None:
        """Give a new store its LocalMeta; bring a format-1 store (tqd 0.1) to this format;
        refuse a store of a newer format."""
        with self.env.begin(write=True) as t:
            raw = t.get(b"local", db=self.dbs["local"])
            if raw is not None:
                local = local_decoder.decode(raw)
                if local.version > LOG_FORMAT:
                    raise FormatTooNew(
                        f"the data dir was written by a newer tqd (store format {local.version}; "
                        f"this tqd reads format {LOG_FORMAT}): run the newer tqd")
                return
            local = LocalMeta()
            old = t.get(b"meta", db=self.dbs["meta"])
            if old is not None:  # format 1: Meta held the log's bounds; the log held ops
                v1 = msgspec.msgpack.decode(old, type=MetaV1)
                t.put(b"meta", _enc.encode(Meta(v1.seq, v1.id_ms, v1.id_n, v1.hexlike_ids)),
                      db=self.dbs["meta"])
                t.drop(self.dbs["log"], delete=False)  # ops no follower could read
                local.log_seq, local.log_first = v1.log_seq, v1.log_seq + 1
            t.put(b"local", _enc.encode(local), db=self.dbs["local"])

    def close(self) -> None:
        self.env.close()

    def read(self) -> ReadTx:
        return self._read_tx(self, self.env.begin(buffers=False))

    def write(self, meta: Meta, local: LocalMeta, qstats: dict[str, QStat]) -> Tx:
        return self._write_tx(self, self.env.begin(write=True), meta, local, qstats)

    def load_meta(self) -> Meta:
        with self.env.begin() as t:
            raw = t.get(b"meta", db=self.dbs["meta"])
        return _meta_dec.decode(raw) if raw else Meta()

    def load_local(self) -> LocalMeta:
        with self.env.begin() as t:
            return _read_local(t, self.dbs["local"])

    def position(self) -> Position:
        return self.load_local().position

    def snapshot(self, dest: Path) -> Position:
        """A consistent copy of the whole store in ``dest`` (an LMDB environment directory,
        created; it must not hold one), and the log position it is at. The copy is made
        inside one read transaction: it is exactly the store as of one commit, while the
        writer goes on. A follower opens it and fetches the log from that position."""
        dest.mkdir(parents=True, exist_ok=False)
        with self.env.begin() as t:
            pos = _read_local(t, self.dbs["local"]).position
            self.env.copy(str(dest), compact=True, txn=t)
        return pos

    def apply_entries(self, raws: list[bytes], keep_entries: int, keep_bytes: int) -> Position:
        """Follower side: apply log entries (as the leader wrote them) in one transaction,
        synced, and keep them in this store's own log at the same positions. Refuses
        (LogRejected, nothing applied) entries that do not continue this log."""
        dbs = self.codes
        with self.env.begin(write=True) as t:
            local = _read_local(t, self.dbs["local"])
            for raw in raws:
                try:
                    e = entry_decoder.decode(raw)
                except (msgspec.DecodeError, TypeError) as exc:
                    raise LogRejected(f"an entry after {local.log_seq} does not decode: {exc}") from exc
                check_next(local, e)
                for code, key, value in e.effects():
                    if value is None:
                        if not t.delete(key, db=dbs[code]):  # the leader logs only real deletes
                            raise LogRejected(f"entry {e.seq} deletes a key this store does "
                                              f"not hold (in {REPLICATED[code]}): it has diverged")
                    else:
                        t.put(key, value, db=dbs[code])
                t.put(_U64.pack(e.seq), raw, db=self.dbs["log"])
                local.term, local.log_seq = e.term, e.seq
                local.log_bytes += len(raw)
            _truncate(t, self.dbs["log"], local, keep_entries, keep_bytes, None, 0)
            t.put(b"local", _enc.encode(local), db=self.dbs["local"])
        return local.position


def _read_local(t: Any, db: Any) -> LocalMeta:
    raw = t.get(b"local", db=db)
    return local_decoder.decode(raw) if raw is not None else LocalMeta()


def _truncate(t: Any, db: Any, m: LocalMeta, keep_entries: int, keep_bytes: int,
              floor: int | None, hard_bytes: int) -> None:
    """Drop the oldest log entries beyond both bounds, in chunks rather than at every commit.
    ``floor``: the lowest seq a follower still needs; entries from it on stay, unless the log
    is over ``hard_bytes`` (0: no such cap), when that follower must re-bootstrap instead."""
    over_count = (m.log_seq - m.log_first + 1) - keep_entries
    if over_count < 1024 and m.log_bytes <= keep_bytes + keep_bytes // 4:
        return
    with t.cursor(db=db) as c:
        if not c.first():
            return
        while c.key():
            count = m.log_seq - m.log_first + 1
            if count <= keep_entries and m.log_bytes <= keep_bytes:
                break
            seq = _U64.unpack(c.key())[0]
            if floor is not None and seq >= floor and not (hard_bytes and m.log_bytes > hard_bytes):
                break
            m.log_bytes -= len(c.value())
            m.log_first = seq + 1
            c.delete()


class ReadTx:
    """Read-only view; also the read half of Tx."""

    def __init__(self, store: Store, txn: Any) -> None:
        self.store = store
        self.txn = txn
        d = store.dbs
        self._spec, self._state, self._extra = d["spec"], d["state"], d["extra"]
        self._ready, self._due, self._qidx, self._dead = d["ready"], d["due"], d["qidx"], d["dead"]
        self._keys, self._log, self._qstat, self._meta = d["keys"], d["log"], d["qstat"], d["meta"]
        self._local = d["local"]

    def close(self) -> None:
        self.txn.abort()

    def __enter__(self) -> ReadTx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # jobs
    def get_spec(self, jid: str) -> JobSpec | None:
        k = jid.encode()
        if not 0 < len(k) <= MAX_ID_BYTES:  # no such job (and no key LMDB would refuse)
            return None
        raw = self.txn.get(k, db=self._spec)
        return None if raw is None else _spec_dec.decode(raw)

    def get_state(self, jid: str) -> JobState | None:
        k = jid.encode()
        if not 0 < len(k) <= MAX_ID_BYTES:
            return None
        raw = self.txn.get(k, db=self._state)
        return None if raw is None else _state_dec.decode(raw)

    def get_extra(self, jid: str, kind: bytes) -> bytes | None:
        k = jid.encode()
        if not 0 < len(k) <= MAX_ID_BYTES:
            return None
        raw = self.txn.get(k + b"\x00" + kind, db=self._extra)
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

    def log_entries(self, after: int, limit: int, max_bytes: int = 0) -> list[tuple[int, bytes]]:
        """(seq, entry) of the log entries after ``after``: at most ``limit``, and (if
        max_bytes) stopping once their size reaches max_bytes (at least one entry)."""
        out = []
        size = 0
        with self.txn.cursor(db=self._log) as c:
            if c.set_range(_U64.pack(after + 1)):
                for k, v in c:
                    out.append((_U64.unpack(k)[0], bytes(v)))
                    size += len(v)
                    if len(out) >= limit or (max_bytes and size >= max_bytes):
                        break
        return out


class Tx(ReadTx):
    """A write transaction with typed mutations, counters cached per transaction.

    ``meta`` and ``qstats`` passed in are the writer's committed copies; this
    transaction changes private copies, and the writer adopts them only after
    a successful commit (``dirty_qstats``/``meta``).
    """

    def __init__(self, store: Store, txn: Any, meta: Meta, local: LocalMeta,
                 qstats: dict[str, QStat]) -> None:
        super().__init__(store, txn)
        self.meta = msgspec.structs.replace(meta)
        self.local = msgspec.structs.replace(local)
        self.fx: Effects = []  # the effects on replicated dbs, in order (flat triples): the log entry
        self._codes = store.codes
        self._committed_qstats = qstats
        self.dirty_qstats: dict[str, QStat] = {}
        self.deleted_qstats: set[str] = set()  # queues deleted by this transaction
        self.puts = 0
        self.dels = 0
        self.ready_queues: dict[str, int] = {}  # queue -> jobs made ready (wake-ups)
        # seals a value before it is put (SealedTx: the store's keys); None: stored as it is
        self._seal: Callable[[int, bytes, bytes], bytes] | None = None
        self.min_due_ms: int | None = None  # earliest due entry added
        # (queue, seconds) seen by this transaction, for metrics once it commits: how long
        # each leased job waited since it was ready, how long each completed job ran
        self.waits: list[tuple[str, float]] = []
        self.runs: list[tuple[str, float]] = []
        self.finished: list[str] = []  # jobs this transaction completed, cancelled or killed

    @property
    def writes(self) -> int:
        return self.puts + self.dels

    def _put(self, code: int, key: bytes, value: bytes) -> None:
        self.txn.put(key, value, db=self._codes[code])
        self.fx += (code, key, value)
        self.puts += 1

    def _del(self, code: int, key: bytes) -> None:
        if self.txn.delete(key, db=self._codes[code]):
            self.fx += (code, key, None)
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
        self._del(QSTAT, queue.encode())

    # jobs
    def put_spec(self, jid: str, spec: JobSpec) -> None:
        self._put(SPEC, jid.encode(), _enc.encode(spec))

    def put_state(self, jid: str, st: JobState) -> None:  # the hottest write: inlined _put
        k, v = jid.encode(), _enc.encode(st)
        self.txn.put(k, v, db=self._state)
        self.fx += (STATE, k, v)
        self.puts += 1

    def put_fresh(self, queue: str, ready_ms: int,
                  rows: list[tuple[str, JobSpec, JobState, int]]) -> None:
        """New ready jobs of one queue: per row (id, spec, state, priority) the spec, the
        state, the listing entry (spec.qseq) and the ready entry (state.ready_seq). The same
        writes as put_spec + put_state + index_put + ready_put, in one tight loop (a sealed
        store's SealedTx seals each spec: ``_seal``)."""
        put, enc, fx, seal = self.txn.put, _enc.encode, self.fx.extend, self._seal
        sdb, tdb, qdb, rdb = self._spec, self._state, self._qidx, self._ready
        qp, ready_val, u64, rkey = _qp(queue), _U64.pack(ready_ms), _U64.pack, _READY.pack
        for jid, spec, st, prio in rows:
            k = jid.encode()
            sv = enc(spec) if seal is None else seal(SPEC, k, enc(spec))
            tv, qk, rk, rv = enc(st), qp + u64(spec.qseq), qp + rkey(9 - prio, st.ready_seq), ready_val + k
            put(k, sv, db=sdb)
            put(k, tv, db=tdb)
            put(qk, k, db=qdb)
            put(rk, rv, db=rdb)
            fx((SPEC, k, sv, STATE, k, tv, QIDX, qk, k, READY, rk, rv))
        self.puts += 4 * len(rows)
        self.ready_queues[queue] = self.ready_queues.get(queue, 0) + len(rows)

    def put_extra(self, jid: str, kind: bytes, value: bytes) -> None:
        self._put(EXTRA, jid.encode() + b"\x00" + kind, value)

    def delete_job(self, jid: str, extras: int) -> None:
        k = jid.encode()
        self._del(SPEC, k)
        self._del(STATE, k)
        for bit, kind in ((1, b"r"), (2, b"p"), (4, b"e")):
            if extras & bit:
                self._del(EXTRA, k + b"\x00" + kind)

    def key_put(self, queue: str, key: str, jid: str) -> None:
        self._put(KEYS, _qp(queue) + key.encode(), jid.encode())

    def key_del(self, queue: str, key: str) -> None:
        self._del(KEYS, _qp(queue) + key.encode())

    # ready index
    def ready_put(self, queue: str, priority: int, seq: int, ready_ms: int, jid: str) -> None:
        self._put(READY, _qp(queue) + _READY.pack(9 - priority, seq), _U64.pack(ready_ms) + jid.encode())
        self.ready_queues[queue] = self.ready_queues.get(queue, 0) + 1

    def ready_del(self, queue: str, priority: int, seq: int) -> None:
        self._del(READY, _qp(queue) + _READY.pack(9 - priority, seq))

    def ready_take(self, queue: str, n: int) -> list[tuple[int, str]]:
        """Remove and return up to n (priority, id) in lease order."""
        p = _qp(queue)
        out: list[tuple[int, str]] = []
        with self.txn.cursor(db=self._ready) as c:
            if not c.set_range(p):
                return out
            lp = len(p)
            key, value, delete, fx = c.key, c.value, c.delete, self.fx.extend
            while len(out) < n:
                k = key()
                if k[:lp] != p:  # also the end: key() is b"" past the last entry
                    break
                out.append((9 - k[lp], value()[8:].decode()))
                fx((READY, k, None))
                delete()  # moves to the next entry
            self.dels += len(out)
        return out

    # due index
    def due_put(self, ms: int, kind: int, jid: str) -> None:
        self._put(DUE, _DUE.pack(ms, kind) + jid.encode(), b"")
        if self.min_due_ms is None or ms < self.min_due_ms:
            self.min_due_ms = ms

    def due_del(self, ms: int, kind: int, jid: str) -> None:
        self._del(DUE, _DUE.pack(ms, kind) + jid.encode())

    def due_put_batch(self, ms: int, kind: int, jids: list[str]) -> None:
        """One entry for many jobs due at the same ms (kind gets DUE_BATCH)."""
        key = _DUE.pack(ms, kind | DUE_BATCH) + _U64.pack(self.next_seq())
        self._put(DUE, key, b"\x00".join(j.encode() for j in jids))
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
                self.fx += (DUE, k, None)
                c.delete()
                self.dels += 1
        return out

    # listing and dead indexes
    def index_put(self, which: str, queue: str, qseq: int, jid: str) -> None:
        self._put(QIDX if which == "qidx" else DEAD, _qp(queue) + _U64.pack(qseq), jid.encode())

    def index_del(self, which: str, queue: str, qseq: int) -> None:
        self._del(QIDX if which == "qidx" else DEAD, _qp(queue) + _U64.pack(qseq))

    # log and commit
    def _log_append(self, e: Entry) -> None:
        m = self.local
        check_next(m, e)
        raw = entry_encoder.encode(e)
        self.txn.put(_U64.pack(e.seq), raw, db=self._log)
        self.puts += 1
        m.term, m.log_seq = e.term, e.seq
        m.log_bytes += len(raw)

    def begin_term(self, term: int) -> None:
        """Open a leadership: the term-start marker (raises WrongTerm for a term not above
        the log's)."""
        self._log_append(Entry(term, self.local.log_seq + 1, TERM_START))
        self.save_local()

    def log_truncate(self, keep_entries: int, keep_bytes: int, floor: int | None = None,
                     hard_bytes: int = 0) -> None:
        """Drop the oldest entries beyond both bounds (see _truncate)."""
        _truncate(self.txn, self._log, self.local, keep_entries, keep_bytes, floor, hard_bytes)

    def save_local(self) -> None:
        """Write the node-local bookkeeping (a transaction that only truncated the log)."""
        self.txn.put(b"local", _enc.encode(self.local), db=self._local)

    def finish(self, term: int) -> None:
        """Write the counters this transaction changed (once per commit), then its effects as
        one log entry of ``term``, and the node-local bookkeeping."""
        put, fx = self.txn.put, self.fx.extend
        for q, qs in self.dirty_qstats.items():  # (counters are not counted as writes)
            k, v = q.encode(), _enc.encode(qs)
            put(k, v, db=self._qstat)
            fx((QSTAT, k, v))
        v = _enc.encode(self.meta)
        put(b"meta", v, db=self._meta)
        fx((META, b"meta", v))
        self._log_append(Entry(term, self.local.log_seq + 1, EFFECTS, self.fx))
        self.save_local()

    def commit(self) -> None:
        try:
            self.txn.commit()
        except lmdb.Error as e:  # ENOSPC, or EIO as a full tmpfs reports it: nothing committed
            raise StorageFailed(str(e)) from e

    def abort(self) -> None:
        self.txn.abort()


# ---- encryption at rest: the same transactions, sealing and opening job data ---------------

def _sealed_get_spec(self: SealedReadTx | SealedTx, jid: str) -> JobSpec | None:
    k = jid.encode()
    if not 0 < len(k) <= MAX_ID_BYTES:
        return None
    raw = self.txn.get(k, db=self._spec)
    return None if raw is None else _spec_dec.decode(self.keys.open(SPEC, k, raw))


def _sealed_get_extra(self: SealedReadTx | SealedTx, jid: str, kind: bytes) -> bytes | None:
    k = jid.encode()
    if not 0 < len(k) <= MAX_ID_BYTES:
        return None
    k += b"\x00" + kind
    raw = self.txn.get(k, db=self._extra)
    return None if raw is None else bytes(self.keys.open(EXTRA, k, raw))


class SealedReadTx(ReadTx):
    """ReadTx of an encrypted store: spec and extra values are opened as they are read."""

    def __init__(self, store: Store, txn: Any) -> None:
        super().__init__(store, txn)
        assert store.keys is not None
        self.keys: Keyring = store.keys

    get_spec = _sealed_get_spec
    get_extra = _sealed_get_extra


class SealedTx(Tx):
    """Tx of an encrypted store: spec and extra values are sealed before they are put (and
    recorded in the log), opened as they are read."""

    def __init__(self, store: Store, txn: Any, meta: Meta, local: LocalMeta,
                 qstats: dict[str, QStat]) -> None:
        super().__init__(store, txn, meta, local, qstats)
        assert store.keys is not None
        self.keys: Keyring = store.keys
        self._seal = self.keys.seal

    get_spec = _sealed_get_spec
    get_extra = _sealed_get_extra

    def put_spec(self, jid: str, spec: JobSpec) -> None:
        k = jid.encode()
        self._put(SPEC, k, self.keys.seal(SPEC, k, _enc.encode(spec)))

    def put_extra(self, jid: str, kind: bytes, value: bytes) -> None:
        k = jid.encode() + b"\x00" + kind
        self._put(EXTRA, k, self.keys.seal(EXTRA, k, value))
