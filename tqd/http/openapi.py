"""The OpenAPI 3.1 description of the HTTP API, generated, never written by hand.

Two sources make it: the msgspec Structs of tqd.protocol (their JSON Schema, by
``msgspec.json.schema_components``) and the route table ``tqd.http.app.ROUTES`` (method,
path, whether it writes, its body rule). What neither says is in OPS below, one typed entry
per route keyed by ``(method, path)`` (tqd.http.openapi_ops): the request body's type (JSON and/or one NDJSON
line), the query parameters with their bounds (the numbers of tqd.protocol), the answer of
each status, and the error codes the route gives beyond those every route gives.
tests/test_openapi.py holds OPS to ROUTES (an entry for each route, none stale) and
docs/openapi.json to this module (``python -m tqd.http.openapi > docs/openapi.json``).

Derived from the route table, not listed per route: a write gets ``307`` (a follower sends
it to the leader: ``Location``, ``X-Tqd-Leader``), ``503`` (``no_leader``, ``not_ready``,
``not_replicated``) and ``507``; a route with a body ``415``; a route with ``{queue}``
``400 invalid_queue``; a route that needs a right (``Route.need``, when the table has it)
the bearer ``token`` security scheme (in force with ``--auth``), ``401`` and ``403``. Every route can answer ``400``, ``408``, ``413``, ``417``, ``500``
and ``503 too_many_connections``. Refusals the server makes before it knows the route
(``414``, ``431``, ``505``, ``404`` and ``405`` for paths and methods it does not serve)
are in the info's description, not under any operation.

The replication routes (``/v1/_repl/...``) are in the document, marked ``x-internal:
true`` and tagged ``internal``: a cluster's nodes call them, clients do not, and a
generator of clients should leave them out. They are described rather than left out so
that the document covers the whole route table and a fuzzer (or a reviewer) sees them.

NDJSON bodies (``application/x-ndjson``) are described as an array of their lines'
schema, with ``x-ndjson: true``: on the wire each item is one line.

Served at ``GET /openapi.json`` by the ``openapi`` handler (the document's bytes are made
once, on the first request).
"""

from __future__ import annotations

import functools
import sys
from typing import Any, NamedTuple

import msgspec
from aiohttp import web
from msgspec import Raw, Struct

from .. import protocol as p
from ..errors import BY_CODE
from .body import NDJSON, BodyRule
from .openapi_ops import (
    AUTH_ERRORS,
    BODY_ERRORS,
    COMMON_ERRORS,
    HEADERS,
    INFO_DESCRIPTION,
    JSON,
    OPENAPI_PATH,
    OPS,
    QUEUE_ERRORS,
    RATE_ERRORS,
    STATUS_TEXT,
    WRITE_ERRORS,
    ErrorAnswer,
    Op,
    Query,
)
from .openapi_ops import NAME_RE as _NAME_RE

_REF = "#/components/schemas/{name}"

# ---- generation ---------------------------------------------------------------------------


def _wire_type(cls: Any) -> Any:
    """cls, or where a field defaults to a msgspec.Raw (which msgspec cannot put in a
    schema), a copy of it whose default is that JSON value (or none, for "not sent")."""
    if not (isinstance(cls, type) and issubclass(cls, Struct)):
        return cls
    fields = msgspec.structs.fields(cls)
    if not any(isinstance(f.default, Raw) for f in fields):
        return cls
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in fields:
        if isinstance(f.default, Raw):
            raw = bytes(f.default)
            spec.append((f.name, f.type, msgspec.json.decode(raw) if raw
                         else msgspec.field(default_factory=Raw)))  # not sent: no default
        elif f.required:
            spec.append((f.name, f.type))
        else:
            spec.append((f.name, f.type, f.default if f.default is not msgspec.NODEFAULT
                         else msgspec.field(default_factory=f.default_factory)))
    return msgspec.defstruct(cls.__name__, spec, module=cls.__module__)


class _Route(NamedTuple):  # what the document needs of a tqd.http.app.Route
    method: str
    path: str
    name: str
    write: bool
    body: BodyRule
    right: str | None  # the auth right it needs (Route.need), "open" for none; None: no auth
    limited: bool = False  # held to the caller's rate limit (Route.limited)


def _right(route: object) -> str | None:
    need = getattr(route, "need", None)  # a route table without auth has no `need`
    return None if need is None else str(need.right.value)


