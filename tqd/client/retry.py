"""Whether, and after how long, the client makes a call again: the retry budget of one call.

Two budgets, for two kinds of failure (see `Outcome`):

- **Between leaders**, nothing was applied: the leader the client knew refuses the
  connection, a redirect points at a node that refuses it, or a node answers `503
  no_leader`. Any call may be made again, on the other URLs, until `failover_s` has passed
  since the call began, waiting between rounds over the URLs (doubling, at most
  `FAILOVER_MAX_BACKOFF_S`: a new leader is taken up within a second of being there).
  Once a call has seen this, a URL that refuses the connection is part of the same
  failover (the dead leader) and spends the same budget.
- **Anything else that may pass**: a connection broken after the request was sent, a
  timeout, another `503` (`not_replicated`, `not_ready`). Only an idempotent call is made
  again (a resend may apply it twice), at most `retries` times, with exponential backoff
  (`backoff_s` doubling per round, at most `max_backoff_s`). Rounds in which every URL
  refused the connection, with no sign of a failover, count against `connect_retries`:
  that is a server that is down, and 0 reports it at once.
- **Rate limited** (`429 rate_limited`): the server applied nothing and said when to come
  back (`Retry-After`). Any call is made again after that long (at most
  `MAX_RETRY_AFTER_S` per wait), charged to `retries` like the resends above. `429 queue_full` is
  not a rate limit (the queue is at its depth until workers drain it): raised at once.

Pure: the clock is injected, so the budgets are tested without sleeping.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FAILOVER_MAX_BACKOFF_S", "MAX_RETRY_AFTER_S", "Outcome", "Policy", "CallRetry"]

# A failover takes the lease TTL plus a second or two; waiting longer than this between
# rounds would only add to the time writes stand still once a new leader is there.
FAILOVER_MAX_BACKOFF_S = 1.0
# The longest the client sleeps for one Retry-After (a misconfigured server or proxy
# should not hang a call for an hour); the retry budget still bounds the tries.
MAX_RETRY_AFTER_S = 30.0


class Outcome(enum.Enum):
    REFUSED = "refused"          # a configured URL refused the connection: nothing was sent
    NO_LEADER = "no_leader"      # between leaders, nothing applied (see the module docstring)
    MAYBE_SENT = "maybe_sent"    # no answer after sending, or a 503 other than no_leader
    RATE_LIMITED = "rate_limited"  # 429 rate_limited: nothing applied, come back after Retry-After
    FINAL = "final"              # an answer that a resend will not change, or a call not safe to resend


@dataclass(frozen=True)
class Policy:
    retries: int = 4
    connect_retries: int = 4
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    failover_s: float = 30.0


class CallRetry:
    """The retry state of one call over `n_urls` configured URLs."""

    def __init__(self, policy: Policy, n_urls: int, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.p = policy
        self.n = max(n_urls, 1)
        self.clock = clock
        self.started = clock()
        self.attempt = 0    # resends charged to `retries`
        self.refused = 0    # refused connections before any failover was seen
        self.failover = 0   # tries that found the cluster between leaders (0: none seen)

    @property
    def in_failover(self) -> bool:
        return self.failover > 0

    def next_delay(self, outcome: Outcome, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before the next try (0.0: at once), or None: give up and raise.
        `retry_after_s`: the server's Retry-After, for Outcome.RATE_LIMITED."""
        if outcome is Outcome.RATE_LIMITED:
            if self.attempt >= self.p.retries:
                return None
            self.attempt += 1
            if retry_after_s is None:  # no header (a proxy's 429?): back off as for the rest
                return min(self.p.backoff_s * 2.0 ** self.attempt, self.p.max_backoff_s)
            return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
        if outcome is Outcome.REFUSED and self.in_failover:
            outcome = Outcome.NO_LEADER
        if outcome is Outcome.NO_LEADER:
            return self._failover_delay()
        if outcome is Outcome.FINAL:
            return None
        if outcome is Outcome.REFUSED:
            self.refused += 1
            # Another URL may answer; a full round of refusals is one connect retry.
            if self.refused % self.n == 0 and self.refused // self.n > self.p.connect_retries:
                return None
        if self.attempt >= self.p.retries:
            return None
        self.attempt += 1
        # Back off only once every URL was tried in this round.
        if self.attempt % self.n != 0 and self.n != 1:
            return 0.0
        delay = min(self.p.backoff_s * 2.0 ** (self.attempt // self.n), self.p.max_backoff_s)
        return delay * random.uniform(0.75, 1.25)

    def _failover_delay(self) -> float | None:
        self.failover += 1
        left = self.p.failover_s - (self.clock() - self.started)
        if left <= 0:
            return None
        if self.failover % self.n != 0 and self.n != 1:
            return 0.0
        rounds = self.failover // self.n
        delay = min(self.p.backoff_s * 2.0 ** (rounds - 1), FAILOVER_MAX_BACKOFF_S, self.p.max_backoff_s)
        return min(delay * random.uniform(0.75, 1.25), left)
