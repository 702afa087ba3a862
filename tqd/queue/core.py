"""The queue core: every job state transition, applied inside one transaction.

``Core.apply(tx, op)`` is deterministic: the same ops on the same state give
the same state (time and randomness come in the op). It validates before it
writes, so an op that raises a TqdError has changed nothing. It knows
neither HTTP nor LMDB: it speaks to the transaction's typed methods
(ports.py).

The rules are split by who sends the op: lifecycle.py (the shared transitions,
and producers' and workers' ops), admin.py (operators' ops), timers.py (the
tick). This module puts them together behind one dispatch table, and holds
the read side.
"""

from __future__ import annotations

from typing import Any

from ..protocol import JobRecord
from . import ops
from .admin import Admin
from .lifecycle import Lifecycle, ms
from .ops import AckOutcome
from .ports import ReadView, WriteTx
from .timers import Timers

__all__ = ["AckOutcome", "Core", "ms"]


class Core(Lifecycle, Admin, Timers):
    """The queue's rules, applied op by op by the one writer; and the reads of a job."""

    def apply(self, tx: WriteTx, op: ops.Op) -> Any:
        handler = _HANDLERS.get(type(op))
        if handler is None:
            raise TypeError(f"unknown op {op!r}")
        return handler(self, tx, op)

    # ---- reading ---------------------------------------------------------------

    def get(self, tx: ReadView, jid: str) -> JobRecord:
        spec, st = self._load(tx, jid)
        return self.record(tx, jid, spec, st)  # type: ignore[no-any-return]


_HANDLERS: dict[type, Any] = {
    ops.Enqueue: Core.enqueue, ops.Lease: Core.lease, ops.Ack: Core.ack, ops.Fail: Core.fail,
    ops.Release: Core.release, ops.Heartbeat: Core.heartbeat, ops.Cancel: Core.cancel,
    ops.Retry: Core.retry, ops.Redrive: Core.redrive, ops.Purge: Core.purge,
    ops.SetPaused: Core.set_paused, ops.Tick: Core.tick, ops.DeleteQueue: Core.delete_queue,
}
assert set(_HANDLERS) == set(ops.Op.__args__), "every op has its handler"
