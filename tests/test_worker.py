"""tqd.Worker against the real server: handlers, retries, heartbeats, cancellation, SIGTERM, SIGKILL."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from conftest import ServerProcess

from tqd.client import Client, ConnectionFailed, Job, LeasedJob
from tqd.client.worker import Fatal, JobContext, Retry, Worker


@pytest.fixture
def srv(server_factory: type[ServerProcess], tmp_path: Path) -> Iterator[ServerProcess]:
    """A server with no retry backoff, so retried jobs come back at once."""
    s = server_factory(tmp_path / "data", "--backoff-base-s", "0").start()
    yield s
    assert s.stop() == 0, s.log.decode(errors="replace")
    assert b"Traceback" not in s.log


@pytest.fixture
async def client(srv: ServerProcess) -> AsyncIterator[Client]:
    async with Client(srv.url) as c:
        yield c


async def wait_for(client: Client, jid: str, *states: str, timeout_s: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while True:
        job = await client.get(jid)
        if job.state in states or time.monotonic() > deadline:
            return job
        await asyncio.sleep(0.05)


async def test_handlers_run_and_results_are_acked(srv: ServerProcess, client: Client) -> None:
    w = Worker(srv.url, queues=["hi", "lo"], concurrency=4, burst=True)

    @w.task("add")
    async def add(job: JobContext) -> int:
        return int(job.payload["a"] + job.payload["b"])

    @w.task("upper")
    def upper(job: JobContext) -> str:  # sync: runs in a thread
        return str(job.payload).upper()

    ids = [(await client.enqueue("lo", "upper", "abc")).id]
    ids += [(await client.enqueue("hi", "add", {"a": i, "b": 1})).id for i in range(20)]
    await w.run()
    jobs = [await client.get(i) for i in ids]
    assert [j.state for j in jobs] == ["completed"] * 21
    assert jobs[0].result == "ABC" and [j.result for j in jobs[1:]] == list(range(1, 21))
    assert w.jobs_done == 21


async def test_failing_handler_is_retried_until_dead(srv: ServerProcess, client: Client) -> None:
    w = Worker(srv.url, queues=["f"], burst=True)
    runs = []

    @w.task("boom")
    async def boom(job: JobContext) -> None:
        runs.append(job.attempt)
        raise ValueError(f"broken on try {job.attempt}")

    r = await client.enqueue("f", "boom", None, max_attempts=3)
    await w.run()
    job = await client.get(r.id)
    assert runs == [1, 2, 3] and job.state == "dead"
    assert [e.error for e in job.errors] == [f"ValueError: broken on try {i}" for i in (1, 2, 3)]
    assert all(e.details and "Traceback" in e.details and "boom" in e.details for e in job.errors)


async def test_retry_fatal_and_unknown_type(srv: ServerProcess, client: Client) -> None:
    w = Worker(srv.url, queues=["r"], burst=True)

    @w.task("flaky")
    def flaky(job: JobContext) -> int:
        if job.attempt < 3:
            raise Retry(in_=0, reason="smtp busy")
        return job.attempt

    @w.task("fatal")
    async def fatal(job: JobContext) -> None:
        raise Fatal("unknown customer")

    a = await client.enqueue("r", "flaky", None)
    b = await client.enqueue("r", "fatal", None)
    c = await client.enqueue("r", "nobody-handles-me", None, max_attempts=1)
    await w.run()
    ja, jb, jc = [await client.get(x.id) for x in (a, b, c)]
    assert (ja.state, ja.result, [e.error for e in ja.errors]) == ("completed", 3, ["smtp busy"] * 2)
    assert (jb.state, jb.attempt, jb.errors[0].error) == ("dead", 1, "Fatal: unknown customer")
    assert jc.state == "dead" and "no handler" in jc.errors[0].error


async def test_handler_outlives_lease_timeout_with_heartbeats(srv: ServerProcess, client: Client) -> None:
    w = Worker(srv.url, queues=["long"], burst=True)

    @w.task("report")
    def report(job: JobContext) -> str:  # CPU-like sync job, 3 lease lengths long
        for pct in range(0, 101, 10):
            job.progress({"pct": pct})
            time.sleep(0.3)
        return "pdf"

    @w.task("areport")
    async def areport(job: JobContext) -> str:
        job.progress("half")
        await asyncio.sleep(3)
        return "apdf"

    a = await client.enqueue("long", "report", None, timeout=1)
    b = await client.enqueue("long", "areport", None, timeout=1)
    await w.run()
    ja, jb = await client.get(a.id), await client.get(b.id)
    assert (ja.state, ja.attempt, ja.errors, ja.result) == ("completed", 1, [], "pdf")
    assert (jb.state, jb.attempt, jb.errors, jb.result) == ("completed", 1, [], "apdf")
    assert ja.progress["pct"] > 0 and jb.progress == "half"  # sent by the heartbeats


async def test_cancelled_job_stops_its_handler(srv: ServerProcess, client: Client,
                                              caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "tqd.worker")
    w = Worker(srv.url, queues=["c"], concurrency=2)
    stopped: list[str] = []

    @w.task("sync_wait")
    def sync_wait(job: JobContext) -> None:
        while not job.cancelled:
            time.sleep(0.02)
        stopped.append("sync")

    @w.task("async_wait")
    async def async_wait(job: JobContext) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.append("async")
            raise

    a = await client.enqueue("c", "sync_wait", None, timeout=1)
    b = await client.enqueue("c", "async_wait", None, timeout=1)
    runner = asyncio.create_task(w.run())
    await wait_for(client, a.id, "active")
    await wait_for(client, b.id, "active")
    await client.cancel(a.id)
    await client.cancel(b.id)
    while len(stopped) < 2:
        await asyncio.sleep(0.05)
    w.stop()
    await runner
    assert sorted(stopped) == ["async", "sync"]
    assert (await client.get(a.id)).state == (await client.get(b.id)).state == "cancelled"
    # The log says why the handlers stopped: cancelled, not a lost lease.
    stops = sorted(r.getMessage() for r in caplog.records if "stopped:" in r.getMessage())
    assert len(stops) == 2 and all(m.endswith("stopped: cancelled") for m in stops), stops


async def test_lease_answered_after_stop_is_handed_back(srv: ServerProcess, client: Client,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop comes while the server is answering a parked long-poll with jobs: those jobs
    are handed back at once (queued, not started), never left active until their lease expires."""
    real_lease = Client.lease
    parked = asyncio.Event()
    w = Worker(srv.url, queues=["race"], concurrency=8, poll_wait_s=30)

    async def lease_answered_after_stop(self: Client, *a: object, **kw: object) -> list[LeasedJob]:
        parked.set()
        jobs = await real_lease(self, *a, **kw)
        if jobs:  # committed as leased by the server; the answer reaches us only after the stop
            w.stop()
            for _ in range(20):  # let the worker act on the stop first (scheduling, not time)
                await asyncio.sleep(0)
        return jobs

    monkeypatch.setattr(Client, "lease", lease_answered_after_stop)
    ran: list[str] = []

    @w.task("t")
    async def t(job: JobContext) -> None:
        ran.append(job.id)

    runner = asyncio.create_task(w.run())
    await parked.wait()
    ids = [r.id for r in await client.enqueue_many("race", [{"type": "t"}] * 4)]
    await asyncio.wait_for(runner, 30)  # hang guard
    jobs = [await client.get(i) for i in ids]
    assert ran == [] and [j.state for j in jobs] == ["queued"] * 4
    # released, not failed: the lease that was never run costs no attempt and logs no error
    assert [(j.attempt, j.errors) for j in jobs] == [(0, [])] * 4


