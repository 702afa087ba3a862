"""Health checks under a slowloris: ``/healthz`` latency of a server with ``--auth`` and TLS
while 500 connections dribble request headers and 500 more sit idle, against the same
server unloaded, same run.

    python bench/slowloris.py [--slow 500] [--idle 500] [--probes 100] [--rounds 2]

One server: ``--auth`` (one token), ``--tls-cert``/``--tls-key`` (made by trustme), every
other setting its default (``--header-timeout-s 10``). Each round probes it unloaded,
then starts the attack in a process of its own and, once the attacking connections are
open, probes it loaded, then stops the attack and waits for the server to see the
connections go. The attack: ``--slow`` connections each make the TLS handshake and send a
request line and a token, then one more header byte every ``--dribble-s``, never ending
the headers; ``--idle`` connections make the handshake and send nothing. A connection the
server closes (a dribbler is answered 408, an idle one closed unanswered, at
``--header-timeout-s``) is opened again at once, as an attacker would, so the load holds.

A probe is ``GET /healthz``, alternately on a new TLS connection (as a load balancer's
health check: the handshake is in its time) and on a kept-alive one, one every
``--every-s`` (a loaded phase outlasts ``--header-timeout-s``: every attacking connection is
cut and comes back while it lasts); ``--probes`` of each kind per phase and round. Prints p50, p99 and max per
kind and phase (all rounds pooled), the ratios loaded / unloaded, the server's CPU, and
what the attack did (connections opened, answered 408, closed unanswered).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing as mp
import queue
import resource
import ssl
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HOST, PY, Server, TempDir, percentile, print_table  # noqa: E402
from security_cost import Secrets  # noqa: E402

# ---- the attack (a process of its own) -----------------------------------------------


def _head(token: str) -> bytes:
    """A request's headers that stay valid however far they get, and never end."""
    return (b"POST /v1/lease HTTP/1.1\r\nHost: tqd\r\nAuthorization: Bearer %s\r\n" % token.encode()
            + b"".join(b"X-Pad-%d: 0123456789abcdef\r\n" % i for i in range(120)))


