"""A follower's side of log shipping: fetch the leader's log, apply it, and start again from
a snapshot when the log cannot be continued.

The follower long-polls ``GET {leader}/v1/_repl/log`` from its position ``(seq, term)``;
each batch it gets is applied by the writer process in one synced transaction, then it
fetches again from the new position (which tells the leader it has those entries). When
the leader answers that the position is not on its log (409: this node diverged, say as a
paused leader that wrote on alone) or no longer kept (410), or the entries do not
continue this log, the follower downloads a snapshot (``GET /v1/_repl/snapshot``) and
replaces its store with it (tqd.storage.snapshot), then goes on from the snapshot's
position. A brand-new node does the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from typing import TYPE_CHECKING

import aiohttp
import msgspec

from ..errors import LogDiverged
from ..supervisor import LoopState

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("tqd.cluster")
FETCH_WAIT_S = 5  # a fetch's long-poll on the leader
_entries_dec = msgspec.msgpack.Decoder(list[bytes])


class Follower:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.last_contact = 0.0  # monotonic time of the last answer from the leader
        self.snapshots = 0  # times this node started again from a snapshot

    def _params(self) -> dict[str, str]:
        pos = self.node.service.position
        return {"node": self.node.id, "url": self.node.advertise, "after": str(pos.seq),
                "term": str(pos.term), "lease_term": str(self.node.term)}

    async def loop(self, state: LoopState) -> None:
        node = self.node
        backoff = 0.05
        while True:
            leader = node.leader_url
            if node.role == "leader" or not leader or leader == node.advertise:
                await asyncio.sleep(0.05)
                continue
            try:
                got = await self._fetch(leader)
                if got is None:  # the lease names another leader now
                    continue
                status, body = got
            except (aiohttp.ClientError, TimeoutError) as e:
                state.errors += 1
                log.debug("fetch from %s failed: %s", leader, e)
                await self._pause(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            state.runs += 1
            state.last_run = time.time()
            if status in (200, 204):
                backoff = 0.05
                self.last_contact = time.monotonic()
            if status == 200:
                await self._apply(leader, _entries_dec.decode(body))
            elif status in (409, 410):
                log.warning("the leader %s cannot continue this node's log (%s): starting again "
                            "from a snapshot", leader, body[:300].decode(errors="replace"))
                await self._bootstrap(leader)
            elif status != 204:
                state.errors += 1
                state.last_error = f"HTTP {status} from {leader}: {body[:200].decode(errors='replace')}"
                await self._pause(backoff)
                backoff = min(backoff * 2, 1.0)

    async def _pause(self, seconds: float) -> None:
        """Wait before fetching again, but not past a change of leader."""
        try:
            async with asyncio.timeout(seconds):
                await self.node.leader_changed.wait()
        except TimeoutError:
            pass

    async def _fetch(self, leader: str) -> tuple[int, bytes] | None:
        """One fetch of the log; None if the leader changed meanwhile (a paused leader holds
        its connections open: do not wait for it)."""
        changed = asyncio.ensure_future(self.node.leader_changed.wait())
        fetch = asyncio.ensure_future(self._get(
            leader, "/v1/_repl/log", {**self._params(), "wait": str(FETCH_WAIT_S)}, FETCH_WAIT_S + 10))
        try:
            await asyncio.wait([changed, fetch], return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            if not fetch.done():
                fetch.cancel()
        if fetch.cancelled() or not fetch.done():
            return None
        return fetch.result()

    async def _get(self, base: str, path: str, params: dict[str, str],
                   timeout: float) -> tuple[int, bytes]:
        async with self.node.session.get(base + path, params=params,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as r:
            return r.status, await r.read()

    async def _apply(self, leader: str, entries: list[bytes]) -> None:
        node = self.node
        async with node.apply_lock:
            if node.role == "leader" or node.leader_url != leader:
                return  # the entries of a leader we no longer follow
            try:
                await node.service.apply_entries(entries)
            except LogDiverged as e:
                log.warning("entries from %s do not continue this log (%s): starting again "
                            "from a snapshot", leader, e.message)
            else:
                return
        await self._bootstrap(leader)

    async def _bootstrap(self, leader: str) -> None:
        """Download the leader's snapshot and replace this store with it."""
        node = self.node
        path = node.settings.data_dir / f"snapshot-{uuid.uuid4().hex}.in"
        loop = asyncio.get_running_loop()
        try:
            # the leader writes the whole snapshot before its first byte: allow for a big one
            timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
            async with node.session.get(leader + "/v1/_repl/snapshot", params=self._params(),
                                        timeout=timeout) as r:
                if r.status != 200:
                    log.warning("snapshot from %s: HTTP %d", leader, r.status)
                    await asyncio.sleep(0.5)
                    return
                with path.open("wb") as f:
                    async for chunk in r.content.iter_chunked(1 << 20):
                        await loop.run_in_executor(None, f.write, chunk)
            async with node.apply_lock:
                if node.role == "leader" or node.leader_url != leader:
                    return
                pos = await node.service.restore(path)
            self.snapshots += 1
            log.info("restored a snapshot of %s at term %d seq %d", leader, pos.term, pos.seq)
        except (aiohttp.ClientError, TimeoutError) as e:
            log.warning("snapshot from %s failed: %s", leader, e)
            await asyncio.sleep(0.5)
        except LogDiverged as e:
            log.warning("snapshot from %s refused: %s", leader, e.message)
            await asyncio.sleep(0.5)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