async def test_sigint_as_jobs_arrive_leaves_none_active(srv: ServerProcess, client: Client,
                                                        tmp_path: Path) -> None:
    """SIGINT sent the moment jobs reach a worker's parked long-poll: whatever the interleaving,
    every job ends completed, or queued again; none is left active without a handler."""
    for _ in range(3):
        proc = spawn_worker(tmp_path, srv.url, "--grace", "5", POLL_S="30")
        try:
            assert proc.stderr is not None
            started = b""  # its first log line comes once its signal handlers are in place
            while b"concurrency" not in started:
                started = await asyncio.to_thread(proc.stderr.readline)
                assert started, "the worker exited before it started"
            res = await client.enqueue_many("sig", [{"type": "short"}] * 4)
            proc.send_signal(signal.SIGINT)
            rc = await asyncio.to_thread(proc.wait, 30)
        finally:
            log = end_worker(proc)
        assert rc == 0, log
        states = [(await client.get(r.id)).state for r in res]
        assert set(states) <= {"completed", "queued"}, (states, log)
        for r, state in zip(res, states, strict=True):  # empty the queue for the next round
            if state == "queued":
                await client.cancel(r.id)


async def test_burst_worker_gives_up_when_server_unreachable() -> None:
    w = Worker("http://127.0.0.1:1", queues=["q"], burst=True)
    w.add_task("t", lambda job: None)
    with pytest.raises(ConnectionFailed, match="cannot connect"):
        await asyncio.wait_for(w.run(), 60)  # hang guard: it used to retry for ever


