"""tqd.Client, SyncClient, Worker and `tqd cluster` against three real nodes: writes through
a follower's 307, and no error surfacing while the leader is SIGKILLed and another takes
over (the client waits out the failover, the worker acks its jobs on the new leader)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from _cluster import Cluster, Node

from tqd.cli import main
from tqd.client import Client, JobContext, SyncClient, Worker
from tqd.client.retry import FAILOVER_MAX_BACKOFF_S, CallRetry, Outcome, Policy

pytestmark = pytest.mark.timeout(90)


async def _until(cond: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _kill_and_wait(c: Cluster, leader: Node) -> Node:
    await asyncio.to_thread(leader.kill)
    return await asyncio.to_thread(c.leader, 30.0, leader)


async def test_a_client_of_every_node_keeps_enqueuing_through_a_leader_kill(tmp_path: Path) -> None:
    with Cluster(tmp_path).start() as c:
        leader = c.settled()
        acked: dict[str, str] = {}  # key -> id, for every enqueue that was answered
        slowest = 0.0
        stop = asyncio.Event()
        async with Client(c.urls) as client:

            async def produce() -> None:
                nonlocal slowest
                i = 0
                while not stop.is_set():
                    t0 = time.monotonic()
                    r = await client.enqueue("fo", "t", i, key=f"k{i}")
                    slowest = max(slowest, time.monotonic() - t0)
                    acked[f"k{i}"] = r.id
                    i += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(produce())
            await _until(lambda: len(acked) >= 20 or task.done())
            new = await _kill_and_wait(c, leader)
            after = len(acked)
            await _until(lambda: len(acked) >= after + 20 or task.done())
            stop.set()
            await task  # an error that surfaced is raised here
        assert slowest > 1.0  # one enqueue did wait out the failover
        async with Client(new.url) as check:
            stored = {j.key: j.id async for j in check.jobs("fo", page_size=1000)}
        assert {k: stored.get(k) for k in acked} == acked


async def test_a_client_of_one_follower_writes_through_the_redirect(tmp_path: Path) -> None:
    with Cluster(tmp_path).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        async with Client(follower.url) as client:
            first = await client.enqueue("via", "t", 1)  # a plain enqueue: sent once, redirected
            assert client.leader == leader.url  # the next writes go there directly
            (job,) = await client.lease("via")
            await client.ack(job.id, job.lease, "done")

            def sync_enqueue() -> str:
                with SyncClient(follower.url) as sc:
                    return sc.enqueue("via", "t", 2).id

            second = await asyncio.to_thread(sync_enqueue)
            # The leader it learned dies: the client goes back to its follower, which sends it
            # on to the dead leader, then to the new one. Nothing was applied meanwhile, so even
            # a plain enqueue is made again.
            new = await _kill_and_wait(c, leader)
            third = await client.enqueue("via", "t", 3)
            assert client.leader in (None, new.url)  # None: the follower itself took over
        async with Client(new.url) as check:
            assert (await check.get(first.id)).state == "completed"
            assert [(await check.get(i)).payload for i in (second, third.id)] == [2, 3]


def test_tqd_cluster_names_the_leader_and_its_followers(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with Cluster(tmp_path).start() as c:
        leader = c.settled()
        follower = next(n for n in c.nodes if n is not leader)
        # One follower's URL is enough: it names the leader, which lists the other follower.
        assert main(["cluster", "--url", follower.url]) == 0
        out = capsys.readouterr().out
        rows = {ln.split("│")[1].strip(): ln for ln in out.splitlines() if ln.count("│") > 2}
        assert sorted(rows) == ["n1", "n2", "n3"]
        assert f"leader {leader.name} at {leader.url}" in out
        for n in c.nodes:
            assert n.url in rows[n.name]
            assert ("leader" if n is leader else "follower") in rows[n.name]
        assert main(["cluster", "--url", leader.url, "--json"]) == 0
        nodes = json.loads(capsys.readouterr().out)
        assert sorted((n["node"], n["role"]) for n in nodes) == sorted(
            (n.name, "leader" if n is leader else "follower") for n in c.nodes)
        for n in c.nodes:
            n.kill()
        assert main(["cluster", "--url", ",".join(c.urls)]) == 1
        captured = capsys.readouterr()
        assert captured.out.count("down") == 3 and "no node answers" in captured.err


async def test_a_worker_acks_its_jobs_on_the_new_leader_during_a_failover(tmp_path: Path) -> None:
    with Cluster(tmp_path).start() as c:
        leader = c.settled()
        async with Client(c.urls) as client:
            ids = [(await client.enqueue("w", "quick", i, timeout=10)).id for i in range(20)]
        runs: dict[str, int] = {}
        finished: list[float] = []
        w = Worker(c.urls, queues=["w"], concurrency=20, poll_wait_s=1.0)

        @w.task("quick")
        async def quick(job: JobContext) -> int:
            runs[job.id] = runs.get(job.id, 0) + 1
            await asyncio.sleep(0.2 * job.payload)  # finishing one by one over 4 s
            finished.append(time.monotonic())
            return int(job.payload)

        run = asyncio.create_task(w.run())
        try:
            await _until(lambda: len(finished) >= 5 or run.done())
            killed = time.monotonic()
            new = await _kill_and_wait(c, leader)
            took_over = time.monotonic()
            async with Client(new.url) as check:
                for _ in range(300):
                    jobs = [await check.get(i) for i in ids]
                    if all(j.state == "completed" for j in jobs):
                        break
                    await asyncio.sleep(0.1)
        finally:
            w.stop()
            await asyncio.wait_for(run, 30)
        assert [j.state for j in jobs] == ["completed"] * 20, jobs
        assert [j.result for j in jobs] == list(range(20))
        assert [j.attempt for j in jobs] == [1] * 20 and set(runs.values()) == {1}  # no ack lost
        assert sum(killed < t < took_over for t in finished) >= 5  # acked during the failover


def test_a_failover_is_waited_out_for_failover_s_a_down_server_is_not() -> None:
    """The retry budget of one call, on a fake clock: rounds of refusals with no failover in
    sight spend `connect_retries`; once a node says there is no leader, time does."""
    now = 0.0
    p = Policy(retries=4, connect_retries=0, backoff_s=0.1, failover_s=30.0)
    assert CallRetry(p, 1, clock=lambda: now).next_delay(Outcome.REFUSED) is None  # the CLI, one URL
    down = CallRetry(p, 2, clock=lambda: now)
    assert [down.next_delay(Outcome.REFUSED) for _ in range(2)] == [0.0, None]
    r = CallRetry(p, 3, clock=lambda: now)
    delays = [r.next_delay(Outcome.REFUSED)]  # the dead leader
    while (d := r.next_delay(Outcome.NO_LEADER if len(delays) % 3 else Outcome.REFUSED)) is not None:
        delays.append(d)
        now += d + 0.01
    assert 30.0 <= now < 31.5 and max(d or 0 for d in delays) <= FAILOVER_MAX_BACKOFF_S * 1.25
    assert CallRetry(p, 3).next_delay(Outcome.FINAL) is None
