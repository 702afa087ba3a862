"""The HTTP edge against the real server, in raw bytes where it matters.

Bodies: UTF-8 is checked at the door, each route has its own body limit (checked from
Content-Length before reading, while reading chunked bodies, and after decompression),
Content-Encoding is gzip, deflate or nothing. Connections: slow headers and stalled
or trickling bodies get 408 and are closed (a flood of slow and silent connections too,
also with --auth and TLS), excess connections are refused, aiohttp's own parse errors
are JSON. One server with small limits and short timeouts serves
most of the module; tests that need other settings start their own.
"""

from __future__ import annotations

import gzip
import http.client
import io
import json
import resource
import selectors
import socket
import ssl
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from _http import NDJSON, Api, Resp, assert_error, running
from conftest import ServerProcess
from test_bad_input import Held, Unchanged
from test_tls import Pki

import tqd
from tqd.auth import tokens

MAX_PAYLOAD = 1000
MAX_BULK = 20_000
ROOM = 64 * 1024  # protocol.FIELD_ROOM_BYTES
SMALL = 64 * 1024  # protocol.SMALL_BODY_BYTES
FAIL_LIMIT = 1024 * 1024  # protocol.FAIL_BODY_BYTES
HEADER_TIMEOUT_S = 2
BODY_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Api]]:
    d = tmp_path_factory.mktemp("edge") / "data"
    with running(d, "--max-payload-bytes", str(MAX_PAYLOAD), "--max-bulk-lines", "5",
                 "--max-bulk-bytes", str(MAX_BULK), "--header-timeout-s", str(HEADER_TIMEOUT_S),
                 "--body-timeout-s", str(BODY_TIMEOUT_S)) as sa:
        yield sa


@pytest.fixture(scope="module")
def api(server: tuple[ServerProcess, Api]) -> Api:
    return server[1]


@pytest.fixture
def q() -> str:
    return "edge-" + uuid.uuid4().hex[:12]


@pytest.fixture
def held(api: Api, q: str) -> Held:
    return Held(api, q)


