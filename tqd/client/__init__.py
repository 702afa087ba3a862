"""The client side: ``Client``/``SyncClient`` (api.py), the ``Worker`` runner (worker.py) and
the ``tqd`` client commands (commands.py).

It talks to a server only over HTTP and imports nothing of the server (no queue, storage,
engine, http or service module; the layering test enforces it): only the wire structs of
``tqd.protocol`` and the standard library plus aiohttp. Names are loaded lazily, so the
``tqd`` command pays for aiohttp's client only when a client command runs.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    for mod in ("api", "worker"):
        m = importlib.import_module(f".{mod}", __name__)
        if hasattr(m, name):
            return getattr(m, name)
    raise AttributeError(f"module 'tqd.client' has no attribute {name!r}")
