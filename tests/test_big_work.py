"""Big work stays bounded and does not hold small work up.

A lease answer stops adding jobs at --max-lease-bytes (a lease of 1,000 jobs
of 1 MiB took gigabytes and stalled every write); a big bulk enqueue commits
in a transaction of its own, after the small writes that came with it, which
are answered first.
"""

from __future__ import annotations

import socket
from pathlib import Path

from _http import running

from tqd.config import Settings
from tqd.engine import link
from tqd.engine import process as wp
from tqd.engine.writer import Writer
from tqd.queue import ops
from tqd.queue.core import Core
from tqd.storage.store import Store


def test_lease_answer_is_bounded_by_bytes(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--max-lease-bytes", "250000") as (_, api):
        ids = [api.enqueue_ok("q", {"payload": f"{i:03d}" + "x" * 100_000}) for i in range(10)]
        got: list[str] = []
        while len(got) < 10:
            jobs = api.lease_jobs(["q"], max=10)
            assert 1 <= len(jobs) <= 3, len(jobs)  # 3 x 100 kB pass 250 kB: no more after
            got += [j["id"] for j in jobs]
        assert got == ids  # nothing skipped, nothing twice, FIFO kept
        assert api.lease_jobs(["q"], max=10) == []
        big = api.enqueue_ok("q", {"payload": "y" * 300_000})
        assert [j["id"] for j in api.lease_jobs(["q"], max=10)] == [big]  # one always goes


def _frames(sock: socket.socket) -> list[list[int]]:
    """The request ids answered by each reply frame waiting on sock."""
    buf = bytearray()
    sock.setblocking(False)
    try:
        while chunk := sock.recv(1 << 20):
            buf += chunk
    except BlockingIOError:
        pass
    return [[rid for rid, _, _ in link._reply_dec.decode(f).items] for f in link._split(buf)]


def test_small_writes_are_answered_before_a_big_bulk_commits(tmp_path: Path) -> None:
    store = Store(tmp_path, 1 << 28)
    w = Writer(store, Core(Settings(data_dir=tmp_path)), max_batch_ops=100,
               log_keep_entries=10_000)
    a, b = socket.socketpair()
    try:
        def job(payload: bytes) -> ops.NewJob:
            return ops.NewJob(None, None, payload, 5, None, 3, 30.0, None)

        bulk = ops.Enqueue(1000.0, "q", [job(b'"x"') for _ in range(wp.BIG_OP_JOBS + 1)])
        small = ops.Enqueue(1000.0, "q", [job(b"1")])
        wp._serve(w, [wp.OpMsg(1, bulk), wp.OpMsg(2, small), wp.OpMsg(3, small)], {}, a)
        assert _frames(b) == [[2, 3], [1]]
    finally:
        a.close()
        b.close()
        store.close()
