"""The worker runner: lease jobs, run handlers by job type, ack, fail, heartbeat.

    worker = Worker(queues=["mail", "reports"], concurrency=8)

    @worker.task("send_email")
    async def send_email(job: JobContext) -> dict:
        ...

    worker.run_forever()          # or: tqd worker myapp.tasks:worker

The parts, each small: `AckBatcher` (acks.py) turns many acks into few `POST /v1/ack`
requests; `Running` (running.py) owns one job (its handler and its heartbeat loop) and
says what becomes of it, one log line per event (joblog.py); what a handler gets and may
raise is context.py's; `Worker` is the lease loop plus startup and shutdown.

Through a cluster failover a worker keeps its running jobs: the client waits out the
time between leaders (see `Client`), and what still fails for a reason that may pass
(no answer, `503`) is tried again: heartbeats within a second or so, acks and failure
reports for as long as the job's lease may still be alive (by the last heartbeat that
went through). Only then is an ack dropped (the job runs again once its lease expires).

Past the server's rate limit (`429 rate_limited`) every call waits out `Retry-After` in
the client; a lease still refused after the client's tries waits once more and goes on
(in `--burst` too): a worker over its limit slows down, it does not stop. Heartbeats,
acks and failure reports retry a 429 as any error that may pass.

Lease loss (the job was cancelled, or its lease expired and it was handed out
again) is detected at the next heartbeat, and is final (after a failover too). An
async handler is then cancelled; a sync handler, which runs in a daemon thread of its
own, should poll `job.cancelled` or call `job.check()` (a thread cannot be stopped
from outside). Its eventual result is dropped: the server fences it with `409
lease_lost`. On a `409` the worker reads the job once to log why: "cancelled", or the
lease was lost (expired, the job is now elsewhere).

Shutdown (SIGTERM/SIGINT, or `stop()`): stop leasing, give running jobs
`grace_s` to finish, then mark the rest cancelled and release them with
`fail(retry_in=0)` so another worker takes them at once (they ran, so the
attempt counts). A lease request in flight when the stop comes is not hung
up on: it is awaited, at most its long-poll wait `poll_wait_s`, and the jobs
it brings are handed back with `release` (never started: no attempt used). A
second signal skips the grace period and that wait; the server then releases
whatever it was handing the request that was hung up on.

Burst mode ends `run()` once the queues are empty; if the server cannot be
reached (after the client's retries) it stops and `run()` raises the
`ClientError` instead of retrying for ever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .acks import AckBatcher
from .api import Client, ClientError, LeasedJob, RateLimited
from .context import Fatal, Handler, JobCancelled, JobContext, Retry
from .retry import MAX_RETRY_AFTER_S
from .running import Running, give_back

__all__ = ["Worker", "JobContext", "Retry", "Fatal", "JobCancelled", "Handler"]

log = logging.getLogger("tqd.worker")
F = TypeVar("F", bound=Handler)


def _retry_after_s(e: ClientError) -> float:
    """The wait a rate_limited answer asked for (its body's retry_after), 1 s if it said none."""
    v = e.extra.get("retry_after")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_RETRY_AFTER_S:
        return float(v)
    return 1.0


class Worker:
    """Runs registered handlers for jobs leased from `queues` (tried in the order given).

    `url`/`token` default to TQD_URL/TQD_TOKEN; `ca_file`, `cert_file`, `key_file`
    (TQD_CA_FILE, TQD_CLIENT_CERT, TQD_CLIENT_KEY) are the Client's (TLS).
    `lease_timeout_s` overrides each job's own timeout. `poll_wait_s` is how long one lease request long-polls;
    a stop waits for the one in flight, so it also bounds how long an idle
    worker takes to stop. `burst` makes `run()` return once nothing is queued,
    nothing runs, and no retry is due within `burst_wait_s`; it raises the
    `ClientError` if the server cannot be reached.
    """

    def __init__(self, url: str | Sequence[str] | None = None, *, queues: Sequence[str] = ("default",),
                 concurrency: int = 10, token: str | None = None, name: str | None = None,
                 lease_timeout_s: float | None = None, poll_wait_s: float = 5.0,
                 grace_s: float = 10.0, burst: bool = False, burst_wait_s: float = 60.0,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        self.url = url
        self.token = token
        self.ca_file, self.cert_file, self.key_file = ca_file, cert_file, key_file
        self.queues = list(queues)
        self.concurrency = concurrency
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.lease_timeout_s = lease_timeout_s
        self.poll_wait_s = poll_wait_s
        self.grace_s = grace_s
        self.burst = burst
        self.burst_wait_s = burst_wait_s
        self.handlers: dict[str, Handler] = {}
        self.client: Client = None  # type: ignore[assignment]  # made in run()
        self.acks: AckBatcher = None  # type: ignore[assignment]
        self.running: dict[str, Running] = {}
        self.threads: set[threading.Thread] = set()  # sync handlers, some maybe given up on
        self.jobs_done = 0
        self._stop: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._slot: asyncio.Event | None = None
        self._late_lease: asyncio.Future[list[LeasedJob]] | None = None  # in flight at stop
        self._error: ClientError | None = None  # burst mode: why it gave up

    # -- registration --

    def task(self, name: str) -> Callable[[F], F]:
        """Decorator: `@worker.task("send_email")` registers a handler for that job type."""
        def deco(fn: F) -> F:
            self.add_task(name, fn)
            return fn
        return deco

    def add_task(self, name: str, fn: Handler) -> None:
        if name in self.handlers:
            raise ValueError(f"a handler for {name!r} is already registered")
        self.handlers[name] = fn

    # -- running --

    def stop(self, *, hurry: bool = False) -> None:
        """Ask for a graceful stop (from the loop's thread); `hurry` skips the grace period."""
        if self._stop is None or self._hurry is None:
            raise RuntimeError("the worker is not running")
        self._stop.set()
        if hurry:
            self._hurry.set()

    def run_forever(self) -> None:
        """Run until SIGTERM/SIGINT (twice: no grace period). For `__main__` and the CLI."""
        import uvloop

        uvloop.run(self.run(handle_signals=True))

    async def run(self, *, handle_signals: bool = False) -> None:
        if not self.handlers:
            raise ValueError("no handlers registered: use @worker.task(name)")
        self._stop, self._hurry, self._slot = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._late_lease, self._error = None, None
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.client = Client(self.url, token=self.token, ca_file=self.ca_file,
                             cert_file=self.cert_file, key_file=self.key_file)
        self.acks = AckBatcher(self.client)
        self.acks.start()
        log.info("worker %s: queues %s, concurrency %d, types %s%s", self.name, ",".join(self.queues),
                 self.concurrency, ",".join(sorted(self.handlers)), " (burst)" if self.burst else "")
        tasks: set[asyncio.Task[None]] = set()
        try:
            await self._lease_loop(tasks)
            await self._drain(tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._late_lease is not None:  # only left pending if run() itself was cancelled
                self._late_lease.cancel()
                await asyncio.gather(self._late_lease, return_exceptions=True)
            await self.acks.stop()
            await self.client.close()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info("worker %s stopped after %d job(s)", self.name, self.jobs_done)
        if self._error is not None:
            raise self._error

    def _on_signal(self, sig: int) -> None:
        hurry = self._stop is not None and self._stop.is_set()
        log.info("worker %s: %s, %s", self.name, signal.Signals(sig).name,
                 "releasing running jobs now" if hurry else
                 f"stopping (running jobs get {self.grace_s:g}s)")
        self.stop(hurry=hurry)

    async def _lease_loop(self, tasks: set[asyncio.Task[None]]) -> None:
        assert self._stop is not None and self._slot is not None
        errors = 0
        while not self._stop.is_set():
            free = self.concurrency - len(self.running)
            if free <= 0:
                self._slot.clear()
                await _first(self._slot.wait(), self._stop.wait())
                continue
            try:
                jobs = await self._lease(free)
                if jobs is None:  # stop requested while the request was out: see _settle_late
                    return
                if self._stop.is_set():  # answered as the stop came: hand back, never start
                    await self._give_back_unstarted(jobs)
                    return
                errors = 0
                for job in jobs:
                    self._start(job, tasks)
                if not jobs and self.burst and await self._burst_done():
                    return
            except ClientError as e:
                if e.code == RateLimited.code:  # still past its rate limit after the client's tries
                    delay = _retry_after_s(e)
                    log.warning("lease rate limited (%s); again in %.1fs", e.message, delay)
                    await _first(asyncio.sleep(delay), self._stop.wait())
                    continue
                if self.burst:  # nobody is waiting for more work: say why and stop
                    log.error("worker %s: %s; stopping (burst)", self.name, e)
                    self._error = e
                    self._stop.set()
                    return
                errors += 1
                delay = min(0.5 * 2 ** min(errors, 5), 10.0)
                log.error("lease failed (%s); again in %.1fs", e, delay)
                await _first(asyncio.sleep(delay), self._stop.wait())

    async def _lease(self, free: int) -> list[LeasedJob] | None:
        """One lease request; None if the stop came first (the request then stays in flight as
        `_late_lease`: hanging up could strand jobs the server is handing us at that instant)."""
        assert self._stop is not None
        wait = 0.0 if self.burst else self.poll_wait_s
        lease = asyncio.ensure_future(self.client.lease(self.queues, free, wait, worker=self.name,
                                                        timeout=self.lease_timeout_s))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait((lease, stopping), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            lease.cancel()
            raise
        finally:
            stopping.cancel()
        if not lease.done():
            self._late_lease = lease
            return None
        return lease.result()

    async def _settle_late(self) -> None:
        """Wait for the lease request that was in flight at the stop; release what it brought."""
        assert self._hurry is not None
        lease = self._late_lease
        if lease is None:
            return
        log.info("worker %s: waiting up to %gs for the lease request in flight, to hand back "
                 "what it brings (signal again to skip)", self.name, self.poll_wait_s)
        try:
            jobs = await _first(asyncio.shield(lease), self._hurry.wait())
        except ClientError:
            return  # nothing was leased, or nothing can be done about it
        if jobs is None:  # hurried: hang up
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
            log.warning("worker %s: gave up on the lease request in flight; any job it was "
                        "handed goes back to the queue (the server releases it)", self.name)
            return
        await self._give_back_unstarted(jobs)

    async def _give_back_unstarted(self, jobs: list[LeasedJob]) -> None:
        await asyncio.gather(*(give_back(self.client, j, "leased as the worker stopped; not started",
                                          started=False)
                               for j in jobs))

    def _start(self, job: LeasedJob, tasks: set[asyncio.Task[None]]) -> None:
        r = Running(self, job)
        self.running[job.id] = r
        t = asyncio.create_task(r.run(), name=f"tqd-job-{job.id}")
        tasks.add(t)

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if self.running.get(job.id) is r:  # not the same job leased again meanwhile
                del self.running[job.id]
            self.jobs_done += 1
            assert self._slot is not None
            self._slot.set()
            if not t.cancelled() and t.exception() is not None:
                log.error("bug: job runner of %s failed", job.id, exc_info=t.exception())
        t.add_done_callback(done)

    async def _burst_done(self) -> bool:
        """Burst mode, nothing leased: done unless jobs run here or a retry is due soon."""
        assert self._slot is not None and self._stop is not None
        if self.running:
            self._slot.clear()
            await _first(self._slot.wait(), self._stop.wait())
            return False
        soon = False
        for q in self.queues:
            st = await self.client.queue(q)
            if st.queued and not st.paused:
                return False
            if st.scheduled:
                page = await self.client.jobs_page(q, state="scheduled", limit=1000)
                horizon = time.time() + self.burst_wait_s
                soon = soon or page.next is not None or any(
                    (j.run_at or 0) <= horizon for j in page.jobs)
        if soon:
            await _first(asyncio.sleep(0.2), self._stop.wait())
        return not soon

    async def _drain(self, tasks: set[asyncio.Task[None]]) -> None:
        """Let running jobs finish within the grace period, then release the rest; meanwhile,
        release whatever the lease request in flight at the stop brings."""
        assert self._hurry is not None
        late = asyncio.ensure_future(self._settle_late())
        try:
            await self._drain_running(tasks)
            await late
        finally:
            late.cancel()

    async def _drain_running(self, tasks: set[asyncio.Task[None]]) -> None:
        assert self._hurry is not None
        if tasks and not self._hurry.is_set():
            log.info("worker %s: waiting up to %gs for %d running job(s)", self.name, self.grace_s,
                     len(tasks))
            await _first(asyncio.wait(set(tasks), timeout=self.grace_s), self._hurry.wait())
        left = list(self.running.values())
        await asyncio.gather(*(r.release() for r in left))
        if tasks:  # handlers were cancelled (async) or told to stop (threads): runners end at once
            await asyncio.wait(set(tasks), timeout=5.0)
        # Sync handlers that were told to stop get a moment to clean up (daemon threads: a
        # handler that never checks `job.cancelled` cannot hold the process).
        deadline = time.monotonic() + min(self.grace_s, 2.0)
        for th in list(self.threads):
            await asyncio.to_thread(th.join, max(deadline - time.monotonic(), 0))


async def _first(*aws: Awaitable[Any]) -> Any:
    """Await whichever finishes first, cancel the others; the first's result (None if not aws[0])."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    first = tasks[0]
    if first in done:
        return first.result()
    return None
