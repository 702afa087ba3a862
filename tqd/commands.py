"""Client subcommands of `tqd` (enqueue, queues, jobs, ...): registered into the CLI."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client commands to the `tqd` parser (none yet besides `serve`)."""
