"""The queue service: the async face of the core that HTTP handlers call.

It owns the writer (a process of its own, forked by ``spawn_writer``; it also
holds parked long-polls) and the timer loop (delayed jobs, lease expiry,
retention), and it reads committed state directly. It follows the log's
position (each answer can carry its commit's); what the cluster asks of the log
(entries, pins, snapshots, terms) is in tqd/service_log.py. In a cluster it takes
writes only while its role and the writer's gate allow, and waits for the sync
replicas before answering. It knows nothing of HTTP; it reaches LMDB only through
Store and the writer process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from .clock import Clock, SystemClock
from .config import Settings
from .engine.process import spawn
from .engine.remote import RemoteWriter, WriterHandle
from .engine.stats import Stats
from .engine.writer import Commit, Writer
from .errors import InvalidRequest, NoLeader, NotReady, NotReplicated, StorageFull, TqdError
from .observe import history
from .observe.history import Sampler
from .protocol import STATES, EnqueueResult, QueueStats
from .queue import ops
from .queue import records as r
from .queue.core import AckOutcome, Core, ms
from .service_log import LogFace
from .service_read import ReadFace
from .storage import crypt
from .storage.lock import lock_data_dir
from .storage.log import Position
from .storage.store import Store
from .supervisor import LoopState, Supervisor

log = logging.getLogger("tqd.service")

TICK_LIMIT = 1000
PURGE_CHUNK = 2000  # jobs deleted per purge step (one write transaction)
PURGE_SCAN = 20_000  # index entries read per purge step


def make_writer(settings: Settings, store: Store, core: Core) -> Writer:
    return Writer(store, core, max_batch_ops=settings.max_batch_ops,
                  log_keep_entries=settings.log_keep_entries,
                  log_keep_bytes=min(settings.log_keep_bytes, settings.map_size_bytes // 16),
                  clustered=bool(settings.lease_store))


def spawn_writer(settings: Settings) -> tuple[int, WriterHandle]:
    """Lock the data dir, then fork the writer process (call before any event loop starts).
    Returns the lock fd and the handle to pass to QueueService."""
    fd = lock_data_dir(settings.data_dir)
    try:
        return fd, spawn(settings, lambda store, core: make_writer(settings, store, core))
    except BaseException:
        os.close(fd)
        raise


class _Held(msgspec.Struct):
    id: str
    lease: str


_held_dec = msgspec.json.Decoder(_Held)


class QueueService(LogFace, ReadFace):
    def __init__(self, settings: Settings, clock: Clock | None = None, *,
                 lock_fd: int, writer: WriterHandle) -> None:
        """``lock_fd, writer``: what ``spawn_writer`` returned (call it before any event loop
        exists): the data-dir lock, closed by stop(), and the forked writer process."""
        self.s = settings
        self.clock = clock or SystemClock()
        self._lock_fd = lock_fd
        self.store = Store(settings.data_dir, settings.map_size_bytes, readonly=True,
                           keys=crypt.load(settings.encryption_key_file))
        self.core = Core(settings)
        self.writer = RemoteWriter(writer, self._on_commit)
        self.draining = False
        self.loops = Supervisor()  # the timer and write-deadline loops; their states
        # writes waiting for the writer: future -> when sent (monotonic), oldest first
        self._pending: dict[asyncio.Future[Any], float] = {}
        self._background: set[asyncio.Task[None]] = set()  # releases of orphaned leases
        self._next_due_ms: int | None = None
        self._timer_wake: asyncio.Event | None = None
        self.position = self.store.position()  # the log's, as of the last commit heard of
        self._log_wake: asyncio.Event | None = None  # set (and replaced) on each new position
        # Set by the cluster (tqd.cluster.node); a standalone server leads alone, always.
        self.role = "follower" if settings.lease_store else "standalone"
        self.leader_url: str | None = None  # where writes go when this node is a follower
        # the writer process's write gate, mirrored (monotonic time; inf: standalone)
        self.write_gate_until = 0.0 if settings.lease_store else float("inf")
        # waits until enough followers hold the log up to a seq (--sync-replicas), or raises
        self.sync_gate: Callable[[int], Awaitable[None]] | None = None
        self._snapshots: ThreadPoolExecutor | None = None  # made on the first snapshot
        self._job_waiters: dict[str, list[asyncio.Future[None]]] = {}  # GET /v1/jobs/{id}?wait
        # GET /v1/history: the queues' counters sampled over the last hour (the dashboard)
        self.history = Sampler(lambda: self.queue_page("", history.MAX_QUEUES).queues,
                               self.clock.now, settings.history_interval_s)

    # ---- life cycle ----------------------------------------------------------

    async def start(self) -> None:
        await self.writer.start(asyncio.get_running_loop())
        with self.store.read() as t:
            self._next_due_ms = t.first_due_ms()
        self._timer_wake = asyncio.Event()
        self.loops.start("timers", self._timer_loop)
        self.loops.start("write-deadline", self._watchdog_loop)
        self.loops.start("history", self.history.loop)

    @property
    def writer_lost(self) -> bool:
        """The writer process died on its own (the server then stops, exit status 1)."""
        return self.writer.lost

    def begin_drain(self) -> None:
        """Stop leasing: answer every long-poll now, lease nothing new."""
        self.draining = True
        self.writer.unpark_all()
        if self._log_wake is not None:  # log readers (event streams) see the drain and end
            self._log_wake.set()
            self._log_wake = None

    @property
    def leading(self) -> bool:
        """This node takes writes (its role; the writer's gate has the last word)."""
        return self.role in ("leader", "standalone") and time.monotonic() < self.write_gate_until

    def not_ready_reason(self) -> str | None:
        """Why this node cannot take writes now (None: it can)."""
        if self.draining:
            return "draining"
        if not self.leading:
            if self.role == "leader":
                return "the leader's lease could not be renewed in time; writes wait for it"
            return f"{self.role}; the leader is {self.leader_url or 'not known'}"
        if self.writer.closed:  # also when it died on its own
            return "the writer process is gone"
        age = self.oldest_write_age()
        if age > self.stall_s:
            return f"the writer has not answered a write for {age:.1f} s"
        return None

    @property
    def stall_s(self) -> float:
        """How late a write may be before /readyz says the writer is stuck."""
        return min(5.0, self.s.write_deadline_s)

    def oldest_write_age(self) -> float:
        for t in self._pending.values():
            return time.monotonic() - t
        return 0.0

    async def stop(self) -> None:
        self.begin_drain()
        await self.loops.stop()
        if self._background:  # releases of orphaned leases: let them land
            await asyncio.gather(*self._background, return_exceptions=True)
        await self.writer.stop()
        if self._snapshots is not None:
            self._snapshots.shutdown(wait=True)
        self.store.close()
        os.close(self._lock_fd)

    def _on_commit(self, c: Commit) -> None:
        for jid in c.finished:  # watched jobs this commit finished: wake their waiters
            for fut in self._job_waiters.pop(jid, ()):
                if not fut.done():
                    fut.set_result(None)
        if c.position > self.position:
            self.position = c.position
            if self._log_wake is not None:  # wake the log readers (followers' fetches)
                self._log_wake.set()
                self._log_wake = None
        if c.min_due_ms is not None and (self._next_due_ms is None or c.min_due_ms < self._next_due_ms):
            self._next_due_ms = c.min_due_ms
            if self._timer_wake is not None:
                self._timer_wake.set()

    async def _watchdog_loop(self, state: LoopState) -> None:
        """Fail the writes the writer has not answered within write_deadline_s with 503: a
        stuck disk must not hold requests (and their connections) forever."""
        deadline = self.s.write_deadline_s
        while True:
            await asyncio.sleep(min(0.5, deadline / 4))
            state.runs += 1
            state.last_run = time.time()
            now = time.monotonic()
            for fut, t in list(self._pending.items()):
                if now - t < deadline:
                    break
                if not fut.done():
                    state.errors += 1
                    fut.set_exception(NotReady(
                        f"the writer did not answer within {deadline:g} s; the write may "
                        "still be applied later (check before retrying it)"))

    async def _await_writer(self, fut: asyncio.Future[Any]) -> Any:
        """Wait for a writer answer, under the write deadline; then, with sync replicas, until
        enough followers have it."""
        self._pending[fut] = time.monotonic()
        try:
            res = await fut
        finally:
            del self._pending[fut]
        if self.sync_gate is not None and res != []:  # (an empty lease wrote nothing)
            await self.sync_gate(self.position.seq)
        return res

    async def _timer_loop(self, state: LoopState) -> None:
        assert self._timer_wake is not None
        while True:
            if not self.leading:  # timers run on the leader; its effects reach the followers
                await asyncio.sleep(0.2)
                self._next_due_ms = 0  # read it again once leading
                continue
            now = self.clock.now()
            due = self._next_due_ms
            if due is not None and due <= ms(now):
                try:
                    taken = await self._submit(ops.Tick(now, TICK_LIMIT))
                    state.runs += 1
                    state.last_run = time.time()
                except TqdError as e:
                    state.errors += 1
                    log.warning("timer tick failed: %s", e.message)
                    await asyncio.sleep(1.0)
                    continue
                with self.store.read() as t:
                    self._next_due_ms = t.first_due_ms()
                if taken >= TICK_LIMIT:
                    continue
                due = self._next_due_ms
            wait = 1.0 if due is None else min(1.0, max(0.0, (due - ms(self.clock.now())) / 1000))
            self._timer_wake.clear()
            try:
                async with asyncio.timeout(wait):
                    await self._timer_wake.wait()
            except TimeoutError:
                pass

    # ---- writes ----------------------------------------------------------------

    async def _submit(self, op: ops.Op) -> Any:
        return await self._await_writer(self.writer.submit(op))

    async def write(self, op: ops.Op) -> tuple[Any, Position]:
        """Apply an op; its result and the log position of the commit that holds it (a
        sync-replica gate waits until followers have that position)."""
        res, pos = await self._await_writer(self.writer.submit(op, position=True))
        return res, pos

    async def enqueue(self, queue: str, jobs: list[ops.NewJob]) -> list[EnqueueResult]:
        res: list[EnqueueResult] = await self._submit(ops.Enqueue(self.clock.now(), queue, jobs))
        return res

    async def lease(self, queues: list[str], max_jobs: int, wait: float, worker: str | None,
                    timeout: float | None) -> list[msgspec.Raw]:
        """The leased jobs, each as the JSON it came in from the writer process (written out
        as it is). If the client goes away before they reach it, the jobs it was handed are
        released (back in the queue, no attempt used)."""
        if self.draining:
            return []
        if not self.leading:
            raise NoLeader("this node is not the leader")
        jobs = await self._lease(queues, max_jobs, wait, worker, timeout)
        if jobs or self.leading:
            return jobs
        # the leadership was lost while it waited: say so, an empty answer would be a lie
        raise NoLeader("this node stopped being the leader; lease again from the new one")

    async def _lease(self, queues: list[str], max_jobs: int, wait: float, worker: str | None,
                     timeout: float | None) -> list[msgspec.Raw]:
        if wait <= 0:
            op = ops.Lease(self.clock.now(), queues, max_jobs, worker, timeout, random.getrandbits(32),
                         self.s.max_lease_bytes)
            return await self._leased(self.writer.submit(op))  # type: ignore[no-any-return]
        parked = self.writer.park(queues, max_jobs, worker, timeout)
        try:
            async with asyncio.timeout(wait):
                jobs: list[msgspec.Raw] = await asyncio.shield(parked.fut)
        except TimeoutError:  # the writer answers the unpark: [] or the jobs it just leased
            self.writer.unpark(parked)
            return await self._leased(parked.fut)  # type: ignore[no-any-return]
        except asyncio.CancelledError:  # the client went away
            self.writer.unpark(parked)
            self._release_when_done(parked.fut)  # in case it was being served
            raise
        if jobs and self.sync_gate is not None:
            try:
                await self.sync_gate(self.position.seq)
            except (asyncio.CancelledError, NotReplicated):
                self._release_when_done(parked.fut)
                raise
        return jobs

    async def _leased(self, fut: asyncio.Future[Any]) -> Any:
        """A lease's answer, under the write deadline; released if the client leaves first
        or is answered 503 before the lease commits."""
        try:
            return await self._await_writer(asyncio.shield(fut))
        except (asyncio.CancelledError, NotReady, NotReplicated):
            self._release_when_done(fut)
            raise

    def _release_when_done(self, fut: asyncio.Future[Any]) -> None:
        def done(f: asyncio.Future[Any]) -> None:
            if f.cancelled() or f.exception() is not None or not f.result():
                return
            held = [(j.id, j.lease) for j in map(_held_dec.decode, f.result())]
            task = asyncio.get_running_loop().create_task(self._release_all(held))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        fut.add_done_callback(done)

    async def _release_all(self, held: list[tuple[str, str]]) -> None:
        log.info("a client left before its lease answer: releasing %d jobs", len(held))
        for jid, lease in held:
            try:
                await self._submit(ops.Release(self.clock.now(), jid, lease, 0.0))
            except TqdError as e:  # gone or taken meanwhile: nothing to give back
                log.info("release of %s after its client left: %s", jid, e.message)

    async def ack(self, jid: str, lease: str, result: bytes | None) -> None:
        await self._submit(ops.Ack(self.clock.now(), [ops.AckItem(jid, lease, result)], True))

    async def ack_many(self, items: list[ops.AckItem]) -> list[AckOutcome]:
        res: list[AckOutcome] = await self._submit(ops.Ack(self.clock.now(), items, False))
        return res

    async def fail(self, jid: str, lease: str, error: str, details: str | None, retry: bool,
                   retry_in: float | None) -> r.JobState:
        op = ops.Fail(self.clock.now(), jid, lease, error, details, retry, retry_in,
                    random.uniform(0.75, 1.25))
        st: r.JobState = await self._submit(op)
        return st

    async def release(self, jid: str, lease: str, delay: float) -> r.JobState:
        st: r.JobState = await self._submit(ops.Release(self.clock.now(), jid, lease, delay))
        return st

    async def heartbeat(self, jid: str, lease: str, extend: float | None,
                        progress: bytes | None) -> float:
        exp: float = await self._submit(ops.Heartbeat(self.clock.now(), jid, lease, extend, progress))
        return exp

    async def cancel(self, jid: str) -> None:
        await self._submit(ops.Cancel(self.clock.now(), jid))

    async def retry(self, jid: str) -> None:
        await self._submit(ops.Retry(self.clock.now(), jid))

    async def redrive(self, queue: str, limit: int) -> int:
        n: int = await self._submit(ops.Redrive(self.clock.now(), queue, limit))
        return n

    async def purge(self, queue: str, state: str) -> int:
        if state not in ("dead", "completed", "cancelled"):
            raise InvalidRequest("state must be one of dead, completed, cancelled")
        return await self._purge(queue, STATES.index(state))

    async def delete_queue(self, queue: str, force: bool) -> int:
        """Forget a queue: its counters and paused flag. With force, first delete its jobs,
        whatever their state (an active job's holder then gets not_found). Returns how many
        jobs went; 409 if jobs remain (without force, or added meanwhile)."""
        purged = await self._purge(queue, r.ANY_STATE) if force else 0
        await self._submit(ops.DeleteQueue(self.clock.now(), queue))
        return purged

    async def _purge(self, queue: str, code: int) -> int:
        """Delete in steps (one op each, so other writes go between them). A full store
        halves the step until one fits: a purge is how an operator makes room."""
        total, chunk = 0, PURGE_CHUNK
        cursor: int | None = 0
        while cursor is not None:
            n: int
            try:
                n, cursor = await self._submit(
                    ops.Purge(self.clock.now(), queue, code, chunk, cursor, PURGE_SCAN))
            except StorageFull:
                if chunk == 1:
                    raise
                chunk //= 2
                continue
            total += n
        return total

    async def set_paused(self, queue: str, paused: bool) -> QueueStats:
        await self._submit(ops.SetPaused(self.clock.now(), queue, paused))
        return self.queue_stats(queue)

    # ---- the writer's own numbers ---------------------------------------------

    async def writer_stats(self) -> Stats | None:
        """What the writer process measured (None if it does not answer within 2 s)."""
        try:
            async with asyncio.timeout(2.0):
                return await asyncio.shield(self.writer.stats())
        except (TimeoutError, TqdError):
            return None
