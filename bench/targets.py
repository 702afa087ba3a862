"""The systems under test, each started fresh in a private temp dir on a loopback port.

    tqd               tqd serve, durable defaults (every acknowledged write fsync'd, group commit)
    beanstalkd-mem    beanstalkd without a binlog (in memory, not durable)
    beanstalkd-fsync  beanstalkd -b DIR -f0 (binlog, fsync after every write)
    saq-redis         SAQ (Python) on redis-server, appendonly yes, appendfsync always

Peers are installed on first use (Debian packages beanstalkd and redis-server;
SAQ from PyPI into the harness's Python). Each Target's ``running()`` yields
a common.Server that only this harness signals, and stops it on exit.
"""

from __future__ import annotations

import contextlib
import importlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

from common import HOST, Server, TempDir, free_port, start_tqd


@dataclass
class Target:
    name: str
    kind: str  # client kind, see clients.KINDS
    durable: bool
    note: str
    supports_priority: bool = True
    # pre-fill size relative to --drain-jobs: the fsync-per-write peers fill at a few thousand
    # jobs/s, so they get a tenth (still seconds of draining at their rates)
    fill_scale: float = 1.0
    extra: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        tmp = TempDir(f"bench-{self.name}-")
        srv = None
        try:
            srv = self._start(tmp)
            yield srv
        finally:
            if srv is not None:
                srv.stop()
            tmp.cleanup()

    def _start(self, tmp: TempDir) -> Server:
        if self.kind == "tqd":
            return start_tqd(tmp.path)
        port = free_port()
        if self.kind == "beanstalkd":
            argv = ["beanstalkd", "-l", HOST, "-p", str(port)]
            if self.durable:
                (tmp.path / "binlog").mkdir()
                argv += ["-b", str(tmp.path / "binlog"), "-f0"]
            return Server(self.name, argv, tmp.path, port=port)
        if self.kind == "saq":
            conf = tmp.path / "redis.conf"
            conf.write_text(
                f"bind {HOST}\nport {port}\ndir {tmp.path}\nappendonly yes\n"
                "appendfsync always\nsave \"\"\ndaemonize no\nprotected-mode yes\n"
                "logfile \"\"\n")
            return Server(self.name, ["redis-server", str(conf)], tmp.path, port=port)
        raise ValueError(self.kind)


TQD = Target("tqd", "tqd", True, "fsync'd group commit (default)")
PEERS = [
    Target("beanstalkd-mem", "beanstalkd", False, "beanstalkd, no binlog (in memory)"),
    Target("beanstalkd-fsync", "beanstalkd", True, "beanstalkd -b DIR -f0 (fsync every write)",
           fill_scale=0.1),
    Target("saq-redis", "saq", True, "SAQ on Redis, appendfsync always", supports_priority=False,
           fill_scale=0.1),
]


def _run(cmd: list[str], timeout_s: float) -> None:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, timeout=timeout_s, stdout=subprocess.DEVNULL)


def ensure_peers_installed() -> None:
    """apt-get the peer servers (update once) and pip-install SAQ, only if missing."""
    missing = [pkg for exe, pkg in (("beanstalkd", "beanstalkd"), ("redis-server", "redis-server"))
               if shutil.which(exe) is None]
    if missing:
        _run(["apt-get", "update", "-q"], 600)
        _run(["apt-get", "install", "-y", "-q", *missing], 600)
    try:
        importlib.import_module("saq")
        importlib.import_module("redis")
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "-q", "saq[redis]"], 600)
        importlib.invalidate_caches()
        importlib.import_module("saq")
        importlib.import_module("redis")
