"""`tqd serve`: boot (lock, recover), listen, and drain cleanly on SIGTERM/SIGINT.

Shutdown order: stop leasing (answer long-polls), stop accepting connections
and let in-flight requests finish, flush the writer, close LMDB, unlock.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from aiohttp import web

from .config import Settings
from .server import IN_FLIGHT, make_app
from .service import QueueService, spawn_writer
from .writer_proc import WriterHandle

log = logging.getLogger("tqd")
_CLOSE_WAIT_S = 0.5


async def serve(settings: Settings, lock_fd: int | None = None,
                writer: WriterHandle | None = None) -> None:
    service = QueueService(settings, lock_fd=lock_fd, writer=writer)
    await service.start()
    app = make_app(service)
    runner = web.AppRunner(app, handle_signals=False, access_log=None,
                           handler_cancellation=True, shutdown_timeout=_CLOSE_WAIT_S)
    await runner.setup()
    site = web.TCPSite(runner, settings.host, settings.port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        await service.stop()
        raise SystemExit(f"tqd: cannot listen on {settings.host}:{settings.port}: {e.strerror}") from None
    port = runner.addresses[0][1]
    log.info("tqd listening on http://%s:%d (data %s)", settings.host, port, settings.data_dir)
    print(f"tqd listening on http://{settings.host}:{port}", file=sys.stderr, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
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


def run(settings: Settings) -> None:
    import uvloop

    lock_fd, writer = None, None
    if settings.writer == "process":  # fork before the event loop or any thread exists
        lock_fd, writer = spawn_writer(settings)
    uvloop.run(serve(settings, lock_fd, writer))
