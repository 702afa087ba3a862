"""The single LMDB writer thread with group commit.

Requests put ops on a queue; the thread takes every op waiting (up to
``max_batch_ops``), applies them in order inside one write transaction,
appends each op that changed something to the replication log, commits
(fsync) once, and only then resolves the requests' futures on the event
loop. While it fsyncs, the next batch gathers. The event loop never touches
an LMDB write transaction.

An op that raises a TqdError has changed nothing (the core validates
before writing) and just gets its error. Anything else is a bug: the whole
batch is aborted and each op is retried alone, so one bad op cannot take
its neighbours down. A full map or disk fails the batch with 507.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import lmdb

from . import records as r
from .core import Core
from .errors import Internal, StorageFull, TqdError
from .records import Meta, QStat
from .store import Store, Tx

log = logging.getLogger("tqd.writer")
_STOP = object()


class Commit:
    """What a committed batch means for the event loop (wake-ups, timers)."""

    __slots__ = ("ready_queues", "min_due_ms")

    def __init__(self) -> None:
        self.ready_queues: dict[str, int] = {}
        self.min_due_ms: int | None = None


class WriterStats:
    def __init__(self) -> None:
        self.batches = 0
        self.ops = 0
        self.puts = 0
        self.dels = 0
        self.commit_s = 0.0


class Writer:
    def __init__(self, store: Store, core: Core, *, max_batch_ops: int, log_keep_entries: int,
                 on_commit: Callable[[Commit], None]) -> None:
        self.store = store
        self.core = core
        self.max_batch_ops = max_batch_ops
        self.log_keep_entries = log_keep_entries
        self.on_commit = on_commit
        self.stats = WriterStats()
        self.meta: Meta = store.load_meta()
        self.qstats: dict[str, QStat] = {}
        with store.read() as rt:
            self.qstats.update(rt.all_qstats())
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, name="tqd-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Apply everything already submitted, then end the thread."""
        if self._thread is None:
            return
        self._q.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._thread = None

    def submit(self, op: r.Op) -> asyncio.Future[Any]:
        assert self._loop is not None, "writer not started"
        fut = self._loop.create_future()
        self._q.put((op, fut))
        return fut

    def apply_now(self, op: r.Op) -> Any:
        """Apply one op synchronously (no thread): for tests and tools, not the server."""
        results, _ = self._apply_batch([op])
        res = results[0]
        if isinstance(res, BaseException):
            raise res
        return res

    # ---- thread ----------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._q.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self.max_batch_ops:
                try:
                    nxt = self._q.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                batch.append(nxt)
            ops = [op for op, _ in batch]
            futs = [fut for _, fut in batch]
            try:
                results, commit = self._apply_batch(ops)
            except BaseException as e:  # noqa: BLE001 - a writer must never die silently
                log.exception("writer batch failed")
                results, commit = [Internal(str(e))] * len(ops), Commit()
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._deliver, futs, results, commit)
            except RuntimeError:  # loop closed during shutdown
                return

    def _deliver(self, futs: list[asyncio.Future[Any]], results: list[Any], commit: Commit) -> None:
        for fut, res in zip(futs, results, strict=True):
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        self.on_commit(commit)

    def _apply_batch(self, ops: list[r.Op]) -> tuple[list[Any], Commit]:
        try:
            return self._apply(ops)
        except (lmdb.MapFullError, lmdb.DiskError) as e:
            log.error("storage full: %s", e)
            return [StorageFull("storage is full; reads still work")] * len(ops), Commit()
        except lmdb.Error as e:
            if "No space" in str(e) or "ENOSPC" in str(e):
                return [StorageFull("storage is full; reads still work")] * len(ops), Commit()
            raise
        except _Unexpected:
            if len(ops) == 1:
                raise
        # a bug in one op: run each alone so the others still land
        results: list[Any] = []
        commit = Commit()
        for op in ops:
            try:
                res, c = self._apply([op])
                results.append(res[0])
                _merge(commit, c)
            except Exception as e:  # noqa: BLE001
                log.exception("op failed: %r", op)
                results.append(Internal(f"internal error: {e}"))
        return results, commit

    def _apply(self, ops: list[r.Op]) -> tuple[list[Any], Commit]:
        t0 = time.perf_counter()
        tx = self.store.write(self.meta, self.qstats)
        results: list[Any] = []
        try:
            for op in ops:
                before = tx.writes
                try:
                    results.append(self.core.apply(tx, op))
                except TqdError as e:
                    if tx.writes != before:
                        raise _Unexpected(f"{type(e).__name__} after writing: {e}") from e
                    results.append(e)
                    continue
                except (lmdb.MapFullError, lmdb.DiskError):
                    raise
                except Exception as e:
                    raise _Unexpected(repr(e)) from e
                if tx.writes != before:
                    tx.log_append(r.op_encoder.encode(op))
            commit = Commit()
            if tx.writes:
                tx.log_truncate(self.log_keep_entries)
                tx.finish()
                tx.commit()  # fsync: only now may anyone be told
                self.meta = tx.meta
                self.qstats.update(tx.dirty_qstats)
                commit.ready_queues = tx.ready_queues
                commit.min_due_ms = tx.min_due_ms
                self.stats.puts += tx.puts
                self.stats.dels += tx.dels
            else:
                tx.abort()
        except BaseException:
            tx.abort()
            raise
        self.stats.batches += 1
        self.stats.ops += len(ops)
        self.stats.commit_s += time.perf_counter() - t0
        return results, commit


class _Unexpected(Exception):
    pass


def _merge(into: Commit, c: Commit) -> None:
    for q, n in c.ready_queues.items():
        into.ready_queues[q] = into.ready_queues.get(q, 0) + n
    if c.min_due_ms is not None and (into.min_due_ms is None or c.min_due_ms < into.min_due_ms):
        into.min_due_ms = c.min_due_ms
