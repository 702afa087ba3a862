"""A tiny synchronous HTTP client for tests: exact bytes in, status/headers/bytes out.

It uses http.client directly (a fresh connection per request) so a test controls
the Content-Type exactly, including sending none at all.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import ServerProcess

SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
NDJSON = "application/x-ndjson"
_UNSET: Any = object()


class Resp:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    def lines(self) -> list[Any]:
        return [json.loads(x) for x in self.body.split(b"\n") if x.strip()]

    @property
    def ctype(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip()

    def __repr__(self) -> str:
        return f"<Resp {self.status} {self.body[:300]!r}>"


class Api:
    """Calls against one server's base URL."""

    def __init__(self, url: str) -> None:
        u = urllib.parse.urlsplit(url)
        self.url = url
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or 80

    def request(self, method: str, path: str, body: Any = _UNSET, *, raw: bytes | None = None,
                ctype: str | None = "application/json", timeout: float = 15.0,
                headers: dict[str, str] | None = None) -> Resp:
        """`body` is JSON-encoded; `raw` is sent as is. ctype=None sends no Content-Type."""
        data: bytes | None = raw
        if body is not _UNSET:
            data = json.dumps(body).encode()
        hdrs = dict(headers or {})
        if ctype is not None and data is not None:
            hdrs["Content-Type"] = ctype
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Resp(r.status, r.headers, r.read())
        finally:
            conn.close()

    # ---- shorthands ---------------------------------------------------------------

    def enqueue(self, queue: str, job: Any = None, **kw: Any) -> Resp:
        return self.request("POST", f"/v1/queues/{queue}/jobs", {} if job is None else job, **kw)

    def enqueue_ok(self, queue: str, job: Any = None) -> str:
        r = self.enqueue(queue, job)
        assert r.status == 201, r
        jid: str = r.json()["id"]
        return jid

    def bulk(self, queue: str, lines: list[Any] | bytes) -> Resp:
        raw = lines if isinstance(lines, bytes) else b"".join(
            json.dumps(x).encode() + b"\n" for x in lines)
        return self.request("POST", f"/v1/queues/{queue}/jobs", raw=raw, ctype=NDJSON)

    def lease(self, queues: list[str], **kw: Any) -> Resp:
        timeout = float(kw.get("wait", 0)) + 15
        return self.request("POST", "/v1/lease", {"queues": queues, **kw}, timeout=timeout)

    def lease_jobs(self, queues: list[str], **kw: Any) -> list[Any]:
        r = self.lease(queues, **kw)
        if r.status == 204:
            assert r.body == b"", r
            return []
        assert r.status == 200 and r.ctype == NDJSON, r
        return r.lines()

    def lease_one(self, queue: str, **kw: Any) -> Any:
        jobs = self.lease_jobs([queue], **kw)
        assert len(jobs) == 1, jobs
        return jobs[0]

    def ack(self, jid: str, lease: str, result: Any = _UNSET) -> Resp:
        body: dict[str, Any] = {"lease": lease}
        if result is not _UNSET:
            body["result"] = result
        return self.request("POST", f"/v1/jobs/{jid}/ack", body)

    def fail(self, jid: str, lease: str, **kw: Any) -> Resp:
        return self.request("POST", f"/v1/jobs/{jid}/fail", {"lease": lease, **kw})

    def heartbeat(self, jid: str, lease: str, **kw: Any) -> Resp:
        return self.request("POST", f"/v1/jobs/{jid}/heartbeat", {"lease": lease, **kw})

    def job(self, jid: str) -> Any:
        r = self.request("GET", f"/v1/jobs/{jid}")
        assert r.status == 200, r
        return r.json()

    def stats(self, queue: str) -> Any:
        r = self.request("GET", f"/v1/queues/{queue}")
        assert r.status == 200, r
        return r.json()

    def jobs(self, queue: str, query: str = "") -> Any:
        r = self.request("GET", f"/v1/queues/{queue}/jobs{query}")
        assert r.status == 200, r
        return r.json()

    def wait_for(self, jid: str, pred: Any, timeout: float = 5.0, poll: float = 0.05) -> Any:
        """Poll GET until pred(job) holds; the job record (fails the test on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            j = self.job(jid)
            if pred(j):
                return j
            assert time.monotonic() < deadline, f"condition never held; last record {j}"
            time.sleep(poll)


def assert_error(r: Resp, status: int, code: str, **extra: Any) -> dict[str, Any]:
    """r is the protocol's JSON error with this status and code (and these extra fields)."""
    assert r.status == status, r
    assert r.ctype == "application/json", r
    body = r.json()
    assert isinstance(body, dict), r
    assert body.get("error") == code, r
    assert isinstance(body.get("message"), str) and body["message"], r
    for k, v in extra.items():
        assert body.get(k) == v, (k, r)
    return body


def assert_well_formed_error(r: Resp) -> None:
    """Any 4xx/5xx: JSON {"error": snake_case, "message": str}; never 500."""
    assert r.status != 500, r
    if r.status < 400:
        return
    assert r.ctype == "application/json", r
    body = r.json()
    assert isinstance(body, dict), r
    assert isinstance(body.get("error"), str) and SNAKE.fullmatch(body["error"]), r
    assert isinstance(body.get("message"), str), r


@contextmanager
def running(data_dir: Path, *args: str) -> Iterator[tuple[ServerProcess, Api]]:
    """A server for one test with these settings; stopped with SIGTERM and checked clean."""
    s = ServerProcess(data_dir, *args).start()
    try:
        yield s, Api(s.url)
    finally:
        rc = s.stop()
    assert b"Traceback" not in s.log, s.log.decode(errors="replace")
    assert rc == 0, s.log.decode(errors="replace")


class Events:
    """A `GET /v1/events` stream read as it comes: `status`, then `next()` events as
    {"event", "data" (parsed JSON), "id" (or None)}."""

    def __init__(self, url: str, query: str = "", headers: dict[str, str] | None = None,
                 timeout: float = 10.0) -> None:
        u = urllib.parse.urlsplit(url)
        self.conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80,
                                               timeout=timeout)
        self.conn.request("GET", "/v1/events" + (f"?{query}" if query else ""),
                          headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.last_id: str | None = None

    def next(self) -> dict[str, Any]:
        """The next event (comments and the retry field skipped); socket.timeout if none."""
        ev: dict[str, Any] = {"event": "message", "data": None, "id": None}
        seen = False
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("the stream ended")
            line = line.rstrip(b"\r\n")
            if not line:
                if seen:
                    return ev
                continue
            if line.startswith(b":"):
                continue
            field, _, value = line.decode().partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "event":
                ev["event"], seen = value, True
            elif field == "data":
                ev["data"], seen = json.loads(value), True
            elif field == "id":
                ev["id"] = self.last_id = value
                seen = True

    def until(self, pred: Any, limit: int = 1000) -> list[dict[str, Any]]:
        """Events up to and with the first that satisfies pred."""
        out = []
        for _ in range(limit):
            out.append(self.next())
            if pred(out[-1]):
                return out
        raise AssertionError(f"no such event in {limit}: {out[-5:]}")

    def close(self) -> None:
        self.resp.close()
        self.conn.close()

    def __enter__(self) -> Events:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
