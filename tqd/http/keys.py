"""The application's shared state, by typed key (so that handler modules need not import
tqd.http.app, which imports them)."""

from __future__ import annotations

from aiohttp import web

from ..service import QueueService

SERVICE = web.AppKey("service", QueueService)


def svc(request: web.Request) -> QueueService:
    return request.app[SERVICE]
