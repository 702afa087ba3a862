"""HTTP connections: the limits aiohttp's server lacks, held per connection.

Owns everything below the request: the open-file limit raised so that every connection
can have its descriptor (`connection_limit`), and `make_runner`, an aiohttp runner whose
connections (`Connection`, sharing one `Guard`) are held to these limits:

- request headers must arrive within header_timeout_s (slow-header clients would each
  hold a file descriptor forever); a request begun and not finished in time is answered
  408, a silent connection just closed;
- at most max_connections are open at once (more are answered 503 and closed, so the
  process never runs out of descriptors for its store and logs; the refusals are logged
  at most every _REFUSAL_LOG_EVERY_S);
- aiohttp's own refusals (an over-long URL or header, too many headers, broken framing, a
  bad method or version) are the protocol's JSON errors with one log line, not text with
  a traceback (`parser_error`, `raw_reply`).

With --tls-cert/--tls-key the connections are TLS (`server_tls`: TLS 1.2 or newer; with
--tls-client-ca a client must present a certificate that CA signed), and `Site` listens
with the TLS handshake held to header_timeout_s too (asyncio's default is 60 s). A
connection is counted against max_connections, and its header clock starts, once its
handshake is done: the handshake itself is bounded by that timeout only.

Body limits and the body timeout are body.py's; the routes and handlers app.py's; when to
listen and how to drain, tqd.daemon's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import resource
import ssl
from http import HTTPStatus
from typing import Any, cast

from aiohttp import web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMethod, BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from .. import protocol as p
from ..config import Settings
from ..errors import Internal, InvalidRequest, RequestTimeout, TooManyConnections, TqdError
from .app import error_reply
from .body import DROP, http_error_text

log = logging.getLogger("tqd")  # the daemon's logger: the log lines read as they always have
FD_RESERVE = 100  # descriptors kept from connections for LMDB, the writer, logs, the listener
MAX_URL_BYTES = 8192  # longer: 414. Not aiohttp's 8190, so that a LineTooLong tells which limit
MAX_HEADER_BYTES = 8190  # one header, name and value; longer: 431
MAX_HEADERS = 128  # more: 431
_REFUSAL_LOG_EVERY_S = 10.0  # a flood of refused connections logs a line this often at most


def connection_limit(settings: Settings) -> int:
    """Raise the open-file limit; how many connections may be open at once."""
    fds = raise_fd_limit()
    return settings.max_connections or max(fds - FD_RESERVE, 1)


def make_runner(app: web.Application, settings: Settings, max_connections: int,
                shutdown_timeout_s: float) -> Runner:
    """An aiohttp runner for app whose connections are held to this module's limits."""
    return Runner(app, Guard(settings, max_connections), handle_signals=False, access_log=None,
                  handler_cancellation=True, shutdown_timeout=shutdown_timeout_s,
                  keepalive_timeout=settings.keepalive_timeout_s,
                  max_line_size=MAX_URL_BYTES, max_field_size=MAX_HEADER_BYTES,
                  max_headers=MAX_HEADERS, auto_decompress=False)  # read_body decompresses, bounded


