"""The service's face to the cluster: the replication log, snapshots, terms.

A mixin of QueueService (tqd.service), apart because it is one concern: what a leader
ships (log entries after a position, waits for new ones, pins for followers, snapshots)
and what a follower or a new leader asks of the writer (apply entries, restore a
snapshot, begin a term). tqd.cluster and tqd.http.repl call it; the queue's own
operations do not.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from .engine.remote import RemoteWriter
from .storage import snapshot
from .storage.log import Position
from .storage.store import Store

_entry_head = msgspec.msgpack.Decoder(tuple[int, int, int, msgspec.Raw])  # term, seq, kind, fx
_raws_enc = msgspec.msgpack.Encoder()


class LogFace:
    # what QueueService gives the mixin
    store: Store
    writer: RemoteWriter
    position: Position
    _log_wake: asyncio.Event | None
    _snapshots: ThreadPoolExecutor | None
    _next_due_ms: int | None
    _timer_wake: asyncio.Event | None

    async def wait_log(self, after_seq: int, timeout: float) -> Position:
        """Wait until the log holds an entry after ``after_seq`` (or timeout): a log reader
        (a follower's fetch) long-polls with this. Returns the position then."""
        if self.position.seq <= after_seq:
            if self._log_wake is None:
                self._log_wake = asyncio.Event()
            try:
                async with asyncio.timeout(timeout):
                    await self._log_wake.wait()
            except TimeoutError:
                pass
        return self.position

    def pin_log(self, follower: str, seq: int) -> None:
        """Keep the log from ``seq`` on while ``follower`` needs it (its next fetch; 0: it
        needs nothing any more). Pins hold the log past --log-keep-* up to 4 times the bytes
        bound; a follower that falls further behind must start again from a snapshot."""
        self.writer.pin_log(follower, seq)

    def log_entries(self, after_seq: int, limit: int, max_bytes: int) -> list[tuple[int, bytes]]:
        """Log entries after ``after_seq`` as stored (what a follower applies)."""
        with self.store.read() as t:
            return t.log_entries(after_seq, limit, max_bytes)

    def log_bounds(self) -> tuple[int, int]:
        """(first seq kept, last seq) of this node's log."""
        local = self.store.load_local()
        return local.log_first, local.log_seq

    def log_term_at(self, seq: int) -> int | None:
        """The term of the entry at ``seq`` in this node's log (None: not kept)."""
        with self.store.read() as t:
            got = t.log_entries(seq - 1, 1)
        if not got or got[0][0] != seq:
            return None
        return _entry_head.decode(got[0][1])[0]  # (not the effects: an entry may be MiBs)

    async def log_batch(self, after_seq: int, limit: int, max_bytes: int) -> bytes:
        """The log entries after ``after_seq`` as a follower gets them (a msgpack array of
        entries as stored; empty: none), read and framed off the event loop."""
        def read() -> bytes:
            raws = [raw for _, raw in self.log_entries(after_seq, limit, max_bytes)]
            return _raws_enc.encode(raws) if raws else b""
        return await asyncio.get_running_loop().run_in_executor(None, read)

    async def snapshot(self, path: Path) -> Position:
        """Write a snapshot file of this store (storage.snapshot), off the event loop, one
        at a time (in a thread of its own: the default executor serves the lease store)."""
        if self._snapshots is None:
            self._snapshots = ThreadPoolExecutor(1, thread_name_prefix="tqd-snapshot")
        return await asyncio.get_running_loop().run_in_executor(
            self._snapshots, snapshot.export, self.store, path)

    async def apply_entries(self, entries: list[bytes]) -> Position:
        """Follower: apply a leader's entries (LogDiverged: start again from a snapshot)."""
        pos: Position = await self.writer.apply_entries(entries)
        self._moved(pos)
        return pos

    def _moved(self, pos: Position) -> None:
        """The log is at ``pos`` now (a follower's apply or restore): wake its readers (event
        streams; tqd.observe.events)."""
        self.position = pos
        if self._log_wake is not None:
            self._log_wake.set()
            self._log_wake = None

    async def restore(self, path: Path) -> Position:
        """Follower: replace the store with a snapshot file."""
        pos: Position = await self.writer.restore(str(path))
        self._moved(pos)
        return pos

    async def begin_term(self, term: int) -> Position:
        """Leader: write the marker of ``term`` (before its gate opens)."""
        pos: Position = await self.writer.begin_term(term)
        self.position = pos
        self._next_due_ms = 0  # the timers' work is this node's now
        if self._timer_wake is not None:
            self._timer_wake.set()
        return pos