def _routes() -> list[_Route]:
    """The route table, and this document's own route until app.py serves it."""
    from .app import ROUTES  # here: app.py imports this module for its route table

    routes = [_Route(r.method, r.path, r.handler.__name__, r.write, r.body, _right(r),
                     bool(getattr(r, "limited", False))) for r in ROUTES]
    if ("GET", OPENAPI_PATH) not in {(r.method, r.path) for r in routes}:
        auth = any(r.right is not None for r in routes)
        routes.append(_Route("GET", OPENAPI_PATH, "openapi", False, BodyRule(), "open" if auth else None))
    missing = [f"{r.method} {r.path}" for r in routes if (r.method, r.path) not in OPS]
    if missing:
        raise LookupError(f"tqd.http.openapi.OPS has no entry for {', '.join(missing)}")
    return routes


def _ref(t: Any) -> dict[str, Any]:
    return {"$ref": _REF.format(name=t.__name__)}


def _param(q: Query) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": {int: "integer", float: "number"}.get(q.type, "string")}
    for key, value in (("minimum", q.minimum), ("maximum", q.maximum), ("pattern", q.pattern),
                       ("default", q.default)):
        if value is not None:
            schema[key] = value
    if q.enum:
        schema["enum"] = list(q.enum)
    out = {"name": q.name, "in": "query", "required": q.required, "schema": schema}
    if q.description:
        out["description"] = q.description
    return out


