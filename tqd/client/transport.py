"""How the tqd client reaches a server: `Transport`, the request machinery under `Client`.

One `aiohttp.ClientSession` (one connection pool) per client. Every call goes
through `Transport._call`, which:

- tries the configured base URLs in turn when a connection cannot be made
  (nothing was sent, so this is safe for every call);
- rides through a cluster failover: while the leader is gone (its URL refuses the
  connection, a follower redirects to it and it refuses, or a node answers `503
  no_leader`) nothing was applied, so any call is made again on the other URLs,
  backing off, for up to `failover_s` (see `retry.py`);
- retries a call whose connection broke mid-request, or that got another `503`
  (`not_replicated`: maybe applied), with exponential backoff, but only if the call
  is idempotent (a plain enqueue without `key` or `id` is not: a resend could make a
  second job);
- follows `307`/`308` redirects itself (a follower points writes at its
  leader), resending the same method, body and bearer token, and sends the next
  writes to that leader (`X-Tqd-Leader`) directly. Reads keep going to the
  configured URLs: any node answers them (a follower may be a moment behind);
- waits out a `429 rate_limited` for as long as its `Retry-After` says (at most
  `MAX_RETRY_AFTER_S` each time) and makes the call again, any call (nothing was applied),
  within `retries`; `429 queue_full` is raised at once (the queue is full, not the caller
  too fast);
- turns every `{"error": code}` answer into a typed `ClientError` subclass
  (`errors.py`);
- reports a TLS failure (a server certificate it cannot verify, a server that is not
  TLS, a client certificate refused) at once as `ConnectionFailed`, without retrying:
  configuration, not an outage.

`https://` URLs are verified, always: against the system CAs, or the bundle given as
`ca_file`; `cert_file`/`key_file` are the client certificate for a server that asks for
one (mutual TLS). See `client_tls`.

`Client` (api.py) is a `Transport` with the API's methods; this module knows URLs,
connections, redirects, retries and TLS, and nothing of jobs or queues.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Mapping, Sequence
from typing import Self
from urllib.parse import urljoin, urlsplit

import aiohttp

from .errors import (
    ClientError,
    ConnectionFailed,
    NoLeader,
    RateLimited,
    error_from_response,
)
from .retry import CallRetry, Outcome, Policy

DEFAULT_URL = "http://127.0.0.1:7070"
JSON = "application/json"
NDJSON = "application/x-ndjson"
MAX_REDIRECTS = 5


def base_url(url: str) -> str:
    """A server base URL as given, with `http://` assumed when no scheme is (`127.0.0.1:7070`).

    Raises ValueError at once for what can never work (another scheme, no host).
    """
    u = url.strip()
    if "://" not in u:
        u = "http://" + u
    u = u.rstrip("/")
    try:
        parts = urlsplit(u)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as e:
        raise ValueError(f"bad server URL {url!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"bad server URL {url!r}: expected http://HOST:PORT")
    return u


def client_tls(ca_file: str | None = None, cert_file: str | None = None,
               key_file: str | None = None) -> ssl.SSLContext:
    """How the client checks an https server, and the certificate it shows when asked.

    The server's certificate is verified against `ca_file` (a PEM bundle) if given, else
    the system CAs, and its name against the URL's host; there is no way to turn that off.
    `cert_file` (PEM; with its key, or the key in `key_file`) is the client certificate for
    mutual TLS. Raises ValueError for a file that cannot be read or does not fit.
    """
    if key_file and not cert_file:
        raise ValueError("a client key (key_file, TQD_CLIENT_KEY) needs its certificate "
                         "(cert_file, TQD_CLIENT_CERT)")
    try:
        ctx = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"bad CA bundle (ca_file) {ca_file!r}: {_tls_text(e)}") from None
    if cert_file:
        try:
            ctx.load_cert_chain(cert_file, key_file or None)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"bad client certificate (cert_file {cert_file!r}, key_file "
                             f"{key_file!r}): {_tls_text(e)}") from None
    return ctx


def _tls_text(e: BaseException) -> str:
    """An ssl error without its "[SSL: X]" prefix and "(_ssl.c:N)" suffix."""
    if isinstance(e, ssl.SSLCertVerificationError) and e.verify_message:
        return e.verify_message
    if isinstance(e, ssl.SSLError) and e.reason:
        return e.reason.lower().replace("_", " ")
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror
    return str(e)


def _tls_failure(e: aiohttp.ClientSSLError) -> ConnectionFailed:
    cause = e.certificate_error if isinstance(e, aiohttp.ClientConnectorCertificateError) else e.os_error
    before, after = "", ""
    if isinstance(cause, ssl.SSLCertVerificationError):
        before = "the server's certificate cannot be verified: "
        after = ("; give the CA that signed it as ca_file (TQD_CA_FILE), or use the name it "
                 "was issued for")
    elif isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
        after = " (is the server serving plain http?)"
    return ConnectionFailed(f"TLS with {e.host}:{e.port} failed: {before}{_tls_text(cause)}{after}")


def _refusal(status: int, err: ClientError, idempotent: bool,
             retry_header: str | None) -> tuple[Outcome, float | None]:
    """What an error answer (other than no_leader) means for the call, and the Retry-After."""
    if status == 429 and err.code == RateLimited.code:  # not queue_full: nothing applied
        return Outcome.RATE_LIMITED, _retry_after(retry_header, err)
    if status == 503 and idempotent:
        return Outcome.MAYBE_SENT, None
    return Outcome.FINAL, None


def _retry_after(header: str | None, err: ClientError) -> float | None:
    """The seconds a 429 asks to wait: its Retry-After header (seconds; an HTTP date is not
    understood and counts as none), else the body's `retry_after`; None if neither."""
    for v in (header, err.extra.get("retry_after")):
        try:
            s = float(v) if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None
        except ValueError:
            s = None
        if s is not None and s >= 0 and s == s:  # (not NaN)
            return s
    return None


