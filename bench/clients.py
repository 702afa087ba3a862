"""One small async client API over every system the harness measures.

    enqueue_one(payload, priority)   one job, one round trip
    enqueue_many(payloads, prios)    one batch (tqd: one NDJSON request;
                                     beanstalkd: pipelined puts; SAQ: concurrent enqueues)
    lease(max_n, wait_s)             up to max_n jobs, long-polling up to wait_s
    ack(handles)                     finish a batch (tqd: one NDJSON /v1/ack;
                                     beanstalkd: pipelined deletes; SAQ: concurrent finish)

A client is made from a picklable spec ``{"kind", "port", "queue"}`` inside a
load-generator process. Priorities use tqd's scale (0-9, 9 first) and are
mapped for beanstalkd (0 is most urgent there); SAQ has none.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

import msgspec
from common import HOST, HttpConn, HttpError

_enc = msgspec.json.Encoder()
_dec_any = msgspec.json.Decoder()


class _Leased(msgspec.Struct):
    id: str
    lease: str
    payload: Any = None
    priority: int = 5


class _AckLine(msgspec.Struct):
    id: str
    ok: bool
    error: str | None = None


_dec_leased = msgspec.json.Decoder(_Leased)
_dec_ack = msgspec.json.Decoder(_AckLine)


class TqdClient:
    kind = "tqd"

    def __init__(self, conn: HttpConn, queue: str) -> None:
        self.conn = conn
        self.queue = queue
        self.path = f"/v1/queues/{queue}/jobs"
        self.lease_errors = 0
        self.ack_errors = 0

    @classmethod
    async def open(cls, port: int, queue: str) -> TqdClient:
        return cls(await HttpConn.open(port), queue)

    async def enqueue_one(self, payload: Any, priority: int | None = None) -> None:
        job = {"payload": payload} if priority is None else {"payload": payload, "priority": priority}
        st, body = await self.conn.request("POST", self.path, _enc.encode(job))
        if st != 201:
            raise HttpError(f"enqueue: {st} {body[:200]!r}")

    async def enqueue_many(self, payloads: list[Any], priorities: list[int] | None = None) -> None:
        if priorities is None:
            lines = [_enc.encode({"payload": p}) for p in payloads]
        else:
            lines = [_enc.encode({"payload": p, "priority": pr}) for p, pr in zip(payloads, priorities, strict=True)]
        st, body = await self.conn.request("POST", self.path, b"\n".join(lines) + b"\n",
                                           "application/x-ndjson")
        if st != 201:
            raise HttpError(f"bulk enqueue: {st} {body[:200]!r}")

    async def lease(self, max_n: int, wait_s: float) -> list[tuple[Any, Any]]:
        req = _enc.encode({"queues": [self.queue], "max": max_n, "wait": wait_s})
        st, body = await self.conn.request("POST", "/v1/lease", req)
        if st == 204:
            return []
        if st != 200:
            raise HttpError(f"lease: {st} {body[:200]!r}")
        out = []
        for line in body.split(b"\n"):
            if line:
                j = _dec_leased.decode(line)
                out.append(((j.id, j.lease), j.payload))
        return out

    async def ack(self, handles: list[Any]) -> None:
        if not handles:
            return
        body = b"\n".join(_enc.encode({"id": i, "lease": le}) for i, le in handles) + b"\n"
        st, resp = await self.conn.request("POST", "/v1/ack", body, "application/x-ndjson")
        if st != 200:
            raise HttpError(f"ack: {st} {resp[:200]!r}")
        for line in resp.split(b"\n"):
            if line and not _dec_ack.decode(line).ok:
                self.ack_errors += 1

    async def close(self) -> None:
        self.conn.close()


# ---- beanstalkd -------------------------------------------------------------------


class _BeanConn(asyncio.Protocol):
    """beanstalkd text protocol with pipelining: one future per command, FIFO."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending: deque[asyncio.Future[tuple[bytes, bytes | None]]] = deque()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop transports are not asyncio.Transport subclasses: no isinstance check)
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        while self.pending:
            f = self.pending.popleft()
            if not f.done():
                f.set_exception(ConnectionError(f"beanstalkd connection lost: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while self.pending:
            i = self.buf.find(b"\r\n")
            if i < 0:
                return
            line = bytes(self.buf[:i])
            body = None
            if line.startswith((b"RESERVED", b"FOUND", b"OK ")):
                n = int(line.rsplit(b" ", 1)[1])
                if len(self.buf) < i + 2 + n + 2:
                    return
                body = bytes(self.buf[i + 2:i + 2 + n])
                del self.buf[:i + 2 + n + 2]
            else:
                del self.buf[:i + 2]
            self.pending.popleft().set_result((line, body))

    def send(self, cmds: list[bytes]) -> list[asyncio.Future[tuple[bytes, bytes | None]]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in cmds]
        self.pending.extend(futs)
        self.transport.write(b"".join(cmds))
        return futs


class BeanstalkClient:
    kind = "beanstalkd"

    def __init__(self, conn: _BeanConn) -> None:
        self.conn = conn
        self.ack_errors = 0

    @classmethod
    async def open(cls, port: int, queue: str) -> BeanstalkClient:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_BeanConn, HOST, port)
        tube = queue.encode()
        futs = conn.send([b"use %s\r\n" % tube, b"watch %s\r\n" % tube, b"ignore default\r\n"])
        for f in futs:
            await f
        return cls(conn)

    @staticmethod
    def _put(payload: Any, priority: int | None) -> bytes:
        data = _enc.encode(payload)
        pri = 1000 + (9 - (5 if priority is None else priority))
        return b"put %d 0 60 %d\r\n%s\r\n" % (pri, len(data), data)

    async def enqueue_one(self, payload: Any, priority: int | None = None) -> None:
        (f,) = self.conn.send([self._put(payload, priority)])
        line, _ = await f
        if not line.startswith(b"INSERTED"):
            raise RuntimeError(f"beanstalkd put: {line!r}")

    async def enqueue_many(self, payloads: list[Any], priorities: list[int] | None = None) -> None:
        prios = priorities or [None] * len(payloads)  # type: ignore[list-item]
        futs = self.conn.send([self._put(p, pr) for p, pr in zip(payloads, prios, strict=True)])
        for f in futs:
            line, _ = await f
            if not line.startswith(b"INSERTED"):
                raise RuntimeError(f"beanstalkd put: {line!r}")

    async def lease(self, max_n: int, wait_s: float) -> list[tuple[Any, Any]]:
        # one blocking reserve (the long-poll), then the rest of the batch pipelined without waiting
        (f,) = self.conn.send([b"reserve-with-timeout %d\r\n" % max(0, round(wait_s))])
        line, body = await f
        if not line.startswith(b"RESERVED"):
            return []
        out = [(line.split()[1], _dec_any.decode(body or b"null"))]
        if max_n > 1:
            for fut in self.conn.send([b"reserve-with-timeout 0\r\n"] * (max_n - 1)):
                line, body = await fut
                if line.startswith(b"RESERVED"):
                    out.append((line.split()[1], _dec_any.decode(body or b"null")))
        return out

    async def ack(self, handles: list[Any]) -> None:
        for f in self.conn.send([b"delete %s\r\n" % h for h in handles]):
            line, _ = await f
            if line != b"DELETED":
                self.ack_errors += 1

    async def close(self) -> None:
        if self.conn.transport is not None:
            self.conn.transport.close()


# ---- SAQ on Redis -------------------------------------------------------------------


class SaqClient:
    """SAQ's own API: enqueue, dequeue (one job per call, it has no batch dequeue), finish."""

    kind = "saq"

    def __init__(self, queue: Any) -> None:
        self.queue = queue
        self.ack_errors = 0

    @classmethod
    async def open(cls, port: int, queue: str) -> SaqClient:
        from saq import Queue

        q = Queue.from_url(f"redis://{HOST}:{port}", name=queue)
        await q.connect()
        return cls(q)

    async def enqueue_one(self, payload: Any, priority: int | None = None) -> None:
        if await self.queue.enqueue("bench", payload=payload) is None:
            raise RuntimeError("saq enqueue returned None")

    async def enqueue_many(self, payloads: list[Any], priorities: list[int] | None = None) -> None:
        await asyncio.gather(*(self.queue.enqueue("bench", payload=p) for p in payloads))

    async def lease(self, max_n: int, wait_s: float) -> list[tuple[Any, Any]]:
        # SAQ dequeue(timeout=0) blocks forever (BLMOVE 0), so only one blocking call per batch
        job = await self.queue.dequeue(timeout=max(1, round(wait_s)))
        return [] if job is None else [(job, job.kwargs["payload"])]

    async def ack(self, handles: list[Any]) -> None:
        from saq.job import Status

        await asyncio.gather(*(self.queue.finish(j, Status.COMPLETE) for j in handles))

    async def close(self) -> None:
        await self.queue.disconnect()


KINDS: dict[str, Any] = {"tqd": TqdClient, "beanstalkd": BeanstalkClient, "saq": SaqClient}
# loops per worker process in lease/ack scenarios: SAQ leases one job per call,
# so give it the concurrency its own Worker uses by default (10)
WORKER_CONCURRENCY = {"tqd": 1, "beanstalkd": 1, "saq": 10}


async def connect(spec: dict[str, Any]) -> Any:
    return await KINDS[spec["kind"]].open(spec["port"], spec["queue"])