def _content(t: Any, media: str, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    if isinstance(t, dict):  # a schema of its own (a text body)
        return {media: {"schema": t}}
    if media == NDJSON:
        return {media: {"schema": {"type": "array", "items": schema_of[t], "x-ndjson": True}}}
    if t is None:
        return {media: {"schema": {"type": "string", "format": "binary"}}}
    return {media: {"schema": schema_of[t]}}


def _error_answer(status: int, codes: list[str]) -> dict[str, Any]:
    schema = {"allOf": [_ref(ErrorAnswer)], "properties": {"error": {"enum": codes}}}
    out: dict[str, Any] = {"description": f"{STATUS_TEXT.get(status, 'error')}: {', '.join(codes)}",
                           "content": {JSON: {"schema": schema}}}
    if "rate_limited" in codes:
        out["headers"] = {"Retry-After": HEADERS["Retry-After"]}
    return out


def _shared(answer: dict[str, Any], name: str, shared: dict[str, Any]) -> dict[str, Any]:
    """A reference to `answer` in components.responses, under name (many routes share it)."""
    assert shared.setdefault(name, answer) == answer, name
    return {"$ref": f"#/components/responses/{name}"}


def _errors_of(route: _Route, op: Op) -> dict[int, list[str]]:
    tables = [COMMON_ERRORS, op.errors]
    if route.body.takes_body:
        tables.append(BODY_ERRORS)
    if "{queue}" in route.path:
        tables.append(QUEUE_ERRORS)
    if route.write:
        tables.append(WRITE_ERRORS)
    if route.right not in (None, "open"):
        tables.append(AUTH_ERRORS)
    if route.limited:
        tables.append(RATE_ERRORS)
    out: dict[int, list[str]] = {}
    for table in tables:
        for status, codes in table.items():
            out.setdefault(status, [])
            out[status] += [c for c in codes if c not in out[status]]
    return out


def _request_body(route: _Route, op: Op, schema_of: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if op.json is not None:
        content.update(_content(op.json, JSON, schema_of))
    if op.ndjson is not None:
        content.update(_content(op.ndjson, NDJSON, schema_of))
    limit = p.BODY_LIMITS[route.body.json]
    return {"required": False, "content": content,
            "description": f"at most {limit.reason}; an empty body is {{}}"}


def _answers(route: _Route, op: Op, schema_of: dict[Any, dict[str, Any]],
             shared: dict[str, Any]) -> dict[str, Any]:
    answers: dict[str, Any] = {}
    for status, body in sorted(op.answers.items()):
        a: dict[str, Any] = {"description": (body.description if body and body.description
                                             else STATUS_TEXT[status])}
        if body is not None and (body.type is not None or body.media != JSON):
            a["content"] = _content(body.type, body.media, schema_of)
            if status == 201 and op.ndjson is not None:  # a bulk enqueue answers a line per job
                a["content"].update(_content(body.type, NDJSON, schema_of))
        if body is not None and body.headers:
            a["headers"] = {h: HEADERS[h] for h in body.headers}
        answers[str(status)] = a
    if route.write:
        answers["307"] = _shared({**_error_answer(307, ["no_leader"]),
                                  "headers": {h: {**HEADERS[h], "required": True}
                                              for h in ("Location", "X-Tqd-Leader")}},
                                 "to_leader", shared)
    for status, codes in sorted(_errors_of(route, op).items()):
        if str(status) in answers:  # a 503 that is also an answer (readyz): either shape
            prev = answers[str(status)]["content"][JSON]["schema"]
            err = _error_answer(status, codes)["content"][JSON]["schema"]
            answers[str(status)]["content"][JSON]["schema"] = {"anyOf": [prev, err]}
        else:
            answers[str(status)] = _shared(_error_answer(status, codes),
                                           f"e{status}_{'_'.join(codes)}", shared)
    return dict(sorted(answers.items()))


def _security(route: _Route, op: Op) -> dict[str, Any]:
    """Who may call it, where the route table says (Route.need): nothing without auth."""
    if route.right is None:
        return {}
    if route.right == "open":
        return {"x-tqd-right": route.right, "security": []}
    if op.token_optional_unless:
        return {"x-tqd-right": route.right, "security": [{}, {"token": []}],
                "description": f"a token is needed only with {op.token_optional_unless}"}
    return {"x-tqd-right": route.right, "security": [{"token": []}]}


def _operation(route: _Route, op: Op, schema_of: dict[Any, dict[str, Any]],
               shared: dict[str, Any]) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "pattern": _NAME_RE}}
        for name in ("queue", "id", "file") if f"{{{name}}}" in route.path
    ]
    params += [_param(q) for q in op.query]
    out: dict[str, Any] = {"operationId": route.name, "summary": op.summary, "tags": [op.tag]}
    if params:
        out["parameters"] = params
    if route.body.takes_body:
        out["requestBody"] = _request_body(route, op, schema_of)
    out["responses"] = _answers(route, op, schema_of, shared)
    out["x-tqd-write"] = route.write
    out.update(_security(route, op))
    if op.internal:
        out["x-internal"] = True
    return out


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes the server serves, as plain JSON data."""
    routes = _routes()
    used = [op for r in routes for op in [OPS[(r.method, r.path)]]]
    types: list[Any] = [ErrorAnswer]
    for op in used:
        for t in [op.json, op.ndjson, *(b.type for b in op.answers.values() if b is not None)]:
            if t is not None and not isinstance(t, dict) and t not in types:
                types.append(t)
    wire = [_wire_type(t) for t in types]
    schemas, components = msgspec.json.schema_components(wire, ref_template=_REF)
    schema_of = dict(zip(types, schemas, strict=True))
    components["ErrorAnswer"]["properties"]["error"]["enum"] = sorted(BY_CODE)
    paths: dict[str, dict[str, Any]] = {}
    shared: dict[str, Any] = {}
    for r in routes:
        operation = _operation(r, OPS[(r.method, r.path)], schema_of, shared)
        paths.setdefault(r.path, {})[r.method.lower()] = operation
    components_out: dict[str, Any] = {"schemas": dict(sorted(components.items())),
                                      "responses": dict(sorted(shared.items()))}
    if any(r.right is not None for r in routes):
        components_out["securitySchemes"] = {"token": {
            "type": "http", "scheme": "bearer",
            "description": "a token of `tqd token create` (only when the server runs with --auth)"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tqd", "version": "v1", "description": INFO_DESCRIPTION,
                 "license": {"name": "MIT", "identifier": "MIT"}},
        "servers": [{"url": "http://127.0.0.1:7070"}],
        "tags": [{"name": t} for t in dict.fromkeys(op.tag for op in used)],
        "paths": paths,
        "components": components_out,
    }


def document_bytes() -> bytes:
    """The document as docs/openapi.json holds it: indented, keys in a stable order."""
    return msgspec.json.format(msgspec.json.encode(openapi_document()), indent=2) + b"\n"


@functools.cache
def _cached() -> bytes:
    return msgspec.json.encode(openapi_document())


async def openapi(request: web.Request) -> web.Response:
    """GET /openapi.json: this document (made once, on the first request)."""
    return web.Response(body=_cached(), content_type=JSON)


def main() -> None:
    sys.stdout.buffer.write(document_bytes())


if __name__ == "__main__":
    main()
