"""A writer that stops answering (a stuck disk: here SIGSTOP) or dies under load.

Writes get 503 not_ready after the write deadline instead of hanging, /readyz
says why, and requests in flight when the writer dies get 503, not 500.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from _http import Api, Resp, assert_error
from conftest import ServerProcess
from test_writer_process import children, wait_until


def _in_thread(f: Any) -> tuple[threading.Thread, list[Resp]]:
    out: list[Resp] = []
    t = threading.Thread(target=lambda: out.append(f()))
    t.start()
    return t, out


def test_stuck_writer_gives_503_and_readyz_fails(server_factory: type[ServerProcess],
                                                 tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data", "--write-deadline-s", "1").start()
    assert s.proc is not None
    api = Api(s.url)
    assert api.request("GET", "/readyz").status == 200
    (writer,) = children(s.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    try:
        t, got = _in_thread(lambda: api.enqueue("q", {"payload": 1}))
        ready = wait_until(lambda: (r := api.request("GET", "/readyz")).status == 503 and r)
        assert ready, "readyz never failed"
        assert "writer" in ready.json()["reason"], ready
        t.join(15)
        assert_error(got[0], 503, "not_ready")
        t2, got2 = _in_thread(lambda: api.lease(["q"], wait=0.5))  # a long-poll, too
        t2.join(15)
        assert_error(got2[0], 503, "not_ready")
        assert api.request("GET", "/healthz").status == 200  # the process still serves
    finally:
        os.kill(writer, signal.SIGCONT)
    assert wait_until(lambda: api.request("GET", "/readyz").status == 200)
    assert api.enqueue("q", {"payload": 2}).status == 201
    assert s.stop() == 0
    assert b"Traceback" not in s.log, s.log.decode(errors="replace")


def test_requests_in_flight_when_the_writer_dies_get_503(server_factory: type[ServerProcess],
                                                         tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data").start()
    assert s.proc is not None
    api = Api(s.url)
    (writer,) = children(s.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    threads = [_in_thread(lambda: api.enqueue("q", {"payload": 1})) for _ in range(5)]
    time.sleep(0.3)  # let them reach the writer's socket (none can be answered while stopped)
    os.kill(writer, signal.SIGKILL)
    for t, got in threads:
        t.join(15)
        assert_error(got[0], 503, "not_ready")
    assert s.stop() == 1  # the server stops when its writer is gone


def _hang_up(api: Api, body: dict[str, Any]) -> None:
    """Send a lease request and close the connection without reading the answer."""
    import json
    import socket
    raw = json.dumps(body).encode()
    with socket.create_connection((api.host, api.port)) as s:
        s.sendall(b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(raw), raw))
        time.sleep(0.3)  # it reaches the server, which passes it to the (stopped) writer


def test_jobs_leased_to_a_client_that_left_are_released(server_factory: type[ServerProcess],
                                                        tmp_path: Path) -> None:
    """The lease commits after its client hung up (here: the writer was stopped meanwhile);
    the jobs go back to the queue at once, with no attempt used, instead of waiting out
    their lease."""
    s = server_factory(tmp_path / "data").start()
    assert s.proc is not None
    api = Api(s.url)
    first = api.enqueue_ok("q", {"payload": 1})
    (writer,) = children(s.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    _hang_up(api, {"queues": ["q"], "max": 5, "timeout": 600})  # answered at once
    os.kill(writer, signal.SIGCONT)
    api.enqueue_ok("q2", {})  # answered after the writer applied the lease
    assert wait_until(lambda: api.job(first)["state"] == "queued" and api.job(first)["attempt"] == 0)

    # a long-poll served by an enqueue that came in with its client's hang-up
    t, _ = _in_thread(lambda: _hang_up(api, {"queues": ["p"], "wait": 30, "timeout": 600}))
    time.sleep(0.1)  # parked
    os.kill(writer, signal.SIGSTOP)
    t2, got = _in_thread(lambda: api.enqueue("p", {"payload": 2}))
    t.join()
    os.kill(writer, signal.SIGCONT)
    t2.join()
    second = got[0].json()["id"]
    assert wait_until(lambda: api.job(second)["state"] == "queued" and api.job(second)["attempt"] == 0)
    assert s.stop() == 0
    assert b"Traceback" not in s.log, s.log.decode(errors="replace")


def test_a_lease_answered_503_is_released_when_it_commits(server_factory: type[ServerProcess],
                                                          tmp_path: Path) -> None:
    s = server_factory(tmp_path / "data", "--write-deadline-s", "1").start()
    assert s.proc is not None
    api = Api(s.url)
    jid = api.enqueue_ok("q", {"payload": 1})
    (writer,) = children(s.proc.pid)
    os.kill(writer, signal.SIGSTOP)
    try:
        assert_error(api.lease(["q"], max=5), 503, "not_ready")  # the deadline passed
    finally:
        os.kill(writer, signal.SIGCONT)  # now the lease commits, for nobody
    api.enqueue_ok("q2", {})  # answered after the writer applied the lease (one line of work)
    assert wait_until(lambda: (j := api.job(jid))["state"] == "queued" and j["attempt"] == 0)
    assert s.stop() == 0
