"""LMDB writes per job transition: the numbers README states, checked exactly.

Each commit also appends one replication-log entry (its effects); counters and meta are written
once per commit, not per op, so they are not counted here.
"""

from __future__ import annotations

from pathlib import Path

from tqd.config import Settings
from tqd.engine.writer import Writer
from tqd.queue import ops
from tqd.queue.core import Core
from tqd.storage.store import Store

LOG = 1  # the commit's replication log entry (one op per commit here)


def writes(w: Writer, op: ops.Op) -> tuple[object, int]:
    before = w.stats.puts + w.stats.dels
    res = w.apply_now(op)
    return res, w.stats.puts + w.stats.dels - before


def new(key: str | None = None) -> ops.NewJob:
    return ops.NewJob(None, "t", b'{"a":1}', 5, None, 10, 30.0, key)


def test_writes_per_transition(writer: Writer) -> None:
    now = 1000.0
    res, n = writes(writer, ops.Enqueue(now, "q", [new()]))
    assert n == 4 + LOG  # spec, state, ready, listing index
    _, n = writes(writer, ops.Enqueue(now, "q", [new("k")]))
    assert n == 5 + LOG  # + idempotency key
    leased, n = writes(writer, ops.Lease(now, ["q"], 1, "w", None, 7))
    assert n == 3 + LOG  # ready delete, state, lease due entry (of the op)
    job = leased[0]  # type: ignore[index]
    _, n = writes(writer, ops.Heartbeat(now, job.id, job.lease, 60.0, None))
    assert n == 1 + LOG  # state only: the due entry moves lazily
    _, n = writes(writer, ops.Ack(now, [ops.AckItem(job.id, job.lease, None)], True))
    assert n == 2 + LOG  # state, retention due entry (of the op); the lease's entry stays
    leased, _ = writes(writer, ops.Lease(now, ["q"], 1, "w", None, 7))
    job = leased[0]  # type: ignore[index]
    _, n = writes(writer, ops.Fail(now, job.id, job.lease, "boom", None, True, 5.0, 1.0))
    assert n == 3 + LOG  # state, errors, retry due entry (the batch lease entry stays)


def test_batches_share_one_due_entry(writer: Writer) -> None:
    """A lease or ack of N jobs writes one due entry for all of them, not N (nor N deletes)."""
    now = 1000.0
    writer.apply_now(ops.Enqueue(now, "q", [new() for _ in range(100)]))
    leased, n = writes(writer, ops.Lease(now, ["q"], 100, "w", None, 7))
    assert len(leased) == 100  # type: ignore[arg-type]
    assert n == 2 * 100 + 1 + LOG  # per job: ready delete, state; one lease due entry
    items = [ops.AckItem(j.id, j.lease, None) for j in leased]  # type: ignore[attr-defined]
    _, n = writes(writer, ops.Ack(now + 1, items, False))
    assert n == 100 + 1 + LOG  # per job: state; one retention due entry
    # when the lease entry fires, its jobs have left: nothing happens to them
    taken, n = writes(writer, ops.Tick(now + 31, 1000))
    assert taken == 100 and n == 1 + LOG  # the entry itself is removed


def test_no_op_writes_nothing(writer: Writer) -> None:
    _, n = writes(writer, ops.Lease(1000.0, ["empty"], 10, "w", None, 1))
    assert n == 0
    log_before = writer.local.log_seq
    writes(writer, ops.Lease(1000.0, ["empty"], 10, "w", None, 1))
    assert writer.local.log_seq == log_before  # nothing logged either


def test_log_is_bounded_by_entries_and_bytes(tmp_path: Path) -> None:
    store = Store(tmp_path, 1 << 26)
    w = Writer(store, Core(Settings(data_dir=tmp_path)), max_batch_ops=10, log_keep_entries=100,
               log_keep_bytes=50_000)
    big = b'"' + b"x" * 2000 + b'"'
    for i in range(300):
        w.apply_now(ops.Enqueue(1000.0 + i, "q", [ops.NewJob(None, None, big, 5, None, 3, 30.0, None)]))
    m = w.local
    kept = m.log_seq - m.log_first + 1
    assert m.log_seq == 1 + 300  # the term-start marker, then one entry per commit
    assert kept <= 100 + 1024 and m.log_bytes <= 50_000 + 50_000 // 4 + 2100
    with store.read() as t:
        entries = t.log_entries(0, 10_000)
    assert [seq for seq, _ in entries] == list(range(m.log_first, m.log_seq + 1))
    assert sum(len(v) for _, v in entries) == m.log_bytes
    store.close()


def test_generated_ids_skip_a_client_id_that_looks_like_one(writer: Writer) -> None:
    first = writer.apply_now(ops.Enqueue(1000.0, "q", [new()]))[0].id  # type: ignore[index]
    # a client takes the id the server would generate next (same millisecond, counter + 1)
    clash = first[:12] + format(int(first[12:], 16) + 1, "06x")
    job = ops.NewJob(clash, None, b"1", 5, None, 3, 30.0, None)
    assert writer.apply_now(ops.Enqueue(1000.0, "q", [job]))[0].created  # type: ignore[index]
    nxt = writer.apply_now(ops.Enqueue(1000.0, "q", [new()]))[0]  # type: ignore[index]
    assert nxt.created and nxt.id not in (first, clash) and nxt.id > clash
