"""How a worker's reports reach the server through failures that may pass.

`AckBatcher` turns many acks into few `POST /v1/ack` requests; `again` makes a call (a
failure report) again. Both keep at it, after the client's own retries (it waits out a
failover), for as long as the job's lease may still be alive: after that the server
fences the report anyway, and the job runs again. Acks and fails are safe to repeat: a
repeat is answered as the first one was.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec

from .api import Client, ClientError, LeasedJob, transient

__all__ = ["AckBatcher", "again", "retry_delay", "RETRY_FIRST_S", "RETRY_MAX_S"]

log = logging.getLogger("tqd.worker")
T = TypeVar("T")
# Waits before a call that failed for a reason that may pass is made again: doubling from
# the first, at most the second (a failover is over within a few seconds).
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 5.0


def retry_delay(failures: int) -> float:
    """The wait before the next try after `failures` failures in a row."""
    return float(min(RETRY_FIRST_S * 2 ** (failures - 1), RETRY_MAX_S))


async def again(call: Callable[[], Awaitable[T]], until: Callable[[], float], what: str) -> T:
    """`call()`, made again after an error that may pass while `until()` (a monotonic time:
    how long the job's lease may be alive) is ahead; else the error is raised."""
    failures = 0
    while True:
        try:
            return await call()
        except ClientError as e:
            failures += 1
            delay = retry_delay(failures)
            if not transient(e) or time.monotonic() + delay >= until():
                raise
            log.warning("%s failed (%s); again in %.1fs", what, e, delay)
            await asyncio.sleep(delay)


@dataclass
class _PendingAck:
    id: str
    lease: str
    result: msgspec.Raw
    until: Callable[[], float]  # monotonic time until which the lease may be alive
    fut: asyncio.Future[str | None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class AckBatcher:
    """Collects acks while one `POST /v1/ack` is in flight and sends them as the next batch.

    A batch that fails for a reason that may pass is sent again (with the acks that came
    meanwhile) after a backoff, each ack for as long as its job's lease may be alive: a
    repeated ack is answered as the first was, so resending one that was applied is safe.
    """

    def __init__(self, client: Client, max_batch: int = 500) -> None:
        self.client = client
        self.max_batch = max_batch
        self._pending: list[_PendingAck] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failures = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="tqd-acks")

    async def ack(self, job: LeasedJob, result: bytes, until: Callable[[], float]) -> str | None:
        """Queue an ack; returns None when stored, else the error code (lease_lost, ...)."""
        item = _PendingAck(job.id, job.lease, msgspec.Raw(result), until)
        self._pending.append(item)
        self._wake.set()
        return await item.fut

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending[:self.max_batch], self._pending[self.max_batch:]
                await self._send(batch)

    async def _send(self, batch: list[_PendingAck], *, resend: bool = True) -> None:
        try:
            lines = await self.client.ack_many((a.id, a.lease, a.result) for a in batch)
            errors: list[str | None] = [ln.error if not ln.ok else None for ln in lines]
            self._failures = 0
        except ClientError as e:
            if resend and transient(e):
                self._failures += 1
                delay = retry_delay(self._failures)
                now = time.monotonic()
                keep = [a for a in batch if a.until() > now + delay]
                batch = [a for a in batch if a.until() <= now + delay]
                if keep:
                    log.warning("ack of %d job(s) failed: %s; again in %.1fs", len(keep), e, delay)
                    self._pending[:0] = keep
                    await asyncio.sleep(delay)
            if batch:
                log.error("ack of %d job(s) failed: %s (they will run again when their lease "
                          "expires)", len(batch), e)
            errors = [e.code] * len(batch)
        for a, err in zip(batch, errors, strict=False):
            if not a.fut.done():
                a.fut.set_result(err)

    async def stop(self) -> None:
        """Send what is pending, then end the loop."""
        if self._pending:
            batch, self._pending = self._pending, []
            await self._send(batch, resend=False)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