async def test_stop_releases_running_jobs_after_grace(srv: ServerProcess, client: Client) -> None:
    w = Worker(srv.url, queues=["g"], grace_s=0.3)

    @w.task("forever")
    async def forever(job: JobContext) -> None:
        await asyncio.sleep(60)

    r = await client.enqueue("g", "forever", None, timeout=30)
    runner = asyncio.create_task(w.run())
    await wait_for(client, r.id, "active")
    w.stop()
    await runner
    job = await client.get(r.id)
    assert (job.state, job.errors[-1].error) == ("queued", "worker shutdown")


WORKER_MODULE = """
import os, time
from tqd import Worker

worker = Worker(queues=["sig"], concurrency=4, lease_timeout_s=float(os.environ.get("LEASE_S", "30")),
                poll_wait_s=float(os.environ.get("POLL_S", "5")))
marks = os.environ["MARKS"]

def mark(text):
    with open(marks, "a") as f:
        f.write(text + "\\n")

@worker.task("short")
def short(job):
    mark(f"start short {os.getpid()}")
    time.sleep(1.0)
    return "short done"

@worker.task("long")
def long(job):
    mark(f"start long {os.getpid()}")
    while not job.cancelled:
        time.sleep(0.05)
    mark("long stopped")
"""


def spawn_worker(tmp_path: Path, url: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
    (tmp_path / "sigtasks.py").write_text(textwrap.dedent(WORKER_MODULE))
    return subprocess.Popen(
        [sys.executable, "-m", "tqd", "worker", "sigtasks:worker", "--url", url, *args],
        cwd=tmp_path, env={**os.environ, "MARKS": str(tmp_path / "marks"), **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def end_worker(proc: subprocess.Popen[bytes]) -> str:
    """Kill the worker if it still runs; its log."""
    proc.kill()
    assert proc.stderr is not None
    log = proc.stderr.read().decode()
    proc.stderr.close()
    return log


async def wait_marks(path: Path, n: int) -> list[str]:
    while not path.exists() or len(lines := path.read_text().splitlines()) < n:
        await asyncio.sleep(0.05)
    return lines


async def test_sigterm_finishes_or_releases_never_loses(srv: ServerProcess, client: Client,
                                                        tmp_path: Path) -> None:
    short = await client.enqueue("sig", "short", None)
    long = await client.enqueue("sig", "long", None)
    proc = spawn_worker(tmp_path, srv.url, "--grace", "3")
    try:
        await wait_marks(tmp_path / "marks", 2)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.to_thread(proc.wait, 30)
    finally:
        log = end_worker(proc)
    assert rc == 0, log
    js, jl = await client.get(short.id), await client.get(long.id)
    assert (js.state, js.result) == ("completed", "short done"), log
    # The long job was handed back at once (not left to its 30 s lease), ready for another worker.
    assert (jl.state, jl.errors[-1].error) == ("queued", "worker shutdown"), log
    assert "long stopped" in (tmp_path / "marks").read_text()


async def test_sigkilled_worker_job_runs_again_exactly_once(srv: ServerProcess, client: Client,
                                                           tmp_path: Path) -> None:
    r = await client.enqueue("sig", "long", None)
    proc = spawn_worker(tmp_path, srv.url, LEASE_S="1")
    try:
        await wait_marks(tmp_path / "marks", 1)
        proc.kill()
        proc.wait(10)
    finally:
        proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()
    job = await wait_for(client, r.id, "queued", "scheduled")  # the lease expired
    assert job.errors[-1].error == "lease_expired"
    runs: list[int] = []
    w = Worker(srv.url, queues=["sig"], burst=True)

    @w.task("long")
    async def again(job: JobContext) -> str:
        runs.append(job.attempt)
        return "second time"

    await w.run()
    job = await client.get(r.id)
    assert runs == [2] and (job.state, job.attempt, job.result) == ("completed", 2, "second time")
    assert (tmp_path / "marks").read_text().count("start long") == 1
