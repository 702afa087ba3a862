"""Named background loops with one owner: start, restart with backoff, stop, state.

Every loop of the server (timers, write deadlines, history; in a cluster the lease,
replication and in-sync set) runs under the `Supervisor`. A loop is an async function that
runs until it is cancelled, given its `LoopState` to count its work in. If it
raises, the supervisor logs the error with its traceback, counts a restart and
runs it again after a backoff (doubling from `backoff_min_s` up to
`backoff_max_s`; back to the minimum once a run has lasted `healthy_after_s`):
a bug in one pass of a loop must not stop lease expiry, delayed jobs and
retention for the life of the process, as an unguarded task would, silently.
If it returns, it is done. `stop()` cancels them all and waits, and never
raises: a loop's failure is in its state, not in the shutdown path.

Nor does `stop()` hang. A cancellation can be lost: Python 3.11's `asyncio.wait_for`
returns the result when its awaitable finishes in the same tick as the cancel, and the
loop goes on (tqd uses `asyncio.timeout`; ruff's TID251 bans `wait_for` in tqd/, see
pyproject.toml). So `stop()` cancels again every `RECANCEL_S` while a loop still runs,
logs each loop still running after `STOP_WARN_S` with where it waits, and gives up on
it after `STOP_GIVE_UP_S`.

States are plain objects, read by `/readyz`, `/metrics`, `/v1/cluster` and the
dashboard's cluster page.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("tqd.supervisor")
RECANCEL_S = 1.0  # stop(): cancel a loop again this often while it still runs
STOP_WARN_S = 3.0  # ... log the loops still running after this long
STOP_GIVE_UP_S = 10.0  # ... and stop waiting for them after this long

Loop = Callable[["LoopState"], Awaitable[None]]


class LoopState:
    """What a background loop is doing."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.running = False
        self.runs = 0  # passes of work done (the loop counts them)
        self.errors = 0  # errors the loop handled itself (the loop counts them)
        self.restarts = 0  # times it raised and was started again
        self.last_run = 0.0  # wall time of the last pass
        self.last_error: str | None = None  # the last exception that ended a run
        self.last_error_at = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "running": self.running, "runs": self.runs,
                "errors": self.errors, "restarts": self.restarts, "last_run": self.last_run,
                "last_error": self.last_error, "last_error_at": self.last_error_at}


class Supervisor:
    def __init__(self, *, backoff_min_s: float = 0.1, backoff_max_s: float = 30.0,
                 healthy_after_s: float = 60.0) -> None:
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.healthy_after_s = healthy_after_s
        self.states: dict[str, LoopState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, loop: Loop) -> LoopState:
        """Run `loop` under supervision as `name` (unique); its state."""
        if name in self.states:
            raise ValueError(f"a loop named {name!r} is already supervised")
        state = self.states[name] = LoopState(name)
        self._tasks[name] = asyncio.create_task(self._supervise(state, loop), name=f"tqd-{name}")
        return state

    async def _supervise(self, state: LoopState, loop: Loop) -> None:
        backoff = self.backoff_min_s
        while True:
            started = time.monotonic()
            state.running = True
            try:
                await loop(state)
                state.running = False
                log.info("loop %s finished", state.name)
                return
            except asyncio.CancelledError:
                state.running = False
                raise
            except Exception as e:  # noqa: BLE001 - whatever it was, the loop must go on
                state.running = False
                state.restarts += 1
                state.last_error, state.last_error_at = f"{type(e).__name__}: {e}", time.time()
                if time.monotonic() - started >= self.healthy_after_s:
                    backoff = self.backoff_min_s
                log.exception("loop %s failed (restart %d in %.1f s)", state.name, state.restarts,
                              backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.backoff_max_s)

    async def stop(self, *, recancel_s: float = RECANCEL_S, warn_s: float = STOP_WARN_S,
                   give_up_s: float = STOP_GIVE_UP_S) -> None:
        """Cancel every loop and wait for them to end: cancel again while one runs (a
        cancellation can be lost) every ``recancel_s``, say which still run after
        ``warn_s`` and where, give up on them after ``give_up_s``."""
        tasks = dict(self._tasks)
        self._tasks.clear()
        started = time.monotonic()
        warned = False
        while pending := [name for name, t in tasks.items() if not t.done()]:
            waited = time.monotonic() - started
            if waited >= give_up_s:
                log.error("loops %s did not stop within %.1f s; shutting down without them",
                          ", ".join(pending), give_up_s)
                break
            if waited >= warn_s and not warned:
                warned = True
                for name in pending:
                    where = "".join(f"\n  {f.f_code.co_filename}:{f.f_lineno} in {f.f_code.co_name}"
                                    for f in _awaiting(tasks[name].get_coro()))
                    log.warning("loop %s has not stopped within %.1f s; cancelling it again; "
                                "it is at:%s", name, warn_s, where)
            for name in pending:
                tasks[name].cancel()
            await asyncio.wait([tasks[n] for n in pending], timeout=recancel_s)
        for t in tasks.values():
            if t.done() and not t.cancelled():
                t.exception()  # retrieved: a loop's failure is in its state, not in shutdown


def _awaiting(coro: Any) -> list[Any]:
    """The frames of a suspended coroutine down to what it awaits (Task.get_stack gives
    only the outermost)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames
