"""Three real `tqd serve` nodes with a file:// lease: election, log shipping, redirects,
failover, hand-over, catch-up, snapshots, read replicas.

The SIGKILL loop under load is in test_cluster_failover.py; the S3 lease store in
test_cluster_s3.py.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from _cluster import Cluster, get_json
from _http import Api

pytestmark = pytest.mark.timeout(180)


def _job_everywhere(c: Cluster, jid: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    for n in c.nodes:
        if not n.alive:
            continue
        while True:
            code, body = get_json(f"{n.url}/v1/jobs/{jid}")
            if code == 200:
                break
            assert time.monotonic() < deadline, f"{jid} never reached {n.name}: {code} {body}"
            time.sleep(0.05)


def test_one_leader_replicates_and_followers_redirect_writes(tmp_path: Path) -> None:
    with Cluster(tmp_path).start() as c:
        leader = c.settled()
        followers = [n for n in c.nodes if n is not leader]
        st = leader.status()
        assert st is not None and st["term"] >= 1 and sorted(st["isr"]) == ["n1", "n2", "n3"]
        assert {f["node"] for f in st["followers"]} == {f.name for f in followers}

        # a write on a follower is a 307 to the leader, with its URL
        r = Api(followers[0].url).enqueue("q", {"payload": 1})
        assert r.status == 307, r
        assert r.headers["Location"] == leader.url + "/v1/queues/q/jobs"
        assert r.headers["X-Tqd-Leader"] == leader.url
        assert r.json()["error"] == "no_leader"
        # a long-poll lease too
        assert Api(followers[1].url).request("POST", "/v1/lease", {"queues": ["q"], "wait": 5}).status == 307

        # with --sync-replicas 1, an answered write is on every member of the in-sync set
        jid = Api(leader.url).enqueue_ok("q", {"payload": {"n": 1}})
        for f in followers:
            code, job = get_json(f"{f.url}/v1/jobs/{jid}")
            assert code == 200 and job["payload"] == {"n": 1}, (f.name, code, job)
        assert get_json(f"{followers[0].url}/v1/queues/q")[1]["queued"] == 1

        # ready only where writes are taken
        assert get_json(leader.url + "/readyz")[0] == 200
        code, body = get_json(followers[0].url + "/readyz")
        assert code == 503 and body["role"] == "follower"

        # the log is internal: a follower does not ship it
        code, body = get_json(f"{followers[0].url}/v1/_repl/log?node=x&after=0&term=0")
        assert code == 503 and body["error"] == "no_leader"


def test_sigterm_hands_over_and_the_old_leader_follows(tmp_path: Path) -> None:
    with Cluster(tmp_path, ttl=3.0).start() as c:
        old = c.settled()
        term = old.status()["term"]  # type: ignore[index]
        jid = Api(old.url).enqueue_ok("q", {"payload": "before"})
        assert old.stop() == 0
        assert b"handed the lease over" in old.proc.log
        new = c.leader(exclude=old)
        assert new.status()["term"] == term + 1  # type: ignore[index]
        assert get_json(f"{new.url}/v1/jobs/{jid}")[0] == 200
        old.start()
        c.settled()
        assert old.status()["role"] == "follower"  # type: ignore[index]
        _job_everywhere(c, Api(new.url).enqueue_ok("q", {"payload": "after"}))
        new.stop()
        # it took the lease as handed over (holder null), not after the TTL ran out
        assert b"took over the lease from nobody" in new.proc.log, new.proc.log.decode()


def test_a_paused_leader_fences_itself_steps_down_and_rejoins(tmp_path: Path) -> None:
    with Cluster(tmp_path, ttl=2.0).start() as c:
        old = c.settled()
        before = Api(old.url).enqueue_ok("q", {"payload": "before"})
        old.signal(signal.SIGSTOP)
        try:
            new = c.leader(exclude=old)
            after = Api(new.url).enqueue_ok("q", {"payload": "after"})
        finally:
            old.signal(signal.SIGCONT)
        # woken up, the old leader takes no write: its gate closed before anyone took over
        r = Api(old.url).enqueue("q", {"payload": "zombie"})
        assert r.status in (307, 503), r
        deadline = time.monotonic() + 10
        while (old.status() or {}).get("role") != "follower":
            assert time.monotonic() < deadline, old.status()
            time.sleep(0.05)
        assert Api(old.url).enqueue("q", {"payload": "zombie"}).status == 307
        c.settled()
        for jid in (before, after):
            _job_everywhere(c, jid)
        ids = {j["id"] for j in get_json(f"{old.url}/v1/queues/q/jobs")[1]["jobs"]}
        assert ids == {before, after}


def test_a_restarted_follower_catches_up_and_a_new_node_bootstraps(tmp_path: Path) -> None:
    with Cluster(tmp_path, n=3).start() as c:
        leader = c.settled()
        f = next(n for n in c.nodes if n is not leader)
        f.stop()
        ids = [Api(leader.url).enqueue_ok("q", {"payload": i}) for i in range(20)]
        f.start()
        c.settled()
        assert f.status()["snapshots_restored"] == 0  # type: ignore[index]
        for jid in ids[::5]:
            _job_everywhere(c, jid)
        # a brand-new node (empty data dir) starts from a snapshot of the leader
        from _cluster import Node
        fresh = Node("n4", tmp_path / "n4", c.lease, c.ttl, ("--sync-replicas", "1"), None)
        c.nodes.append(fresh)
        fresh.start()
        c.settled()
        assert fresh.status()["snapshots_restored"] == 1  # type: ignore[index]
        for jid in ids:
            assert get_json(f"{fresh.url}/v1/jobs/{jid}")[0] == 200


def test_a_follower_behind_the_kept_log_restarts_from_a_snapshot(tmp_path: Path) -> None:
    # a small log: kept 64 KiB, at most 4x that for a lagging follower
    extra = ("--log-keep-entries", "10", "--log-keep-bytes", "65536")
    with Cluster(tmp_path, n=2, sync=0, extra=extra).start() as c:
        leader = c.settled()
        f = next(n for n in c.nodes if n is not leader)
        f.stop()
        body = "\n".join('{"payload": "%s"}' % ("x" * 1000) for _ in range(100))
        for _ in range(6):  # 600 kB of jobs: past what a pin may hold
            r = Api(leader.url).request("POST", "/v1/queues/q/jobs", raw=body.encode(),
                                        ctype="application/x-ndjson")
            assert r.status == 201, r
        f.start()
        c.settled()
        assert f.status()["snapshots_restored"] == 1  # type: ignore[index]
        assert get_json(f"{f.url}/v1/queues/q")[1]["queued"] == 600


def test_a_diverged_node_restarts_from_a_snapshot(tmp_path: Path) -> None:
    """Without sync replicas a leader's last writes may exist nowhere else: when it comes back
    after another node led, its log has diverged; it starts again from a snapshot."""
    with Cluster(tmp_path, n=2, sync=0).start() as c:
        a = c.settled()
        b = next(n for n in c.nodes if n is not a)
        kept = Api(a.url).enqueue_ok("q", {"payload": "replicated"})
        _job_everywhere(c, kept)
        b.kill()
        lost = Api(a.url).enqueue_ok("q", {"payload": "only on a"})
        a.kill()
        b.start()
        assert c.leader() is b
        newer = Api(b.url).enqueue_ok("q", {"payload": "on b"})
        a.start()
        c.settled()
        assert a.status()["snapshots_restored"] == 1  # type: ignore[index]
        ids = {j["id"] for j in get_json(f"{a.url}/v1/queues/q/jobs")[1]["jobs"]}
        assert ids == {kept, newer}
        assert lost not in ids


def test_a_read_replica_never_takes_over(tmp_path: Path) -> None:
    with Cluster(tmp_path, n=2, sync=0).start() as c:
        leader = c.settled()
        replica = next(n for n in c.nodes if n is not leader)
        replica.stop()
        replica.args += ("--can-lead", "false")
        replica.start()
        c.settled()
        jid = Api(leader.url).enqueue_ok("q", {})
        _job_everywhere(c, jid)
        leader.kill()
        time.sleep(3 * c.ttl)
        st = replica.status()
        assert st is not None and st["role"] == "follower"
        assert get_json(f"{replica.url}/v1/jobs/{jid}")[0] == 200  # it still serves reads


def test_only_a_member_of_the_in_sync_set_takes_over(tmp_path: Path) -> None:
    """A follower that fell out of the in-sync set lacks acknowledged writes: when the
    leader dies it must not lead, even if it is the only node left; a member does."""
    with Cluster(tmp_path, n=3, sync=1).start() as c:
        leader = c.settled()
        behind, member = [n for n in c.nodes if n is not leader]
        behind.signal(signal.SIGSTOP)
        try:
            # the write waits for `behind`, until the leader takes it out of the set
            jid = Api(leader.url).enqueue_ok("q", {"payload": "acked without behind"})
            st = leader.status()
            assert st is not None and behind.name not in st["isr"], st
            member.kill()
            leader.kill()
        finally:
            behind.signal(signal.SIGCONT)
        time.sleep(3 * c.ttl)
        st = behind.status()
        assert st is not None and st["role"] == "follower" and not st["writable"], st
        member.start()
        assert c.leader(exclude=behind) is member
        assert get_json(f"{member.url}/v1/jobs/{jid}")[0] == 200
        leader.start()
        c.settled()
        _job_everywhere(c, jid)
