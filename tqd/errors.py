"""One error vocabulary: every expected failure is a TqdError with a wire code.

Anything that is not a TqdError reaching the HTTP layer is a bug (500).
"""

from __future__ import annotations

from typing import Any


class TqdError(Exception):
    code = "error"
    http_status = 400
    close_connection = False  # answer with `Connection: close` (the request's framing is unusable)

    def __init__(self, message: str = "", **extra: Any) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code.replace("_", " ")
        self.extra = extra

    def with_status(self, status: int) -> TqdError:
        """This error answered with another status (HTTP-level refusals: 414, 417, 431, 505)."""
        self.http_status = status
        return self

    def closing(self) -> TqdError:
        """This error ends the connection after its answer."""
        self.close_connection = True
        return self

    def to_wire(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.extra}


class InvalidRequest(TqdError):
    code, http_status = "invalid_request", 400


class InvalidJob(TqdError):
    code, http_status = "invalid_job", 400


class InvalidQueue(TqdError):
    code, http_status = "invalid_queue", 400


class Unauthorized(TqdError):
    code, http_status = "unauthorized", 401


class Forbidden(TqdError):
    code, http_status = "forbidden", 403


class NotFound(TqdError):
    code, http_status = "not_found", 404


class MethodNotAllowed(TqdError):
    code, http_status = "method_not_allowed", 405


class LeaseLost(TqdError):
    code, http_status = "lease_lost", 409


class RequestTimeout(TqdError):
    """The client sent its headers or body too slowly (see header_timeout_s, body_timeout_s)."""

    code, http_status = "request_timeout", 408
    close_connection = True


class InvalidState(TqdError):
    code, http_status = "invalid_state", 409


class PayloadTooLarge(TqdError):
    code, http_status = "payload_too_large", 413


class UnsupportedMediaType(TqdError):
    code, http_status = "unsupported_media_type", 415


class RateLimited(TqdError):
    code, http_status = "rate_limited", 429


class QueueFull(TqdError):
    """The queue holds --queue-max-depth jobs waiting (queued + scheduled): backpressure."""

    code, http_status = "queue_full", 429


class NotReady(TqdError):
    code, http_status = "not_ready", 503


class TooManyConnections(TqdError):
    """max_connections are open; the new connection is answered with this and closed."""

    code, http_status = "too_many_connections", 503


class NoLeader(TqdError):
    """A cluster node that cannot take writes now: no leader is known, or this node's
    leadership is not (or no longer) certain. The write was not applied."""

    code, http_status = "no_leader", 503


class NotReplicated(TqdError):
    """--sync-replicas: the write committed on the leader but not enough followers had it
    in time. It may survive or not: check before retrying."""

    code, http_status = "not_replicated", 503


class LogDiverged(TqdError):
    """Replication: the follower's log position is not on the leader's log (it diverged,
    or is ahead): it must start again from a snapshot."""

    code, http_status = "log_diverged", 409


class LogGone(TqdError):
    """Replication: the leader no longer keeps the entries after the follower's position:
    it must start again from a snapshot."""

    code, http_status = "log_gone", 410


class StorageFull(TqdError):
    code, http_status = "storage_full", 507


class Internal(TqdError):
    code, http_status = "internal", 500


BY_CODE: dict[str, type[TqdError]] = {
    cls.code: cls
    for cls in (
        InvalidRequest, InvalidJob, InvalidQueue, Unauthorized, Forbidden, NotFound,
        MethodNotAllowed, RequestTimeout, LeaseLost, InvalidState, PayloadTooLarge,
        UnsupportedMediaType, RateLimited, NotReady, TooManyConnections, StorageFull, Internal,
        NoLeader, NotReplicated, LogDiverged, LogGone, QueueFull,
    )
}
