"""`tqd serve`: boot (lock, recover), listen, and drain cleanly on SIGTERM/SIGINT.

Start-up order: lock the data dir and fork the writer (before the event loop or any
thread exists), raise the open-file limit, start the service (recovery, background
loops), listen, install the signal handlers, print the banner.

Shutdown order: stop leasing (answer long-polls), stop accepting connections
and let in-flight requests finish, flush the writer, close LMDB, unlock.

What each connection is held to (header timeout, max connections, JSON answers to what
aiohttp's parser refuses) is tqd.http.conn's; body limits are tqd.http.body's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from . import __version__
from .config import Settings
from .engine.process import WriterHandle
from .http.app import IN_FLIGHT, make_app
from .http.conn import connection_limit, make_runner
from .service import QueueService, spawn_writer

log = logging.getLogger("tqd")
_CLOSE_WAIT_S = 0.5  # after the drain, what aiohttp gets to close the connections


def run(settings: Settings) -> None:
    import uvloop

    lock_fd, writer = spawn_writer(settings)  # fork before the event loop or any thread exists
    uvloop.run(serve(settings, lock_fd, writer))


async def serve(settings: Settings, lock_fd: int, writer: WriterHandle) -> None:
    max_connections = connection_limit(settings)  # raises the open-file limit
    service = QueueService(settings, lock_fd=lock_fd, writer=writer)
    await service.start()
    app = make_app(service)
    runner = make_runner(app, settings, max_connections, shutdown_timeout_s=_CLOSE_WAIT_S)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        await service.stop()
        raise SystemExit(f"tqd: cannot listen on {settings.host}:{settings.port}: {e.strerror}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the banner: whoever waits for it may stop us
        loop.add_signal_handler(sig, stop.set)
    port = runner.addresses[0][1]
    print(f"tqd {__version__} listening on http://{settings.host}:{port} (data {settings.data_dir}, "
          f"at most {max_connections} connections)", file=sys.stderr, flush=True)
    await stop.wait()
    log.info("tqd draining")
    service.begin_drain()
    # Wait for the requests being handled ourselves: aiohttp's own shutdown wait can hang on a
    # request that lands on a keep-alive connection at this instant (never handled, so never
    # acknowledged); after our wait it only gets _CLOSE_WAIT_S to close connections.
    if not await app[IN_FLIGHT].wait_idle(settings.drain_timeout_s):
        log.warning("drain timeout: %d requests still running", app[IN_FLIGHT].n)
    await runner.cleanup()
    await service.stop()
    if service.writer_lost:
        raise SystemExit("tqd: the writer process exited unexpectedly; stopped")
    log.info("tqd stopped")
