"""The replication log: positions and terms, refusals on the follower side, the time clamp,
log pins, snapshots and the upgrade of a format-1 store. (The byte-for-byte replay of random
op sequences, from empty and from a snapshot, is the model test's `replay_log` rule.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import lmdb
import msgspec
import pytest

from tqd.config import Settings
from tqd.engine.writer import Writer
from tqd.queue import ops
from tqd.queue import records as r
from tqd.queue.core import Core
from tqd.service import QueueService, spawn_writer
from tqd.storage import log
from tqd.storage.log import EFFECTS, TERM_START, Entry, LogGap, Position, WrongTerm
from tqd.storage.store import Store

MAP = 1 << 26


def new(payload: bytes = b"1") -> ops.NewJob:
    return ops.NewJob(None, None, payload, 5, None, 3, 30.0, None)


def open_writer(path: Path, **kw: object) -> tuple[Store, Writer]:
    store = Store(path, MAP)
    w = Writer(store, Core(Settings(data_dir=path)), max_batch_ops=10,
               log_keep_entries=kw.pop("log_keep_entries", 1_000_000),  # type: ignore[arg-type]
               **kw)  # type: ignore[arg-type]
    return store, w


def entries(store: Store) -> list[Entry]:
    with store.read() as t:
        return [log.entry_decoder.decode(raw) for _, raw in t.log_entries(0, 1 << 30)]


def raws(store: Store) -> list[bytes]:
    with store.read() as t:
        return [raw for _, raw in t.log_entries(0, 1 << 30)]


def test_each_commit_is_one_entry_at_the_next_position(tmp_path: Path) -> None:
    store, w = open_writer(tmp_path)
    assert w.position == (1, 1)  # a new store: the term-start marker of term 1
    w.apply_now(ops.Enqueue(1000.0, "q", [new(), new()]))
    w.apply_now(ops.Lease(1001.0, ["empty"], 1, None, None, 1))  # changes nothing: no entry
    results, _, commit = w.apply_batch([(ops.Enqueue(1002.0, "q", [new()]), None),
                                        (ops.Lease(1002.0, ["q"], 1, "w", None, 7), None)])
    assert commit.position == w.position == (1, 3)  # two ops, one commit, one entry
    assert w.begin_term(3) == (3, 4)
    w.apply_now(ops.Enqueue(1003.0, "q", [new()]))
    es = entries(store)
    assert [(e.term, e.seq, e.kind) for e in es] == [
        (1, 1, TERM_START), (1, 2, EFFECTS), (1, 3, EFFECTS), (3, 4, TERM_START), (3, 5, EFFECTS)]
    assert es[0].fx == [] and es[3].fx == []
    with pytest.raises(WrongTerm):
        w.begin_term(3)  # a term is opened once
    with pytest.raises(WrongTerm):
        w.begin_term(2)
    store.close()
    store, w = open_writer(tmp_path)
    assert w.position == (3, 5) and w.term == 3  # reopened: same term, no new marker
    store.close()


def test_a_follower_refuses_a_gap_a_stale_term_or_a_term_without_its_marker(tmp_path: Path) -> None:
    leader, w = open_writer(tmp_path / "leader")
    for i in range(3):
        w.apply_now(ops.Enqueue(1000.0 + i, "q", [new()]))
    good = raws(leader)  # seq 1 (marker), 2, 3, 4
    follower = Store(tmp_path / "follower", MAP)
    assert follower.apply_entries(good[:2], 1000, 1 << 20) == (1, 2)

    def refused(batch: list[bytes], exc: type[Exception]) -> None:
        before = follower.position()
        with follower.env.begin() as t:
            state = list(t.cursor(db=follower.dbs["state"]))
        with pytest.raises(exc):
            follower.apply_entries(batch, 1000, 1 << 20)
        assert follower.position() == before  # nothing of a refused batch is applied
        with follower.env.begin() as t:
            assert list(t.cursor(db=follower.dbs["state"])) == state

    refused([good[3]], LogGap)  # 4 after 2
    refused([good[1]], LogGap)  # 2 again
    refused([good[2], good[3], good[3]], LogGap)  # a good start does not save a bad batch
    e3 = log.entry_decoder.decode(good[2])
    refused([log.entry_encoder.encode(Entry(2, 3, EFFECTS, e3.fx))], WrongTerm)  # no marker
    assert follower.apply_entries(good[2:], 1000, 1 << 20) == (1, 4)
    marker = log.entry_encoder.encode(Entry(5, 5, TERM_START))
    assert follower.apply_entries([marker], 1000, 1 << 20) == (5, 5)
    refused([log.entry_encoder.encode(Entry(4, 6, EFFECTS, []))], WrongTerm)  # an older term
    refused([log.entry_encoder.encode(Entry(6, 6, TERM_START, [0, b"k", b"v"]))], log.LogRejected)
    refused([log.entry_encoder.encode(Entry(5, 6, EFFECTS, [0, b"no such job", None]))],
            log.LogRejected)  # a delete of what is not there: the follower has diverged
    refused([msgspec.msgpack.encode([5, 6, EFFECTS, [], "a newer field"])], log.LogRejected)
    fresh = Store(tmp_path / "fresh", MAP)
    with pytest.raises(WrongTerm):  # terms start at 1, even on an empty follower
        fresh.apply_entries([log.entry_encoder.encode(Entry(0, 1, EFFECTS, []))], 1000, 1 << 20)
    fresh.close()
    leader.close()
    follower.close()


def test_op_time_never_goes_back(tmp_path: Path) -> None:
    """A leader whose clock is behind the last committed op time (a failover to a node with
    a slower clock) stamps the last committed time instead: no job moves back in time."""
    store, w = open_writer(tmp_path)
    (a,) = w.apply_now(ops.Enqueue(2000.0, "q", [new()]))
    (b,) = w.apply_now(ops.Enqueue(1500.0, "q", [new()]))  # a clock 500 s behind
    with store.read() as t:
        assert w.core.get(t, b.id).created_at == 2000.0
        assert w.core.get(t, a.id).created_at == 2000.0
    store.close()
    store, w = open_writer(tmp_path)  # kept across a restart (and shipped: Meta replicates)
    assert w.meta.now == 2000.0
    store.close()


def test_log_pins_hold_the_log_for_a_follower_within_a_cap(tmp_path: Path) -> None:
    store, w = open_writer(tmp_path, log_keep_entries=10, log_keep_bytes=100_000,
                              log_max_bytes=1_000_000)
    w.pin_log("f1", 5)
    for i in range(1500):
        w.apply_now(ops.Enqueue(1000.0 + i, "q", [new()]))
    assert w.local.log_first == 5  # past the entry bound, but f1 still needs entry 5
    w.pin_log("f1", 1200)
    w.pin_log("f2", 900)
    for i in range(1100):
        w.apply_now(ops.Enqueue(3000.0 + i, "q", [new()]))
    assert w.local.log_first == 900  # the lowest pin
    w.pin_log("f2", 0)
    w.pin_log("f1", 0)
    for i in range(1100):
        w.apply_now(ops.Enqueue(5000.0 + i, "q", [new()]))
    assert w.local.log_seq - w.local.log_first + 1 <= 10 + 1024  # back to the bounds
    w.pin_log("slow", w.local.log_seq)  # a follower that never comes back ...
    big = b"\"" + b"x" * 20_000 + b"\""
    for i in range(100):
        w.apply_now(ops.Enqueue(7000.0 + i, "q", [new(big)]))
    assert w.local.log_bytes <= 1_000_000 + 21_000  # ... cannot hold more than log_max_bytes
    store.close()


def test_snapshot_is_one_commit_and_knows_its_position(tmp_path: Path) -> None:
    store, w = open_writer(tmp_path / "a")
    for i in range(5):
        w.apply_now(ops.Enqueue(1000.0 + i, "q", [new()]))
    pos = store.snapshot(tmp_path / "snap" / "lmdb")
    w.apply_now(ops.Enqueue(1010.0, "q", [new()]))  # after the snapshot: not in it
    with pytest.raises(FileExistsError):
        store.snapshot(tmp_path / "snap" / "lmdb")
    restored = Store(tmp_path / "snap", MAP)
    assert pos == restored.position() == (1, 6)
    with restored.read() as t:
        assert t.get_qstat("q").queued == 5  # type: ignore[union-attr]
    restored.apply_entries([raw for _, raw in _after(store, pos.seq)], 1000, 1 << 20)
    for name in log.REPLICATED:
        with store.env.begin() as a, restored.env.begin() as b:
            assert list(a.cursor(db=store.dbs[name])) == list(b.cursor(db=restored.dbs[name])), name
    store.close()
    restored.close()


def _after(store: Store, seq: int) -> list[tuple[int, bytes]]:
    with store.read() as t:
        return t.log_entries(seq, 1 << 30)


def test_a_format1_store_is_upgraded_and_a_newer_one_refused(tmp_path: Path) -> None:
    """A data dir of tqd 0.1 (Meta held the log bounds; the log held ops) opens: its jobs and
    counters stay, its op log is dropped, positions continue after it."""
    env = lmdb.open(str(tmp_path / "lmdb"), max_dbs=16, map_size=MAP)
    meta_db, log_db = env.open_db(b"meta"), env.open_db(b"log")
    with env.begin(write=True) as t:
        t.put(b"meta", msgspec.msgpack.encode(r.MetaV1(seq=41, log_seq=9, log_first=3,
                                                       id_ms=123, id_n=4, log_bytes=99,
                                                       hexlike_ids=True)), db=meta_db)
        t.put((9).to_bytes(8, "big"), b"an old op", db=log_db)
    env.close()
    store, w = open_writer(tmp_path)
    assert w.meta == r.Meta(seq=41, id_ms=123, id_n=4, hexlike_ids=True, now=0.0)
    assert w.position == (1, 10)  # seq continues; term 1 begins with its marker
    assert [e.seq for e in entries(store)] == [10]  # the op entry is gone
    store.close()
    env = lmdb.open(str(tmp_path / "lmdb"), max_dbs=16, map_size=MAP)
    local_db = env.open_db(b"local")
    with env.begin(write=True) as t:
        t.put(b"local", msgspec.msgpack.encode(log.LocalMeta(version=log.LOG_FORMAT + 1)),
              db=local_db)
    env.close()
    with pytest.raises(log.FormatTooNew, match="newer tqd"):
        Store(tmp_path, MAP)


def test_the_service_learns_each_write_s_position_from_the_writer_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    fd, handle = spawn_writer(settings)

    async def main() -> None:
        svc = QueueService(settings, lock_fd=fd, writer=handle)
        await svc.start()
        try:
            start = svc.position
            woke = asyncio.ensure_future(svc.wait_log(start.seq, 30.0))
            await asyncio.sleep(0.05)
            assert not woke.done()  # nothing new in the log: the reader waits
            res, pos = await svc.write(ops.Enqueue(svc.clock.now(), "q", [new()]))
            assert res[0].created and pos == Position(start.term, start.seq + 1)
            assert await woke == pos and svc.position == pos
            _, pos2 = await svc.write(ops.Lease(svc.clock.now(), ["none"], 1, None, None, 1))
            assert pos2 == pos  # nothing changed: the position it was answered at
            got = svc.log_entries(start.seq, 10, 0)
            assert [seq for seq, _ in got] == [pos.seq]
        finally:
            await svc.stop()

    asyncio.run(main())



def test_a_pin_set_through_the_service_holds_the_log_in_the_writer_process(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, log_keep_entries=1)
    fd, handle = spawn_writer(settings)

    async def writes(svc: QueueService, n: int) -> None:
        for _ in range(n):  # one commit, one entry each
            await svc.write(ops.Enqueue(svc.clock.now(), "q", [new()]))

    async def main() -> None:
        svc = QueueService(settings, lock_fd=fd, writer=handle)
        await svc.start()
        try:
            pin = svc.position.seq + 1
            svc.pin_log("f1", pin)
            await writes(svc, 1100)  # past the bound and its 1024-entry slack
            assert svc.store.load_local().log_first == pin
            svc.pin_log("f1", 0)  # f1 needs nothing any more
            await writes(svc, 1100)
            assert svc.store.load_local().log_first > svc.position.seq - 1100
        finally:
            await svc.stop()

    asyncio.run(main())
