"""What a handler gets and may raise: `JobContext` (the leased job, progress, the
cancellation flag), and `Retry`, `Fatal`, `JobCancelled`.

`tqd.Worker` (worker.py) runs handlers; these names are exported from there and from `tqd`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .api import LeasedJob

__all__ = ["JobContext", "Retry", "Fatal", "JobCancelled", "Handler"]

Handler = Callable[["JobContext"], Any]


class Retry(Exception):
    """Raise from a handler to retry the job `in_` seconds from now (None: server backoff)."""

    def __init__(self, in_: float | None = None, reason: str = "retry requested") -> None:
        super().__init__(reason)
        self.in_ = in_
        self.reason = reason


class Fatal(Exception):
    """Raise from a handler to fail the job without retry: it goes dead at once."""


class JobCancelled(Exception):
    """Raised by `JobContext.check()` once the job's lease is lost or the worker gives it up."""


class JobContext:
    """What a handler gets: the leased job, a progress reporter and the cancellation flag.

    Safe to use from the handler's thread (sync handlers) and the event loop.
    """

    def __init__(self, job: LeasedJob, worker_name: str) -> None:
        self.job = job
        self.worker = worker_name
        self._progress: Any = None
        self._progress_dirty = False
        self._cancelled = threading.Event()
        self.cancel_reason = ""

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def type(self) -> str | None:
        return self.job.type

    @property
    def traceparent(self) -> str | None:
        """The W3C trace context the job was enqueued with (None: none): continue the
        producer's trace from it (e.g. OpenTelemetry's TraceContextTextMapPropagator)."""
        return self.job.traceparent

    @property
    def queue(self) -> str:
        return self.job.queue

    @property
    def payload(self) -> Any:
        return self.job.payload

    @property
    def attempt(self) -> int:
        """1 on the first run; `max_attempts` on the last one before the job goes dead."""
        return self.job.attempt

    @property
    def max_attempts(self) -> int:
        return self.job.max_attempts

    def progress(self, value: Any) -> None:
        """Report progress (any JSON value); sent with the next heartbeat."""
        self._progress = value
        self._progress_dirty = True

    @property
    def cancelled(self) -> bool:
        """True once the handler should stop: lease lost, job cancelled, or worker giving up."""
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise JobCancelled if the handler should stop (call it between steps)."""
        if self._cancelled.is_set():
            raise JobCancelled(self.cancel_reason)

    def _cancel(self, reason: str) -> None:
        if not self._cancelled.is_set():
            self.cancel_reason = reason
            self._cancelled.set()