def server_tls(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context to serve with (None: plain HTTP). Raises ValueError, naming the setting,
    for a certificate, key or CA file that cannot be read or does not fit."""
    if not settings.tls_cert:
        return None
    files = {"tls_cert": settings.tls_cert, "tls_key": settings.tls_key,
             "tls_client_ca": settings.tls_client_ca}
    for name, path in files.items():
        try:
            if path:
                open(path, "rb").close()
        except OSError as e:
            raise ValueError(f"{name}: cannot read {path}: {e.strerror}") from None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(settings.tls_cert, settings.tls_key)
    except ssl.SSLError as e:
        if e.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(f"tls_key {settings.tls_key} is not the private key of tls_cert "
                             f"{settings.tls_cert}") from None
        raise ValueError(f"tls_cert {settings.tls_cert} and tls_key {settings.tls_key} are not a "
                         f"PEM certificate chain and its private key ({_ssl_text(e)})") from None
    if settings.tls_client_ca:
        try:
            ctx.load_verify_locations(cafile=settings.tls_client_ca)
        except ssl.SSLError as e:
            raise ValueError(f"tls_client_ca {settings.tls_client_ca} is not a PEM bundle of CA "
                             f"certificates ({_ssl_text(e)})") from None
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _ssl_text(e: ssl.SSLError) -> str:
    """OpenSSL's reason, without the "[SSL: X]" and "(_ssl.c:N)" around it."""
    if e.reason:
        return str(e.reason).lower().replace("_", " ")
    return re.sub(r"^\[\w+(: \w+)?\] |\s*\(_ssl\.c:\d+\)$", "", e.strerror or str(e))


class Site(web.TCPSite):
    """aiohttp's TCP site, with the TLS handshake bounded by header_timeout_s."""

    def __init__(self, runner: Runner, host: str, port: int, ssl_context: ssl.SSLContext | None,
                 **kwargs: Any) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context, **kwargs)
        self._handshake_timeout_s = runner.guard.header_timeout_s

    async def start(self) -> None:
        if self._ssl_context is None:
            return await super().start()
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            server, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port,
            ssl_handshake_timeout=self._handshake_timeout_s)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


def raise_fd_limit() -> int:
    """Raise the soft limit of open files to the hard one (each connection is one); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20  # Linux refuses more than nr_open
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, e)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


class Guard:
    """What all connections share: the limits, and the count of open connections."""

    def __init__(self, s: Settings, max_connections: int) -> None:
        self.header_timeout_s = s.header_timeout_s
        self.max_connections = max_connections
        self.open = 0
        self.refused = 0
        self._refused_logged = 0
        self._logged_at = -math.inf

    def refuse(self, loop: asyncio.AbstractEventLoop) -> None:
        self.refused += 1
        if loop.time() - self._logged_at >= _REFUSAL_LOG_EVERY_S:
            log.warning("max_connections (%d) reached: refused %d connections since the last "
                        "report", self.max_connections, self.refused - self._refused_logged)
            self._logged_at, self._refused_logged = loop.time(), self.refused


class Connection(RequestHandler):
    """aiohttp's connection protocol, held to Guard's limits (see the module docstring).

    The header clock runs from the connection's start until its first request's headers
    are in, and from the first byte of each later request until its headers are in; an
    idle keep-alive connection is aiohttp's (keepalive_timeout_s). The first bytes of a
    request that come in one packet with the end of the one before are not seen (the
    parser keeps them): such a request gets keepalive_timeout_s, not header_timeout_s.
    """

    def __init__(self, manager: web.Server, guard: Guard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._refused = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._partial = False  # some bytes of the next request's headers have come
        self._body: Any = None  # the StreamReader of the last request's body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        g = self._guard
        if g.open >= g.max_connections:
            self._refused = True
            g.refuse(self._loop)
            cast(asyncio.WriteTransport, transport).write(raw_reply(TooManyConnections(
                f"the server has {g.open} connections open, its limit; try again")))
            transport.close()
            return
        g.open += 1
        super().connection_made(transport)
        self._start_header_clock()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        self._guard.open -= 1
        self._stop_header_clock()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        body = self._body
        in_body = body is not None and not body.is_eof()
        count = self._request_count
        super().data_received(data)
        if self._request_count != count:  # headers are in (or the parser gave up on them)
            self._stop_header_clock()
            msg, self._body = self._messages[-1]
            if in_body and not isinstance(msg, RawRequestMessage):
                # the body being read broke its framing: fail its reader now rather than at
                # the body timeout (the parser drops a body it cannot frame)
                exc = getattr(msg, "exc", None)
                text = "broken framing" if exc is None else http_error_text(exc)
                body.set_exception(RequestPayloadError(text))
        elif data and not in_body:
            self._partial = True
            if self._header_timer is None:
                self._start_header_clock()

    def _start_header_clock(self) -> None:
        self._header_timer = self._loop.call_later(self._guard.header_timeout_s, self._header_late)

    def _stop_header_clock(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._partial = False

    def _header_late(self) -> None:
        self._header_timer = None
        if self.transport is None or self._force_close:
            return
        if self._request_in_progress or self._messages:  # pipelined: time it once that is done
            self._start_header_clock()
            return
        log.debug("closing a connection whose request headers took over %g s",
                  self._guard.header_timeout_s)
        if self._partial:  # answer the request that was begun; a silent client just loses it
            self.transport.write(raw_reply(RequestTimeout(
                f"the request headers took over {self._guard.header_timeout_s:g} s")))
        self.force_close()

    def log_access(self, request: BaseRequest, response: web.StreamResponse,
                   time: float | None) -> None:
        # aiohttp calls this as soon as a response is written
        super().log_access(request, response, time)
        if request.get(DROP):
            self.force_close()

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, (RequestPayloadError, HttpProcessingError, ConnectionError)):
            # a client's broken body met again while draining it: it was answered already
            log.debug("dropping a connection: %s", http_error_text(exc))
            return
        super().log_exception(*args, **kw)

    def handle_error(self, request: BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
        """aiohttp's answer to a request it could not parse (or to a bug outside our
        middleware): the protocol's JSON error, one log line, the connection closed."""
        if request.writer.output_size > 0:
            raise ConnectionError("a response was started already; cannot answer with an error")
        err = parser_error(status, exc)
        if isinstance(err, Internal):
            log.error("bug: unhandled error in %s %s", request.method, request.path, exc_info=exc)
        elif isinstance(exc, BadHttpMethod) and self._request_count == 1:
            log.debug("not HTTP from %s: %s", request.remote, err.message)  # port scans, TLS
        else:
            log.info("bad request from %s: %d %s", request.remote, err.http_status, err.message)
        return error_reply(err.closing())