class Raw:
    """One TCP connection to the server, raw bytes in and out."""

    def __init__(self, api: Api, timeout: float = 20.0) -> None:
        self.sock = socket.create_connection((api.host, api.port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buf += chunk
        return bool(chunk)

    def response(self) -> Resp:
        """The next response (a `100 Continue` counts as one)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"closed before a whole response; got {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status_line, _, header_block = head.partition(b"\r\n")
        headers = http.client.parse_headers(io.BytesIO(header_block + b"\r\n\r\n"))
        n = int(headers.get("Content-Length") or 0)
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"closed inside a response body; got {self.buf!r}")
        body, self.buf = self.buf[:n], self.buf[n:]
        return Resp(int(status_line.split()[1]), headers, body)

    def closed(self) -> bool:
        """Whether the server closes the connection (nothing more comes first)."""
        try:
            while self._fill():
                pass
        except ConnectionResetError:
            pass
        return self.buf == b""


def request(method: str, path: str, body: bytes | None = b"", ctype: str | None = "application/json",
            headers: dict[str, str] | None = None) -> bytes:
    """Raw request bytes; body None sends no Content-Length (for chunked or hand-made heads)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: tqd"]
    if ctype:
        lines.append(f"Content-Type: {ctype}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


def _post(api: Api, path: str, raw: bytes, ctype: str | None = "application/json",
          **headers: str) -> Resp:
    return api.request("POST", path, raw=raw, ctype=ctype,
                       headers={k.replace("_", "-"): v for k, v in headers.items()})


# ---- UTF-8 -------------------------------------------------------------------------------

# not UTF-8: stray bytes, an overlong "/", a UTF-16 surrogate, a cut sequence, past U+10FFFF
BAD_UTF8 = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80"]


@pytest.mark.parametrize("bad", BAD_UTF8, ids=repr)
def test_invalid_utf8_is_refused_by_every_route_and_stores_nothing(api: Api, q: str, held: Held,
                                                                   bad: bytes) -> None:
    s = b'"x' + bad + b'y"'
    lease = json.dumps(held.lease).encode()
    jid = held.id.encode()
    with Unchanged(api, held.id):
        r = _post(api, f"/v1/queues/{q}/jobs", b'{"payload": ' + s + b"}")
        assert_error(r, 400, "invalid_job")
        assert "UTF-8" in r.json()["message"]
        bulk = b'{"payload": 1}\n{"payload": ' + s + b"}\n"
        assert_error(_post(api, f"/v1/queues/{q}/jobs", bulk, NDJSON), 400, "invalid_job", line=2)
        for what, field in (("ack", b"result"), ("heartbeat", b"progress"), ("fail", b"error"),
                            ("fail", b"details")):
            body = b'{"lease": ' + lease + b', "' + field + b'": ' + s + b"}"
            assert_error(_post(api, f"/v1/jobs/{held.id}/{what}", body), 400, "invalid_request")
        line = b'{"id": "' + jid + b'", "lease": ' + lease + b', "result": ' + s + b"}\n"
        assert_error(_post(api, "/v1/ack", b"\n" + line, NDJSON), 400, "invalid_request", line=2)
        assert_error(_post(api, "/v1/lease", b'{"queues": ["' + q.encode() + b'"], "worker": ' + s + b"}"),
                     400, "invalid_request")
        assert_error(_post(api, f"/v1/queues/{q}/redrive", b'{"limit": 1, "note": ' + s + b"}"),
                     400, "invalid_request")
    assert api.job(held.id)["state"] == "active"


def test_valid_utf8_round_trips(api: Api, q: str) -> None:
    text = "héllo ✓ 😀 \u2028"
    raw = json.dumps({"payload": {"t": text}}, ensure_ascii=False).encode()
    r = _post(api, f"/v1/queues/{q}/jobs", raw)
    assert r.status == 201, r
    assert api.job(r.json()["id"])["payload"] == {"t": text}


# ---- body limits -----------------------------------------------------------------------------


def _routes(q: str, held: Held) -> list[tuple[str, str, int]]:
    """(path, content type, limit) of every route that takes a body."""
    return [
        (f"/v1/queues/{q}/jobs", "application/json", MAX_PAYLOAD + ROOM),
        (f"/v1/queues/{q}/jobs", NDJSON, MAX_BULK),
        ("/v1/lease", "application/json", SMALL),
        ("/v1/ack", NDJSON, MAX_BULK),
        (f"/v1/jobs/{held.id}/ack", "application/json", MAX_PAYLOAD + ROOM),
        (f"/v1/jobs/{held.id}/heartbeat", "application/json", MAX_PAYLOAD + ROOM),
        (f"/v1/jobs/{held.id}/fail", "application/json", FAIL_LIMIT),
        (f"/v1/queues/{q}/redrive", "application/json", SMALL),
        (f"/v1/queues/{q}/pause", "application/json", SMALL),
        (f"/v1/jobs/{held.id}/retry", "application/json", SMALL),
    ]


def test_content_length_over_a_routes_limit_is_413_before_any_body_byte(api: Api, q: str,
                                                                        held: Held) -> None:
    with Unchanged(api, held.id):
        for path, ctype, limit in _routes(q, held):
            for declared in (limit + 1, 10_000_000_000):
                with Raw(api) as c:
                    c.send(request("POST", path, None, ctype, {"Content-Length": str(declared)}))
                    r = c.response()  # the body is never sent
                    assert_error(r, 413, "payload_too_large")
                    assert str(limit) in r.json()["message"], (path, r)
                    assert r.headers.get("Connection") == "close"


def test_each_route_holds_bodies_to_its_own_limit(api: Api, q: str, held: Held) -> None:
    """Bodies padded with whitespace: valid JSON of exactly the limit passes the size check,
    one byte more is 413 (sent with Content-Length and chunked)."""
    lease = held.lease
    ok_bodies = {"/v1/lease": {"queues": [q + "-empty"]}, f"/v1/queues/{q}/redrive": {"limit": 1}}
    with Unchanged(api, held.id):
        for path, ctype, limit in _routes(q, held):
            if path in ok_bodies:  # the body at the limit is accepted
                raw = json.dumps(ok_bodies[path]).encode()
                r = _post(api, path, raw + b" " * (limit - len(raw)), ctype)
                assert r.status in (200, 204), (path, r)
            over = b"{}" + b" " * (limit - 1)
            assert_error(_post(api, path, over, ctype), 413, "payload_too_large")
            if path.endswith(("/pause", "/retry")):  # these read no body: not a byte is buffered
                continue
            with Raw(api) as c:  # chunked: the server stops reading at the limit
                c.send(request("POST", path, None, ctype, {"Transfer-Encoding": "chunked"}))
                c.send(b"%x\r\n" % len(over) + over + b"\r\n")  # no last chunk: it never ends
                assert_error(c.response(), 413, "payload_too_large")
    r = api.request("POST", f"/v1/jobs/{held.id}/fail",
                    {"lease": lease, "error": "e" * 5000, "details": "d" * 200_000, "retry": False})
    assert r.status == 200 and r.json()["state"] == "dead", r  # clipped, not refused


def test_expect_100_continue(api: Api, q: str) -> None:
    with Unchanged(api), Raw(api) as c:
        c.send(request("POST", f"/v1/queues/{q}/jobs", None, headers={
            "Content-Length": "100000000", "Expect": "100-continue"}))
        assert_error(c.response(), 413, "payload_too_large")  # no 100 Continue: nothing was sent
        assert c.closed()
    body = b'{"payload": "continued"}'
    with Raw(api) as c:
        c.send(request("POST", f"/v1/queues/{q}/jobs", None, headers={
            "Content-Length": str(len(body)), "Expect": "100-continue"}))
        assert c.response().status == 100
        c.send(body)
        r = c.response()
        assert r.status == 201, r
    assert api.job(r.json()["id"])["payload"] == "continued"


# ---- Content-Encoding ------------------------------------------------------------------------


def _raw_deflate(b: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    return c.compress(b) + c.flush()


@pytest.mark.parametrize("coding,pack", [("gzip", gzip.compress), ("x-gzip", gzip.compress),
                                         ("deflate", zlib.compress), ("deflate", _raw_deflate),
                                         ("GZIP", lambda b: gzip.compress(b[:9]) + gzip.compress(b[9:]))])
def test_compressed_bodies_work(api: Api, q: str, coding: str, pack: Any) -> None:
    r = _post(api, f"/v1/queues/{q}/jobs", pack(b'{"payload": {"zipped": [1, 2, 3]}}'),
              content_encoding=coding)
    assert r.status == 201, r
    assert api.job(r.json()["id"])["payload"] == {"zipped": [1, 2, 3]}
    r = _post(api, f"/v1/queues/{q}/jobs", pack(b'{"payload": 1}\n{"payload": 2}\n'), NDJSON,
              content_encoding=coding)
    assert r.status == 201 and len(r.lines()) == 2, r


def test_corrupt_compressed_bodies_are_400(api: Api, q: str, held: Held) -> None:
    job = gzip.compress(b'{"payload": 1}')
    with Unchanged(api, held.id):
        for coding, body in (("gzip", b"not gzip at all"), ("gzip", job[:-6]), ("gzip", job + b"junk"),
                             ("deflate", b"\x78\x9c garbage"), ("deflate", b"garbage"),
                             ("deflate", zlib.compress(b'{"payload": 1}')[:-3])):
            assert_error(_post(api, f"/v1/queues/{q}/jobs", body, content_encoding=coding), 400,
                         "invalid_request")
            assert_error(_post(api, f"/v1/jobs/{held.id}/ack", body, content_encoding=coding), 400,
                         "invalid_request")


@pytest.mark.parametrize("coding", ["br", "zstd", "x-foo", "gzip, br", "compress"])
def test_unknown_content_encodings_are_415(api: Api, q: str, coding: str) -> None:
    with Unchanged(api):
        assert_error(_post(api, f"/v1/queues/{q}/jobs", b'{"payload": 1}', content_encoding=coding),
                     415, "unsupported_media_type")


def test_a_gzip_bomb_stops_at_the_routes_limit(api: Api, q: str) -> None:
    bomb = gzip.compress(b'{"payload": "' + b"0" * 50_000_000 + b'"}')
    assert len(bomb) < MAX_PAYLOAD * 100
    with Unchanged(api):
        for ctype in ("application/json", NDJSON):
            assert_error(_post(api, f"/v1/queues/{q}/jobs", bomb, ctype, content_encoding="gzip"),
                         413, "payload_too_large")


# ---- form-typed bodies (curl -d) -------------------------------------------------------------


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain", None])
def test_broken_json_sent_as_a_form_says_where_it_breaks(api: Api, q: str, held: Held,
                                                         ctype: str | None) -> None:
    with Unchanged(api, held.id):
        r = _post(api, f"/v1/queues/{q}/jobs", b'{"payload": 1,}', ctype)
        assert "byte" in assert_error(r, 400, "invalid_job")["message"]
        assert_error(_post(api, f"/v1/queues/{q}/jobs", b'{"payload": 1', ctype), 400, "invalid_job")
        assert_error(_post(api, "/v1/lease", b' ["q"', ctype), 400, "invalid_request")
        assert_error(_post(api, f"/v1/jobs/{held.id}/ack", b"nul", ctype), 400, "invalid_request")
        assert_error(_post(api, f"/v1/queues/{q}/jobs", b"payload=1", ctype), 415,
                     "unsupported_media_type")


# ---- slow clients ------------------------------------------------------------------------------


def test_slow_headers_get_408_and_are_closed(api: Api) -> None:
    with Raw(api) as c:
        c.send(b"POST /v1/lease HTTP/1.1\r\nHost: tqd\r\nContent-Le")
        assert_error(c.response(), 408, "request_timeout")
        assert c.closed()
    with Raw(api) as c:  # a connection that never sends a byte is closed without an answer
        assert c.closed()


def test_slow_headers_of_a_second_request_on_a_kept_alive_connection(api: Api) -> None:
    with Raw(api) as c:
        c.send(request("GET", "/healthz", None, None))
        assert c.response().status == 200
        c.send(b"GET /heal")
        assert_error(c.response(), 408, "request_timeout")
        assert c.closed()


@pytest.mark.parametrize("chunked", [True, False])
def test_a_stalled_body_gets_408_and_is_closed(api: Api, q: str, chunked: bool) -> None:
    with Unchanged(api), Raw(api) as c:
        if chunked:
            c.send(request("POST", f"/v1/queues/{q}/jobs", None, headers={"Transfer-Encoding": "chunked"}))
            c.send(b"5\r\n{\"pay\r\n")
        else:
            c.send(request("POST", f"/v1/queues/{q}/jobs", None, headers={"Content-Length": "500"}))
            c.send(b'{"pay')
        assert_error(c.response(), 408, "request_timeout")
        assert c.closed()


def test_a_trickled_body_gets_408(api: Api, q: str) -> None:
    """One byte every 50 ms never leaves the connection idle, but is far under the minimum rate."""
    with Unchanged(api), Raw(api) as c:
        c.send(request("POST", f"/v1/queues/{q}/jobs", None, headers={"Content-Length": "900"}))
        c.sock.settimeout(0.05)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                c.send(b" ")
                if c._fill():
                    break
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
        c.sock.settimeout(20)
        assert_error(c.response(), 408, "request_timeout")


def test_broken_chunked_framing_inside_a_body_is_400(api: Api, q: str) -> None:
    with Unchanged(api), Raw(api) as c:
        c.send(request("POST", f"/v1/queues/{q}/jobs", None, headers={"Transfer-Encoding": "chunked"}))
        c.send(b"2\r\n{}\r\n")
        time.sleep(0.2)  # most likely the handler is reading the body by now; either way: 400
        c.send(b"zz\r\n")
        assert_error(c.response(), 400, "invalid_request")
        assert c.closed()


class Edge(NamedTuple):
    """A server the flood tests run against: its address, TLS (None: plain HTTP), and the
    headers its /v1 calls need."""

    api: Api
    tls: ssl.SSLContext | None
    headers: dict[str, str]

    def connect(self) -> socket.socket:
        s = socket.create_connection((self.api.host, self.api.port), timeout=10)
        return self.tls.wrap_socket(s, server_hostname=self.api.host) if self.tls else s

    def get(self, path: str) -> int:
        """A GET on a new connection (as a health checker makes it): the status."""
        conn = (http.client.HTTPSConnection(self.api.host, self.api.port, timeout=15, context=self.tls)
                if self.tls else http.client.HTTPConnection(self.api.host, self.api.port, timeout=15))
        try:
            conn.request("GET", path, headers=self.headers)
            r = conn.getresponse()
            r.read()
            return r.status
        finally:
            conn.close()


@pytest.fixture(scope="module")
def secure_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """A server with --auth and TLS, the slow-client timeouts of the module's server (and a
    keep-alive timeout past the tests' deadlines: only the header timeout closes a
    connection that never sends a request)."""
    d = tmp_path_factory.mktemp("edge-secure")
    pki = Pki(d / "pki")
    token, _ = tokens.create(d / "tokens.toml", "probe", "viewer", ["*"])
    with running(d / "data", "--auth", str(d / "tokens.toml"), *pki.serve_args(),
                 "--header-timeout-s", str(HEADER_TIMEOUT_S), "--body-timeout-s",
                 str(BODY_TIMEOUT_S), "--keepalive-timeout-s", "600") as (_, api):
        yield Edge(api, ssl.create_default_context(cafile=pki.ca_file),
                   {"Authorization": f"Bearer {token}"})


@pytest.fixture(params=["plain", "auth+tls"])
def edge(request: pytest.FixtureRequest, api: Api) -> Edge:
    if request.param == "plain":
        return Edge(api, None, {})
    e: Edge = request.getfixturevalue("secure_edge")
    return e


def _recv(s: socket.socket) -> bytes | None:
    """What a readable connection has: bytes, b"" once closed, None if TLS needs more first."""
    try:
        return s.recv(4096)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return b""


def test_healthz_answers_while_500_slow_connections_dribble(edge: Edge) -> None:
    """500 connections dribble a request's headers a byte at a time, 100 more say nothing
    (plain HTTP, and with --auth and TLS: there each has made its handshake and dribbles
    its token). Every health check and token-checked read in the meantime is answered;
    the server cuts the dribblers off with 408 and closes the silent ones unanswered."""
    head = (b"POST /v1/lease HTTP/1.1\r\nHost: tqd\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in edge.headers.items()).encode()
        + b"".join(b"X-Pad-%d: 0123456789\r\n" % i for i in range(100)))  # valid to its end
    sel = selectors.DefaultSelector()
    idle = [edge.connect() for _ in range(100)]
    slow = [edge.connect() for _ in range(500)]
    for s in slow:  # its request begun at once (TLS handshakes take a while): a 408 is due
        s.sendall(head[:1])
    socks = slow + idle
    replies: dict[socket.socket, bytearray] = {}
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        replies[s] = bytearray()
    sent, closed, answers = 1, set[socket.socket](), list[int]()
    deadline = time.monotonic() + 60  # 30 x the header timeout; under the test's own timeout
    try:
        while len(closed) < len(socks) and time.monotonic() < deadline:
            for s in slow:  # one more header byte each
                if s not in closed:
                    try:
                        s.send(head[sent:sent + 1])
                    except (OSError, ssl.SSLError):
                        pass
            sent += 1
            answers += [edge.get("/healthz"), edge.get("/v1/queues/edge-probe")]
            for key, _ in sel.select(timeout=0.5):
                c = key.fileobj
                assert isinstance(c, socket.socket)
                chunk = _recv(c)
                if chunk is None:
                    continue
                replies[c].extend(chunk)
                if not chunk:
                    closed.add(c)
                    sel.unregister(c)
        assert len(closed) == len(socks), f"{len(socks) - len(closed)} connections still open"
        assert answers and set(answers) == {200}
        assert sent < len(head)  # they were cut off, not served
        bad = [bytes(replies[s][:60]) for s in slow if not replies[s].startswith(b"HTTP/1.1 408 ")]
        assert not bad, (len(bad), sorted(set(bad))[:5])
        assert all(replies[s] == b"" for s in idle)
    finally:
        for s in socks:
            s.close()
        sel.close()


# ---- aiohttp's own refusals --------------------------------------------------------------------

BAD_HTTP = [
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431),
    (b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 505),
    (b"GET /healthz HTTX/1.1\r\nHost: x\r\n\r\n", 400),
    (b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400),
    (b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST /v1/lease HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    (b"GET /healthz HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
]


def test_parse_errors_are_json_with_one_log_line_each(tmp_path: Path) -> None:
    with running(tmp_path / "data") as (s, api):
        for raw, status in BAD_HTTP:
            with Raw(api) as c:
                c.send(raw)
                r = c.response()
                assert_error(r, status, "invalid_request")
                assert c.closed()
        assert api.request("GET", "/healthz").status == 200
    lines = [ln for ln in s.log.decode().splitlines()
             if "listening on" not in ln and "tqd draining" not in ln and "tqd stopped" not in ln]
    assert len(lines) <= len(BAD_HTTP), "\n".join(lines)  # running() checked: no traceback


# ---- connections and the banner -----------------------------------------------------------------


def test_connections_over_the_limit_are_refused_at_once(tmp_path: Path) -> None:
    with running(tmp_path / "data", "--max-connections", "3", "--header-timeout-s", "60") as (_, api):
        held = [Raw(api) for _ in range(3)]
        try:
            with Raw(api) as extra:
                assert_error(extra.response(), 503, "too_many_connections")
                assert extra.closed()
            held.pop().sock.close()
            deadline = time.monotonic() + 30
            while api.request("GET", "/healthz").status != 200:  # once the server saw the close
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            for c in held:
                c.sock.close()


def test_the_open_file_limit_is_raised_to_the_hard_limit(tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard <= 1024:
        pytest.skip("the hard limit is not above 1024 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # the server inherits a low soft limit
    try:
        s = ServerProcess(tmp_path / "data").start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert s.proc is not None
        limits = Path(f"/proc/{s.proc.pid}/limits").read_text()
        row = next(ln for ln in limits.splitlines() if ln.startswith("Max open files")).split()
        assert row[3] == row[4] != "1024", row
        if row[3] != "unlimited":  # and the connection cap follows: all but 100 descriptors
            assert f"at most {int(row[3]) - 100} connections".encode() in s.log, s.log
    finally:
        assert s.stop() == 0


def test_the_banner_is_printed_once_with_the_version(tmp_path: Path) -> None:
    with running(tmp_path / "data") as (s, _):
        pass
    assert s.log.count(b"listening on") == 1, s.log
    assert f"tqd {tqd.__version__} listening on http://".encode() in s.log
