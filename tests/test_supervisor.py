"""Background loops under one supervisor: a loop that raises is logged and started again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from tqd.config import Settings
from tqd.queue import ops
from tqd.service import QueueService, spawn_writer
from tqd.supervisor import LoopState, Supervisor


async def _until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_a_failing_loop_is_restarted_with_backoff_and_stops_cleanly() -> None:
    sup = Supervisor(backoff_min_s=0.01, backoff_max_s=0.05)
    passes: list[int] = []

    async def flaky(state: LoopState) -> None:
        passes.append(state.restarts)
        if state.restarts < 3:
            raise RuntimeError(f"boom {state.restarts}")
        while True:
            state.runs += 1
            await asyncio.sleep(0.01)

    async def once(state: LoopState) -> None:
        state.runs += 1

    st = sup.start("flaky", flaky)
    done = sup.start("once", once)
    with pytest.raises(ValueError):
        sup.start("once", once)
    await _until(lambda: st.runs > 0)
    assert passes == [0, 1, 2, 3] and st.restarts == 3 and st.running
    assert st.last_error == "RuntimeError: boom 2"
    assert done.runs == 1 and not done.running and done.restarts == 0
    await sup.stop()  # cancels, waits, never raises
    assert not st.running


async def test_stop_ends_a_loop_that_lost_its_cancel(caplog: pytest.LogCaptureFixture) -> None:
    """A cancel can be lost (asyncio.wait_for on 3.11, when its awaitable finishes in the same
    tick): the loop goes on, and a stop that only cancelled once would wait for ever. It
    cancels again; a loop that never stops is named, with where it is, and left behind."""
    sup = Supervisor()
    lost: list[str] = []

    async def deaf_once(state: LoopState) -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                if not lost:  # as if the cancel had been swallowed
                    lost.append("once")
                    continue
                raise

    async def deaf(state: LoopState) -> None:
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                lost.append("again")
                if deaf_until_set.is_set():  # the test's end: let the event loop close
                    raise

    sup.start("deaf-once", deaf_once)
    await asyncio.sleep(0.05)
    async with asyncio.timeout(10):
        await sup.stop(recancel_s=0.1)
    assert lost == ["once"] and not sup.states["deaf-once"].running

    sup = Supervisor()
    deaf_until_set = asyncio.Event()
    sup.start("deaf", deaf)
    task = sup._tasks["deaf"]  # (stop() forgets it: this test ends it)
    await asyncio.sleep(0.05)
    try:
        async with asyncio.timeout(20):
            await sup.stop(recancel_s=0.1, warn_s=0.3, give_up_s=0.6)
    finally:
        deaf_until_set.set()
        task.cancel()
    assert lost.count("again") >= 3
    text = caplog.text
    assert "loop deaf has not stopped within 0.3 s; cancelling it again; it is at:" in text, text
    assert "test_supervisor.py" in text and "in deaf" in text, text
    assert "loops deaf did not stop within 0.6 s; shutting down without them" in text, text


def test_the_timer_loop_survives_a_bug(tmp_path: Path) -> None:
    """Delayed jobs still become ready after one pass of the timer loop raised."""
    settings = Settings(data_dir=tmp_path)
    fd, handle = spawn_writer(settings)  # before the event loop: it forks
    asyncio.run(_timer_loop_survives_a_bug(QueueService(settings, lock_fd=fd, writer=handle)))


async def _timer_loop_survives_a_bug(svc: QueueService) -> None:
    await svc.start()
    try:
        real = svc._submit
        failed: list[ops.Op] = []

        async def submit(op: ops.Op) -> Any:
            if isinstance(op, ops.Tick) and not failed:
                failed.append(op)
                raise RuntimeError("a bug in one pass")
            return await real(op)

        svc._submit = submit  # type: ignore[method-assign]
        (res,) = await svc.enqueue("q", [ops.NewJob(None, None, b"1", 5, svc.clock.now() + 0.2, 3,
                                                    30.0, None)])
        assert res.state == "scheduled"
        await _until(lambda: svc.get_job(res.id).state == "queued")
        timers = svc.loops.states["timers"]
        assert failed and timers.restarts == 1 and timers.running
        assert timers.last_error == "RuntimeError: a bug in one pass"
    finally:
        await svc.stop()
