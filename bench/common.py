"""Shared pieces of the benchmark harness.

- ``Server``: a process this harness started (tqd, beanstalkd, redis), with its
  CPU time and RSS read from /proc, stopped with SIGTERM then SIGKILL.
- ``start_tqd``: the real ``tqd serve --port 0`` in a private temp dir.
- ``run_procs``: run one async function in N forked load-generator processes,
  all starting at the same instant, each reporting its own CPU time, so the
  harness can tell when the client side (not the server) is the bottleneck.
- ``HttpConn``: a tiny HTTP/1.1 keep-alive client (asyncio.Protocol, one
  request in flight per connection, no pipelining). It costs a fraction of
  aiohttp's client CPU, which matters on a 2-core machine where the load
  generator shares the cores with the server.
- ``Report``: one JSON line per result (stdout and ``--json`` file) and a table.

Every wait here has a deadline; nothing loops unbounded.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PY = os.environ.get("TQD_BENCH_PYTHON", sys.executable)  # the harness's own Python by default
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- process stats --------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/PID/status in MiB: VmRSS (all), RssAnon (heap: what the process
    itself holds) or RssFile (mapped files: for tqd the LMDB map, the kernel's page cache)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def proc_tree(pid: int) -> list[int]:
    """pid and its descendants (tqd's writer process is a child of the server)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            continue
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {HOST}:{port} after {timeout_s}s")


# ---- servers ----------------------------------------------------------------------


class Server:
    """A server process started by this harness; only this object ever signals it."""

    def __init__(self, name: str, argv: Sequence[str], workdir: Path, port: int | None = None,
                 ready_re: str | None = None, start_timeout_s: float = 20.0) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(list(argv), stdout=self._log, stderr=subprocess.PIPE,
                                     cwd=workdir, start_new_session=True)
        self.pid = self.proc.pid
        self.port = port
        self._lines: deque[str] = deque(maxlen=200)
        found = threading.Event()
        holder: dict[str, str] = {}

        def pump() -> None:  # drain stderr so the server never blocks on a full pipe
            assert self.proc.stderr is not None
            for raw in self.proc.stderr:
                line = raw.decode(errors="replace")
                self._lines.append(line)
                self._log.write(raw)
                if ready_re and not found.is_set():
                    m = re.search(ready_re, line)
                    if m:
                        holder["port"] = m.group(1)
                        found.set()

        self._pump = threading.Thread(target=pump, daemon=True)
        self._pump.start()
        try:
            if ready_re:
                deadline = time.monotonic() + start_timeout_s
                while not found.wait(0.1):
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self._pump.join(1)
                        tail = "".join(self._lines)[-1500:]
                        raise RuntimeError(f"{name} did not start (exit {self.proc.poll()}): {tail}")
                self.port = int(holder["port"])
            elif port is not None:
                wait_port(port, start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def cpu_s(self) -> float:
        """CPU seconds of the server and its child processes (those alive now)."""
        total = 0.0
        for p in proc_tree(self.pid):
            try:
                total += proc_cpu_s(p)
            except FileNotFoundError:
                pass
        return total

    def rss_mib(self, field: str = "VmRSS") -> float:
        """Summed over the server and its child processes; see proc_rss_mib for ``field``."""
        return sum(proc_rss_mib(p, field) for p in proc_tree(self.pid))

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._pump.join(2)
        self._log.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TempDir:
    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("TQD_BENCH_TMP")))

    def cleanup(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def start_tqd(workdir: Path, extra_args: Sequence[str] = ()) -> Server:
    """The real server, durable defaults (fsync'd group commit), port 0."""
    return Server("tqd", [PY, "-m", "tqd", "serve", "--port", "0", "--data", str(workdir / "data"),
                          "--log-level", "warning", *extra_args],
                  workdir, ready_re=r"tqd (?:\S+ )?listening on http://[\d.]+:(\d+)")


# ---- load-generator processes ----------------------------------------------------


def _child(fn: Callable[..., Any], index: int, kwargs: dict[str, Any], out: Any) -> None:
    try:
        import uvloop

        t0 = os.times()
        res = uvloop.run(fn(**kwargs))
        t1 = os.times()
        res.setdefault("cpu_s", (t1.user - t0.user) + (t1.system - t0.system))
        out.put((index, res))
    except BaseException as e:  # noqa: BLE001 - report, never hang the parent
        out.put((index, {"error": f"{type(e).__name__}: {e}"}))


def run_procs(fn: Callable[..., Any] | Sequence[Callable[..., Any]],
              kwargs_list: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
    """Run ``fn(**kwargs)`` in one forked process per kwargs; their dicts, in that order.

    ``fn`` may be a list (one function per kwargs).
    Each child should measure its own window and may report ``cpu_s`` for it
    (else the whole life of the child is counted). Children still running at
    the deadline are killed (they are ours: we hold their Process objects).
    """
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    fns = list(fn) if isinstance(fn, Sequence) else [fn] * len(kwargs_list)
    procs = [ctx.Process(target=_child, args=(f, i, kw, out), daemon=True)
             for i, (f, kw) in enumerate(zip(fns, kwargs_list, strict=True))]
    for p in procs:
        p.start()
    got: dict[int, dict[str, Any]] = {}
    problems: list[str] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(got) < len(procs):
            left = deadline - time.monotonic()
            if left <= 0:
                problems.append("load process timed out")
                break
            try:
                i, res = out.get(timeout=min(left, 1.0))
                got[i] = res
            except Exception:  # queue.Empty
                if all(not p.is_alive() for p in procs) and out.empty():
                    problems.append("load process died")
                    break
    finally:
        for p in procs:
            p.join(max(0.1, min(5.0, deadline - time.monotonic())))
            if p.is_alive():
                p.kill()
                p.join(2)
    problems += [r["error"] for r in got.values() if "error" in r]
    if problems:
        raise RuntimeError("load process failed: " + "; ".join(problems[:3]))
    return [got[i] for i in range(len(procs))]


async def sleep_until(t_wall: float) -> None:
    d = t_wall - time.time()
    if d > 0:
        await asyncio.sleep(d)


def child_window(res: dict[str, Any], t0: Any, t1: Any) -> dict[str, Any]:
    """Attach the CPU seconds a child spent between two os.times() samples."""
    res["cpu_s"] = (t1.user - t0.user) + (t1.system - t0.system)
    return res


# ---- tiny HTTP/1.1 keep-alive client --------------------------------------------


class HttpError(Exception):
    pass


class HttpConn(asyncio.Protocol):
    """One keep-alive connection, one request at a time. Content-Length bodies only."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.host = b""

    @classmethod
    async def open(cls, port: int, host: str = HOST) -> HttpConn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, host, port)
        proto.host = f"{host}:{port}".encode()
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop transports are not asyncio.Transport subclasses: no isinstance check)
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        w = self.waiter
        if w is None or w.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end])
        status = int(head[9:12])
        length = 0
        i = head.lower().find(b"\ncontent-length:")
        if i >= 0:
            j = head.find(b"\r", i + 1)
            length = int(head[i + 16: j if j >= 0 else len(head)])
        elif b"chunked" in head.lower():
            w.set_exception(HttpError("chunked responses are not supported by the bench client"))
            return
        total = end + 4 + length
        if len(self.buf) < total:
            return
        body = bytes(self.buf[end + 4:total])
        del self.buf[:total]
        w.set_result((status, body))

    async def request(self, method: str, path: str, body: bytes = b"",
                      ctype: str = "application/json") -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (method.encode(), path.encode(), self.host, ctype.encode(), len(body), body))
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# ---- results ----------------------------------------------------------------------


class Report:
    """Collects results; prints one JSON line per result and tables."""

    def __init__(self, json_path: str | None = None) -> None:
        self.results: list[dict[str, Any]] = []
        self._f = open(json_path, "a") if json_path else None

    def add(self, res: dict[str, Any]) -> dict[str, Any]:
        res = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in res.items()}
        self.results.append(res)
        line = json.dumps(res)
        print(line, flush=True)
        if self._f:
            self._f.write(line + "\n")
            self._f.flush()
        return res

    def close(self) -> None:
        if self._f:
            self._f.close()


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        if abs(v) >= 1:
            return f"{v:,.2f}"
        return f"{v:.3f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def print_table(title: str, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain fallback
        print(f"\n{title}")
        print(" | ".join(columns))
        for r in rows:
            print(" | ".join(fmt(r.get(c)) for c in columns))
        return
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, justify="left" if c in ("scenario", "target", "note") else "right")
    for r in rows:
        t.add_row(*(fmt(r.get(c))[-160:] for c in columns))
    Console(file=sys.stdout, width=200).print(t)


def percentile(sorted_vals: Sequence[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(q * (len(sorted_vals) - 1)))))
    return sorted_vals[i]


def interleaved(rounds: int, variants: Sequence[Any], run: Callable[[Any], dict[str, Any]],
                note: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
    """The same-run comparison of the feature-cost benches: each round runs every variant
    once, in an order turned by one each round (so a drift of the shared machine falls on
    all alike). One row per run, with its "round"; note(row) is its progress line (stderr)."""
    rows: list[dict[str, Any]] = []
    for r in range(rounds):
        k = r % len(variants)
        for v in [*variants[k:], *variants[:k]]:
            rows.append({"round": r + 1, **run(v)})
            print(f"  (round {r + 1}, {note(rows[-1])})", file=sys.stderr)
    return rows


def median_of(rows: list[dict[str, Any]], metric: str, where: Callable[[dict[str, Any]], Any]) -> float:
    """The median of metric over the rows where where(row) holds."""
    return float(statistics.median(x[metric] for x in rows if where(x)))
