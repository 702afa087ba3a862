"""SIGKILL the leader of three real nodes under producer and worker load, again and again
(the killed node restarted each time): with --sync-replicas 1, no acknowledged enqueue or
ack is lost, a new leader takes writes, and no job is held by two workers at once.

Also: a worker (tqd.Worker) with jobs in flight through a failover acks them on the new
leader.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import pytest
from _cluster import Cluster, get_json

pytestmark = pytest.mark.timeout(300)
KILLS = 10


class Caller:
    """Calls the cluster as a client that knows every node: follows 307, moves on from a
    dead or leaderless node, retries until `patience` runs out."""

    def __init__(self, urls: list[str], patience: float = 20.0) -> None:
        self.urls = urls
        self.i = 0
        self.patience = patience

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any, bool]:
        """(status, JSON body, whether an attempt may have been applied unanswered)."""
        deadline = time.monotonic() + self.patience
        unsure = False
        url = self.urls[self.i]
        while True:
            u = urllib.parse.urlsplit(url)
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
            try:
                data = None if body is None else json.dumps(body).encode()
                conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
                r = conn.getresponse()
                status, raw = r.status, r.read()
                loc, ctype = r.headers.get("X-Tqd-Leader"), r.headers.get("Content-Type", "")
            except ConnectionRefusedError:
                status, raw, loc, ctype = 0, b"", None, ""
            except OSError:  # sent, maybe applied, no answer
                status, raw, loc, ctype, unsure = 0, b"", None, "", True
            finally:
                conn.close()
            if status == 307 and loc:
                url = loc
                continue
            if status not in (0, 503):
                return status, _decode(raw, ctype), unsure
            if status == 503 and b"not_replicated" in raw:
                unsure = True
            if time.monotonic() > deadline:
                return status, None, unsure
            self.i = (self.i + 1) % len(self.urls)
            url = self.urls[self.i]
            time.sleep(0.05)


def _decode(raw: bytes, ctype: str) -> Any:
    """A JSON body, or NDJSON lines as a list."""
    if ctype.startswith("application/x-ndjson"):
        return [json.loads(x) for x in raw.split(b"\n") if x.strip()]
    return json.loads(raw) if raw else None


class Load:
    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.stop = threading.Event()
        self.enqueued: set[str] = set()  # keys whose enqueue was answered 2xx
        self.grants: list[tuple[str, str, float]] = []  # (job id, lease, received at)
        self.ended: dict[tuple[str, str], float] = {}  # (job id, lease) -> ack sent at
        self.acked: set[str] = set()  # job ids whose ack was answered 200
        self.unsure_acks: set[str] = set()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def producer(self) -> None:
        c = Caller(self.urls)
        while not self.stop.is_set():
            key = uuid.uuid4().hex
            status, body, _ = c.call("POST", "/v1/queues/work/jobs", {"payload": key, "key": key})
            if status in (200, 201):
                with self.lock:
                    self.enqueued.add(key)
            elif status not in (0, 503):
                self.errors.append(f"enqueue: {status} {body}")

    def worker(self) -> None:
        c = Caller(self.urls)
        while not self.stop.is_set():
            status, body, _ = c.call("POST", "/v1/lease", {"queues": ["work"], "max": 5, "wait": 1})
            if status != 200:
                continue
            now = time.monotonic()
            jobs = body  # (NDJSON lines)
            for j in jobs:
                with self.lock:
                    self.grants.append((j["id"], j["lease"], now))
            for j in jobs:
                with self.lock:
                    self.ended[(j["id"], j["lease"])] = time.monotonic()
                status, body, unsure = c.call("POST", f"/v1/jobs/{j['id']}/ack", {"lease": j["lease"]})
                with self.lock:
                    if status == 200:
                        self.acked.add(j["id"])
                    elif unsure or status == 409:
                        self.unsure_acks.add(j["id"])
                    else:
                        self.errors.append(f"ack: {status} {body}")


def test_sigkill_the_leader_again_and_again_under_load(tmp_path: Path) -> None:
    with Cluster(tmp_path, ttl=1.5, sync=1).start() as c:
        c.settled()
        load = Load(c.urls)
        threads = [threading.Thread(target=load.producer) for _ in range(2)]
        threads += [threading.Thread(target=load.worker) for _ in range(2)]
        for t in threads:
            t.start()
        failovers = []
        try:
            for _ in range(KILLS):
                leader = c.settled(same_seq=False)
                time.sleep(0.5)  # load on this leader
                n_before = len(load.enqueued)
                leader.kill()
                t0 = time.monotonic()
                c.leader(exclude=leader)
                failovers.append(time.monotonic() - t0)
                leader.start()
                deadline = time.monotonic() + 20
                while len(load.enqueued) <= n_before:  # the new leader takes writes
                    assert time.monotonic() < deadline, "no write acknowledged after the failover"
                    time.sleep(0.05)
        finally:
            load.stop.set()
            for t in threads:
                t.join(30)
        print(f"failover (s): {sorted(round(f, 2) for f in failovers)}")
        assert not load.errors, load.errors[:5]
        leader = c.settled()
        url = leader.url
        assert len(load.enqueued) > 50
        # every acknowledged enqueue is there (found by its idempotency key: the id is the job's)
        code, page = get_json(f"{url}/v1/queues/work/jobs?limit=1000")
        jobs: dict[str, Any] = {}
        while True:
            for j in page["jobs"]:
                jobs[j["payload"]] = j
            if not page.get("next"):
                break
            code, page = get_json(f"{url}/v1/queues/work/jobs?limit=1000&after={page['next']}")
        missing = load.enqueued - set(jobs)
        assert not missing, f"{len(missing)} acknowledged enqueues lost"
        by_id = {j["id"]: j for j in jobs.values()}
        # every acknowledged ack is there
        not_done = [jid for jid in load.acked if by_id[jid]["state"] != "completed"]
        assert not not_done, f"{len(not_done)} acknowledged acks lost"
        # no job was handed to a worker while another still held it
        seen: dict[str, tuple[str, float]] = {}
        for jid, lease, t in sorted(load.grants, key=lambda g: g[2]):
            if jid in seen:
                prev_lease, _ = seen[jid]
                end = load.ended.get((jid, prev_lease))
                assert end is not None and end <= t, f"{jid} held by two workers"
            seen[jid] = (lease, t)


async def test_a_worker_acks_its_running_jobs_on_the_new_leader(tmp_path: Path) -> None:
    import asyncio

    from tqd import Client, Worker

    with Cluster(tmp_path, ttl=1.5, sync=1).start() as c:
        leader = c.settled()
        async with Client(c.urls) as client:
            ids = [(await client.enqueue("q", "slow", i)).id for i in range(4)]
        started: set[str] = set()
        release = asyncio.Event()
        w = Worker(c.urls, queues=["q"], concurrency=4, poll_wait_s=1.0)

        @w.task("slow")
        async def slow(job: Any) -> str:
            started.add(job.id)
            await release.wait()
            return "done"

        run = asyncio.create_task(w.run())
        try:
            while len(started) < 4:
                await asyncio.sleep(0.05)
            await asyncio.to_thread(leader.kill)
            new = await asyncio.to_thread(c.leader, 30.0, leader)
            release.set()  # the handlers finish now, on the new leader's watch
            async with Client(new.url) as client:
                for _ in range(200):
                    states = [(await client.get(i)).state for i in ids]
                    if states == ["completed"] * 4:
                        break
                    await asyncio.sleep(0.1)
                jobs = [await client.get(i) for i in ids]
            assert [j.state for j in jobs] == ["completed"] * 4, jobs
            assert [j.attempt for j in jobs] == [1] * 4  # never handed out again
            assert [j.result for j in jobs] == ["done"] * 4
        finally:
            w.stop()
            await asyncio.wait_for(run, 30)
