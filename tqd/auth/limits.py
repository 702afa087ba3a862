"""How often, and how much at once, one caller may call: a token bucket of requests per
second, and a cap on its parked long-polls. Pure: no HTTP, the clock injected.

A caller is a token (by its name) when auth is on, else a client address (the TCP peer;
``X-Forwarded-For`` is not believed: any client can write it). tqd.http.auth applies this
to every ``/v1`` route but the cluster's replication; ``/healthz``, ``/readyz``,
``/metrics`` and ``/openapi.json`` are never limited.

- **Rate**: ``--rate-limit-rps`` requests per second, in bursts of up to
  ``--rate-limit-burst`` (0: ``2 x rps``, at least 1). In the ``--auth`` file a role's
  ``[roles.<role>]`` table (``rate``, ``burst``) wins over the flags for its tokens, and
  a token's own ``rate`` and ``burst`` win over its role's (each field on its own:
  tqd.auth.policy.principal); ``rate = 0`` means not limited. Past it: ``429
  rate_limited`` with ``Retry-After``, the whole seconds until the bucket holds a
  request again (at least 1). Roles have defaults because a role's tokens call alike
  (workers lease and ack, producers enqueue): one table sets the budget of all of them,
  where a ``rate`` on each token would have to be repeated and kept in step.
- **Parked long-polls**: at most ``MAX_PARKED_PER_CALLER`` ``POST /v1/lease`` with
  ``wait > 0`` at a time per caller (whenever limits are on: with ``--auth`` or
  ``--rate-limit-rps``). One long-poll holds a connection and a place on the writer's
  waiting lists for up to 60 s, so one caller parking thousands would take the
  connections (``--max-connections``) that everybody shares. Past it: ``429
  rate_limited``, ``Retry-After: 1``. A worker parks one lease at a time: 100 is a fleet
  of 100 workers sharing one token (or, without auth, one address).

Memory is bounded: a bucket that has been idle long enough to be full again is worth
nothing (a new one would be the same) and is dropped as others are used; past
``MAX_CALLERS`` buckets the least recently used goes, whatever its state. So a flood of
distinct addresses costs at most ``MAX_CALLERS`` small objects (about 17 MB), and each
request O(1).

Refusals are audited (tqd.auth.audit), but a caller hammering past its limit would turn
the audit log into a copy of its flood: at most one line per caller per
``AUDIT_EVERY_S``, which says how many refusals it stands for.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

MAX_PARKED_PER_CALLER = 100
MAX_CALLERS = 65_536
AUDIT_EVERY_S = 1.0


def default_burst(rate: float, burst: int = 0) -> float:
    """The bucket's size: burst, or 0 for 2 x rate, at least 1."""
    return float(burst) if burst > 0 else max(1.0, math.ceil(2 * rate))


class Refusal(NamedTuple):
    retry_after_s: int  # whole seconds until a request may pass, >= 1
    audit: int  # refusals an audit line should report now (0: none now, one was written lately)
    rate: float
    burst: float


class _Bucket:
    __slots__ = ("rate", "burst", "tokens", "stamp", "refused", "audited")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst, self.tokens, self.stamp = rate, burst, burst, now
        self.refused = 0  # refusals since the last audit line
        self.audited = -math.inf

    def full_at(self, now: float) -> bool:
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class _Parked:
    __slots__ = ("n", "refused", "audited")

    def __init__(self) -> None:
        self.n, self.refused, self.audited = 0, 0, -math.inf


def _audit_due(state: _Bucket | _Parked, now: float) -> int:
    state.refused += 1
    if now - state.audited < AUDIT_EVERY_S:
        return 0
    n, state.refused, state.audited = state.refused, 0, now
    return n


class Limits:
    """The buckets and parked long-poll counts of every caller."""

    def __init__(self, rate: float, burst: int = 0, *, clock: Callable[[], float] = time.monotonic,
                 max_callers: int = MAX_CALLERS, max_parked: int = MAX_PARKED_PER_CALLER) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_callers = max_callers
        self.max_parked = max_parked
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first
        self._parked: dict[str, _Parked] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, rate: float | None = None, burst: int | None = None) -> Refusal | None:
        """One request of `key` (with its own rate and burst, if it has them): None if it may
        pass, else why not and for how long."""
        r = self.rate if rate is None else rate
        if r <= 0:  # not limited
            return None
        size = default_burst(r, self.burst if burst is None else burst)
        now = self.clock()
        b = self._buckets.get(key)
        if b is None:
            self._evict(now)
            b = self._buckets[key] = _Bucket(r, size, now)
        else:
            self._buckets.move_to_end(key)
            b.tokens = min(b.burst, b.tokens + (now - b.stamp) * b.rate)
            b.stamp = now
            if (b.rate, b.burst) != (r, size):  # its token's rate changed (SIGHUP)
                b.rate, b.burst, b.tokens = r, size, min(b.tokens, size)
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return None
        wait = (1.0 - b.tokens) / b.rate
        return Refusal(max(1, math.ceil(wait)), _audit_due(b, now), r, size)

    def _evict(self, now: float) -> None:
        """Before an insert: drop up to two buckets from the idle end (amortised O(1))."""
        for _ in range(2):
            if not self._buckets:
                return
            key, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) >= self.max_callers or oldest.full_at(now):
                del self._buckets[key]
            else:
                return

    def park(self, key: str) -> Refusal | None:
        """A long-poll of `key` starts: None if it may (then `unpark` when it ends)."""
        p = self._parked.get(key)
        if p is None:
            p = self._parked[key] = _Parked()
        if p.n >= self.max_parked:
            return Refusal(1, _audit_due(p, self.clock()), 0.0, float(self.max_parked))
        p.n += 1
        return None

    def unpark(self, key: str) -> None:
        p = self._parked[key]
        p.n -= 1
        if p.n == 0:
            del self._parked[key]

    def parked(self, key: str) -> int:
        p = self._parked.get(key)
        return 0 if p is None else p.n
