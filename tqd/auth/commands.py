"""`tqd token create | list | revoke`: the token file, edited in place (tqd.auth.tokens).

A running server sees a change after `kill -HUP <pid>`. Exit status: 0 done, 1 refused
(the name exists, no such name, the file cannot be read or written), 2 usage error.
Creating and revoking are audited (logger tqd.audit, on stderr).
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from . import audit, tokens
from .policy import principal


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tp = sub.add_parser("token", help="create, list or revoke access tokens (--auth FILE)",
                        description="Manage the token file of `tqd serve --auth FILE`. "
                        "A running server re-reads it on SIGHUP.")
    tsub = tp.add_subparsers(dest="token_command", required=True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c = tsub.add_parser(name, help=help_, description=help_)
        c.add_argument("--auth", metavar="FILE", default=os.environ.get("TQD_AUTH") or None,
                       required=not os.environ.get("TQD_AUTH"),
                       help="the token file (env TQD_AUTH)")
        return c

    c = cmd("create", "make a token: its hash goes into FILE (created, mode 0600, if missing), "
                      "the token is printed once, alone on stdout")
    c.add_argument("--name", required=True, help="unique name (what the audit log shows)")
    c.add_argument("--role", required=True, choices=tokens.ROLES)
    c.add_argument("--queues", default="*", metavar="GLOBS",
                   help="comma-separated queue globs, * and ? (default *: every queue)")
    c.add_argument("--rate", type=float, default=None, metavar="N",
                   help="this token's own rate limit, requests per second (0: not limited); "
                        "default: its role's [roles.<role>] rate, else the server's --rate-limit-rps")
    c.add_argument("--burst", type=int, default=None, metavar="M",
                   help="this token's own burst (default: its role's, else the server's --rate-limit-burst)")
    c.set_defaults(func=_create)
    c = cmd("list", "the tokens of FILE: name, role, queues, id, the rate limit it gets, created "
                    "(never the token)")
    c.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    c.set_defaults(func=_list)
    c = cmd("revoke", "remove a token from FILE (a running server: after SIGHUP it gets 401)")
    c.add_argument("name")
    c.set_defaults(func=_revoke)


def _audit(action: str, args: argparse.Namespace, name: str, **more: Any) -> None:
    if not audit.log.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        audit.log.addHandler(h)
        audit.log.setLevel(logging.INFO)
    audit.record(action, "ok", who=getpass.getuser(), role=None, method="cli",
                 path=str(Path(args.auth).resolve()), remote=socket.gethostname(), name=name,
                 **more)


def _fail(msg: str) -> int:
    print(f"tqd: {msg}", file=sys.stderr)
    return 1


def _create(args: argparse.Namespace) -> int:
    globs = [g.strip() for g in args.queues.split(",") if g.strip()]
    try:
        token, entry = tokens.create(Path(args.auth), args.name, args.role, globs,
                                     rate=args.rate, burst=args.burst)
    except (ValueError, OSError) as e:
        return _fail(str(e))
    print(token, flush=True)
    _audit("token_create", args, entry.name, token_role=entry.role, queues=entry.queues, id=entry.id,
           rate=entry.rate, burst=entry.burst)
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        file = tokens.load_file(Path(args.auth))
    except ValueError as e:
        return _fail(str(e))
    if args.json:
        for t in file.entries:
            own = file.roles.get(t.role)
            print(json.dumps({"name": t.name, "role": t.role, "queues": t.queues, "id": t.id,
                              "created": t.created, "rate": t.rate, "burst": t.burst,
                              "role_rate": own.rate if own else None,
                              "role_burst": own.burst if own else None}))
        return 0
    rows = [("NAME", "ROLE", "QUEUES", "ID", "RATE", "CREATED")]
    rows += [(t.name, t.role, ",".join(t.queues), t.id, _rate(t, file.roles), t.created)
             for t in file.entries]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5])
    for name, lim in sorted(file.roles.items()):
        print(f"[roles.{name}]: {_limit(lim.rate, lim.burst)} for its tokens that set none")
    return 0


def _rate(t: tokens.Entry, roles: dict[str, tokens.RoleLimit]) -> str:
    """The rate limit a token gets: each of rate and burst its own, else its role's (then
    marked "(role)"); "-": the server's flags."""
    p = principal(t, roles)
    if p.rate is None and p.burst is None:
        return "-"
    borrowed = (t.rate is None and p.rate is not None) or (t.burst is None and p.burst is not None)
    return _limit(p.rate, p.burst) + (" (role)" if borrowed else "")


def _limit(rate: float | None, burst: int | None) -> str:
    """"rate/s", "rate/s burst M", "server's burst M" (None: the server's), "not limited"
    (rate 0)."""
    if rate == 0:
        return "not limited"
    text = "server's" if rate is None else f"{rate:g}/s"
    return text if burst is None else f"{text} burst {burst}"


def _revoke(args: argparse.Namespace) -> int:
    try:
        entry = tokens.revoke(Path(args.auth), args.name)
    except KeyError:
        return _fail(f"no token named {args.name!r} in {args.auth}")
    except (ValueError, OSError) as e:
        return _fail(str(e))
    print(f"revoked {entry.name} ({entry.role}); a running server drops it on SIGHUP",
          file=sys.stderr)
    _audit("token_revoke", args, entry.name, id=entry.id)
    return 0
