"""The tqd client: `Client` (asyncio, aiohttp) and `SyncClient` (for scripts and WSGI apps).

One `aiohttp.ClientSession` (one connection pool) per client. Every call goes
through `Client._call`, which:

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

`SyncClient` runs a `Client` on a private event loop thread, so both share one
implementation and the sync client is safe to use from many threads.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import quote, urljoin, urlsplit

import aiohttp
import msgspec
from msgspec import Struct

from ..protocol import AckLineResult, EnqueueResult, QueueStats
from .errors import (
    ClientError,
    ConnectionFailed,
    Forbidden,
    InvalidJob,
    InvalidQueue,
    InvalidRequest,
    InvalidState,
    LeaseLost,
    MethodNotAllowed,
    NoLeader,
    NotFound,
    NotReady,
    NotReplicated,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    StorageFull,
    Unauthorized,
    UnsupportedMediaType,
    error_from_response,
    transient,
)
from .retry import CallRetry, Outcome, Policy

__all__ = [
    "DEFAULT_URL", "Client", "SyncClient", "Job", "JobError", "LeasedJob", "JobPage", "QueuePage",
    "FailResult", "EnqueueResult", "QueueStats", "AckLineResult", "base_url", "client_tls",
    "ClientError", "ConnectionFailed", "InvalidRequest", "InvalidJob", "InvalidQueue", "Unauthorized",
    "Forbidden", "NotFound", "MethodNotAllowed", "LeaseLost", "InvalidState", "PayloadTooLarge",
    "UnsupportedMediaType", "RateLimited", "NotReady", "NoLeader", "NotReplicated", "StorageFull",
    "ServerError", "error_from_response", "transient",
]

DEFAULT_URL = "http://127.0.0.1:7070"
MAX_WAIT_S = 60.0  # the longest wait the server takes on GET /v1/jobs/{id}?wait=
FINISHED = ("completed", "dead", "cancelled")
JSON = "application/json"
NDJSON = "application/x-ndjson"
MAX_REDIRECTS = 5
T = TypeVar("T")


def _seg(name: str) -> str:
    """One URL path segment (queue names and ids are safe already; anything else is escaped)."""
    return quote(name, safe="")


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


# ---- records ------------------------------------------------------------------
# Client-side views of the wire records: payload/result/progress decoded, every
# field defaulted so an older or newer server still decodes.


class JobError(Struct):
    attempt: int = 0
    at: float = 0.0
    error: str = ""
    details: str | None = None


class Job(Struct):
    id: str
    queue: str = ""
    type: str | None = None
    payload: Any = None
    priority: int = 5
    state: str = ""
    attempt: int = 0
    max_attempts: int = 0
    timeout: float = 0.0
    key: str | None = None
    errors: list[JobError] = []
    result: Any = None
    progress: Any = None
    created_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires_at: float | None = None
    worker: str | None = None
    traceparent: str | None = None  # the W3C trace context the job was enqueued with


class LeasedJob(Job):
    lease: str = ""


class JobPage(Struct):
    jobs: list[Job]
    next: str | None = None


class FailResult(Struct):
    state: str
    run_at: float | None = None


class QueuePage(Struct):
    queues: list[QueueStats]
    next: str | None = None  # servers before queue paging send every queue and no cursor


_enc = msgspec.json.Encoder()
_job_dec = msgspec.json.Decoder(Job)
_leased_dec = msgspec.json.Decoder(LeasedJob)
_page_dec = msgspec.json.Decoder(JobPage)
_enq_dec = msgspec.json.Decoder(EnqueueResult)
_stats_dec = msgspec.json.Decoder(QueueStats)
_qpage_dec = msgspec.json.Decoder(QueuePage)
_ackline_dec = msgspec.json.Decoder(AckLineResult)
_fail_dec = msgspec.json.Decoder(FailResult)
_any_dec = msgspec.json.Decoder()


def _lines(body: bytes, dec: msgspec.json.Decoder[T]) -> list[T]:
    return [dec.decode(ln) for ln in body.split(b"\n") if ln.strip()]


def _ndjson(objs: Iterable[Any]) -> bytes:
    buf = bytearray()
    for o in objs:
        _enc.encode_into(o, buf, len(buf))
        buf += b"\n"
    return bytes(buf)


def job_body(type: str | None = None, payload: Any = None, *, priority: int | str | None = None,
             delay: float | None = None, run_at: float | None = None, key: str | None = None,
             max_attempts: int | None = None, timeout: float | None = None,
             id: str | None = None) -> dict[str, Any]:
    """The enqueue body for one job, leaving out unset fields (the server's defaults apply)."""
    body: dict[str, Any] = {"type": type, "payload": payload}
    for name, v in (("priority", priority), ("delay", delay), ("run_at", run_at), ("key", key),
                    ("max_attempts", max_attempts), ("timeout", timeout), ("id", id)):
        if v is not None:
            body[name] = v
    return body


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


# ---- async client -------------------------------------------------------------


class Client:
    """Async tqd client. Use as `async with Client(url) as c:` or call `await c.close()`.

    `url` is one base URL or several (tried in order on connection errors),
    `http://` assumed when a URL has no scheme; `TQD_URL` / `TQD_TOKEN` are read
    when `url` / `token` are not given. Give a cluster's nodes all (or any: a
    follower redirects writes to its leader). `failover_s` bounds how long one
    call waits out a cluster between leaders (any call: nothing was applied).
    `retries` bounds resends of a call after other errors (with backoff);
    `connect_retries` (default: `retries`) bounds the rounds in which every URL
    refused the connection, with no failover in sight: 0 reports a server that
    is down at once (the CLI does that). `https://` servers are verified against
    `ca_file` (env `TQD_CA_FILE`) or the system CAs; `cert_file`/`key_file` (env
    `TQD_CLIENT_CERT`/`TQD_CLIENT_KEY`) are the client certificate for mutual TLS.
    """

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

    async def __aenter__(self) -> Client:
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

    # -- transport --

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

    async def _json(self, method: str, path: str, obj: Any = None, **kw: Any) -> bytes:
        body = None if obj is None else _enc.encode(obj)
        _, data = await self._call(method, path, body=body, **kw)
        return data

    # -- producing --

    @overload
    async def enqueue(self, queue: str, type: str | None = None, payload: Any = None, *,
                      priority: int | str | None = None, delay: float | None = None,
                      run_at: float | None = None, key: str | None = None,
                      max_attempts: int | None = None, timeout: float | None = None,
                      id: str | None = None, wait: None = None,
                      traceparent: str | None = None) -> EnqueueResult: ...

    @overload
    async def enqueue(self, queue: str, type: str | None = None, payload: Any = None, *,
                      priority: int | str | None = None, delay: float | None = None,
                      run_at: float | None = None, key: str | None = None,
                      max_attempts: int | None = None, timeout: float | None = None,
                      id: str | None = None, wait: float,
                      traceparent: str | None = None) -> Job: ...

    async def enqueue(self, queue: str, type: str | None = None, payload: Any = None, *,
                      priority: int | str | None = None, delay: float | None = None,
                      run_at: float | None = None, key: str | None = None,
                      max_attempts: int | None = None, timeout: float | None = None,
                      id: str | None = None, wait: float | None = None,
                      traceparent: str | None = None) -> EnqueueResult | Job:
        """Enqueue one job. `created` is False when `key` or `id` matched an existing job.
        With `wait=S`: wait up to S seconds for the job to finish and return it (tqd as an
        RPC: its `result` is the handler's return value once `state` is "completed").
        `traceparent`: the W3C trace context to keep with the job (its worker gets it), so
        that a trace spans producer, queue and worker."""
        body = job_body(type, payload, priority=priority, delay=delay, run_at=run_at, key=key,
                        max_attempts=max_attempts, timeout=timeout, id=id)
        data = await self._json("POST", f"/v1/queues/{_seg(queue)}/jobs", body,
                                idempotent=key is not None or id is not None,
                                headers={"traceparent": traceparent} if traceparent else None)
        res = _enq_dec.decode(data)
        return res if wait is None else await self.wait(res.id, wait)

    async def enqueue_many(self, queue: str, jobs: Iterable[Mapping[str, Any]], *,
                           chunk_size: int = 1000,
                           on_chunk: Callable[[int], None] | None = None) -> list[EnqueueResult]:
        """Enqueue many jobs (dicts with the fields of `job_body`), `chunk_size` per request.

        Each request is atomic; a refused chunk raises with `line` counted from
        the first job of the whole call, and the chunks before it stay enqueued.
        `on_chunk(n)` is called with the number of jobs stored after each chunk.
        """
        if not 1 <= chunk_size <= 10_000:
            raise ValueError("chunk_size must be 1..10000")
        out: list[EnqueueResult] = []
        chunk: list[Mapping[str, Any]] = []

        async def flush() -> None:
            safe = all(("key" in j and j["key"] is not None) or ("id" in j and j["id"] is not None)
                       for j in chunk)
            try:
                _, data = await self._call("POST", f"/v1/queues/{_seg(queue)}/jobs", body=_ndjson(chunk),
                                           ctype=NDJSON, idempotent=safe)
            except ClientError as e:
                if e.line is not None:
                    e.extra["line"] = e.line + len(out)
                raise
            out.extend(_lines(data, _enq_dec))
            chunk.clear()
            if on_chunk is not None:
                on_chunk(len(out))

        for job in jobs:
            chunk.append(job)
            if len(chunk) >= chunk_size:
                await flush()
        if chunk:
            await flush()
        return out

    # -- inspecting and managing --

    async def get(self, id: str) -> Job:
        return _job_dec.decode(await self._json("GET", f"/v1/jobs/{_seg(id)}"))

    async def wait(self, id: str, timeout: float = 30.0) -> Job:
        """The job once it has finished (completed, dead or cancelled: see `state`, `result`,
        `errors`), or as it is after `timeout` seconds. One long-poll per 60 s at most."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            step = min(left, MAX_WAIT_S)
            job = _job_dec.decode(await self._json(
                "GET", f"/v1/jobs/{_seg(id)}", params={"wait": f"{step:g}"}, extra_timeout_s=step))
            if job.state in FINISHED or left <= step:
                return job

    async def cancel(self, id: str) -> str:
        """Cancel a queued, scheduled, active or dead job; returns the new state."""
        return str(_any_dec.decode(await self._json("DELETE", f"/v1/jobs/{_seg(id)}"))["state"])

    async def retry(self, id: str) -> str:
        """Put a dead or cancelled job back in its queue (attempts reset)."""
        data = await self._json("POST", f"/v1/jobs/{_seg(id)}/retry", idempotent=False)
        return str(_any_dec.decode(data)["state"])

    async def queues_page(self, *, limit: int | None = None, after: str | None = None) -> QueuePage:
        """One page of queue stats by name; pass `page.next` as `after` for the next (server
        default and most: 1000 per page)."""
        params = {}
        if limit is not None:
            params["limit"] = str(limit)
        if after:
            params["after"] = after
        return _qpage_dec.decode(await self._json("GET", "/v1/queues", params=params or None))

    async def queues(self, *, page_size: int | None = None) -> list[QueueStats]:
        """Stats of every queue by name, fetched `page_size` at a time (default: the server's)."""
        out: list[QueueStats] = []
        after: str | None = None
        while True:
            page = await self.queues_page(limit=page_size, after=after)
            out.extend(page.queues)
            if page.next is None or not page.queues or page.next == after:
                return out
            after = page.next

    async def delete_queue(self, name: str, *, force: bool = False) -> int:
        """Delete a queue and its settings (paused); returns how many jobs went with it.

        A queue that still holds jobs is refused (`InvalidState`) unless `force`,
        which deletes all its jobs first, whatever their state.
        """
        data = await self._json("DELETE", f"/v1/queues/{_seg(name)}",
                                params={"force": "true"} if force else None)
        return int(_any_dec.decode(data).get("purged", 0))

    async def queue(self, name: str) -> QueueStats:
        return _stats_dec.decode(await self._json("GET", f"/v1/queues/{_seg(name)}"))

    async def jobs_page(self, queue: str, *, state: str | None = None, limit: int = 100,
                        after: str | None = None) -> JobPage:
        """One page of a queue's jobs, oldest first; pass `page.next` as `after` for the next."""
        params = {"limit": str(limit)}
        if state:
            params["state"] = state
        if after:
            params["after"] = after
        return _page_dec.decode(await self._json("GET", f"/v1/queues/{_seg(queue)}/jobs", params=params))

    async def jobs(self, queue: str, *, state: str | None = None, limit: int | None = None,
                   page_size: int = 100) -> AsyncIterator[Job]:
        """Iterate a queue's jobs (oldest first), fetching `page_size` at a time, `limit` in all."""
        after: str | None = None
        seen = 0
        while limit is None or seen < limit:
            size = page_size if limit is None else min(page_size, limit - seen)
            page = await self.jobs_page(queue, state=state, limit=size, after=after)
            for job in page.jobs:
                yield job
            seen += len(page.jobs)
            if page.next is None or not page.jobs:
                return
            after = page.next

    async def pause(self, queue: str) -> QueueStats:
        return _stats_dec.decode(await self._json("POST", f"/v1/queues/{_seg(queue)}/pause"))

    async def resume(self, queue: str) -> QueueStats:
        return _stats_dec.decode(await self._json("POST", f"/v1/queues/{_seg(queue)}/resume"))

    async def redrive(self, queue: str, limit: int = 1000) -> int:
        """Move up to `limit` dead jobs back to queued; returns how many moved."""
        data = await self._json("POST", f"/v1/queues/{_seg(queue)}/redrive", {"limit": limit},
                                idempotent=False)
        return int(_any_dec.decode(data)["moved"])

    async def purge(self, queue: str, state: str) -> int:
        """Delete a queue's `dead`, `completed` or `cancelled` jobs; returns how many."""
        data = await self._json("DELETE", f"/v1/queues/{_seg(queue)}/jobs", params={"state": state})
        return int(_any_dec.decode(data)["deleted"])

    async def cluster(self) -> dict[str, Any]:
        """`GET /v1/cluster` of the node that answers: its node id, role, term, leader and
        position; a leader lists its followers with their lag. Keys may come and go."""
        data = _any_dec.decode(await self._json("GET", "/v1/cluster"))
        return dict(data) if isinstance(data, dict) else {}

    # -- working --

    async def lease(self, queues: str | Sequence[str], max: int = 1, wait: float = 0.0, *,
                    worker: str | None = None, timeout: float | None = None) -> list[LeasedJob]:
        """Lease up to `max` jobs, long-polling up to `wait` seconds; [] if none came."""
        body: dict[str, Any] = {"queues": [queues] if isinstance(queues, str) else list(queues),
                                "max": max, "wait": wait}
        if worker is not None:
            body["worker"] = worker
        if timeout is not None:
            body["timeout"] = timeout
        # Safe to resend: jobs leased for an answer that never arrived come back when
        # their lease expires (at-least-once).
        status, data = await self._call("POST", "/v1/lease", body=_enc.encode(body),
                                        extra_timeout_s=wait)
        return [] if status == 204 else _lines(data, _leased_dec)

    async def ack(self, id: str, lease: str, result: Any = None) -> None:
        await self._json("POST", f"/v1/jobs/{_seg(id)}/ack", {"lease": lease, "result": result})

    async def ack_many(self, items: Iterable[tuple[str, str, Any]]) -> list[AckLineResult]:
        """Ack (id, lease, result) triples in one request; each line succeeds or fails alone."""
        body = _ndjson({"id": i, "lease": ls, "result": r} for i, ls, r in items)
        _, data = await self._call("POST", "/v1/ack", body=body, ctype=NDJSON)
        return _lines(data, _ackline_dec)

    async def fail(self, id: str, lease: str, error: str, details: str | None = None, *,
                   retry: bool = True, retry_in: float | None = None) -> FailResult:
        body: dict[str, Any] = {"lease": lease, "error": error, "retry": retry}
        if details is not None:
            body["details"] = details
        if retry_in is not None:
            body["retry_in"] = retry_in
        return _fail_dec.decode(await self._json("POST", f"/v1/jobs/{_seg(id)}/fail", body))

    async def release(self, id: str, lease: str, *, delay: float = 0.0) -> str:
        """Hand a leased job back unrun (its lease does not count as an attempt): it is
        queued again at once, or scheduled after `delay` seconds. Returns the new state."""
        body = {"lease": lease, "delay": delay}
        return str(_any_dec.decode(
            await self._json("POST", f"/v1/jobs/{_seg(id)}/release", body))["state"])

    async def heartbeat(self, id: str, lease: str, *, extend: float | None = None,
                        progress: Any = None) -> float:
        """Extend a lease (by `extend` s, default the job's timeout); returns the new expiry."""
        body: dict[str, Any] = {"lease": lease}
        if extend is not None:
            body["extend"] = extend
        if progress is not None:
            body["progress"] = progress
        data = await self._json("POST", f"/v1/jobs/{_seg(id)}/heartbeat", body)
        return float(_any_dec.decode(data)["lease_expires_at"])


# ---- sync client --------------------------------------------------------------


class SyncClient:
    """Blocking twin of `Client`: the same methods, run on a private event loop thread.

    Thread-safe; use as a context manager or call `close()`.
    """

    def __init__(self, url: str | Sequence[str] | None = None, **kw: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tqd-client", daemon=True)
        self._thread.start()
        self._client = Client(url, **kw)
        self.urls = self._client.urls

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def _run(self, coro: Awaitable[T]) -> T:
        async def wrap() -> T:
            return await coro
        return asyncio.run_coroutine_threadsafe(wrap(), self._loop).result()

    def enqueue(self, queue: str, type: str | None = None, payload: Any = None,
                **kw: Any) -> Any:
        """See Client.enqueue: an EnqueueResult, or with `wait=S` the finished Job."""
        return self._run(self._client.enqueue(queue, type, payload, **kw))

    def enqueue_many(self, queue: str, jobs: Iterable[Mapping[str, Any]], *, chunk_size: int = 1000,
                     on_chunk: Callable[[int], None] | None = None) -> list[EnqueueResult]:
        return self._run(self._client.enqueue_many(queue, jobs, chunk_size=chunk_size,
                                                   on_chunk=on_chunk))

    def get(self, id: str) -> Job:
        return self._run(self._client.get(id))

    def wait(self, id: str, timeout: float = 30.0) -> Job:
        return self._run(self._client.wait(id, timeout))

    def cancel(self, id: str) -> str:
        return self._run(self._client.cancel(id))

    def retry(self, id: str) -> str:
        return self._run(self._client.retry(id))

    def queues_page(self, *, limit: int | None = None, after: str | None = None) -> QueuePage:
        return self._run(self._client.queues_page(limit=limit, after=after))

    def queues(self, *, page_size: int | None = None) -> list[QueueStats]:
        return self._run(self._client.queues(page_size=page_size))

    def delete_queue(self, name: str, *, force: bool = False) -> int:
        return self._run(self._client.delete_queue(name, force=force))

    def queue(self, name: str) -> QueueStats:
        return self._run(self._client.queue(name))

    def jobs_page(self, queue: str, *, state: str | None = None, limit: int = 100,
                  after: str | None = None) -> JobPage:
        return self._run(self._client.jobs_page(queue, state=state, limit=limit, after=after))

    def jobs(self, queue: str, *, state: str | None = None, limit: int | None = None,
             page_size: int = 100) -> Iterator[Job]:
        after: str | None = None
        seen = 0
        while limit is None or seen < limit:
            size = page_size if limit is None else min(page_size, limit - seen)
            page = self.jobs_page(queue, state=state, limit=size, after=after)
            yield from page.jobs
            seen += len(page.jobs)
            if page.next is None or not page.jobs:
                return
            after = page.next

    def pause(self, queue: str) -> QueueStats:
        return self._run(self._client.pause(queue))

    def resume(self, queue: str) -> QueueStats:
        return self._run(self._client.resume(queue))

    def redrive(self, queue: str, limit: int = 1000) -> int:
        return self._run(self._client.redrive(queue, limit))

    def purge(self, queue: str, state: str) -> int:
        return self._run(self._client.purge(queue, state))

    def cluster(self) -> dict[str, Any]:
        return self._run(self._client.cluster())

    def lease(self, queues: str | Sequence[str], max: int = 1, wait: float = 0.0, *,
              worker: str | None = None, timeout: float | None = None) -> list[LeasedJob]:
        return self._run(self._client.lease(queues, max, wait, worker=worker, timeout=timeout))

    def ack(self, id: str, lease: str, result: Any = None) -> None:
        self._run(self._client.ack(id, lease, result))

    def ack_many(self, items: Iterable[tuple[str, str, Any]]) -> list[AckLineResult]:
        return self._run(self._client.ack_many(list(items)))

    def fail(self, id: str, lease: str, error: str, details: str | None = None, *,
             retry: bool = True, retry_in: float | None = None) -> FailResult:
        return self._run(self._client.fail(id, lease, error, details, retry=retry, retry_in=retry_in))

    def release(self, id: str, lease: str, *, delay: float = 0.0) -> str:
        return self._run(self._client.release(id, lease, delay=delay))

    def heartbeat(self, id: str, lease: str, *, extend: float | None = None,
                  progress: Any = None) -> float:
        return self._run(self._client.heartbeat(id, lease, extend=extend, progress=progress))
