"""Snapshots (tqd.storage.snapshot) and the cluster's write gate in the writer.

A snapshot restored into a store that held something else makes it byte-identical to the
source in every replicated sub-database, at the source's position, and the log goes on
from there; a truncated or corrupt snapshot changes nothing. A clustered writer takes no
write while its gate is closed, nor after it lapses."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tqd.config import Settings
from tqd.engine.writer import Writer
from tqd.errors import NoLeader
from tqd.queue import ops
from tqd.queue.core import Core
from tqd.storage import snapshot
from tqd.storage.log import REPLICATED
from tqd.storage.snapshot import SnapshotInvalid
from tqd.storage.store import Store

MAP = 1 << 26


def new(payload: bytes = b"1", key: str | None = None) -> ops.NewJob:
    return ops.NewJob(None, None, payload, 5, None, 3, 30.0, key)


def writer(path: Path, clustered: bool = False) -> tuple[Store, Writer]:
    store = Store(path, MAP)
    return store, Writer(store, Core(Settings(data_dir=path)), max_batch_ops=10,
                         log_keep_entries=1_000_000, clustered=clustered)


def dump(store: Store) -> dict[str, dict[bytes, bytes]]:
    out = {}
    with store.env.begin() as t:
        for name in REPLICATED:
            with t.cursor(db=store.dbs[name]) as c:
                out[name] = {bytes(k): bytes(v) for k, v in c}
    return out


def busy(w: Writer, n: int, t0: float = 1000.0) -> None:
    w.apply_now(ops.Enqueue(t0, "a", [new(str(i).encode(), f"k{i}") for i in range(n)]))
    w.apply_now(ops.Enqueue(t0, "b", [new(b"x" * 3000) for _ in range(n)]))
    w.apply_now(ops.Lease(t0 + 1, ["a"], max(1, n // 2), "w", None, 7))


@settings(max_examples=15, deadline=None)
@given(src_jobs=st.integers(1, 60), dst_jobs=st.integers(0, 60))
def test_a_restored_snapshot_is_the_source_byte_for_byte(tmp_path_factory: pytest.TempPathFactory,
                                                         src_jobs: int, dst_jobs: int) -> None:
    root = tmp_path_factory.mktemp("snap")
    src, ws = writer(root / "src")
    dst, wd = writer(root / "dst", clustered=True)
    try:
        busy(ws, src_jobs)
        if dst_jobs:  # the follower held other things (say, a diverged tail)
            wd.begin_term(1)
            wd.set_gate(time.monotonic() + 60)
            busy(wd, dst_jobs, 5000.0)
            wd.set_gate(0)
        pos = snapshot.export(src, root / "s.snap")
        assert pos == ws.position
        assert wd.restore(str(root / "s.snap")) == pos
        assert dump(dst) == dump(src)
        # and the follower's log goes on from there
        ws.apply_now(ops.Enqueue(2000.0, "c", [new()]))
        with src.read() as t:
            tail = [raw for _, raw in t.log_entries(pos.seq, 100)]
        assert wd.follow(tail) == ws.position
        assert dump(dst) == dump(src)
    finally:
        src.close()
        dst.close()


def test_a_damaged_snapshot_changes_nothing(tmp_path: Path) -> None:
    src, ws = writer(tmp_path / "src")
    dst, wd = writer(tmp_path / "dst")
    busy(ws, 40)
    busy(wd, 5)
    before, pos_before = dump(dst), dst.position()
    path = tmp_path / "s.snap"
    snapshot.export(src, path)
    good = path.read_bytes()
    bad = {"truncated": good[: len(good) // 2], "no trailer": good[:-40],
           "flipped": good[:200] + bytes([good[200] ^ 1]) + good[201:], "not one": b"hello"}
    for why, raw in bad.items():
        path.write_bytes(raw)
        with pytest.raises(SnapshotInvalid):
            snapshot.restore(dst, path)
        assert dump(dst) == before and dst.position() == pos_before, why
    src.close()
    dst.close()


def test_a_clustered_writer_writes_only_while_its_gate_is_open(tmp_path: Path) -> None:
    store, w = writer(tmp_path, clustered=True)
    assert w.position == (0, 0)  # no term of its own: the cluster gives it one
    with pytest.raises(NoLeader):
        w.apply_now(ops.Enqueue(1.0, "q", [new()]))
    w.begin_term(4)
    with pytest.raises(NoLeader):  # a term, but the gate is still closed
        w.apply_now(ops.Enqueue(1.0, "q", [new()]))
    w.set_gate(time.monotonic() + 60)
    w.apply_now(ops.Enqueue(1.0, "q", [new()]))
    assert w.position == (4, 2)
    w.set_gate(time.monotonic() - 0.001)  # lapsed: the lease was not renewed in time
    with pytest.raises(NoLeader):
        w.apply_now(ops.Enqueue(1.0, "q", [new()]))
    assert w.position == (4, 2)
    with pytest.raises(RuntimeError):  # a leader never applies another node's entries
        w.set_gate(time.monotonic() + 60)
        w.follow([])
    store.close()