class _Misdirected(Exception):
    """A redirect pointed at a node that refuses connections (a leader that just died)."""

    def __init__(self, target: str, url: str, e: aiohttp.ClientConnectorError) -> None:
        super().__init__(f"redirected to {url}, which refuses connections: {e.os_error}")
        self.target = target


def _leader_of(header: str | None, location: str) -> str:
    """The leader's base URL, as its `X-Tqd-Leader` header says, else where Location points."""
    if header:
        try:
            return base_url(header)
        except ValueError:
            pass
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}"


# ---- transport ----------------------------------------------------------------


class Transport:
    """The connection half of `Client` (whose docstring has the arguments): the URLs,
    token, TLS and retry settings, one aiohttp session, and `_call`."""

    def __init__(self, url: str | Sequence[str] | None = None, *, token: str | None = None,
                 timeout_s: float = 30.0, retries: int = 4, connect_retries: int | None = None,
                 backoff_s: float = 0.1, max_backoff_s: float = 5.0, failover_s: float = 30.0,
                 ca_file: str | None = None, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        if url is None:
            url = os.environ.get("TQD_URL") or DEFAULT_URL
        urls = [url] if isinstance(url, str) else list(url)
        urls = [u.strip() for s in urls for u in s.split(",") if u.strip()]
        if not urls:
            raise ValueError("no server URL given")
        self.urls = [base_url(u) for u in urls]
        self.token = token if token is not None else os.environ.get("TQD_TOKEN") or None
        env = os.environ.get
        tls = (ca_file if ca_file is not None else env("TQD_CA_FILE"),
               cert_file if cert_file is not None else env("TQD_CLIENT_CERT"),
               key_file if key_file is not None else env("TQD_CLIENT_KEY"))
        # True: aiohttp's own context, verified against the system CAs (made once per process)
        self.ssl: ssl.SSLContext | bool = client_tls(*tls) if any(tls) else True
        self.timeout_s = timeout_s
        self.retries = retries
        self.connect_retries = retries if connect_retries is None else connect_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.failover_s = failover_s
        self.leader: str | None = None  # where writes go: the leader the last redirect named
        self._current = 0  # index of the URL that answered last
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            s, self._session = self._session, None
            await s.close()

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"User-Agent": "tqd-client"}
            if self.token:
                headers["Authorization"] = f"Bearer {self.token}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=100, ssl=self.ssl))
        return self._session

    def _policy(self) -> Policy:
        return Policy(retries=self.retries, connect_retries=self.connect_retries,
                      backoff_s=self.backoff_s, max_backoff_s=self.max_backoff_s,
                      failover_s=self.failover_s)

    def _move_on(self, base: str, to_leader: bool) -> None:
        """`base` cannot take the call now: forget it as the leader, or try the next URL."""
        if base == self.leader:
            self.leader = None
        if not to_leader:
            self._current = (self._current + 1) % len(self.urls)

    async def _call(self, method: str, path: str, *, body: bytes | None = None, ctype: str = JSON,
                    params: Mapping[str, str] | None = None, idempotent: bool = True,
                    extra_timeout_s: float = 0.0, ok: tuple[int, ...] = (200, 201),
                    headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """Send one API call; return (status, body) of a success, else raise a ClientError."""
        retry = CallRetry(self._policy(), len(self.urls))
        while True:
            # Writes go to the known leader; reads to the configured URLs (any node answers).
            leader_now = self.leader if method != "GET" else None
            base, to_leader = leader_now or self.urls[self._current], leader_now is not None
            retry_after: float | None = None
            try:
                status, data, leader, retry_header = await self._send(
                    method, base + path, body, ctype, params, self.timeout_s + extra_timeout_s,
                    headers)
            except aiohttp.ClientSSLError as e:
                raise _tls_failure(e) from e
            except aiohttp.ClientConnectorError as e:
                # Nothing was sent. The leader we knew is gone: a failover; else maybe a node down.
                err: ClientError = ConnectionFailed(f"cannot connect to {base}: {e.os_error}")
                outcome = Outcome.NO_LEADER if to_leader else Outcome.REFUSED
                self._move_on(base, to_leader)
            except _Misdirected as e:
                err, outcome = ConnectionFailed(str(e)), Outcome.NO_LEADER
                if self.leader == e.target:
                    self.leader = None
                self._move_on(base, to_leader)
            except (TimeoutError, aiohttp.ClientError) as e:
                err = ConnectionFailed(f"{method} {base}{path}: {type(e).__name__}: {e}")
                outcome = Outcome.MAYBE_SENT if idempotent else Outcome.FINAL
            else:
                if status in ok or status == 204:
                    if leader:
                        self.leader = leader
                    return status, data
                err = error_from_response(status, data)
                if isinstance(err, NoLeader):
                    outcome = Outcome.NO_LEADER
                    self._move_on(base, to_leader)
                else:
                    if leader:  # the leader answered (a refusal, not an outage)
                        self.leader = leader
                    outcome, retry_after = _refusal(status, err, idempotent, retry_header)
            delay = retry.next_delay(outcome, retry_after)
            if delay is None:
                raise err
            if delay:
                await asyncio.sleep(delay)

    async def _send(self, method: str, url: str, body: bytes | None, ctype: str,
                    params: Mapping[str, str] | None, timeout_s: float,
                    extra_headers: Mapping[str, str] | None = None,
                    ) -> tuple[int, bytes, str | None, str | None]:
        """One request, following redirects: (status, body, the leader a redirect named or
        None, the Retry-After header or None).

        Raises aiohttp.ClientConnectorError if `url` refuses the connection, `_Misdirected`
        if the target of a redirect does (nothing was sent either way)."""
        session = self._get_session()
        headers = {"Content-Type": ctype} if body is not None else {}
        if extra_headers:
            headers.update(extra_headers)
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        leader: str | None = None
        for hop in range(MAX_REDIRECTS + 1):
            try:
                async with session.request(method, url, data=body, params=params, headers=headers,
                                           allow_redirects=False, timeout=timeout) as resp:
                    if resp.status in (307, 308) and "Location" in resp.headers:
                        # The query string is part of Location; keep method, body and token.
                        url, params = urljoin(url, resp.headers["Location"]), None
                        leader = _leader_of(resp.headers.get("X-Tqd-Leader"), url)
                        continue
                    return resp.status, await resp.read(), leader, resp.headers.get("Retry-After")
            except aiohttp.ClientConnectorError as e:
                if hop == 0 or isinstance(e, aiohttp.ClientSSLError):
                    raise
                assert leader is not None
                raise _Misdirected(leader, url, e) from e
        raise ConnectionFailed(f"more than {MAX_REDIRECTS} redirects for {method} {url}")
