"""The leader's view of its followers: their positions, the in-sync set, sync waits.

A follower's fetch of the log from position ``after`` says it has everything up to
``after`` on disk (as in Kafka, the fetch position is the acknowledgement). ``on_fetch``
records it.

With ``--sync-replicas N`` a write is answered only when every follower of the in-sync
set (the ISR, kept in the lease object) has it, and the set has at least N followers
(``wait``). Only a member of the set may take over (tqd.cluster.node), so a change of
leader never loses an acknowledged write. The set changes through the lease, never
behind it:

- a follower joins once it holds every write acknowledged so far (``acked_hw``); it is
  waited for from that moment, before the lease says so (waiting for one more is safe);
- a follower that has not reached the position the leader had ``lag_s`` ago (or has
  stopped fetching) leaves: first the lease is written without it, then writes stop
  waiting for it.

Without sync replicas the set is not kept, and the followers are only watched (lag,
``/v1/cluster``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import NotReplicated
from ..supervisor import LoopState


class FollowerInfo:
    __slots__ = ("node", "url", "acked", "seen", "caught_up_at", "polling")

    def __init__(self, node: str, url: str) -> None:
        self.node, self.url = node, url
        self.acked = 0  # the seq it holds (its last fetch's position)
        self.seen = time.monotonic()  # its last fetch
        self.caught_up_at = 0.0  # when it last held everything the leader had
        self.polling = 0  # its fetches waiting here now (it is alive while one waits)

    def alive(self, now: float, within: float) -> bool:
        return self.polling > 0 or now - self.seen < within


class Replicas:
    def __init__(self, me: str, n_sync: int, timeout_s: float, lag_s: float,
                 position: Callable[[], int], leading: Callable[[], bool],
                 write_isr: Callable[[list[str]], Awaitable[bool]]) -> None:
        """``position``: the leader's last seq; ``write_isr``: put a new in-sync set in the
        lease (False: it could not, the set is unchanged)."""
        self.me = me
        self.n_sync = n_sync
        self.timeout_s = timeout_s
        self.lag_s = lag_s
        self._position = position
        self._leading = leading
        self._write_isr = write_isr
        self.followers: dict[str, FollowerInfo] = {}
        self.required: set[str] = set()  # the followers writes wait for (⊇ the lease's ISR)
        self.isr: list[str] = [me]  # as written in the lease
        self.acked_hw = 0  # the highest seq a client was told is replicated
        self._history: deque[tuple[float, int]] = deque()  # (when, leader's seq), for lag
        self._wake = asyncio.Event()

    def reset(self, isr: list[str]) -> None:
        """A new leadership: nobody is known yet; the lease's set is ``isr``."""
        self.followers.clear()
        self.required.clear()
        self.isr = list(isr)
        self._history.clear()
        self.acked_hw = self._position()
        self._notify()

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def on_fetch(self, node: str, url: str, after: int) -> FollowerInfo:
        """A fetch from ``node`` holding the log up to ``after`` (the caller counts it in
        ``polling`` while it waits, and calls ``fetched`` after)."""
        f = self.followers.get(node)
        if f is None:
            f = self.followers[node] = FollowerInfo(node, url)
        f.url, f.acked, f.seen = url, after, time.monotonic()
        if after >= self._position():
            f.caught_up_at = f.seen
        self._notify()
        return f

    def seen_by(self, node: str, url: str) -> None:
        """A follower that asks for a snapshot: known (its pin is kept while it restores)."""
        f = self.followers.get(node)
        if f is None:
            f = self.followers[node] = FollowerInfo(node, url)
        f.seen = time.monotonic()

    def fetched(self, f: FollowerInfo) -> None:
        f.seen = time.monotonic()

    def forget_idle(self, idle_s: float) -> list[str]:
        """Drop followers not heard from for idle_s (they unpin the log); their ids."""
        now = time.monotonic()
        gone = [n for n, f in self.followers.items()
                if not f.alive(now, idle_s) and n not in self.required]
        for n in gone:
            del self.followers[n]
        return gone

    # ---- sync waits ------------------------------------------------------------

    def _satisfied(self, seq: int) -> bool:
        if len(self.required) < self.n_sync:
            return False
        fs = self.followers
        return all(n in fs and fs[n].acked >= seq for n in self.required)

    async def wait(self, seq: int) -> None:
        """Until the in-sync set holds ``seq`` (NotReplicated after timeout_s; NoLeader if
        this node stops leading meanwhile)."""
        deadline = time.monotonic() + self.timeout_s
        while not self._satisfied(seq):
            if not self._leading():  # (not no_leader: that would say nothing was applied)
                raise NotReplicated("this node stopped being the leader before the write was "
                                    "replicated; it may or may not survive: check before "
                                    "retrying")
            left = deadline - time.monotonic()
            if left <= 0:
                have = sum(1 for f in self.followers.values() if f.acked >= seq)
                raise NotReplicated(
                    f"the write is on the leader but only {have} of --sync-replicas "
                    f"{self.n_sync} followers had it within {self.timeout_s:g} s; it may still "
                    "survive: check before retrying")
            try:
                async with asyncio.timeout(min(left, 0.5)):
                    await self._wake.wait()
            except TimeoutError:
                pass
        if seq > self.acked_hw:
            self.acked_hw = seq

    def fail_all(self) -> None:
        """Wake every waiter (after a step-down they raise NoLeader)."""
        self._notify()

    # ---- the in-sync set ---------------------------------------------------------

    def _seq_ago(self, now: float, age: float) -> int:
        """The leader's seq ``age`` seconds ago (as sampled by the loop)."""
        h = self._history
        while len(h) > 1 and h[1][0] <= now - age:
            h.popleft()
        return h[0][1] if h and h[0][0] <= now - age else 0

    def _changes(self) -> tuple[list[str], list[str]]:
        now = time.monotonic()
        self._history.append((now, self._position()))
        behind = self._seq_ago(now, self.lag_s)
        add = [n for n, f in self.followers.items()
               if n not in self.required and f.acked >= self.acked_hw and f.alive(now, self.lag_s)]
        drop = [n for n in self.required
                if (f := self.followers.get(n)) is None or f.acked < behind
                or not f.alive(now, self.lag_s)]
        return add, drop

    async def loop(self, state: LoopState) -> None:
        """Keep the in-sync set (leader with sync replicas only)."""
        while True:
            await asyncio.sleep(min(0.1, self.lag_s / 4))
            if not self._leading() or self.n_sync == 0:
                continue
            add, drop = self._changes()
            if not add and not drop:
                continue
            state.runs += 1
            state.last_run = time.time()
            self.required.update(add)  # waited for from now on, before the lease says so
            new = [self.me] + sorted((self.required - set(drop)) - {self.me})
            if await self._write_isr(new):
                self.isr = new
                self.required.difference_update(drop)
                self._notify()
            else:
                state.errors += 1

    def status(self) -> list[dict[str, Any]]:
        pos, now = self._position(), time.monotonic()
        return [{"node": f.node, "url": f.url, "acked_seq": f.acked, "lag": max(0, pos - f.acked),
                 "lag_s": 0.0 if f.acked >= pos else round(now - (f.caught_up_at or f.seen), 3),
                 "in_sync": f.node in self.isr, "last_fetch_s": round(now - f.seen, 3)}
                for f in sorted(self.followers.values(), key=lambda f: f.node)]
