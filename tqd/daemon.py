"""`tqd serve`: boot (lock, recover), listen, and drain cleanly on SIGTERM/SIGINT.

Start-up order: read the TLS certificate and key (exit 2 if they are bad), lock the data
dir and fork the writer (before the event loop or any thread exists), raise the
open-file limit, start the service (recovery, background loops), listen (https with
TLS), install the signal handlers, print the banner.

Shutdown order: stop leasing (answer long-polls), stop accepting connections
and let in-flight requests finish, flush the writer, close LMDB, unlock.

What each connection is held to (header timeout, max connections, JSON answers to what
aiohttp's parser refuses) is tqd.http.conn's; body limits are tqd.http.body's.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl

from . import __version__
from .cluster.lease import LeaseStoreError, LeaseStoreUnsafe, open_lease_store
from .cluster.node import Node
from .config import Settings
from .engine.remote import WriterHandle
from .http.app import IN_FLIGHT, make_app
from .http.conn import Site, connection_limit, make_runner, server_tls
from .http.repl import NODE
from .observe import logs
from .service import QueueService, spawn_writer

log = logging.getLogger("tqd")
_CLOSE_WAIT_S = 0.5  # after the drain, what aiohttp gets to close the connections


class StartRefused(Exception):
    """A setting that cannot work: the start stops with exit 2 and this reason (said by the
    CLI, in the log's format)."""


def run(settings: Settings) -> None:
    import uvloop

    try:
        tls = server_tls(settings)
    except ValueError as e:
        raise StartRefused(f"bad setting: {e}") from None
    lock_fd, writer = spawn_writer(settings)  # fork before the event loop or any thread exists
    uvloop.run(serve(settings, lock_fd, writer, tls))


async def serve(settings: Settings, lock_fd: int, writer: WriterHandle,
                tls: ssl.SSLContext | None = None) -> None:
    max_connections = connection_limit(settings)  # raises the open-file limit
    service = QueueService(settings, lock_fd=lock_fd, writer=writer)
    await service.start()
    node = await _make_node(settings, service) if settings.lease_store else None
    app = make_app(service)
    if node is not None:
        app[NODE] = node
    runner = make_runner(app, settings, max_connections, shutdown_timeout_s=_CLOSE_WAIT_S)
    await runner.setup()
    site = Site(runner, settings.host, settings.port, tls, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        await service.stop()
        raise SystemExit(f"tqd: cannot listen on {settings.host}:{settings.port}: {e.strerror}") from None
    port = runner.addresses[0][1]
    if node is not None:
        node.bind(settings.host, port, tls=tls is not None)
        await node.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):  # before the banner: whoever waits for it may stop us
        loop.add_signal_handler(sig, stop.set)
    cluster = "" if node is None else (f", node {node.id} at {node.advertise}, lease in "
                                       f"{node.store.description}")
    scheme = "https" if tls is not None else "http"
    url = f"{scheme}://{settings.host}:{port}"
    logs.announce(log, f"tqd {__version__} listening on {url} (data {settings.data_dir}, at most "
                  f"{max_connections} connections{cluster})", url=url, data=str(settings.data_dir))
    await stop.wait()
    log.info("tqd draining")
    if node is not None:
        await node.hand_over()
    service.begin_drain()
    # Wait for the requests being handled ourselves: aiohttp's own shutdown wait can hang on a
    # request that lands on a keep-alive connection at this instant (never handled, so never
    # acknowledged); after our wait it only gets _CLOSE_WAIT_S to close connections.
    if not await app[IN_FLIGHT].wait_idle(settings.drain_timeout_s):
        log.warning("drain timeout: %d requests still running", app[IN_FLIGHT].n)
    await runner.cleanup()
    await service.stop()
    if node is not None:
        await node.close()
    if service.writer_lost:
        raise SystemExit("tqd: the writer process exited unexpectedly; stopped")
    log.info("tqd stopped")


async def _make_node(settings: Settings, service: QueueService) -> Node:
    """The cluster node, once its lease store has shown that it enforces conditional writes
    (exit 2 if it does not: a store that overwrites silently would elect two leaders)."""
    try:
        store = open_lease_store(settings.lease_store, timeout_s=max(0.5, settings.lease_ttl_s * 0.25))
    except ValueError as e:
        await service.stop()
        raise StartRefused(f"bad setting: lease_store: {e}") from None
    for attempt in range(30):
        try:
            await store.self_test()
            break
        except LeaseStoreUnsafe as e:
            await service.stop()
            raise StartRefused(f"the lease store cannot hold a lease: {e}") from None
        except LeaseStoreError as e:
            if attempt == 29:
                await service.stop()
                raise SystemExit(f"tqd: the lease store {store.description} cannot be reached: {e}") from None
            log.warning("the lease store %s cannot be reached (%s); trying again", store.description, e)
            await asyncio.sleep(1.0)
    return Node(settings, service, store)
