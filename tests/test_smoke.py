"""Smoke: the real server starts, enqueues, leases, acks, and refuses a second server."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

from conftest import ServerProcess


def call(url: str, method: str = "GET", body: bytes | None = None,
         ctype: str = "application/json") -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_enqueue_lease_ack(server: ServerProcess) -> None:
    st, body = call(f"{server.url}/v1/queues/q/jobs", "POST", b'{"payload": {"n": 1}}')
    assert st == 201
    jid = json.loads(body)["id"]
    st, body = call(f"{server.url}/v1/lease", "POST", b'{"queues": ["q"]}')
    assert st == 200
    job = json.loads(body.splitlines()[0])
    assert job["id"] == jid and job["payload"] == {"n": 1} and job["attempt"] == 1
    st, body = call(f"{server.url}/v1/jobs/{jid}/ack", "POST",
                    json.dumps({"lease": job["lease"], "result": [1]}).encode())
    assert (st, json.loads(body)) == (200, {"state": "completed"})
    st, body = call(f"{server.url}/v1/jobs/{jid}")
    assert json.loads(body)["result"] == [1]


def test_second_server_on_same_dir_refuses(server: ServerProcess) -> None:
    r = subprocess.run([sys.executable, "-m", "tqd", "serve", "--port", "0", "--data",
                        str(server.data_dir)], capture_output=True, timeout=20)
    assert r.returncode == 1
    assert b"in use by another tqd" in r.stderr
