"""The single LMDB writer with group commit, and the parked long-polls.

``Writer.apply_batch`` is the engine; it runs in the writer process
(process.py), which hands it every op waiting (up to ``max_batch_ops``). It
applies them in order inside one write transaction, appends the
transaction's effects to the replication log as one entry at the next
position ``(term, seq)`` (tqd.storage.log), commits (fsync) once, and only
then returns the results, with that commit's position (what a sync-replica
gate waits for). The event loop never touches an LMDB write transaction.

An op's time never goes back: it is clamped to the latest op time already
committed (kept in the replicated Meta), so a leader whose clock is behind its
predecessor's does not move jobs back in time.

Long-poll leases that find nothing are *parked* here, in the writer, per
queue. When ops of a batch make jobs ready in a queue, parked leases of that
queue are served in the same transaction, first come first served: the job
goes out with the enqueue's own fsync (no second commit, no wake-up round
trip, no thundering herd), and no wake-up can be lost because parking and
enqueueing are ordered by the one thread of the writer process.

An op that raises a TqdError has changed nothing (the core validates
before writing) and just gets its error. Anything else is a bug: the whole
batch is aborted and each op is retried alone, so one bad op cannot take
its neighbours down. A full map or disk fails the batch with 507.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from typing import Any

import lmdb
import msgspec

from ..clock import Clock, SystemClock
from ..errors import Internal, NoLeader, StorageFull, TqdError
from ..queue import ops
from ..queue.core import Core
from ..queue.records import Meta, QStat
from ..storage.log import NOWHERE, LocalMeta, Position
from ..storage.store import StorageFailed, Store, Tx
from .stats import Stats

log = logging.getLogger("tqd.writer")
PARKED = object()  # result placeholder: this lease waits in the writer
# the store refused a batch (map full, disk full or failing): 507, not a bug
_STORAGE_ERRORS = (lmdb.MapFullError, lmdb.DiskError, StorageFailed)


class Commit:
    """What a committed batch means for the event loop (timers)."""

    __slots__ = ("min_due_ms", "position", "finished")

    def __init__(self, position: Position = NOWHERE) -> None:
        self.min_due_ms: int | None = None
        self.position = position  # the log's position after this commit
        self.finished: list[str] = []  # watched jobs it finished (Writer.watched)

    def merge(self, other: Commit) -> None:
        """Fold in another commit of the same round (the earliest due time and the latest
        position win)."""
        if other.min_due_ms is not None and (self.min_due_ms is None
                                             or other.min_due_ms < self.min_due_ms):
            self.min_due_ms = other.min_due_ms
        self.position = max(self.position, other.position)
        self.finished += other.finished


class Parked:
    """A long-poll lease waiting in the writer; ``rid`` is its request's id (the answer's
    address in process.py)."""

    __slots__ = ("queues", "max", "worker", "timeout", "rid", "claimed", "cancelled")

    def __init__(self, queues: list[str], max_jobs: int, worker: str | None,
                 timeout: float | None, rid: int) -> None:
        self.queues, self.max, self.worker, self.timeout = queues, max_jobs, worker, timeout
        self.rid = rid
        self.claimed = False  # served: its jobs went out in a batch's served list
        self.cancelled = False  # the requester gave up (or it was answered): never serve it


class Writer:
    def __init__(self, store: Store, core: Core, *, max_batch_ops: int, log_keep_entries: int,
                 clock: Clock | None = None, log_keep_bytes: int = 64 << 20,
                 log_max_bytes: int = 0, clustered: bool = False) -> None:
        """``log_keep_*``: the log kept when no follower needs more; ``log_max_bytes``: the
        most it may grow to for a follower that lags (0: 4 × log_keep_bytes).
        ``clustered``: the write gate starts closed and terms come from the cluster's lease
        (``begin_term``, ``set_gate``); else this store leads alone, forever."""
        self.store = store
        self.core = core
        self.clock = clock or SystemClock()
        self.max_batch_ops = max_batch_ops
        self.log_keep_entries = log_keep_entries
        self.log_keep_bytes = log_keep_bytes
        self.log_max_bytes = log_max_bytes or 4 * log_keep_bytes
        self.log_pins: dict[str, int] = {}  # follower -> the first seq it still needs
        self.stats = Stats()
        self.meta: Meta = store.load_meta()
        self.local: LocalMeta = store.load_local()
        self.term = self.local.term
        self.qstats: dict[str, QStat] = {}
        with store.read() as rt:
            self.qstats.update(rt.all_qstats())
        # The write gate: ops commit only before this time (monotonic, which every process of
        # the host shares): a cluster leader's lease renewals move it on; 0 = closed.
        self.gate_until = 0.0 if clustered else math.inf
        self._stale = False  # a follower applied entries: meta, local, qstats must be re-read
        self.watched: set[str] = set()  # jobs someone waits to finish: reported when they do
        if self.term == 0 and not clustered:  # a new store: its first leadership
            self.begin_term(1)
        self._parked: dict[str, deque[Parked]] = {}
        # entries added to _parked since the last sweep, and how many the sweep kept: a lease
        # that timed out or was served stays in the deques of its other queues until a sweep
        self._parked_added = 0
        self._parked_kept = 0
        self._full_since: float | None = None  # storage full since (monotonic), None = not
        self._parking = True  # False once draining: answer empty instead of waiting

    # ---- parked long-polls ---------------------------------------------------------

    def unpark(self, p: Parked) -> bool:
        """Give up waiting. False if it was already served (its jobs went out)."""
        if p.claimed:
            return False
        p.cancelled = True
        return True

    def stop_parking(self, for_good: bool = True) -> list[Parked]:
        """Give up every parked lease and return them (each to answer []); ``for_good``
        (draining): park no more."""
        if for_good:
            self._parking = False
        waiting = list({id(p): p for dq in self._parked.values() for p in dq}.values())
        self._parked.clear()
        return [p for p in waiting if not p.cancelled and self.unpark(p)]

    def parked_entries(self) -> tuple[int, int]:
        """(queue names with a waiting list, entries in those lists), for tests and metrics."""
        return len(self._parked), sum(len(dq) for dq in self._parked.values())

    def _sweep_parked(self) -> None:
        """Drop given-up and served leases from every waiting list, and the empty lists.
        Run when as many entries were added since the last sweep as it kept (at least 1024):
        the lists stay within about twice what is really waiting, and a sweep's cost is
        paid for by the parks that came before it."""
        kept = 0
        for q in list(self._parked):
            dq = deque(x for x in self._parked[q] if not (x.cancelled or x.claimed))
            if dq:
                self._parked[q] = dq
                kept += len(dq)
            else:
                del self._parked[q]
        self._parked_added, self._parked_kept = 0, kept

    # ---- log -------------------------------------------------------------------

    @property
    def position(self) -> Position:
        return self.local.position

    def set_gate(self, until: float) -> None:
        """Take writes until ``until`` (time.monotonic()); 0 closes the gate at once."""
        self.gate_until = until

    @property
    def leading(self) -> bool:
        return time.monotonic() < self.gate_until

    def follow(self, raws: list[bytes]) -> Position:
        """Follower: apply a leader's log entries (see Store.apply_entries)."""
        if self.leading:
            raise RuntimeError("a leader does not apply another node's log")
        self._stale = True
        return self.store.apply_entries(raws, self.log_keep_entries, self.log_keep_bytes)

    def restore(self, path: str) -> Position:
        """Follower: replace the whole store with a leader's snapshot (storage.snapshot)."""
        if self.leading:
            raise RuntimeError("a leader does not restore another node's snapshot")
        from ..storage.snapshot import restore

        self._stale = True
        return restore(self.store, path)

    def _reload(self) -> None:
        """Read back what a follower's applies changed under this writer."""
        self.meta, self.local = self.store.load_meta(), self.store.load_local()
        self.term = self.local.term
        with self.store.read() as rt:
            self.qstats = dict(rt.all_qstats())
        self._stale = False

    def begin_term(self, term: int) -> Position:
        """Lead in ``term`` from now on: write its term-start marker (one commit). Raises
        log.WrongTerm unless term is above the log's. Call between batches."""
        if self._stale:
            self._reload()
        self.log_pins.clear()  # a new leadership: its followers pin the log anew
        tx = self.store.write(self.meta, self.local, self.qstats)
        try:
            tx.begin_term(term)
            tx.commit()
        except BaseException:
            tx.abort()
            raise
        self.local, self.term = tx.local, term
        return self.position

    def pin_log(self, follower: str, seq: int) -> None:
        """Keep the log from ``seq`` on for this follower (its next fetch), within
        log_max_bytes; the cluster calls it as followers fetch. seq 0: let go of it."""
        if seq > 0:
            self.log_pins[follower] = seq
        else:
            self.log_pins.pop(follower, None)

    @property
    def _log_floor(self) -> int | None:
        """The lowest seq a follower still needs (None: no follower pins the log)."""
        return min(self.log_pins.values()) if self.log_pins else None

    def apply_now(self, op: ops.Op) -> Any:
        """Apply one op in a transaction of its own: for tests and tools, not the server."""
        results, _, _ = self.apply_batch([(op, None)])
        res = results[0]
        if isinstance(res, BaseException):
            raise res
        return res

    # ---- batches ---------------------------------------------------------------

    Batch = list[tuple[Any, Any]]  # (op or Parked, the caller's tag for its answer)
    Served = list[tuple[int, Any]]  # (rid of a parked lease, its jobs)

    def apply_batch(self, batch: Batch) -> tuple[list[Any], Served, Commit]:
        """Apply a batch in one transaction: (results, parked leases served, commit info).
        A result of PARKED means that lease now waits here (it comes back in a later
        batch's served list)."""
        try:
            return self._apply(batch)
        except _Fenced:
            return self._fenced(batch)
        except _STORAGE_ERRORS as e:
            return self._full(batch, e)
        except _Unexpected:
            if len(batch) == 1:
                raise
        # a bug in one op: run each alone so the others still land
        results: list[Any] = []
        served: Writer.Served = []
        commit = Commit()
        for item in batch:
            try:
                res, s, c = self._apply([item])
                results.append(res[0])
                served += s
                commit.merge(c)
            except _Fenced:
                results += self._fenced([item])[0]
            except _STORAGE_ERRORS as e:
                results += self._full([item], e)[0]
            except Exception as e:  # noqa: BLE001
                log.exception("op failed: %r", item[0])
                results.append(Internal(f"internal error: {e}"))
        return results, served, commit

    def _full(self, batch: Batch, e: Exception) -> tuple[list[Any], Served, Commit]:
        """The store could not take the batch (map full, disk full, or the disk failed on
        commit): nothing of it was written; each request gets 507. Logged once per episode
        (until a commit succeeds again), not once per request."""
        if self._full_since is None:
            self._full_since = time.monotonic()
            log.error("storage full or failing, writes refused until it has room: %s", e)
        if isinstance(e, lmdb.MapFullError):
            if any(type(op) in (ops.Purge, ops.DeleteQueue) for op, _ in batch):
                self._shed_log()  # someone is making room: let the deletes fit
            msg = "storage is full (the store reached --map-size-bytes); reads still work"
        else:
            msg = f"storage is full or failing ({e}); reads still work"
        return [StorageFull(msg)] * len(batch), [], Commit(self.position)

    def _shed_log(self) -> None:
        """A purge found the map full: drop the log down to what followers still need (its
        last entry at least), in a transaction of its own, so that the purge's deletes find
        room (each step also writes a log entry). Only for a purge, so that a full store
        stays full for everyone else until room is made; pages freed here are reusable from
        the next transaction on."""
        tx = self.store.write(self.meta, self.local, self.qstats)
        try:
            tx.log_truncate(1, 0, self._log_floor, self.log_max_bytes)
            tx.save_local()
            tx.commit()
        except Exception:  # noqa: BLE001 - best effort: too full even for this
            tx.abort()
            return
        self.local = tx.local

    def _op(self, tx: Tx, op: ops.Op) -> Any:
        """Apply one op. TqdError: nothing changed."""
        if op.now < tx.meta.now:  # never back in time (a new leader's clock may be behind)
            op = msgspec.structs.replace(op, now=tx.meta.now)
        before = tx.writes
        try:
            res = self.core.apply(tx, op)
        except TqdError as e:
            if tx.writes != before:
                raise _Unexpected(f"{type(e).__name__} after writing: {e}") from e
            raise
        except (lmdb.MapFullError, lmdb.DiskError):
            raise
        except Exception as e:
            raise _Unexpected(repr(e)) from e
        if tx.writes != before and op.now > tx.meta.now:
            tx.meta.now = op.now
        return res

    def _lease(self, tx: Tx, p: Parked) -> Any:
        op = ops.Lease(self.clock.now(), p.queues, p.max, p.worker, p.timeout, random.getrandbits(32),
                     self.core.s.max_lease_bytes)
        return self._op(tx, op)

    def _first_lease(self, tx: Tx, p: Parked) -> Any:
        """A parked lease arriving: serve it now, or park it."""
        if p.cancelled:  # given up, or its batch failed and this is the retry alone: answer []
            return []
        jobs = self._lease(tx, p)
        if jobs or not self._parking:
            p.cancelled = True
            return jobs
        for q in p.queues:
            self._parked.setdefault(q, deque()).append(p)
        self._parked_added += len(p.queues)
        if self._parked_added >= max(1024, self._parked_kept):
            self._sweep_parked()
        return PARKED

    def _serve_parked(self, tx: Tx, served: Served, claimed: list[tuple[str, Parked]]) -> None:
        for q in tx.ready_queues:
            dq = self._parked.get(q)
            while dq:
                qs = tx.peek_qstat(q)
                if qs is None or qs.paused or qs.queued == 0:
                    break
                p = dq.popleft()
                if p.cancelled or p.claimed:
                    continue
                p.claimed = True
                claimed.append((q, p))
                served.append((p.rid, self._lease(tx, p)))

    def _fenced(self, batch: Batch) -> tuple[list[Any], Served, Commit]:
        """Not the leader (or no longer sure to be): nothing is applied, each gets 503."""
        for item, _ in batch:
            if isinstance(item, Parked):
                item.cancelled = True
        err = NoLeader("this node is not the leader now (or its leadership lapsed); "
                       "nothing was applied: retry on the leader")
        return [err] * len(batch), [], Commit(self.position)

    def _apply(self, batch: Batch) -> tuple[list[Any], Served, Commit]:
        if not self.leading or self._stale:
            return self._fenced(batch)
        t0 = time.perf_counter()
        tx = self.store.write(self.meta, self.local, self.qstats)
        results: list[Any] = []
        served: Writer.Served = []
        claimed: list[tuple[str, Parked]] = []
        try:
            for item, _ in batch:
                try:
                    if isinstance(item, Parked):
                        results.append(self._first_lease(tx, item))
                    else:
                        results.append(self._op(tx, item))
                except TqdError as e:
                    results.append(e)
            if self._parked and tx.ready_queues:
                self._serve_parked(tx, served, claimed)
            if tx.writes:
                tx.log_truncate(self.log_keep_entries, self.log_keep_bytes, self._log_floor,
                                self.log_max_bytes)
                tx.finish(self.term)
                if not self.leading:  # the lease lapsed while this batch ran
                    raise _Fenced
                t_commit = time.perf_counter()
                tx.commit()  # fsync: only now may anyone be told
                commit = self._committed(tx, len(batch), time.perf_counter() - t_commit)
            else:
                tx.abort()
                commit = Commit(self.local.position)
        except BaseException:
            tx.abort()
            for q, p in reversed(claimed):  # their leases were not committed: back to the front
                p.claimed = False
                self._parked.setdefault(q, deque()).appendleft(p)
            for item, _ in batch:
                if isinstance(item, Parked):  # it gets this batch's error: never serve it later
                    item.cancelled = True
            raise
        self.stats.batches += 1
        self.stats.ops += len(batch)
        self.stats.busy_s += time.perf_counter() - t0
        return results, served, commit


    def _committed(self, tx: Tx, ops: int, commit_s: float) -> Commit:
        """Adopt what a transaction committed; what the event loop should know of it."""
        self.stats.commit(ops, commit_s)
        if tx.waits or tx.runs:
            self.stats.latencies(tx.waits, tx.runs)
        self.stats.puts += tx.puts
        self.stats.dels += tx.dels
        if self._full_since is not None:
            log.warning("storage has room again after %.1f s; writes go on",
                        time.monotonic() - self._full_since)
            self._full_since = None
        self.meta, self.local = tx.meta, tx.local
        self.qstats.update(tx.dirty_qstats)
        for q in tx.deleted_qstats:
            self.qstats.pop(q, None)
        commit = Commit(self.local.position)
        commit.min_due_ms = tx.min_due_ms
        if self.watched and tx.finished:
            commit.finished = [j for j in tx.finished if j in self.watched]
            self.watched.difference_update(commit.finished)
        return commit


class _Unexpected(Exception):
    pass


class _Fenced(Exception):
    """The write gate closed before the commit: the transaction is dropped."""
