"""Timers: what happens when time passes. One ``Tick`` op takes the due entries up to its
``now`` and acts on each: a delayed job becomes ready, an expired lease fails its attempt
(backoff or dead), a finished job past its retention is deleted.

Due entries are hints: each job's state says which entry it waits on, so a stale entry (the
job moved on, or a heartbeat pushed its lease further) is skipped or moved, never acted on.
There is no clock here: time comes in the op, and the backoff jitter after an expired lease
is derived from the job id and attempt, so the same ticks on the same state give the same state.
"""

from __future__ import annotations

import zlib

from ..protocol import ErrorEntry
from . import ops
from . import records as r
from .lifecycle import Rules, ms
from .ports import WriteTx


class Timers(Rules):
    """Due entries: delayed jobs, lease expiry, retention."""

    def tick(self, tx: WriteTx, op: ops.Tick) -> int:
        """Act on due entries up to op.now; returns how many were taken."""
        entries = tx.due_take(ms(op.now), op.limit)
        for at_ms, kind, jid in entries:
            st = tx.get_state(jid)
            if st is None or st.due_ms != at_ms or st.due_kind != kind:
                continue  # stale hint
            st.due_ms = st.due_kind = 0
            spec = tx.get_spec(jid)
            assert spec is not None
            qs = tx.qstat(spec.queue)
            kind &= ~r.DUE_BATCH
            if kind == r.DUE_READY and st.state == r.SCHEDULED:
                qs.scheduled -= 1
                self._make_ready(tx, qs, spec.queue, spec.priority, jid, st, op.now)
            elif kind == r.DUE_LEASE and st.state == r.ACTIVE:
                if (st.lease_expires_at or 0) > op.now:  # extended by heartbeats
                    self._set_due(tx, jid, st, ms(st.lease_expires_at or 0), r.DUE_LEASE)
                else:
                    self._expire(tx, qs, jid, spec, st, op.now)
            elif kind == r.DUE_PURGE and st.state in r.FINISHED:
                self._delete(tx, jid)
                continue
            tx.put_state(jid, st)
        return len(entries)

    def _expire(self, tx: WriteTx, qs: r.QStat, jid: str, spec: r.JobSpec, st: r.JobState,
                now: float) -> None:
        qs.active -= 1
        st.token, st.lease_expires_at = None, None
        self._add_error(tx, jid, st, ErrorEntry(st.attempt, now, "lease_expired", None))
        delay = None
        if st.attempt < spec.max_attempts:
            # deterministic jitter (replicas must agree): from the job id and attempt
            jitter = 0.75 + (zlib.crc32(f"{jid}:{st.attempt}".encode()) % 10_000) / 20_000
            delay = self.backoff(st.attempt, jitter)
        self._retry_or_dead(tx, qs, jid, spec, st, now, delay)
