"""tqd: a durable job queue server."""

__version__ = "0.1.0"
