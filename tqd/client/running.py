"""One job in a worker: `Running` runs its handler, heartbeats its lease, reports the outcome.

An async handler runs as a task; a sync one in a daemon thread of its own (`_in_thread`: a
stuck handler cannot block the worker's exit). The lease is extended every third of its
length; a heartbeat answered `409`/`404` means the lease is gone (the job was cancelled, or
its lease expired and it went elsewhere): the handler is told (`JobContext.cancelled`), an
async one cancelled, and its outcome dropped. Each event is one line (joblog.py).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import msgspec

from . import joblog
from .acks import again, retry_delay
from .api import Client, ClientError, InvalidRequest, LeasedJob, LeaseLost, NotFound, transient
from .context import Fatal, Handler, JobCancelled, JobContext, Retry

if TYPE_CHECKING:
    from .worker import Worker

_enc = msgspec.json.Encoder()


async def _in_thread(fn: Handler, ctx: JobContext, live: set[threading.Thread]) -> Any:
    """Run a sync handler in a daemon thread (one per job: a stuck handler cannot block exit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():
            fut.set_result(value) if ok else fut.set_exception(value)

    def target() -> None:
        try:
            value, ok = fn(ctx), True
        except BaseException as e:  # noqa: B036 - handed to the loop, never swallowed
            value, ok = e, False
        live.discard(threading.current_thread())
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop closed meanwhile (worker gave the job up)
            pass

    th = threading.Thread(target=target, name=f"tqd-job-{ctx.id}", daemon=True)
    live.add(th)
    th.start()
    return await fut


async def _lost_reason(client: Client, jid: str, code: str) -> str:
    """Why a lease is gone, for the log: "cancelled", or "lease lost (...)". One GET, on loss only."""
    if code == NotFound.code:
        return "lease lost (the job was deleted)"
    try:
        job = await client.get(jid)
    except ClientError as e:
        return f"lease lost (job unreadable: {e})"
    if job.state == "cancelled":
        return "cancelled"
    return f"lease lost (the job is {job.state}, attempt {job.attempt})"


async def give_back(client: Client, job: LeasedJob, why: str, elapsed_s: float | None = None,
                    started: bool = True) -> None:
    """Give a leased job back for another worker to take at once (worker shutdown). A job
    that never started is released (its lease does not count as an attempt); one whose
    handler was interrupted fails with retry_in 0 (it ran, so the attempt counts). One
    call (the client waits out a failover): retrying longer would only hold up the
    shutdown for a job that runs again anyway once its lease expires."""
    try:
        if started:
            await client.fail(job.id, job.lease, "worker shutdown", None, retry=True, retry_in=0)
        else:
            await client.release(job.id, job.lease)
        joblog.released(job, elapsed_s, why)
    except ClientError as e:
        joblog.unreported(job, elapsed_s or 0.0, f"release failed ({e}); it runs again when its "
                          "lease expires", str(e))


class Running:
    """One job in progress: runs its handler, heartbeats its lease, reports the outcome."""

    def __init__(self, w: Worker, job: LeasedJob) -> None:
        self.w = w
        self.job = job
        self.ctx = JobContext(job, w.name)
        self.lease_s = w.lease_timeout_s or job.timeout or 60.0
        self.started = time.monotonic()
        self.lease_until = self.started + self.lease_s  # by our clock, moved on by each heartbeat
        self.released = False  # set when the worker gave the job back at shutdown
        self.handler_task: asyncio.Task[Any] | None = None

    def _elapsed(self) -> float:
        return time.monotonic() - self.started

    async def run(self) -> None:
        job, ctx = self.job, self.ctx
        fn = self.w.handlers.get(job.type or "")
        joblog.started(job)
        if fn is None:
            await self._fail(f"no handler for job type {job.type!r} on worker {self.w.name}", None,
                             retry=True, retry_in=None)
            return
        hb = asyncio.create_task(self._heartbeats(), name=f"tqd-hb-{job.id}")
        try:
            if inspect.iscoroutinefunction(fn):
                self.handler_task = asyncio.create_task(fn(ctx))
            else:
                self.handler_task = asyncio.ensure_future(_in_thread(fn, ctx, self.w.threads))
            result = await self.handler_task
        except Retry as e:
            await self._fail(e.reason, None, retry=True, retry_in=e.in_)
        except Fatal as e:
            await self._fail(f"Fatal: {e}", traceback.format_exc(), retry=False, retry_in=None)
        except (JobCancelled, asyncio.CancelledError):
            if not ctx.cancelled:  # the worker itself is being cancelled
                raise
            if not self.released:
                joblog.lost(job, self._elapsed(), ctx.cancel_reason, f"stopped: {ctx.cancel_reason}")
        except Exception as e:
            await self._fail(f"{type(e).__name__}: {e}", traceback.format_exc(), retry=True,
                             retry_in=None)
        else:
            await self._ack(result)
        finally:
            hb.cancel()
            await asyncio.gather(hb, return_exceptions=True)

    async def _ack(self, result: Any) -> None:
        job, reason = self.job, self.ctx.cancel_reason
        if self.ctx.cancelled:
            joblog.lost(job, self._elapsed(), reason,
                        f"finished after losing its lease ({reason}); result dropped")
            return
        try:
            raw = _enc.encode(result)
        except (TypeError, msgspec.EncodeError) as e:
            await self._fail(f"result is not JSON: {e}", None, retry=False, retry_in=None)
            return
        err = await self.w.acks.ack(job, raw, lambda: self.lease_until)
        if err is None:
            joblog.completed(job, self._elapsed(), raw)
        elif err in ("lease_lost", "not_found"):
            why = await _lost_reason(self.w.client, job.id, err)
            joblog.lost(job, self._elapsed(), why, f"finished, but {why}; result dropped")
        else:
            joblog.unreported(job, self._elapsed(), f"ack not stored ({err}); it runs again when "
                              "its lease expires", err)

    async def _fail(self, error: str, details: str | None, *, retry: bool,
                    retry_in: float | None) -> None:
        job = self.job
        if self.ctx.cancelled:
            reason = self.ctx.cancel_reason
            joblog.lost(job, self._elapsed(), reason, f"failed after losing its lease: {error}", error)
            return
        try:
            # A repeated fail is answered as the first was: safe to make again.
            res = await again(lambda: self.w.client.fail(job.id, job.lease, error, details,
                                                          retry=retry, retry_in=retry_in),
                               lambda: self.lease_until, f"failure report of {job.id}")
        except (LeaseLost, NotFound) as e:
            why = await _lost_reason(self.w.client, job.id, e.code)
            joblog.lost(job, self._elapsed(), why, f"failed, but {why}: {error}", error)
            return
        except ClientError as e:
            joblog.unreported(job, self._elapsed(), f"could not report failure ({e}): {error}", str(e),
                              error)
            return
        if res.state == "dead":
            joblog.failed(job, self._elapsed(), error, dead=True)
        else:
            due = max(res.run_at - time.time(), 0) if res.run_at else None
            joblog.failed(job, self._elapsed(), error, dead=False, retry_in_s=due)

    async def _heartbeats(self) -> None:
        """Extend the lease every third of its length, sending the handler's latest progress;
        after a failure, again soon (backing off up to that third)."""
        interval = max(self.lease_s / 3, 0.05)
        delay, failures = interval, 0
        log, job = joblog.log, self.job
        while True:
            await asyncio.sleep(delay)
            ctx = self.ctx
            progress, ctx._progress_dirty = (ctx._progress if ctx._progress_dirty else None), False
            sent = time.monotonic()
            try:
                try:
                    await self.w.client.heartbeat(job.id, job.lease, extend=self.lease_s,
                                                  progress=progress)
                except InvalidRequest as e:
                    if progress is None:
                        raise
                    # Keep the lease even if the server refuses this progress value.
                    log.warning("progress of %s refused (%s); heartbeat without it", job.id, e,
                                extra={"job": job.id, "queue": job.queue})
                    await self.w.client.heartbeat(job.id, job.lease, extend=self.lease_s)
            except (LeaseLost, NotFound) as e:
                self.lose(await _lost_reason(self.w.client, job.id, e.code))
                return
            except ClientError as e:
                failures += 1
                delay = min(retry_delay(failures), interval) if transient(e) else interval
                log.warning("heartbeat of %s failed: %s; again in %.1fs", job.id, e, delay,
                            extra={"job": job.id, "queue": job.queue, "error": str(e)})
                if progress is not None:
                    ctx._progress_dirty = True  # send the latest value next time
            else:
                self.lease_until = max(self.lease_until, sent + self.lease_s)
                delay, failures = interval, 0

    def lose(self, reason: str) -> None:
        self.ctx._cancel(reason)
        task = self.handler_task
        if task is not None and not task.done():
            task.cancel()  # an async handler stops at its next await; a thread runs on, unheard

    async def release(self) -> None:
        """Give the job back for another worker to run at once (graceful shutdown)."""
        self.released = True
        self.lose("worker shutting down")
        await give_back(self.w.client, self.job, "worker shutdown", self._elapsed())
