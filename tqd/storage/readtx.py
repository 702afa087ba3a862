"""``ReadTx``: a read transaction of the store, with typed getters and scans.

It is the read half of ``Tx`` (tx.py) and what the server process reads through; the core
sees it as ``tqd.queue.ports.ReadView``. A sealed store uses ``SealedReadTx`` (sealed.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..queue.records import JobSpec, JobState, QStat
from .schema import (
    MAX_ID_BYTES,
    U64,
    qstat_decoder,
    queue_prefix,
    spec_decoder,
    state_decoder,
)

if TYPE_CHECKING:
    from .store import Store


class ReadTx:
    """Read-only view; also the read half of Tx."""

    def __init__(self, store: Store, txn: Any) -> None:
        self.store = store
        self.txn = txn
        d = store.dbs
        self._spec, self._state, self._extra = d["spec"], d["state"], d["extra"]
        self._ready, self._due, self._qidx, self._dead = d["ready"], d["due"], d["qidx"], d["dead"]
        self._keys, self._log, self._qstat, self._meta = d["keys"], d["log"], d["qstat"], d["meta"]
        self._local = d["local"]

    def close(self) -> None:
        self.txn.abort()

    def __enter__(self) -> ReadTx:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # jobs
    def decode_spec(self, key: bytes, raw: bytes) -> JobSpec:
        """A spec value as stored (a log entry's put, say)."""
        return spec_decoder.decode(raw)

    def get_spec(self, jid: str) -> JobSpec | None:
        k = jid.encode()
        if not 0 < len(k) <= MAX_ID_BYTES:  # no such job (and no key LMDB would refuse)
            return None
        raw = self.txn.get(k, db=self._spec)
        return None if raw is None else spec_decoder.decode(raw)

    def get_state(self, jid: str) -> JobState | None:
        k = jid.encode()
        if not 0 < len(k) <= MAX_ID_BYTES:
            return None
        raw = self.txn.get(k, db=self._state)
        return None if raw is None else state_decoder.decode(raw)

    def get_extra(self, jid: str, kind: bytes) -> bytes | None:
        k = jid.encode()
        if not 0 < len(k) <= MAX_ID_BYTES:
            return None
        raw = self.txn.get(k + b"\x00" + kind, db=self._extra)
        return None if raw is None else bytes(raw)

    def key_get(self, queue: str, key: str) -> str | None:
        raw = self.txn.get(queue_prefix(queue) + key.encode(), db=self._keys)
        return None if raw is None else bytes(raw).decode()

    # queues
    def get_qstat(self, queue: str) -> QStat | None:
        raw = self.txn.get(queue.encode(), db=self._qstat)
        return None if raw is None else qstat_decoder.decode(raw)

    def all_qstats(self) -> Iterator[tuple[str, QStat]]:
        with self.txn.cursor(db=self._qstat) as c:
            for k, v in c:
                yield bytes(k).decode(), qstat_decoder.decode(v)

    def qstats_after(self, after: str, limit: int) -> list[tuple[str, QStat]]:
        """Up to limit queues whose names sort after `after` ("" = from the first), in order."""
        out: list[tuple[str, QStat]] = []
        with self.txn.cursor(db=self._qstat) as c:
            if not c.set_range(after.encode() + b"\x00" if after else b""):
                return out
            for k, v in c:
                out.append((bytes(k).decode(), qstat_decoder.decode(v)))
                if len(out) >= limit:
                    break
        return out

    def oldest_ready_ms(self, queue: str) -> int | None:
        """Earliest ready time among the queue's queued jobs (one seek per priority)."""
        best = None
        p = queue_prefix(queue)
        with self.txn.cursor(db=self._ready) as c:
            for inv in range(10):
                prefix = p + bytes([inv])
                if c.set_range(prefix) and bytes(c.key()).startswith(prefix):
                    ms = U64.unpack_from(c.value())[0]
                    best = ms if best is None or ms < best else best
        return best

    def scan_index(self, which: str, queue: str, after: int) -> Iterator[tuple[int, str]]:
        """(qseq, id) of the per-queue listing index ('qidx') or dead index ('dead')."""
        db = self._qidx if which == "qidx" else self._dead
        p = queue_prefix(queue)
        with self.txn.cursor(db=db) as c:
            if not c.set_range(p + U64.pack(after + 1)):
                return
            for k, v in c:
                k = bytes(k)
                if not k.startswith(p):
                    return
                yield U64.unpack_from(k, len(p))[0], bytes(v).decode()

    def first_due_ms(self) -> int | None:
        with self.txn.cursor(db=self._due) as c:
            return U64.unpack_from(c.key())[0] if c.first() else None

    def log_entries(self, after: int, limit: int, max_bytes: int = 0) -> list[tuple[int, bytes]]:
        """(seq, entry) of the log entries after ``after``: at most ``limit``, and (if
        max_bytes) stopping once their size reaches max_bytes (at least one entry)."""
        out = []
        size = 0
        with self.txn.cursor(db=self._log) as c:
            if c.set_range(U64.pack(after + 1)):
                for k, v in c:
                    out.append((U64.unpack(k)[0], bytes(v)))
                    size += len(v)
                    if len(out) >= limit or (max_bytes and size >= max_bytes):
                        break
        return out
