"""The `tqd` command: `tqd serve`, the client commands (tqd.client.commands) and
`tqd token` (tqd.auth.commands), `tqd keys` (tqd.storage.keycommands)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from . import config
from .observe import logs


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sp = sub.add_parser("serve", help="run the tqd daemon",
                        description="Run the tqd daemon. Every flag can also be set with the "
                        "TQD_* environment variable shown, or in a TOML config file (--config); "
                        "flags win over the environment, the environment over the file.")
    sp.add_argument("--config", default=None, metavar="FILE",
                    help="TOML file of settings, by field name (lease_timeout_s = 30) or flag "
                    "name (data = \"/var/lib/tqd\") (env TQD_CONFIG)")
    for f in config.settings_fields():
        sp.add_argument(config.flag_name(f), dest=f.name, default=None, metavar=f.name.upper(),
                        help=f"{f.metadata.get('help', '')} (default {f.default}; "
                        f"env {config.env_name(f)})")
    sp.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    from .daemon import StartRefused, run
    from .storage.lock import DataDirLocked

    try:
        settings = config.load({f.name: getattr(args, f.name) for f in config.settings_fields()},
                               config_file=args.config)
    except ValueError as e:
        return _refused(f"bad setting: {e}", _asked_format(args))
    logs.setup(settings.log_format, settings.log_level)  # before the fork: the writer's too
    if settings.auth or settings.cluster_token_file:
        from .auth.policy import load_credentials

        try:  # here, before the writer is forked: a bad file is exit 2 with the reason
            load_credentials(settings.auth, settings.cluster_token_file)
        except ValueError as e:
            return _refused(f"bad setting: {e}", settings.log_format)
    if settings.encryption_key_file:
        from .storage import crypt

        try:  # likewise: the server and the writer process each load it again
            crypt.load(settings.encryption_key_file)
        except crypt.KeyFileInvalid as e:
            return _refused(f"bad setting: {e}", settings.log_format)
    try:
        run(settings)
    except StartRefused as e:
        return _refused(str(e), settings.log_format)
    except DataDirLocked as e:
        return _fatal(settings, str(e))
    except SystemExit as e:  # "tqd: cannot listen on ...", "tqd: the writer process ..."
        if not isinstance(e.code, str):
            raise
        return _fatal(settings, e.code.removeprefix("tqd: "))
    return 0


def _asked_format(args: argparse.Namespace) -> str:
    """The log format asked for by flag or environment, when the settings as a whole do not
    load (a config file's is not read then): the error still comes in that format."""
    fmt = args.log_format or os.environ.get("TQD_LOG_FORMAT", "")
    return fmt if fmt in logs.FORMATS else "text"


def _refused(message: str, fmt: str) -> int:
    """A setting that stops the server at start: exit 2 with why, as `tqd: <message>` on
    stderr or, with json logs, as a line of the log."""
    if fmt == "json":
        if not logging.getLogger().handlers:
            logs.setup("json")
        logging.getLogger("tqd").critical(message)
    else:
        print(f"tqd: {message}", file=sys.stderr, flush=True)
    return 2


def _fatal(settings: config.Settings, message: str) -> int:
    """Why the server stopped: `tqd: message` on stderr; with json logs, a line of the log."""
    if settings.log_format == "json":
        logging.getLogger("tqd").critical(message)
    else:
        print(f"tqd: {message}", file=sys.stderr, flush=True)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    from . import __version__

    parser = argparse.ArgumentParser(prog="tqd", description="tqd: a durable job queue server")
    parser.add_argument("--version", action="version", version=f"tqd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    from .auth import commands as token_commands
    from .client import commands
    from .storage import keycommands

    commands.register(sub)
    token_commands.register(sub)
    keycommands.register(sub)
    args = parser.parse_args(argv)
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
