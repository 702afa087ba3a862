"""What auth, TLS and encryption at rest cost: single enqueue, bulk enqueue and drain against
five servers, same run.

    python bench/security_cost.py [--rounds 3] [--duration-s 3] [--drain-jobs 20000] [--workers 2]

Modes: ``plain``; ``auth`` (``--auth`` with one admin token, sent on every request);
``tls`` (``--tls-cert``/``--tls-key`` with certificates made by trustme; the clients
verify them); ``enc`` (``--encryption-key-file``); ``all`` (the three at once). Each round
starts a fresh server per mode, in an order rotated every round (the machine is noisy),
and on it: fills ``--drain-jobs`` jobs (not timed) and drains them with ``--workers``
worker processes (lease 100 + bulk ack, as drain.py); then single enqueue (as
enqueue_single.py: one job per request, 16 connections in 2 processes) and bulk enqueue
(as enqueue_bulk.py: NDJSON batches of 100, 8 connections in 2 processes), each a 1 s
warm-up and ``--duration-s``. The clients are the harness's own (common.HttpConn), over
TLS and with the token when the mode has them, and keep their connections open: one TLS
handshake per connection, as tqd.Client makes it.

Prints each run, then per mode the median of jobs/s and of server CPU per job, and their
ratio to plain's (with the per-round ratios, paired within a round, to show the spread);
``--json FILE`` appends the runs and the summary as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clients  # noqa: E402
from common import HOST, PY, HttpConn, Server, TempDir, interleaved, median_of, print_table  # noqa: E402
from load import drain, fill, timed_enqueue  # noqa: E402

MODES = ("plain", "auth", "tls", "enc", "all")
SINGLE_PROCS, SINGLE_CONNS = 2, 8  # enqueue_single.py
BULK_PROCS, BULK_CONNS, BATCH = 2, 4, 100  # enqueue_bulk.py
METRICS = {"single_jobs_per_s": "single jobs/s", "single_cpu_us_per_job": "single CPU us/job",
           "bulk_jobs_per_s": "bulk jobs/s", "bulk_cpu_us_per_job": "bulk CPU us/job",
           "drain_jobs_per_s": "drain jobs/s", "drain_cpu_us_per_job": "drain CPU us/job"}


class SecureConn(HttpConn):
    """common.HttpConn over TLS (when given a context) with a bearer token on every request."""

    auth = b""

    @classmethod
    async def open_with(cls, port: int, tls: ssl.SSLContext | None, token: str | None) -> SecureConn:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(cls, HOST, port, ssl=tls,
                                                server_hostname=HOST if tls else None)
        proto.host = f"{HOST}:{port}".encode()
        proto.auth = b"Authorization: Bearer %s\r\n" % token.encode() if token else b""
        return proto

    async def request(self, method: str, path: str, body: bytes = b"",
                      ctype: str = "application/json") -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(
            b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: %s\r\nContent-Length: %d\r\n\r\n%s"
            % (method.encode(), path.encode(), self.host, self.auth, ctype.encode(), len(body), body))
        return await self.waiter


def client_kind(mode: str, ca_file: str | None, token: str | None) -> str:
    """A client kind (clients.KINDS) for this mode's servers. The load processes are forked
    (common.run_procs), so they find it registered."""

    class Client(clients.TqdClient):
        @classmethod
        async def open(cls, port: int, queue: str) -> Client:
            tls = ssl.create_default_context(cafile=ca_file) if ca_file else None
            return cls(await SecureConn.open_with(port, tls, token), queue)

    kind = f"tqd-{mode}"
    clients.KINDS[kind] = Client
    clients.WORKER_CONCURRENCY[kind] = clients.WORKER_CONCURRENCY["tqd"]
    return kind


class Secrets:
    """What the modes need, made once: certificates, a token file and its token, a key file."""

    def __init__(self, root: Path) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        self.ca_file, self.cert, self.key = str(root / "ca.pem"), str(root / "cert.pem"), str(root / "key.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        cert.private_key_pem.write_to_path(self.key)
        cert.cert_chain_pems[0].write_to_path(self.cert)
        for pem in cert.cert_chain_pems[1:]:
            pem.write_to_path(self.cert, append=True)
        self.auth = str(root / "tokens.toml")
        self.token = subprocess.run(
            [PY, "-m", "tqd", "token", "create", "--auth", self.auth, "--name", "bench", "--role",
             "admin"], check=True, capture_output=True, text=True).stdout.strip()
        self.keys = str(root / "keys.json")
        subprocess.run([PY, "-m", "tqd", "keys", "create", "--file", self.keys], check=True,
                       capture_output=True)

    @staticmethod
    def parts(mode: str) -> set[str]:
        """What a mode turns on: plain, auth, tls, enc, all, or a sum such as auth+tls."""
        return {"all": {"auth", "tls", "enc"}, "plain": set()}.get(mode, set(mode.split("+")))

    def args(self, mode: str) -> list[str]:
        on, out = self.parts(mode), []
        if "auth" in on:
            out += ["--auth", self.auth]
        if "tls" in on:
            out += ["--tls-cert", self.cert, "--tls-key", self.key]
        if "enc" in on:
            out += ["--encryption-key-file", self.keys]
        return out

    def kind(self, mode: str) -> str:
        on = self.parts(mode)
        return client_kind(mode, self.ca_file if "tls" in on else None,
                           self.token if "auth" in on else None)


def one(mode: str, secrets: Secrets, a: argparse.Namespace) -> dict[str, Any]:
    tmp = TempDir(f"tqd-sec-{mode}-")
    try:
        srv = Server("tqd", [PY, "-m", "tqd", "serve", "--port", "0", "--data", str(tmp.path / "data"),
                             "--log-level", "warning", *secrets.args(mode)],
                     tmp.path, ready_re=r"tqd (?:\S+ )?listening on https?://[\d.]+:(\d+)")
        try:
            kind = secrets.kind(mode)
            spec = {"kind": kind, "port": srv.port, "queue": "drain"}
            fill(spec, a.drain_jobs, 120)
            d, _ = drain(spec, srv, a.workers, 120)
            single = timed_enqueue({**spec, "queue": "single"}, srv, SINGLE_PROCS, SINGLE_CONNS, 1,
                                   a.duration_s, 10_000_000)
            bulk = timed_enqueue({**spec, "queue": "bulk"}, srv, BULK_PROCS, BULK_CONNS, BATCH,
                                 a.duration_s, 10_000_000)
        finally:
            srv.stop()
    finally:
        tmp.cleanup()
    return {"mode": mode, "drained": d["jobs"],
            "single_jobs_per_s": single["jobs_per_s"], "single_cpu_us_per_job": single["server_cpu_us_per_job"],
            "bulk_jobs_per_s": bulk["jobs_per_s"], "bulk_cpu_us_per_job": bulk["server_cpu_us_per_job"],
            "drain_jobs_per_s": d["jobs_per_s"], "drain_cpu_us_per_job": d["server_cpu_us_per_job"]}


def summary(rows: list[dict[str, Any]], modes: list[str]) -> list[dict[str, Any]]:
    """Per mode and metric: the median, its ratio to plain's, and the paired per-round ratios."""
    out = []
    plain = {r["round"]: r for r in rows if r["mode"] == "plain"}
    base = {m: median_of(rows, m, lambda r: r["mode"] == "plain") for m in METRICS}
    for mode in modes:
        mine = [r for r in rows if r["mode"] == mode]
        row: dict[str, Any] = {"mode": mode}
        for m in METRICS:
            med = median_of(rows, m, lambda r, mode=mode: r["mode"] == mode)
            row[m] = med
            row[f"{m}_ratio"] = med / base[m]
            row[f"{m}_round_ratios"] = [round(r[m] / plain[r["round"]][m], 3) for r in mine]
        out.append(row)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration-s", type=float, default=3.0)
    ap.add_argument("--drain-jobs", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--modes", default=",".join(MODES), help="a subset of " + ",".join(MODES))
    ap.add_argument("--json", metavar="FILE", help="append the runs and the summary as JSON lines")
    a = ap.parse_args()
    modes = [m for m in MODES if m in a.modes.split(",")]
    if "plain" not in modes:
        ap.error("--modes needs plain: the ratios are against it")
    root = TempDir("tqd-sec-secrets-")
    try:
        secrets = Secrets(root.path)
        rows = interleaved(a.rounds, modes, lambda mode: one(mode, secrets, a),
                           lambda x: f"{x['mode']}: single {x['single_jobs_per_s']:,.0f}, bulk "
                                     f"{x['bulk_jobs_per_s']:,.0f}, drain {x['drain_jobs_per_s']:,.0f} jobs/s")
    finally:
        root.cleanup()
    print_table("single enqueue, bulk enqueue and drain per security mode", rows,
                ["round", "mode", "drained", *METRICS])
    summ = summary(rows, modes)
    print_table("medians (ratio to plain: jobs/s < 1 is slower, CPU/job > 1 costlier)",
                [{"mode": s["mode"], **{label: f"{s[m]:,.1f} ({s[f'{m}_ratio']:.3f})"
                                        for m, label in METRICS.items()}} for s in summ],
                ["mode", *METRICS.values()])
    for s in summ:  # the spread: each round's ratio to that round's plain
        if s["mode"] != "plain":
            print(f"{s['mode']} / plain, jobs/s by round: " + "; ".join(
                f"{METRICS[m].split()[0]} {s[f'{m}_round_ratios']}" for m in METRICS
                if m.endswith("_per_s")))
    if a.json:
        with open(a.json, "a") as f:
            for x in [*rows, *({"summary": True, **s} for s in summ)]:
                f.write(json.dumps(x) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