def parser_error(status: int, exc: BaseException | None) -> TqdError:
    """The protocol's error for what aiohttp refused before a handler ran."""
    if isinstance(exc, LineTooLong):
        if exc.args[1] == MAX_URL_BYTES:
            return InvalidRequest(f"the URL is longer than {MAX_URL_BYTES} bytes").with_status(414)
        return InvalidRequest(f"a header is longer than {MAX_HEADER_BYTES} bytes").with_status(431)
    if isinstance(exc, HttpProcessingError):
        text = http_error_text(exc)
        if text.startswith("Too many headers"):
            return InvalidRequest(f"more than {MAX_HEADERS} headers").with_status(431)
        if isinstance(exc, BadStatusLine) and "Invalid HTTP version" in text:
            return InvalidRequest(f"{text}; send HTTP/1.1 or HTTP/1.0").with_status(505)
        return InvalidRequest(text)
    if 400 <= status < 500:
        return InvalidRequest(HTTPStatus(status).phrase).with_status(status)
    return Internal("internal error (a bug); see the server log")


def raw_reply(err: TqdError) -> bytes:
    """A whole HTTP response carrying err, for writing straight to a transport."""
    body = p.encode(err.to_wire())
    head = (f"HTTP/1.1 {err.http_status} {HTTPStatus(err.http_status).phrase}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode() + body


class _Server(web.Server):
    """aiohttp's server, making Connections."""

    def __init__(self, guard: Guard, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = guard

    def __call__(self) -> RequestHandler:
        return Connection(self, self.guard, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """web.AppRunner whose server makes Connections."""

    def __init__(self, app: web.Application, guard: Guard, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.guard = guard

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # the app's startup, and the arguments it adds
        return _Server(self.guard, plain.request_handler, request_factory=plain.request_factory,
                       handler_cancellation=plain.handler_cancellation,
                       loop=asyncio.get_running_loop(), **plain._kwargs)
