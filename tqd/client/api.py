"""The tqd client: `Client` (asyncio, aiohttp) and `SyncClient` (for scripts and WSGI apps).

`Client` is the API, one method a call (producing, inspecting and managing, working);
under it `Transport` (transport.py) sends every call: failover across the URLs, retries,
redirects to the leader, TLS. The records it returns and their codecs are in records.py,
its errors in errors.py; all of them can be imported from here, as before.

`SyncClient` runs a `Client` on a private event loop thread, so both share one
implementation and the sync client is safe to use from many threads.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload
from urllib.parse import quote

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
from .records import (
    FailResult,
    Job,
    JobError,
    JobPage,
    LeasedJob,
    QueuePage,
    ackline_dec,
    any_dec,
    enc,
    enq_dec,
    fail_dec,
    job_body,
    job_dec,
    leased_dec,
    lines,
    ndjson,
    page_dec,
    qpage_dec,
    stats_dec,
)
from .transport import DEFAULT_URL, NDJSON, Transport, base_url, client_tls

__all__ = [
    "DEFAULT_URL", "Client", "SyncClient", "Job", "JobError", "LeasedJob", "JobPage", "QueuePage",
    "FailResult", "EnqueueResult", "QueueStats", "AckLineResult", "base_url", "client_tls",
    "ClientError", "ConnectionFailed", "InvalidRequest", "InvalidJob", "InvalidQueue", "Unauthorized",
    "Forbidden", "NotFound", "MethodNotAllowed", "LeaseLost", "InvalidState", "PayloadTooLarge",
    "UnsupportedMediaType", "RateLimited", "NotReady", "NoLeader", "NotReplicated", "StorageFull",
    "ServerError", "error_from_response", "transient",
]

MAX_WAIT_S = 60.0  # the longest wait the server takes on GET /v1/jobs/{id}?wait=
FINISHED = ("completed", "dead", "cancelled")
T = TypeVar("T")


def _seg(name: str) -> str:
    """One URL path segment (queue names and ids are safe already; anything else is escaped)."""
    return quote(name, safe="")


# ---- async client -------------------------------------------------------------


class Client(Transport):
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

    async def _json(self, method: str, path: str, obj: Any = None, **kw: Any) -> bytes:
        body = None if obj is None else enc.encode(obj)
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
        res = enq_dec.decode(data)
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
                _, data = await self._call("POST", f"/v1/queues/{_seg(queue)}/jobs", body=ndjson(chunk),
                                           ctype=NDJSON, idempotent=safe)
            except ClientError as e:
                if e.line is not None:
                    e.extra["line"] = e.line + len(out)
                raise
            out.extend(lines(data, enq_dec))
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
        return job_dec.decode(await self._json("GET", f"/v1/jobs/{_seg(id)}"))

    async def wait(self, id: str, timeout: float = 30.0) -> Job:
        """The job once it has finished (completed, dead or cancelled: see `state`, `result`,
        `errors`), or as it is after `timeout` seconds. One long-poll per 60 s at most."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(0.0, deadline - time.monotonic())
            step = min(left, MAX_WAIT_S)
            job = job_dec.decode(await self._json(
                "GET", f"/v1/jobs/{_seg(id)}", params={"wait": f"{step:g}"}, extra_timeout_s=step))
            if job.state in FINISHED or left <= step:
                return job

    async def cancel(self, id: str) -> str:
        """Cancel a queued, scheduled, active or dead job; returns the new state."""
        return str(any_dec.decode(await self._json("DELETE", f"/v1/jobs/{_seg(id)}"))["state"])

    async def retry(self, id: str) -> str:
        """Put a dead or cancelled job back in its queue (attempts reset)."""
        data = await self._json("POST", f"/v1/jobs/{_seg(id)}/retry", idempotent=False)
        return str(any_dec.decode(data)["state"])

    async def queues_page(self, *, limit: int | None = None, after: str | None = None) -> QueuePage:
        """One page of queue stats by name; pass `page.next` as `after` for the next (server
        default and most: 1000 per page)."""
        params = {}
        if limit is not None:
            params["limit"] = str(limit)
        if after:
            params["after"] = after
        return qpage_dec.decode(await self._json("GET", "/v1/queues", params=params or None))

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
        return int(any_dec.decode(data).get("purged", 0))

    async def queue(self, name: str) -> QueueStats:
        return stats_dec.decode(await self._json("GET", f"/v1/queues/{_seg(name)}"))

    async def jobs_page(self, queue: str, *, state: str | None = None, limit: int = 100,
                        after: str | None = None) -> JobPage:
        """One page of a queue's jobs, oldest first; pass `page.next` as `after` for the next."""
        params = {"limit": str(limit)}
        if state:
            params["state"] = state
        if after:
            params["after"] = after
        return page_dec.decode(await self._json("GET", f"/v1/queues/{_seg(queue)}/jobs", params=params))

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
        return stats_dec.decode(await self._json("POST", f"/v1/queues/{_seg(queue)}/pause"))

    async def resume(self, queue: str) -> QueueStats:
        return stats_dec.decode(await self._json("POST", f"/v1/queues/{_seg(queue)}/resume"))

    async def redrive(self, queue: str, limit: int = 1000) -> int:
        """Move up to `limit` dead jobs back to queued; returns how many moved."""
        data = await self._json("POST", f"/v1/queues/{_seg(queue)}/redrive", {"limit": limit},
                                idempotent=False)
        return int(any_dec.decode(data)["moved"])

    async def purge(self, queue: str, state: str) -> int:
        """Delete a queue's `dead`, `completed` or `cancelled` jobs; returns how many."""
        data = await self._json("DELETE", f"/v1/queues/{_seg(queue)}/jobs", params={"state": state})
        return int(any_dec.decode(data)["deleted"])

    async def cluster(self) -> dict[str, Any]:
        """`GET /v1/cluster` of the node that answers: its node id, role, term, leader and
        position; a leader lists its followers with their lag. Keys may come and go."""
        data = any_dec.decode(await self._json("GET", "/v1/cluster"))
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
        status, data = await self._call("POST", "/v1/lease", body=enc.encode(body),
                                        extra_timeout_s=wait)
        return [] if status == 204 else lines(data, leased_dec)

    async def ack(self, id: str, lease: str, result: Any = None) -> None:
        await self._json("POST", f"/v1/jobs/{_seg(id)}/ack", {"lease": lease, "result": result})

    async def ack_many(self, items: Iterable[tuple[str, str, Any]]) -> list[AckLineResult]:
        """Ack (id, lease, result) triples in one request; each line succeeds or fails alone."""
        body = ndjson({"id": i, "lease": ls, "result": r} for i, ls, r in items)
        _, data = await self._call("POST", "/v1/ack", body=body, ctype=NDJSON)
        return lines(data, ackline_dec)

    async def fail(self, id: str, lease: str, error: str, details: str | None = None, *,
                   retry: bool = True, retry_in: float | None = None) -> FailResult:
        body: dict[str, Any] = {"lease": lease, "error": error, "retry": retry}
        if details is not None:
            body["details"] = details
        if retry_in is not None:
            body["retry_in"] = retry_in
        return fail_dec.decode(await self._json("POST", f"/v1/jobs/{_seg(id)}/fail", body))

    async def release(self, id: str, lease: str, *, delay: float = 0.0) -> str:
        """Hand a leased job back unrun (its lease does not count as an attempt): it is
        queued again at once, or scheduled after `delay` seconds. Returns the new state."""
        body = {"lease": lease, "delay": delay}
        return str(any_dec.decode(
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
        return float(any_dec.decode(data)["lease_expires_at"])


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
