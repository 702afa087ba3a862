"""Shared fixtures: the real `tqd serve` as a subprocess on port 0 in a temp dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tqd.config import Settings
from tqd.engine.writer import Writer
from tqd.queue.core import Core
from tqd.storage.store import Store

LISTEN_RE = re.compile(rb"tqd (?:\S+ )?listening on (https?://\S+)")


class ServerProcess:
    """A running `tqd serve`; `url` is its base URL. Its stderr is read as it comes (a
    server whose log fills the pipe would block, and answer nothing); `log` has it all
    once it is stopped."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = b""
        self._tail: list[bytes] = []
        self._drain: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> ServerProcess:
        cmd = [sys.executable, "-m", "tqd", "serve", "--port", "0", "--data", str(self.data_dir),
               *self.args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=self.env)
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            buf += line
            m = LISTEN_RE.search(line)
            if m:
                self.url = m.group(1).decode()
                self.log = buf
                self._tail = []
                self._drain = threading.Thread(target=self._pump, args=(self.proc.stderr,),
                                               daemon=True)
                self._drain.start()
                return self
        self.proc.kill()
        raise RuntimeError(f"tqd serve did not start: {buf.decode(errors='replace')}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        assert self.proc.stderr is not None
        if self._drain is not None:
            self._drain.join(10)
            self._drain = None
        else:
            self.log += self.proc.stderr.read()
        self.log += b"".join(self._tail)
        self._tail = []
        self.proc.stderr.close()
        return rc

    def _pump(self, err: Any) -> None:
        for line in iter(err.readline, b""):
            self._tail.append(line)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[type[ServerProcess]]:
    started: list[ServerProcess] = []

    class Factory(ServerProcess):
        def start(self, timeout: float = 15.0) -> ServerProcess:
            started.append(self)
            return super().start(timeout)

    yield Factory
    for s in started:
        if s.proc is not None and s.proc.poll() is None:
            s.kill()


@pytest.fixture
def server(server_factory: type[ServerProcess], tmp_path: Path) -> Iterator[ServerProcess]:
    s = server_factory(tmp_path / "data").start()
    yield s
    rc = s.stop()
    assert b"Traceback" not in s.log, s.log.decode(errors="replace")
    assert rc == 0, s.log.decode(errors="replace")


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    """The core's writer on a store in tmp_path, applied in-process (apply_now/apply_batch)."""
    store = Store(tmp_path, 1 << 26)
    w = Writer(store, Core(Settings(data_dir=tmp_path)), max_batch_ops=100,
               log_keep_entries=10_000)
    yield w
    store.close()
