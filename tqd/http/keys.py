"""The application's shared state, by typed key (so that handler modules need not import
tqd.http.app, which imports them)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..service import QueueService
from .body import BodyRule

SERVICE = web.AppKey("service", QueueService)


def svc(request: web.Request) -> QueueService:
    return request.app[SERVICE]


# each route's body limits (tqd.http.body.BodyRule) by handler: read_body's rule
BODY_RULES = web.AppKey("body_rules", dict[Any, BodyRule])