class Attack:
    """--slow dribbling and --idle silent TLS connections, each opened again once closed."""

    def __init__(self, port: int, ca_file: str, token: str, dribble_s: float, ramp_s: float,
                 open_now: Any) -> None:
        self.port, self.dribble_s, self.ramp_s, self.open_now = port, dribble_s, ramp_s, open_now
        self.tls = ssl.create_default_context(cafile=ca_file)
        self.head = _head(token)
        self.counts: Counter[str] = Counter()

    async def run(self, n_slow: int, n_idle: int, stop: Any) -> Counter[str]:
        n = n_slow + n_idle
        tasks = [asyncio.create_task(self.slow(self.ramp_s * i / n)) for i in range(n_slow)]
        tasks += [asyncio.create_task(self.idle(self.ramp_s * (i + 0.5) / n)) for i in range(n_idle)]
        while not stop.is_set():
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return self.counts

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            rw = await asyncio.wait_for(asyncio.open_connection(
                HOST, self.port, ssl=self.tls, server_hostname=HOST), 30)
        except (OSError, TimeoutError, ssl.SSLError):
            self.counts["connect_failed"] += 1
            await asyncio.sleep(0.5)
            return None
        with self.open_now.get_lock():
            self.open_now.value += 1
        return rw

    def _gone(self, w: asyncio.StreamWriter) -> None:
        with self.open_now.get_lock():
            self.open_now.value -= 1
        w.transport.abort()

    async def slow(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        while True:
            rw = await self._connect()
            if rw is None:
                continue
            self.counts["slow_opened"] += 1
            try:
                self.counts[await self._dribble(*rw)] += 1
            except (OSError, ssl.SSLError):
                self.counts["slow_reset"] += 1
            finally:
                self._gone(rw[1])

    async def _dribble(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> str:
        """A byte of the headers every dribble_s until the server answers or closes."""
        for k in range(len(self.head)):
            w.write(self.head[k:k + 1])
            try:
                data = await asyncio.wait_for(r.read(4096), self.dribble_s)
            except TimeoutError:
                continue
            if not data:
                return "slow_closed_unanswered"
            return "slow_answered_408" if data.startswith(b"HTTP/1.1 408 ") else "slow_answered_other"
        await r.read()
        return "slow_never_cut"

    async def idle(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        while True:
            rw = await self._connect()
            if rw is None:
                continue
            self.counts["idle_opened"] += 1
            try:
                data = await rw[0].read(4096)
                self.counts["idle_closed_unanswered" if not data else "idle_answered"] += 1
            except (OSError, ssl.SSLError):
                self.counts["idle_reset"] += 1
            finally:
                self._gone(rw[1])


def _attacker(port: int, ca_file: str, token: str, n_slow: int, n_idle: int, dribble_s: float,
              ramp_s: float, stop: Any, open_now: Any, out: Any) -> None:
    import uvloop

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    attack = Attack(port, ca_file, token, dribble_s, ramp_s, open_now)
    try:
        out.put(dict(uvloop.run(attack.run(n_slow, n_idle, stop))))
    except BaseException as e:  # noqa: BLE001 - report, never leave the parent waiting
        out.put({**attack.counts, f"attack_failed: {type(e).__name__}: {e}"[:200]: 1})


# ---- the probes (this process) -----------------------------------------------------------


class Prober:
    def __init__(self, port: int, ca_file: str) -> None:
        self.port = port
        self.tls = ssl.create_default_context(cafile=ca_file)
        self.kept: http.client.HTTPSConnection | None = None
        self.errors = 0

    def _get(self, conn: http.client.HTTPSConnection) -> None:
        conn.request("GET", "/healthz")
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise http.client.HTTPException(f"/healthz answered {r.status}")

    def new(self) -> float:
        t0 = time.perf_counter()
        conn = http.client.HTTPSConnection(HOST, self.port, timeout=60, context=self.tls)
        try:
            self._get(conn)
        finally:
            conn.close()
        return time.perf_counter() - t0

    def kept_alive(self) -> float:
        if self.kept is None:
            self.kept = http.client.HTTPSConnection(HOST, self.port, timeout=60, context=self.tls)
            self._get(self.kept)  # its handshake is not what this kind measures
        t0 = time.perf_counter()
        try:
            self._get(self.kept)
        except (OSError, http.client.HTTPException):
            self.kept.close()
            self.kept = None
            raise
        return time.perf_counter() - t0

    def phase(self, probes: int, every_s: float) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {"new connection": [], "kept-alive": []}
        for _ in range(probes):
            for kind, probe in (("new connection", self.new), ("kept-alive", self.kept_alive)):
                try:
                    out[kind].append(probe())
                except (OSError, http.client.HTTPException):
                    self.errors += 1
                time.sleep(every_s)
        return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slow", type=int, default=500)
    ap.add_argument("--idle", type=int, default=500)
    ap.add_argument("--probes", type=int, default=100, help="of each kind, per phase and round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--every-s", type=float, default=0.06,
                    help="between probes: 2 x --probes of them make a phase longer than the "
                         "header timeout, so that every attacking connection is cut and comes "
                         "back while it lasts")
    ap.add_argument("--dribble-s", type=float, default=1.0)
    ap.add_argument("--ramp-s", type=float, default=3.0,
                    help="the attack opens its connections over this long (the listen backlog is "
                         "128); they are cut, and come back, as spread as they were opened")
    ap.add_argument("--json", metavar="FILE", help="append the summary as a JSON line")
    a = ap.parse_args()
    want_open = a.slow + a.idle
    root = TempDir("tqd-slowloris-")
    lat: dict[tuple[str, str], list[float]] = {}
    cpu: dict[str, list[float]] = {"unloaded": [], "loaded": []}
    attack: Counter[str] = Counter()
    opened_at_probe: list[int] = []
    try:
        secrets = Secrets(root.path)
        srv = Server("tqd", [PY, "-m", "tqd", "serve", "--port", "0", "--data", str(root.path / "data"),
                             "--log-level", "warning", *secrets.args("auth+tls")],
                     root.path, ready_re=r"tqd (?:\S+ )?listening on https?://[\d.]+:(\d+)")
        try:
            prober = Prober(srv.port, secrets.ca_file)
            prober.phase(5, a.every_s)  # warm-up
            ctx = mp.get_context("fork")
            for r in range(a.rounds):
                for phase in ("unloaded", "loaded"):
                    proc = stop = None
                    if phase == "loaded":
                        stop, open_now, out = ctx.Event(), ctx.Value("i", 0), ctx.Queue()
                        proc = ctx.Process(target=_attacker, daemon=True, args=(
                            srv.port, secrets.ca_file, secrets.token, a.slow, a.idle, a.dribble_s,
                            a.ramp_s, stop, open_now, out))
                        proc.start()
                        deadline = time.monotonic() + 60 + a.ramp_s
                        while open_now.value < 0.95 * want_open and time.monotonic() < deadline:
                            time.sleep(0.1)
                    c0, t0 = srv.cpu_s(), time.monotonic()
                    got = prober.phase(a.probes, a.every_s)
                    cpu[phase].append(100 * (srv.cpu_s() - c0) / (time.monotonic() - t0))
                    for kind, xs in got.items():
                        lat.setdefault((phase, kind), []).extend(xs)
                    if proc is not None and stop is not None:
                        opened_at_probe.append(open_now.value)
                        stop.set()
                        try:
                            attack.update(out.get(timeout=60))
                        except queue.Empty:
                            attack["attack_report_missing"] += 1
                        proc.join(10)
                        if proc.is_alive():
                            proc.kill()
                        time.sleep(1.0)  # the server sees them go
                    print(f"  (round {r + 1}, {phase}: {sum(len(x) for x in got.values())} probes)",
                          file=sys.stderr)
        finally:
            srv.stop()
    finally:
        root.cleanup()
    rows = []
    for (phase, kind), xs in sorted(lat.items(), key=lambda kv: (kv[0][1], kv[0][0] != "unloaded")):
        xs.sort()
        rows.append({"probe": kind, "phase": phase, "probes": len(xs),
                     "p50_ms": 1000 * percentile(xs, 0.5), "p99_ms": 1000 * percentile(xs, 0.99),
                     "max_ms": 1000 * xs[-1] if xs else None,
                     "server_cpu_pct": statistics.median(cpu[phase])})
    print_table(f"/healthz with --auth and TLS, unloaded and while {a.slow} connections dribble "
                f"headers and {a.idle} sit idle", rows,
                ["probe", "phase", "probes", "p50_ms", "p99_ms", "max_ms", "server_cpu_pct"])
    by = {(x["probe"], x["phase"]): x for x in rows}
    summary: dict[str, Any] = {"slow": a.slow, "idle": a.idle, "probe_errors": prober.errors,
                               "attack_open_at_end_of_probes": opened_at_probe, **attack}
    for kind in ("new connection", "kept-alive"):
        for q in ("p50_ms", "p99_ms"):
            ratio = by[(kind, "loaded")][q] / by[(kind, "unloaded")][q]
            summary[f"{kind} {q} loaded/unloaded"] = round(ratio, 2)
            print(f"{kind} {q}: {by[(kind, 'unloaded')][q]:.2f} unloaded, "
                  f"{by[(kind, 'loaded')][q]:.2f} loaded: ratio {ratio:.2f}")
    print(f"attack: {dict(sorted(attack.items()))}; its connections open as each loaded phase "
          f"ended: {opened_at_probe}; probe errors: {prober.errors}")
    if a.json:
        with open(a.json, "a") as f:
            f.write(json.dumps({"rows": rows, **summary}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
