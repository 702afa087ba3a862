"""The writer process from the outside."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from conftest import ServerProcess
from test_smoke import call


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until(cond: object, timeout: float = 15.0) -> Any:
    """cond()'s first truthy value, polled until timeout; False if it never held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()  # type: ignore[operator]
        if v:
            return v
        time.sleep(0.02)
    return False


def enqueue(url: str, n: int) -> str:
    st, body = call(f"{url}/v1/queues/q/jobs", "POST", json.dumps({"payload": {"n": n}}).encode())
    assert st == 201, body
    return str(json.loads(body)["id"])


def test_sigkill_takes_the_writer_process_along(server_factory: type[ServerProcess],
                                                tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data").start()
    assert s.proc is not None
    (writer,) = children(s.proc.pid)
    jid = enqueue(s.url, 1)
    s.kill()
    assert wait_until(lambda: not running(writer)), "writer process outlived its server"
    s2 = server_factory(tmp_path / "data").start()  # the data dir is free again
    st, body = call(f"{s2.url}/v1/jobs/{jid}")
    assert st == 200 and json.loads(body)["state"] == "queued"
    assert s2.stop() == 0


def test_restart_right_after_sigkill_waits_for_the_old_writer(
        server_factory: type[ServerProcess], tmp_path: Path) -> None:
    """No sleep between kill and start: the old writer may still hold the lock for a moment."""
    ids = []
    for i in range(5):
        s = server_factory(tmp_path / "data").start()
        ids.append(enqueue(s.url, i))
        s.kill()
    s = server_factory(tmp_path / "data").start()
    for jid in ids:
        st, _ = call(f"{s.url}/v1/jobs/{jid}")
        assert st == 200
    assert s.stop() == 0


def test_server_stops_when_its_writer_process_dies(server_factory: type[ServerProcess],
                                                   tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data").start()
    assert s.proc is not None
    enqueue(s.url, 1)
    (writer,) = children(s.proc.pid)
    os.kill(writer, signal.SIGKILL)
    rc = s.stop(sig=0, timeout=20)  # signal 0: no signal, just wait for it to exit
    assert rc == 1
    assert b"writer process exited" in s.log


def test_the_writer_flag_is_gone(server_factory: type[ServerProcess], tmp_path: Path) -> None:
    """--writer (process or thread) was removed: naming it is an error, not a silent no-op."""
    s = server_factory(tmp_path / "data", "--writer", "thread")
    try:
        s.start(timeout=10)
        raise AssertionError("started with --writer thread")
    except RuntimeError as e:
        assert "unrecognized arguments: --writer thread" in str(e)
    assert s.stop() == 2


def test_bulk_larger_than_socket_buffers_crosses_intact(server: ServerProcess) -> None:
    """A 12 MB bulk body: the op frame to the writer and the answer frame are split by the
    socket many times over; every job arrives once, in order."""
    pad = "x" * 2400
    body = "".join(json.dumps({"payload": {"n": i, "pad": pad}}) + "\n" for i in range(5000))
    st, resp = call(f"{server.url}/v1/queues/big/jobs", "POST", body.encode(),
                    "application/x-ndjson")
    assert st == 201, resp[:300]
    ids = [json.loads(line)["id"] for line in resp.splitlines()]
    assert len(ids) == 5000 and len(set(ids)) == 5000
    st, body2 = call(f"{server.url}/v1/lease", "POST",
                     b'{"queues": ["big"], "max": 1000}')
    jobs = [json.loads(line) for line in body2.splitlines()]
    assert [j["payload"]["n"] for j in jobs] == list(range(1000))
    assert [j["id"] for j in jobs] == ids[:1000]


def test_long_poll_of_a_client_that_left_gets_no_job(server: ServerProcess) -> None:
    """The client hangs up while its long-poll waits in the writer process: the parked lease
    is withdrawn there, so a job enqueued afterwards stays queued for the next worker."""
    host, port = server.url.removeprefix("http://").split(":")
    body = b'{"queues": ["gone"], "wait": 20}'
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.3)  # parked
    time.sleep(1.0)  # the server notices the hang-up and withdraws the lease
    enqueue_to = f"{server.url}/v1/queues/gone/jobs"
    st, resp = call(enqueue_to, "POST", b'{"payload": 1}')
    assert st == 201
    st, stats = call(f"{server.url}/v1/queues/gone")
    got = json.loads(stats)
    assert (got["queued"], got["active"]) == (1, 0), got
