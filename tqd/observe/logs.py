"""The log lines of tqd's processes: `tqd serve` (its writer process too) and `tqd worker`.

``setup(fmt, level)`` configures the standard library's root logger once, with one stderr
handler in one of two formats:

- ``text``: one line per event for a person to read, ``2026-11-30 18:00:00,123 INFO tqd.http:
  message``. The message says everything; the fields below are not repeated.
- ``json``: one JSON object per line for a log shipper::

    {"ts": "2026-11-30T18:00:00.123Z", "level": "debug", "logger": "tqd.access",
     "msg": "POST /v1/lease 204 5.1ms", "method": "POST", "path": "/v1/lease",
     "route": "/v1/lease", "status": 204, "ms": 5.1, "remote": "10.0.0.7", "token": "ci"}

  ``ts`` (ISO-8601, UTC, milliseconds), ``level``, ``logger`` and ``msg`` (the text line's
  message, without the padding that aligns it there) come first; then
  every field a call passed with ``extra={...}`` (``queue``, ``job``, ``route``, ``status``,
  ``ms``, ...); an exception's traceback is ``exc``. A value JSON has no type for is
  written as its ``str()``. A field never replaces one of the first four.

A message that is a record of its own (the audit log's, tqd.auth.audit) is a ``Fields``:
in text it is written as one compact JSON object (what the audit log has always written,
for a shipper reading text logs); in json its keys go to the top level of the line and
``msg`` is its short summary. Its keys need not be names ``extra`` accepts (``from``,
``name``).

The writer process is forked after ``setup`` and inherits the handler: its lines have the
same format, on the same stderr. The level filters at the loggers: a call below it costs a
level check (cached by the logging module) and nothing else, so a line whose fields take
work to gather (the request line, tqd.http.access) checks ``isEnabledFor`` first.

No dependency beyond msgspec (already the server's and client's JSON): a JSON formatter is
sixty lines, and python-json-logger would add a package to both for them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from types import TracebackType
from typing import Any

import msgspec

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")
SERVER_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
WORKER_TEXT = "%(asctime)s %(levelname).1s %(message)s"  # the worker's lines are aligned by event

# What every LogRecord has of its own: anything else on a record came from `extra`.
_OWN = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message", "asctime", "taskName"}
_FIRST = ("ts", "level", "logger", "msg")
_enc = msgspec.json.Encoder(enc_hook=str)
_handler: logging.Handler | None = None  # the one setup() installed


class Fields:
    """A message that is a structured record: ``log.info(Fields("cancel ok", {...}))``."""

    __slots__ = ("fields", "summary")

    def __init__(self, summary: str, fields: dict[str, Any]) -> None:
        self.summary = summary
        self.fields = fields

    def __str__(self) -> str:  # the text form: formatted only if a text line is written
        return json.dumps(self.fields, separators=(", ", ": "), default=str)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        t = record.created
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
        msg = record.msg
        obj: dict[str, Any] = {"ts": ts, "level": record.levelname.lower(), "logger": record.name,
                               "msg": msg.summary if isinstance(msg, Fields) else record.getMessage().strip()}
        for k, v in record.__dict__.items():
            if k not in _OWN and k not in obj:
                obj[k] = v
        if isinstance(msg, Fields):
            for k, v in msg.fields.items():
                obj.setdefault(k, v)
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            obj["exc"] = record.exc_text
        if record.stack_info:
            obj["stack"] = self.formatStack(record.stack_info)
        try:
            return _enc.encode(obj).decode()
        except Exception:  # a field's str() failed, an int past 64 bits...
            return _enc.encode({k: _plain(v) for k, v in obj.items()}).decode()


def _plain(v: Any) -> Any:
    """v if it encodes, else its repr(): one odd field does not cost the line."""
    try:
        _enc.encode(v)
        return v
    except Exception:
        pass
    try:
        return repr(v)
    except Exception:  # a log line is not the place to fail
        return f"<unprintable {type(v).__name__}>"


def check(fmt: str, level: str) -> list[str]:
    """What is wrong with a format and a level, in words (empty: nothing)."""
    out = []
    if fmt not in FORMATS:
        out.append(f"log_format must be text or json, got {fmt!r}")
    if level not in LEVELS:
        out.append(f"log_level must be one of {', '.join(LEVELS)}, got {level!r}")
    return out


def setup(fmt: str = "text", level: str = "info", *, text: str = SERVER_TEXT) -> None:
    """Log to stderr in `fmt` (text or json) from `level` up; `text` is the text format.
    Called again, it replaces its own handler (never one somebody else installed)."""
    global _handler
    problems = check(fmt, level)
    if problems:
        raise ValueError("; ".join(problems))
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(text))
    root.addHandler(_handler)
    root.setLevel(level.upper())
    logging.captureWarnings(True)  # a Python warning is a line of the log, not loose text
    if fmt == "json":
        sys.excepthook = _log_uncaught


def announce(logger: logging.Logger, msg: str, **fields: Any) -> None:
    """Log `msg` at INFO whatever the level (the server's "listening on" line, which
    whoever started it waits for)."""
    logger.handle(logger.makeRecord(logger.name, logging.INFO, "(announce)", 0, msg, (), None,
                                    extra=fields))


def _log_uncaught(kind: type[BaseException], value: BaseException,
                  tb: TracebackType | None) -> None:
    """json: an uncaught exception is one line too (its traceback in `exc`)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    logging.getLogger("tqd").critical("uncaught %s: %s", kind.__name__, value,
                                      exc_info=(kind, value, tb))
