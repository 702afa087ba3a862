"""tqd: a durable job queue server.

The client side is exported lazily (`tqd.Client`, `tqd.Worker`, `tqd.NotFound`,
...), so `tqd serve` never imports it. The client's exceptions all derive from
`tqd.ClientError` (`tqd.errors` is the server's own error module).
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

try:
    __version__ = _metadata.version("tqd")  # the installed distribution's, so it never disagrees with pip
except _metadata.PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from .client.api import (
        Client,
        ClientError,
        ConnectionFailed,
        Forbidden,
        InvalidJob,
        InvalidQueue,
        InvalidRequest,
        InvalidState,
        Job,
        LeasedJob,
        LeaseLost,
        NoLeader,
        NotFound,
        NotReady,
        NotReplicated,
        PayloadTooLarge,
        RateLimited,
        ServerError,
        StorageFull,
        SyncClient,
        Unauthorized,
    )
    from .client.errors import QueueFull
    from .client.worker import Fatal, JobCancelled, JobContext, Retry, Worker

_CLIENT = ("Client", "SyncClient", "Job", "LeasedJob", "ClientError", "ConnectionFailed", "Forbidden",
           "InvalidJob", "InvalidQueue", "InvalidRequest", "InvalidState", "LeaseLost", "NotFound",
           "NotReady", "NoLeader", "NotReplicated", "PayloadTooLarge", "RateLimited", "ServerError", "StorageFull", "Unauthorized")
_WORKER = ("Worker", "JobContext", "Retry", "Fatal", "JobCancelled")
_LAZY = {**{n: "client.api" for n in _CLIENT}, **{n: "client.worker" for n in _WORKER},
         "QueueFull": "client.errors"}
__all__ = [  # noqa: RUF022 - grouped as above
    "__version__", "Client", "SyncClient", "Job", "LeasedJob", "ClientError", "ConnectionFailed",
    "Forbidden", "InvalidJob", "InvalidQueue", "InvalidRequest", "InvalidState", "LeaseLost", "NotFound",
    "NotReady", "NoLeader", "NotReplicated", "PayloadTooLarge", "RateLimited", "ServerError",
    "StorageFull", "Unauthorized", "QueueFull", "Worker", "JobContext", "Retry", "Fatal", "JobCancelled",
]


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'tqd' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{mod}", __name__), name)
