"""The storage the queue core needs, as typed Protocols: the core is written against these,
never against tqd.storage (which implements them; tests/test_lint.py checks that it does).

``ReadView`` is what the read side uses (a reader's snapshot, or a write transaction);
``WriteTx`` adds the typed mutations one op makes inside the writer's transaction. Each
member is one the core uses, with the signature of ``tqd.storage.store.ReadTx``/``Tx``;
what only the writer or storage uses (commit, the log, counters of writes) is left out.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .records import JobSpec, JobState, Meta, QStat


class ReadView(Protocol):
    """Reads of jobs, idempotency keys and a queue's listing or dead index."""

    def get_spec(self, jid: str) -> JobSpec | None: ...

    def get_state(self, jid: str) -> JobState | None: ...

    def get_extra(self, jid: str, kind: bytes) -> bytes | None: ...

    def key_get(self, queue: str, key: str) -> str | None: ...

    def scan_index(self, which: str, queue: str, after: int) -> Iterator[tuple[int, str]]:
        """(qseq, id) of the per-queue listing index ('qidx') or dead index ('dead')."""
        ...


class WriteTx(ReadView, Protocol):
    """One write transaction: counters cached in it, typed puts and deletes of every index."""

    meta: Meta  # the sequences; a private copy, adopted by the writer once committed
    puts: int  # writes so far (a change that writes only counters counts one itself)
    ready_queues: dict[str, int]  # queue -> jobs made ready: whom to wake after commit
    waits: list[tuple[str, float]]  # (queue, s from ready to leased), for metrics only
    runs: list[tuple[str, float]]  # (queue, s from leased to completed), for metrics only
    finished: list[str]  # jobs that reached completed, cancelled or dead (result waiters)

    # counters
    def next_seq(self) -> int: ...

    def qstat(self, queue: str) -> QStat:
        """The queue's counters, for change (written once at commit)."""
        ...

    def peek_qstat(self, queue: str) -> QStat | None: ...

    def delete_qstat(self, queue: str) -> None: ...

    # jobs
    def put_spec(self, jid: str, spec: JobSpec) -> None: ...

    def put_state(self, jid: str, st: JobState) -> None: ...

    def put_fresh(self, queue: str, ready_ms: int,
                  rows: list[tuple[str, JobSpec, JobState, int]]) -> None:
        """New ready jobs of one queue, (id, spec, state, priority) each: the same writes as
        put_spec + put_state + index_put + ready_put per row."""
        ...

    def put_extra(self, jid: str, kind: bytes, value: bytes) -> None: ...

    def delete_job(self, jid: str, extras: int) -> None: ...

    def key_put(self, queue: str, key: str, jid: str) -> None: ...

    def key_del(self, queue: str, key: str) -> None: ...

    # ready index
    def ready_put(self, queue: str, priority: int, seq: int, ready_ms: int, jid: str) -> None: ...

    def ready_del(self, queue: str, priority: int, seq: int) -> None: ...

    def ready_take(self, queue: str, n: int) -> list[tuple[int, str]]:
        """Remove and return up to n (priority, id) in lease order."""
        ...

    # due index
    def due_put(self, ms: int, kind: int, jid: str) -> None: ...

    def due_del(self, ms: int, kind: int, jid: str) -> None: ...

    def due_put_batch(self, ms: int, kind: int, jids: list[str]) -> None: ...

    def due_take(self, now_ms: int, n: int) -> list[tuple[int, int, str]]:
        """Remove the entries due by now_ms, oldest first, until about n jobs (a batch entry
        is taken whole); (ms, kind, id) per job."""
        ...

    # listing and dead indexes
    def index_put(self, which: str, queue: str, qseq: int, jid: str) -> None: ...

    def index_del(self, which: str, queue: str, qseq: int) -> None: ...
