"""Real `tqd serve` nodes of one cluster on loopback ports, with a file:// or s3:// lease."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conftest import ServerProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


class Node:
    def __init__(self, name: str, data: Path, lease: str, ttl: float, extra: tuple[str, ...],
                 env: dict[str, str] | None) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ("--port", str(self.port), "--node-id", name, "--advertise", self.url,
                     "--lease-store", lease, "--lease-ttl-s", str(ttl), *extra)
        self.proc = ServerProcess(data, *self.args, env=env)

    def start(self) -> Node:
        self.proc = ServerProcess(self.proc.data_dir, *self.args, env=self.proc.env)
        self.proc.start()
        return self

    @property
    def alive(self) -> bool:
        return self.proc.proc is not None and self.proc.proc.poll() is None

    def status(self) -> dict[str, Any] | None:
        try:
            code, body = get_json(self.url + "/v1/cluster", timeout=2.0)
        except OSError:
            return None
        return body if code == 200 else None

    def kill(self) -> None:
        self.proc.stop(signal.SIGKILL)

    def stop(self) -> int:
        return self.proc.stop(signal.SIGTERM)

    def signal(self, sig: int) -> None:
        assert self.proc.proc is not None
        self.proc.proc.send_signal(sig)


class Cluster:
    def __init__(self, root: Path, n: int = 3, *, lease: str | None = None, ttl: float = 1.5,
                 sync: int = 1, extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.lease = lease or f"file://{root / 'lease'}"
        self.ttl = ttl
        self.sync = sync
        self.nodes = [Node(f"n{i + 1}", root / f"n{i + 1}", self.lease, ttl,
                           ("--sync-replicas", str(sync), *extra), env) for i in range(n)]

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        for n in self.nodes:
            if n.alive:
                n.signal(signal.SIGCONT)
                n.kill()

    def start(self) -> Cluster:
        for n in self.nodes:
            n.start()
        return self

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def leader(self, timeout: float = 30.0, exclude: Node | None = None) -> Node:
        """The one node that says it leads and can write (waits for one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leaders = [n for n in self.nodes if n.alive and n is not exclude
                       and (st := n.status()) is not None and st["role"] == "leader" and st["writable"]]
            if len(leaders) == 1:
                return leaders[0]
            time.sleep(0.05)
        raise AssertionError(f"no single leader within {timeout} s: "
                             f"{[(n.name, n.status()) for n in self.nodes if n.alive]}")

    def settled(self, timeout: float = 30.0, same_seq: bool = True) -> Node:
        """Wait until every live node follows one leader, at its position (same_seq), and
        (with sync replicas) is in its in-sync set; the leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader(timeout=max(0.1, deadline - time.monotonic()))
            st = leader.status()
            live = [n for n in self.nodes if n.alive]
            if st is not None and (self.sync == 0 or len(st["isr"]) == len(live)):
                seqs = {(s or {}).get("applied_seq") for s in (n.status() for n in live)}
                if len(seqs) == 1 or not same_seq:
                    return leader
            time.sleep(0.05)
        raise AssertionError(f"cluster did not settle: {[(n.name, n.status()) for n in self.nodes]}")
