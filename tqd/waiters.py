"""Long-poll waiters: who is waiting for a job on which queue.

A commit that made n jobs ready in queue q wakes at most n waiters of q, in
the order they started waiting (no thundering herd). A woken waiter leases
again; if another worker was quicker it simply waits again.
"""

from __future__ import annotations

import asyncio
from collections import deque


class Waiters:
    def __init__(self) -> None:
        self._by_queue: dict[str, deque[asyncio.Future[None]]] = {}
        self.waiting = 0

    def add(self, queues: list[str]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for q in queues:
            self._by_queue.setdefault(q, deque()).append(fut)
        self.waiting += 1
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _: asyncio.Future[None]) -> None:
        self.waiting -= 1

    def remove(self, fut: asyncio.Future[None], queues: list[str]) -> None:
        if not fut.done():
            fut.cancel()
        for q in queues:
            dq = self._by_queue.get(q)
            if dq is None:
                continue
            try:
                dq.remove(fut)
            except ValueError:
                pass
            if not dq:
                del self._by_queue[q]

    def wake(self, queue: str, n: int) -> None:
        dq = self._by_queue.get(queue)
        while dq and n > 0:
            fut = dq.popleft()
            if not fut.done():
                fut.set_result(None)
                n -= 1
        if dq is not None and not dq:
            del self._by_queue[queue]

    def wake_all(self) -> None:
        for q in list(self._by_queue):
            self.wake(q, 1 << 30)
