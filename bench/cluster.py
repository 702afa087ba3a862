"""Cluster: what replication costs, how far followers lag, how fast a dead leader is replaced.

    python bench/cluster.py                  # about 4 minutes: 3 rounds, 10 kills
    python bench/cluster.py --quick          # about 1 minute: fewer jobs, 1 round, 3 kills
    python bench/cluster.py --kills 10 --ttl 3 --json out.jsonl

Everything runs against real ``tqd serve`` processes on loopback ports, in private temp
dirs, in one run (not a run.py scenario: it starts up to three servers at a time):

1. throughput: a standalone node, and fresh 3-node clusters (``file://`` lease) with
   ``--sync-replicas 0`` and ``1``, under the same load against the leader: a bulk enqueue
   of ``--jobs`` jobs (NDJSON batches of 100, 8 connections in 2 processes, as
   enqueue_bulk.py), then a drain of them (``--workers`` processes, lease 100 + bulk ack,
   as drain.py). ``--rounds`` rounds; every other round runs the configurations in the
   reverse order, because this machine is noisy.
2. lag: during the cluster runs a thread reads the leader's ``GET /v1/cluster`` every
   100 ms; the followers' ``lag`` (entries) and ``lag_s``, max and p50, over the samples
   where the leader's log grew since the previous one (under load).
3. failover, with ``--sync-replicas 1 --lease-ttl-s TTL``: a producer thread enqueues one
   job at a time through any node (it follows 307, moves to the next node on a connection
   error or 503); the leader gets SIGKILL ``--kills`` times, each after a random pause
   (so not always at the same point of the lease's renew cycle): measured from the kill to
   the first node that says it leads and is writable (``elected_s``), and to the first
   201 from the new leader (``first_ack_s``, the figure; ``first_ack_wait_s`` is how long
   that request itself took, i.e. waited for a sync replica). The killed node is started again on
   its data dir and the next kill waits until it is back in the in-sync set. Then
   ``--handovers`` (1) clean hand-overs (SIGTERM of the leader), each restarted the same way. At the end every acknowledged job must be on
   the leader (checked by id).

Goals from the issue, printed next to the figures, not asserted: one sync replica costs at
most 30 % of drain throughput; failover <= TTL + 2 s.
Results: one JSON line each on stdout (and appended to ``--json FILE``), then tables.
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import http.client
import json
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common import HOST, PY, Report, Server, TempDir, fmt, free_port, percentile, print_table
from load import drain, fill, timed_enqueue
from run import machine

READY_RE = r"tqd (?:\S+ )?listening on http://[\d.]+:(\d+)"
CONFIGS = {"standalone": None, "sync0": 0, "sync1": 1}  # name -> --sync-replicas (None: no cluster)
PROCS, CONNS, BATCH = 2, 4, 100  # the enqueue_bulk load
SAMPLE_EVERY_S = 0.1
DRAIN_GOAL = 0.70  # sync1 drain >= 70 % of sync0 (one sync replica costs at most 30 %)
FAILOVER_SLACK_S = 2.0  # failover <= TTL + this
_ALL_NODES: list[Node] = []  # every node started, killed at exit whatever happens


def get_json(url: str, timeout_s: float = 1.0) -> Any:
    """The JSON body of a 200 answer, else None (any error, any other status)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            return json.loads(r.read())
    except (OSError, ValueError, http.client.HTTPException):
        return None


