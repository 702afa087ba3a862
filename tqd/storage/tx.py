"""``Tx``: the write transaction, with typed mutations that record their effects.

Every put and delete to a replicated sub-database is also appended to ``Tx.fx``, which
``finish`` writes as the commit's log entry (log.py), and counted (``puts``/``dels``) for
write amplification. ``put_state``, ``put_fresh`` and ``ready_take`` are the hot paths:
they bind what they use to locals and write without a helper call. ``truncate_log`` keeps
the log within its bounds, here and in a follower's apply (store.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lmdb
import msgspec

from ..queue.records import DUE_BATCH, JobSpec, JobState, Meta, QStat
from .log import (
    DEAD,
    DUE,
    EFFECTS,
    EXTRA,
    KEYS,
    META,
    QIDX,
    QSTAT,
    READY,
    SPEC,
    STATE,
    TERM_START,
    Effects,
    Entry,
    LocalMeta,
    check_next,
    entry_encoder,
)
from .readtx import ReadTx
from .schema import DUE_KEY, READY_KEY, U64, encoder, queue_prefix

if TYPE_CHECKING:
    from .store import Store


class StorageFailed(Exception):
    """A commit failed in the filesystem (full, or an I/O error): LMDB kept the last commit."""


def truncate_log(t: Any, db: Any, m: LocalMeta, keep_entries: int, keep_bytes: int,
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
            seq = U64.unpack(c.key())[0]
            if floor is not None and seq >= floor and not (hard_bytes and m.log_bytes > hard_bytes):
                break
            m.log_bytes -= len(c.value())
            m.log_first = seq + 1
            c.delete()


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
        self._put(SPEC, jid.encode(), encoder.encode(spec))

    def put_state(self, jid: str, st: JobState) -> None:  # the hottest write: inlined _put
        k, v = jid.encode(), encoder.encode(st)
        self.txn.put(k, v, db=self._state)
        self.fx += (STATE, k, v)
        self.puts += 1

    def put_fresh(self, queue: str, ready_ms: int,
                  rows: list[tuple[str, JobSpec, JobState, int]]) -> None:
        """New ready jobs of one queue: per row (id, spec, state, priority) the spec, the
        state, the listing entry (spec.qseq) and the ready entry (state.ready_seq). The same
        writes as put_spec + put_state + index_put + ready_put, in one tight loop (a sealed
        store's SealedTx seals each spec: ``_seal``)."""
        put, enc, fx, seal = self.txn.put, encoder.encode, self.fx.extend, self._seal
        sdb, tdb, qdb, rdb = self._spec, self._state, self._qidx, self._ready
        qp, ready_val, u64, rkey = queue_prefix(queue), U64.pack(ready_ms), U64.pack, READY_KEY.pack
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
        self._put(KEYS, queue_prefix(queue) + key.encode(), jid.encode())

    def key_del(self, queue: str, key: str) -> None:
        self._del(KEYS, queue_prefix(queue) + key.encode())

    # ready index
    def ready_put(self, queue: str, priority: int, seq: int, ready_ms: int, jid: str) -> None:
        self._put(READY, queue_prefix(queue) + READY_KEY.pack(9 - priority, seq),
                  U64.pack(ready_ms) + jid.encode())
        self.ready_queues[queue] = self.ready_queues.get(queue, 0) + 1

    def ready_del(self, queue: str, priority: int, seq: int) -> None:
        self._del(READY, queue_prefix(queue) + READY_KEY.pack(9 - priority, seq))

    def ready_take(self, queue: str, n: int) -> list[tuple[int, str]]:
        """Remove and return up to n (priority, id) in lease order."""
        p = queue_prefix(queue)
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
        self._put(DUE, DUE_KEY.pack(ms, kind) + jid.encode(), b"")
        if self.min_due_ms is None or ms < self.min_due_ms:
            self.min_due_ms = ms

    def due_del(self, ms: int, kind: int, jid: str) -> None:
        self._del(DUE, DUE_KEY.pack(ms, kind) + jid.encode())

    def due_put_batch(self, ms: int, kind: int, jids: list[str]) -> None:
        """One entry for many jobs due at the same ms (kind gets DUE_BATCH)."""
        key = DUE_KEY.pack(ms, kind | DUE_BATCH) + U64.pack(self.next_seq())
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
                ms, kind = DUE_KEY.unpack_from(k)
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
        self._put(QIDX if which == "qidx" else DEAD, queue_prefix(queue) + U64.pack(qseq), jid.encode())

    def index_del(self, which: str, queue: str, qseq: int) -> None:
        self._del(QIDX if which == "qidx" else DEAD, queue_prefix(queue) + U64.pack(qseq))

    # log and commit
    def _log_append(self, e: Entry) -> None:
        m = self.local
        check_next(m, e)
        raw = entry_encoder.encode(e)
        self.txn.put(U64.pack(e.seq), raw, db=self._log)
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
        """Drop the oldest entries beyond both bounds (see truncate_log)."""
        truncate_log(self.txn, self._log, self.local, keep_entries, keep_bytes, floor, hard_bytes)

    def save_local(self) -> None:
        """Write the node-local bookkeeping (a transaction that only truncated the log)."""
        self.txn.put(b"local", encoder.encode(self.local), db=self._local)

    def finish(self, term: int) -> None:
        """Write the counters this transaction changed (once per commit), then its effects as
        one log entry of ``term``, and the node-local bookkeeping."""
        put, fx = self.txn.put, self.fx.extend
        for q, qs in self.dirty_qstats.items():  # (counters are not counted as writes)
            k, v = q.encode(), encoder.encode(qs)
            put(k, v, db=self._qstat)
            fx((QSTAT, k, v))
        v = encoder.encode(self.meta)
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
