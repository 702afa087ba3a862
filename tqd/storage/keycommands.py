"""`tqd keys create | rotate | list`: the key file of `tqd serve --encryption-key-file`
(tqd.storage.crypt).

A running server reads its keys once, at start: restart it after a rotation (then new values
are sealed with the new key; values sealed with older keys stay readable while the file
holds those keys: never remove one). Exit status: 0 done, 1 refused (the file exists, or
cannot be read or written), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kp = sub.add_parser("keys", help="create, rotate or list encryption keys "
                        "(--encryption-key-file FILE)",
                        description="Manage the key file of `tqd serve --encryption-key-file "
                        "FILE`. A running server reads it at start only: restart it after a "
                        "rotation.")
    ksub = kp.add_subparsers(dest="keys_command", required=True)
    env = os.environ.get("TQD_ENCRYPTION_KEY_FILE") or None

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        c = ksub.add_parser(name, help=help_, description=help_)
        c.add_argument("--file", metavar="FILE", default=env, required=env is None,
                       help="the key file (env TQD_ENCRYPTION_KEY_FILE)")
        return c

    cmd("create", "make a key file (mode 0600) with one new AES-256 key; "
        "refuses to replace an existing file").set_defaults(func=_create)
    cmd("rotate", "add a new key to FILE (new values are sealed with it once the server "
        "restarts); the old keys stay, to read older values").set_defaults(func=_rotate)
    c = cmd("list", "the keys of FILE: id, created, which one seals new values (never the key)")
    c.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    c.set_defaults(func=_list)


def _on_file(what: Callable[[str], T], path: str) -> T | None:
    """what(path), or None after saying why not (an invalid or unreadable file)."""
    from . import crypt  # (cryptography is loaded by these commands only)

    try:
        return what(path)
    except (crypt.KeyFileInvalid, OSError) as e:
        print(f"tqd keys: {e}", file=sys.stderr)
        return None


def _create(args: argparse.Namespace) -> int:
    from . import crypt

    kid = _on_file(crypt.create, args.file)
    if kid is None:
        return 1
    print(f"created {args.file} with key {kid}", file=sys.stderr)
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from . import crypt

    kid = _on_file(crypt.rotate, args.file)
    if kid is None:
        return 1
    print(f"added key {kid} to {args.file}: new values use it once tqd serve restarts",
          file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from . import crypt

    rows = _on_file(crypt.listing, args.file)
    if rows is None:
        return 1
    for kid, created, write in rows:
        if args.json:
            print(json.dumps({"id": kid, "created": created, "write": write}))
        else:
            print(f"{kid:>4}  {created:<20}  {'write' if write else 'read'}")
    return 0