def wait_for(what: str, cond: Callable[[], Any], timeout_s: float, every_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(every_s)
    raise TimeoutError(f"{what}: not within {timeout_s:g} s")


# ---- nodes -----------------------------------------------------------------------


class Node:
    """One ``tqd serve`` on a fixed port and data dir, so it can be killed and started again
    as the same node. Only this object signals its process."""

    def __init__(self, name: str, root: Path, lease_store: str | None, ttl_s: float, sync: int) -> None:
        self.name = name
        self.root = root
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        args = ["--port", str(self.port), "--data", str(root / name), "--log-level", "info"]
        if lease_store:
            args += ["--node-id", name, "--advertise", self.url, "--lease-store", lease_store,
                     "--lease-ttl-s", f"{ttl_s:g}", "--sync-replicas", str(sync)]
        self.argv = [PY, "-m", "tqd", "serve", *args]
        self.srv: Server | None = None
        self.starts = 0

    def start(self) -> Node:
        self.starts += 1
        _ALL_NODES.append(self)
        # one log per incarnation: <root>/<name>.<n>.log
        self.srv = Server(f"{self.name}.{self.starts}", self.argv, self.root, ready_re=READY_RE)
        return self

    @property
    def alive(self) -> bool:
        return self.srv is not None and self.srv.proc.poll() is None

    def status(self, timeout_s: float = 1.0) -> dict[str, Any] | None:
        return get_json(self.url + "/v1/cluster", timeout_s) if self.alive else None

    def cpu_s(self) -> float:
        return self.srv.cpu_s() if self.srv is not None and self.alive else 0.0

    def signal(self, sig: int) -> None:
        if self.srv is not None and self.alive:
            self.srv.proc.send_signal(sig)

    def reap(self, timeout_s: float) -> None:
        """Wait for the process to end (SIGKILL after timeout_s), close its log."""
        if self.srv is None:
            return
        try:
            self.srv.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.srv.proc.kill()
            self.srv.proc.wait(5)
        self.srv.stop()


class Cluster:
    """``n`` nodes sharing a file:// lease (n == 1 and sync None: one standalone node)."""

    def __init__(self, root: Path, n: int, ttl_s: float, sync: int | None) -> None:
        self.sync = sync
        lease = None if sync is None else f"file://{root / 'lease'}"
        self.nodes = [Node(f"n{i + 1}", root, lease, ttl_s, sync or 0) for i in range(n)]

    def start(self) -> Cluster:
        for n in self.nodes:
            n.start()
        return self

    def stop(self) -> None:
        for n in self.nodes:  # all at once: a leader's hand-over must not wait for the others
            n.signal(signal.SIGTERM)
        for n in self.nodes:
            n.reap(15.0)

    def cpu_s(self) -> float:
        return sum(n.cpu_s() for n in self.nodes)

    def _leader_now(self) -> tuple[Node, dict[str, Any]] | None:
        found = []
        for n in self.nodes:
            st = n.status()
            if st is not None and (st["role"] == "standalone"
                                   or (st["role"] == "leader" and st.get("writable"))):
                found.append((n, st))
        return found[0] if len(found) == 1 else None

    def settled(self, timeout_s: float = 60.0, caught_up: bool = True) -> Node:
        """The leader, once every live node follows it (lag 0 if ``caught_up``) and, with
        sync replicas, every live node is in the in-sync set."""
        def check() -> Node | None:
            got = self._leader_now()
            if got is None:
                return None
            leader, st = got
            if st["role"] == "standalone":
                return leader
            others = {n.name for n in self.nodes if n.alive and n is not leader}
            fs = {f["node"]: f for f in st["followers"]}
            if not others <= fs.keys() or (caught_up and any(fs[o]["lag"] for o in others)):
                return None
            if self.sync and not set(others) <= set(st["isr"]):
                return None
            return leader
        return wait_for("cluster settled", check, timeout_s)


# ---- lag sampler -------------------------------------------------------------------


class LagSampler(threading.Thread):
    """Reads the leader's /v1/cluster every SAMPLE_EVERY_S; keeps the followers' lag of
    the samples where the leader's log grew since the previous sample."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url + "/v1/cluster"
        self.phase = "idle"
        self.rows: list[tuple[str, int, float]] = []  # (phase, lag, lag_s), busy samples only
        self.samples = 0
        self._stop_ev = threading.Event()

    def run(self) -> None:
        last_seq = None
        t_next = time.monotonic()
        while not self._stop_ev.wait(max(0.0, t_next - time.monotonic())):
            t_next += SAMPLE_EVERY_S
            st = get_json(self.url, 1.0)
            if st is None:
                continue
            self.samples += 1
            seq = st.get("applied_seq")
            if last_seq is not None and seq != last_seq:
                self.rows += [(self.phase, f["lag"], f["lag_s"]) for f in st.get("followers", [])]
            last_seq = seq

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(5)

    def summary(self, phase: str) -> dict[str, Any]:
        lags = sorted(r[1] for r in self.rows if r[0] == phase)
        lag_s = sorted(r[2] for r in self.rows if r[0] == phase)
        if not lags:
            return {"busy_samples": 0}
        return {"busy_samples": len(lags), "lag_max": lags[-1], "lag_p50": percentile(lags, 0.5),
                "lag_p99": percentile(lags, 0.99), "lag_s_max": lag_s[-1],
                "lag_s_p50": percentile(lag_s, 0.5)}


# ---- 1 + 2: throughput and lag -------------------------------------------------------


def throughput_run(cfg: str, rnd: int, opts: argparse.Namespace) -> list[dict[str, Any]]:
    sync = CONFIGS[cfg]
    tmp = TempDir(f"bench-cluster-{cfg}-")
    cl = Cluster(tmp.path, 1 if sync is None else 3, opts.ttl, sync)
    sampler = None
    try:
        cl.start()
        leader = cl.settled()
        assert leader.srv is not None
        spec = {"kind": "tqd", "port": leader.port, "queue": "bench"}
        # unmeasured warm-up in another queue: connections, LMDB growth, followers' first fetches
        fill(dict(spec, queue="warm"), opts.warm_jobs, 60.0)
        cl.settled()
        if sync is not None:
            sampler = LagSampler(leader.url)
            sampler.start()
        out = []
        for phase in ("enqueue", "drain"):
            if sampler is not None:
                sampler.phase = phase
            cpu0 = cl.cpu_s()
            if phase == "enqueue":
                s = timed_enqueue(spec, leader.srv, PROCS, CONNS, BATCH, opts.phase_timeout_s,
                                  opts.jobs // PROCS, warmup_s=0)
            else:
                s, _ = drain(spec, leader.srv, opts.workers, opts.phase_timeout_s)
            cluster_cpu = cl.cpu_s() - cpu0
            lag = sampler.summary(phase) if sampler is not None else {}
            out.append({"scenario": "cluster_throughput", "config": cfg, "round": rnd, "phase": phase,
                        "nodes": len(cl.nodes), **s, **lag,
                        "cluster_cpu_us_per_job": 1e6 * cluster_cpu / s["jobs"] if s["jobs"] else None})
        return out
    finally:
        if sampler is not None:
            sampler.stop()
        cl.stop()
        if not opts.keep:
            tmp.cleanup()


def throughput(opts: argparse.Namespace, report: Report) -> list[dict[str, Any]]:
    rows = []
    order = list(CONFIGS)
    for rnd in range(1, opts.rounds + 1):
        for cfg in (order if rnd % 2 else order[::-1]):
            t0 = time.monotonic()
            try:
                got = throughput_run(cfg, rnd, opts)
            except Exception as e:  # noqa: BLE001 - one failed run must not lose the others
                traceback.print_exc()
                got = [{"scenario": "cluster_throughput", "config": cfg, "round": rnd,
                        "error": f"{type(e).__name__}: {e}"}]
            rows += [report.add(r) for r in got]
            print(f"  (throughput {cfg} round {rnd}: {time.monotonic() - t0:.1f}s)", file=sys.stderr, flush=True)
    return rows


# ---- 3: failover ------------------------------------------------------------------


class Producer(threading.Thread):
    """Enqueues one job at a time, at most one per ``interval_s``, through any node:
    follows 307 (X-Tqd-Leader), moves to the next node on a connection error or 503."""

    def __init__(self, urls: list[str], interval_s: float) -> None:
        super().__init__(daemon=True)
        self.urls = urls
        self.target = urls[0]
        self.interval_s = interval_s
        # (monotonic time of the 201, node url, job id, monotonic time the request was sent)
        self.acks: list[tuple[float, str, str, float]] = []
        self.events: Counter[str] = Counter()
        self._conns: dict[str, http.client.HTTPConnection] = {}
        self._stop_ev = threading.Event()
        self._lock = threading.Lock()
        self._wall_minus_mono = time.time() - time.monotonic()

    def wall(self, t_mono: float) -> str:
        """A monotonic time as wall-clock HH:MM:SS.mmm (to find it in the nodes' logs)."""
        return datetime.datetime.fromtimestamp(t_mono + self._wall_minus_mono).strftime("%H:%M:%S.%f")[:-3]

    def _post(self, url: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        c = self._conns.get(url)
        if c is None:
            u = urlsplit(url)
            c = self._conns[url] = http.client.HTTPConnection(u.hostname or HOST, u.port, timeout=15)
        try:
            c.request("POST", "/v1/queues/fo/jobs", body, {"Content-Type": "application/json"})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        except BaseException:
            c.close()
            del self._conns[url]
            raise

    def _next_node(self, url: str) -> str:
        return self.urls[(self.urls.index(url) + 1) % len(self.urls)] if url in self.urls else self.urls[0]

    def run(self) -> None:
        n = 0
        t_next = time.monotonic()
        while not self._stop_ev.wait(max(0.0, t_next - time.monotonic())):
            url = self.target
            n += 1
            t_sent = time.monotonic()
            try:
                st, hdrs, body = self._post(url, json.dumps({"payload": {"n": n}}).encode())
            except (OSError, http.client.HTTPException):
                self._count("connection_error")
                self.target = self._next_node(url)
                t_next = time.monotonic() + 0.01
                continue
            if st == 201:
                with self._lock:
                    self.acks.append((time.monotonic(), url, json.loads(body)["id"], t_sent))
                t_next = max(t_next + self.interval_s, time.monotonic())  # no catch-up bursts
            elif st == 307:
                self._count("307")
                leader = hdrs.get("x-tqd-leader", "").rstrip("/")
                self.target = leader if leader and leader != url else self._next_node(url)
                t_next = time.monotonic() + (0.01 if leader == url else 0.0)
            else:
                try:
                    code = json.loads(body).get("error", "")
                except ValueError:
                    code = ""
                self._count(f"{st} {code}".strip())
                self.target = self._next_node(url)
                t_next = time.monotonic() + 0.01

    def _count(self, what: str) -> None:
        with self._lock:
            self.events[what] += 1

    def counts(self) -> Counter[str]:
        """A copy of the event counts (connection_error, 307, "503 no_leader", ...)."""
        with self._lock:
            return self.events.copy()

    def first_ack_after(self, t0: float, not_from: str) -> tuple[float, float] | None:
        """(answer time, send time) of the first 201 after t0 from a node other than ``not_from``."""
        with self._lock:
            i = bisect.bisect_right(self.acks, t0, key=lambda a: a[0])  # the acks are in time order
            return next(((t, sent) for t, url, _, sent in self.acks[i:] if url != not_from), None)

    def stop(self) -> None:
        self._stop_ev.set()
        self.join(20)
        for c in self._conns.values():
            c.close()


def one_failover(cl: Cluster, prod: Producer, sig: signal.Signals, opts: argparse.Namespace,
                 signals: list[dict[str, Any]]) -> dict[str, Any]:
    """Signal the leader; time the new leader's election and first 201; start the old
    leader again and wait until it is back in the in-sync set."""
    old = cl.settled(opts.settle_timeout_s, caught_up=False)
    # settled() returns just after the leader wrote the lease (the in-sync set changed): a pause
    # of random length so the failure does not always land at the same point of the renew cycle
    time.sleep(opts.rng.uniform(0.2, 0.2 + 2 * opts.ttl / 5))
    term0 = (old.status() or {}).get("term", 0)
    events0 = prod.counts()
    t0 = time.monotonic()
    old.signal(sig)
    signals.append({"t0": t0, "signal": sig.name, "old": old.name})
    new: Node | None = None
    elected_s = first_ack_s = first_ack_sent_s = None  # first_ack_sent_s: when that request went
    deadline = t0 + opts.failover_timeout_s
    while time.monotonic() < deadline and (new is None or first_ack_s is None):
        for n in cl.nodes:
            st = n.status(0.5) if new is None and n is not old else None
            if st and st["role"] == "leader" and st.get("writable") and st["term"] > term0:
                new, elected_s = n, time.monotonic() - t0
        got = prod.first_ack_after(t0, old.url)
        if got is not None:
            first_ack_s, first_ack_sent_s = got[0] - t0, got[1] - t0
        time.sleep(0.02)
    old.reap(30.0)  # SIGTERM: the old leader drains and hands over first
    t1 = time.monotonic()
    old.start()
    started_s = time.monotonic() - t1
    cl.settled(opts.settle_timeout_s, caught_up=False)  # ... and it is in the in-sync set again
    rejoin_s = time.monotonic() - t1
    ev = prod.counts()
    ev.subtract(events0)
    return {"scenario": "cluster_failover", "signal": sig.name, "old_leader": old.name,
            "new_leader": new.name if new else None, "new_term": (new.status() or {}).get("term") if new else None,
            "elected_s": elected_s, "first_ack_s": first_ack_s,
            "first_ack_wait_s": first_ack_s - first_ack_sent_s if first_ack_s is not None else None,
            "signalled_at": prod.wall(t0), "restart_s": started_s, "rejoin_s": rejoin_s,
            "old_snapshots_restored": (old.status() or {}).get("snapshots_restored"),
            "conn_errors": ev["connection_error"], "redirects": ev["307"],
            "errors_503": sum(v for k, v in ev.items() if k.startswith("503")),
            "other_errors": sum(v for k, v in ev.items() if k[:3] not in ("con", "307", "503"))}


def list_ids(node: Node, queue: str) -> set[str]:
    ids: set[str] = set()
    after = ""
    for _ in range(100_000):
        q = urllib.parse.urlencode({"limit": 1000, **({"after": after} if after else {})})
        page = get_json(f"{node.url}/v1/queues/{queue}/jobs?{q}", 10)
        if page is None:
            raise RuntimeError(f"cannot list queue {queue} on {node.name}")
        ids.update(j["id"] for j in page["jobs"])
        after = page.get("next") or ""
        if not after:
            break
    return ids


def check_acked(cl: Cluster, prod: Producer, signals: list[dict[str, Any]]) -> dict[str, Any]:
    """Every acknowledged job must be on the leader (and, caught up, on every node): list the
    queue on each, compare ids; for a lost job, which node acknowledged it and when."""
    leader = cl.settled(60.0)  # every node at the leader's position
    acked = {a[2]: a for a in prod.acks}
    on = {n.name: list_ids(n, "fo") for n in cl.nodes}
    ids = on[leader.name]
    names = {n.url: n.name for n in cl.nodes}
    lost = []
    for jid in sorted(acked.keys() - ids)[:10]:
        t, url, _, sent = acked[jid]
        after = [r for r in signals if r["t0"] < t]
        lost.append({"id": jid, "acked_by": names.get(url, url), "acked_at": prod.wall(t),
                     "request_s": round(t - sent, 4),
                     "s_after_signal": round(t - after[-1]["t0"], 3) if after else None,
                     "on_nodes": [n for n, have in on.items() if jid in have]})
    return {"acked": len(acked), "stored": len(ids), "lost": len(acked.keys() - ids),
            "stored_not_acked": len(ids - acked.keys()),
            "lost_on_node": {n: len(acked.keys() - have) for n, have in on.items()}, "lost_jobs": lost}


def failover(opts: argparse.Namespace, report: Report) -> list[dict[str, Any]]:
    tmp = TempDir("bench-cluster-failover-")
    cl = Cluster(tmp.path, 3, opts.ttl, 1)
    prod = None
    rows = []
    signals: list[dict[str, Any]] = []
    try:
        cl.start()
        cl.settled(opts.settle_timeout_s)
        prod = Producer([n.url for n in cl.nodes], opts.interval_ms / 1000)
        prod.start()
        wait_for("the producer's first 201", lambda: prod.acks, 15.0)
        for k in range(1, opts.kills + 1):
            t = time.monotonic()
            rows.append(report.add({**one_failover(cl, prod, signal.SIGKILL, opts, signals), "kill": k}))
            print(f"  (failover {k}/{opts.kills}: {time.monotonic() - t:.1f}s)", file=sys.stderr, flush=True)
        for h in range(1, opts.handovers + 1):
            rows.append(report.add({**one_failover(cl, prod, signal.SIGTERM, opts, signals),
                                    "kill": f"hand-over {h}"}))
        time.sleep(0.5)
        prod.stop()
        rows.append(report.add({"scenario": "cluster_failover_check",
                                **check_acked(cl, prod, signals), "events": dict(prod.counts())}))
        return rows
    finally:
        if prod is not None:
            prod.stop()
        cl.stop()
        if opts.keep:
            print(f"  (failover logs kept in {tmp.path})", file=sys.stderr)
        else:
            tmp.cleanup()


# ---- tables ------------------------------------------------------------------------


def _median(rows: list[dict[str, Any]], key: str, **match: Any) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None and all(r.get(k) == v for k, v in match.items())]
    return statistics.median(vals) if vals else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def throughput_tables(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    ok = [r for r in rows if "error" not in r]
    cols = ["config", "round", "phase", "jobs", "seconds", "jobs_per_s", "server_cpu_pct",
            "server_cpu_us_per_job", "cluster_cpu_us_per_job", "client_max_proc_cpu_pct"]
    print_table("cluster throughput (server = the leader; cluster = all nodes)", rows,
                cols + (["error"] if len(ok) < len(rows) else []))
    print_table(f"replication lag, followers of the leader, samples every {SAMPLE_EVERY_S * 1000:.0f} ms "
                "while its log grew", [r for r in ok if r["config"] != "standalone"],
                ["config", "round", "phase", "busy_samples", "lag_p50", "lag_p99", "lag_max",
                 "lag_s_p50", "lag_s_max"])
    summary = []
    for phase in ("enqueue", "drain"):
        med = {c: _median(ok, "jobs_per_s", config=c, phase=phase) for c in CONFIGS}
        by_round = [_ratio(_median(ok, "jobs_per_s", config="sync1", phase=phase, round=n),
                           _median(ok, "jobs_per_s", config="sync0", phase=phase, round=n))
                    for n in sorted({r["round"] for r in ok})]
        goal = f">= {DRAIN_GOAL:.2f}" if phase == "drain" else "-"
        s10 = _ratio(med["sync1"], med["sync0"])
        summary.append({"metric": f"{phase} (jobs/s, median of rounds)", **med, "sync1/sync0": s10,
                        "sync1/sync0 by round": ", ".join(fmt(x) for x in by_round),
                        "sync0/standalone": _ratio(med["sync0"], med["standalone"]),
                        "goal sync1/sync0": goal,
                        "meets": ("yes" if s10 >= DRAIN_GOAL else "NO") if phase == "drain" and s10 else "-"})
    print_table("throughput summary (goal: 1 sync replica costs at most 30 % of drain throughput)", summary,
                ["metric", *CONFIGS, "sync1/sync0", "sync1/sync0 by round", "sync0/standalone",
                 "goal sync1/sync0", "meets"])
    return summary


def failover_tables(rows: list[dict[str, Any]], ttl_s: float) -> list[dict[str, Any]]:
    runs = [r for r in rows if r.get("scenario") == "cluster_failover"]
    print_table(f"failover (--sync-replicas 1, --lease-ttl-s {ttl_s:g}; seconds from the signal)", runs,
                ["kill", "signal", "signalled_at", "old_leader", "new_leader", "new_term", "elected_s",
                 "first_ack_s", "first_ack_wait_s", "restart_s", "rejoin_s", "old_snapshots_restored",
                 "conn_errors", "redirects", "errors_503"])
    goal = ttl_s + FAILOVER_SLACK_S
    summary = []
    for label, sig in (("SIGKILL of the leader", "SIGKILL"), ("hand-over (SIGTERM)", "SIGTERM")):
        for key in ("elected_s", "first_ack_s"):
            vals = sorted(r[key] for r in runs if r["signal"] == sig and r.get(key) is not None)
            missed = sum(1 for r in runs if r["signal"] == sig and r.get(key) is None)
            if not vals and not missed:
                continue
            row: dict[str, Any] = {"metric": f"{label}: {key}", "n": len(vals), "timed_out": missed,
                                   "min": vals[0] if vals else None,
                                   "median": statistics.median(vals) if vals else None,
                                   "max": vals[-1] if vals else None}
            if key == "first_ack_s":
                row["goal"] = f"<= {goal:g} s"
                row["meets"] = "yes" if vals and not missed and vals[-1] <= goal else "NO"
            summary.append(row)
    print_table(f"failover summary (goal: <= TTL + {FAILOVER_SLACK_S:g} s = {goal:g} s to the first 201)",
                summary, ["metric", "n", "timed_out", "min", "median", "max", "goal", "meets"])
    checks = [r for r in rows if r.get("scenario") == "cluster_failover_check"]
    if checks:
        print_table("acknowledged jobs after all failovers (lost must be 0)", checks,
                    ["acked", "stored", "lost", "stored_not_acked", "lost_on_node", "events"])
        lost = [j for r in checks for j in r.get("lost_jobs", [])]
        if lost:
            print_table("LOST: acknowledged (201) but not on the leader", lost,
                        ["id", "acked_by", "acked_at", "request_s", "s_after_signal", "on_nodes"])
    return summary


# ---- main --------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 1 minute: fewer jobs, 1 round, 3 kills")
    ap.add_argument("--kills", type=int, help="SIGKILLs of the leader (default 10; quick 3)")
    ap.add_argument("--handovers", type=int, default=1, help="clean hand-overs (SIGTERM of the leader) after "
                    "the kills (default 1)")
    ap.add_argument("--ttl", type=float, default=3.0, help="--lease-ttl-s of the nodes (default 3)")
    ap.add_argument("--jobs", type=int, help="jobs enqueued then drained per run (default 80,000; quick 20,000)")
    ap.add_argument("--rounds", type=int, help="throughput rounds, order reversed every other (default 3; quick 1)")
    ap.add_argument("--workers", type=int, default=4, help="drain worker processes (default 4)")
    ap.add_argument("--interval-ms", type=float, default=5.0,
                    help="failover producer: at most one enqueue per this (default 5)")
    ap.add_argument("--seed", type=int, default=1, help="of the random pause before each kill")
    ap.add_argument("--only", default="throughput,failover", help="throughput, failover or both")
    ap.add_argument("--json", metavar="FILE", help="append the JSON result lines to FILE")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (node logs: n1.1.log, ...)")
    a = ap.parse_args(argv)
    a.kills = a.kills if a.kills is not None else (3 if a.quick else 10)
    a.jobs = a.jobs or (20_000 if a.quick else 80_000)
    a.rounds = a.rounds or (1 if a.quick else 3)
    a.warm_jobs = 2_000
    a.phase_timeout_s = 60.0
    a.settle_timeout_s = 60.0
    a.failover_timeout_s = max(30.0, 5 * a.ttl)
    a.only = a.only.split(",")
    a.rng = random.Random(a.seed)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the finally below runs
    report = Report(a.json)
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"# tqd cluster bench {when}; {machine()}; argv: {' '.join(sys.argv)}", flush=True)
    t_start = time.monotonic()
    failed = 0
    try:
        if "throughput" in a.only:
            rows = throughput(a, report)
            failed += sum(1 for r in rows if "error" in r)
            throughput_tables(rows)
        if "failover" in a.only:
            try:
                rows = failover(a, report)
            except Exception as e:  # noqa: BLE001 - print what was measured before it failed
                traceback.print_exc()
                failed += 1
                rows = [r for r in report.results if str(r.get("scenario", "")).startswith("cluster_failover")]
                rows.append(report.add({"scenario": "cluster_failover_error", "error": f"{type(e).__name__}: {e}"}))
            failover_tables(rows, a.ttl)
    finally:
        for n in _ALL_NODES:  # whatever failed above: no server outlives the run
            if n.alive and n.srv is not None:
                n.srv.proc.kill()
                n.reap(5.0)
        report.close()
    print(f"# total {fmt(time.monotonic() - t_start)} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
