"""What every client command of `tqd` shares: the parser plumbing, the exit statuses, the Client.

`add_command` gives each command the connection flags (`--url`, `--token`, `--ca-file`,
`--client-cert`, `--client-key`) and lets options stand between positionals; `run` turns
a command's outcome or error into one line on stderr and an exit status (the table is in
tqd.client.commands). The client library is imported only when a command runs, so
`tqd serve` never loads it. The rest are the small formatters the tables share.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Client

Command = Callable[[argparse.Namespace], "Coroutine[Any, Any, int] | int"]
EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 1, 2, 3, 130


class _IntermixedParser(argparse.ArgumentParser):
    """Lets options stand between positionals: `tqd enqueue q --type t '{"a": 1}'`."""

    _inner = False

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:
        if self._inner:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._inner = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inner = False


def add_command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, fn: Command,
                help: str) -> argparse.ArgumentParser:
    """Add command `name`, run by `fn`, with the connection flags every command takes."""
    cls, sub._parser_class = sub._parser_class, _IntermixedParser
    try:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help)
    finally:
        sub._parser_class = cls
    p.add_argument("--url", help="server URL(s), comma-separated (env TQD_URL, default "
                   "http://127.0.0.1:7070)")
    p.add_argument("--token", default=os.environ.get("TQD_TOKEN"), help="bearer token (env TQD_TOKEN)")
    p.add_argument("--ca-file", metavar="PEM", help="CA bundle to verify an https server with "
                   "(env TQD_CA_FILE; default the system CAs)")
    p.add_argument("--client-cert", metavar="PEM", help="client certificate, for a server that "
                   "asks for one (mutual TLS; env TQD_CLIENT_CERT)")
    p.add_argument("--client-key", metavar="PEM", help="the private key of --client-cert, if "
                   "not in its file (env TQD_CLIENT_KEY)")
    p.set_defaults(func=lambda args: run(fn, args))
    return p


def run(fn: Command, args: argparse.Namespace) -> int:
    """Run a command (sync or async); an error becomes one line on stderr and an exit status."""
    from .api import ClientError, ConnectionFailed

    try:
        rc = fn(args)
        return rc if isinstance(rc, int) else asyncio.run(rc)
    except ConnectionFailed as e:
        print(f"tqd: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (ClientError, ValueError, OSError) as e:
        print(f"tqd: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def client(args: argparse.Namespace) -> Client:
    """A Client for the flags' server(s)."""
    from .api import Client

    # One connection attempt per URL: a server that is down is reported at once.
    return Client(args.url, token=args.token, connect_retries=0, **tls_options(args))


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Client's TLS options from the flags (None: the Client reads TQD_*)."""
    return {"ca_file": args.ca_file, "cert_file": args.client_cert, "key_file": args.client_key}


def console() -> Any:
    from rich.console import Console

    return Console()


def ago(t: float | None) -> str:
    if t is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def age(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n:
            return f"{s / n:.1f}{unit}"
    return f"{s:.1f}s"


def json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} is not JSON: {e}") from None

