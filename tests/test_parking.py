"""Parked long-polls cost memory only while they wait.

A long-poll that names queues nobody uses, then times out, must leave nothing
behind in the writer: a client sending such requests in a loop grew the
writer by hundreds of MB before.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from pathlib import Path

import lmdb
import pytest
from _http import Api, running
from test_writer_process import children

from tqd.engine.writer import PARKED, Parked, Writer
from tqd.errors import StorageFull
from tqd.queue import ops

_rids = itertools.count(1)


def _park(w: Writer, queues: list[str]) -> Parked:
    """A long-poll as the writer process hands it over: a Parked tagged with its request id."""
    rid = next(_rids)
    p = Parked(queues, 1, None, None, rid)
    results, _, _ = w.apply_batch([(p, rid)])
    assert results == [PARKED]
    return p


def test_given_up_leases_leave_no_waiting_lists(writer: Writer) -> None:
    for _ in range(10_000):
        p = _park(writer, [uuid.uuid4().hex for _ in range(10)])
        assert writer.unpark(p)  # the long-poll timed out
    names, entries = writer.parked_entries()
    assert names <= 2048 and entries <= 2048, (names, entries)
    # the ones still waiting are kept, and served
    live = _park(writer, ["live"])
    for _ in range(3000):
        assert writer.unpark(_park(writer, [uuid.uuid4().hex]))
    assert writer.parked_entries()[1] <= 2048
    _, served, _ = writer.apply_batch([(ops.Enqueue(1000.0, "live", [
        ops.NewJob(None, None, b"1", 5, None, 3, 30.0, None)]), None)])
    assert [rid for rid, _ in served] == [live.rid]
    assert not writer.unpark(live)  # served: its jobs went out, nothing to give up


def _writer_rss_kb(server_pid: int) -> int:
    (child,) = children(server_pid)
    with open(f"/proc/{child}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.slow
def test_writer_memory_stays_flat_under_long_polls_on_random_queues(tmp_path: Path) -> None:
    with running(tmp_path / "data") as (srv, api):
        assert srv.proc is not None

        def burst(n: int) -> None:
            def one_thread() -> None:
                a = Api(api.url)
                for _ in range(n // 8):
                    body = {"queues": [uuid.uuid4().hex[:16] for _ in range(100)], "wait": 0.01}
                    assert a.request("POST", "/v1/lease", body).status == 204
            ts = [threading.Thread(target=one_thread) for _ in range(8)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        burst(2000)  # warm-up: allocator pools, caches
        before = _writer_rss_kb(srv.proc.pid)
        burst(10_000)
        after = _writer_rss_kb(srv.proc.pid)
        # before the fix: ~100 kB per request (1 GB here); a waiting list per name stayed
        assert after - before < 16 * 1024, (before, after)


class _Txn:
    """An LMDB transaction whose commit fails as the file system made it fail."""

    def __init__(self, txn: object, exc: BaseException) -> None:
        self._txn, self._exc = txn, exc

    def __getattr__(self, name: str) -> object:
        return getattr(self._txn, name)

    def commit(self) -> None:
        self._txn.abort()  # type: ignore[attr-defined]
        raise self._exc


class _FailingCommit:
    """Makes the next commits of a writer's store fail with `exc`."""

    def __init__(self, w: Writer, exc: BaseException) -> None:
        self.w, self.exc, self.real = w, exc, w.store.write

    def __enter__(self) -> None:
        def write(*a: object) -> object:
            tx = self.real(*a)  # type: ignore[arg-type]
            tx.txn = _Txn(tx.txn, self.exc)
            return tx
        self.w.store.write = write  # type: ignore[method-assign,assignment]

    def __exit__(self, *exc: object) -> None:
        self.w.store.write = self.real  # type: ignore[method-assign]


@pytest.mark.parametrize("exc", [lmdb.Error("mdb_txn_commit: Input/output error"),
                                 RuntimeError("a bug at commit")])
def test_a_long_poll_in_a_failed_batch_is_never_served_later(writer: Writer,
                                                             exc: BaseException) -> None:
    p = Parked(["p"], 1, None, None, 1)
    enq = ops.Enqueue(1000.0, "x", [ops.NewJob(None, None, b"1", 5, None, 3, 30.0, None)])
    with _FailingCommit(writer, exc):
        try:
            results, _, _ = writer.apply_batch([(p, p.rid), (enq, None)])
            assert all(isinstance(x, StorageFull) for x in results), results  # the disk
        except RuntimeError:
            pass  # a bug: the caller answers every request of the batch with a 500
    _, served, _ = writer.apply_batch([(ops.Enqueue(1001.0, "p", [
        ops.NewJob(None, None, b"2", 5, None, 3, 30.0, None)]), None)])
    assert served == []  # the job stays queued for a live worker
