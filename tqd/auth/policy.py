"""Who may do what: the roles' rights, what a route needs, and the token → Principal step.

Rights (PROTOCOL.md "Auth"), each within the token's queue globs:

    admin     read, enqueue, work, manage
    producer  read, enqueue
    worker    read, work           (lease, ack, bulk ack, fail, heartbeat, release)
    viewer    read

``manage`` is cancel, retry, redrive, purge, pause, resume and delete queue. ``release``
(giving back a lease one holds) is counted as work, like ``fail``. The replication
endpoints need the cluster token (``--cluster-token-file``), which has no other right;
no client token, not even admin's, reads the log. ``/healthz`` and ``/readyz`` are open.

Every route says what it needs (``Need``: a right and where its queue comes from); the
HTTP layer's route table has that column, with no default.

Verification: the first time a token is seen its scrypt runs in a thread of its own (one
at a time per core, at most 2, so a flood of bad tokens cannot take the event loop or the
default executor); then the token is known by its SHA-256 until the file is re-read.
Tokens that fail are not cached (a flood of them would only evict good ones).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ..errors import Unauthorized
from . import tokens

log = logging.getLogger("tqd.auth")
_CACHE_MAX = 10_000
MIN_CLUSTER_TOKEN_CHARS = 16


class Right(enum.Enum):
    OPEN = "open"  # anyone, no token needed
    READ = "read"
    ENQUEUE = "enqueue"
    WORK = "work"
    MANAGE = "manage"
    CLUSTER = "cluster"  # the cluster token only


class Scope(enum.Enum):
    NONE = "none"  # bound to no queue (/v1/cluster, the open and cluster routes)
    PATH = "path"  # the {queue} of the path
    JOB = "job"  # the queue of the job {id} of the path
    BODY = "body"  # the handler checks the queues it reads (lease, bulk ack, queue list)


class Need(NamedTuple):
    right: Right
    scope: Scope


ROLE_RIGHTS: dict[str, frozenset[Right]] = {
    "admin": frozenset({Right.READ, Right.ENQUEUE, Right.WORK, Right.MANAGE}),
    "producer": frozenset({Right.READ, Right.ENQUEUE}),
    "worker": frozenset({Right.READ, Right.WORK}),
    "viewer": frozenset({Right.READ}),
}
assert set(ROLE_RIGHTS) == set(tokens.ROLES)


@dataclass(frozen=True)
class Principal:
    """Who a request comes from."""

    name: str
    role: str  # one of tokens.ROLES, or "cluster"
    queues: tuple[str, ...] = ()
    _match: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    rate: float | None = None  # its rate limit (tqd.auth.limits): its own, else its role's
    burst: int | None = None  # (tqd.auth.tokens); None: the server's

    @property
    def rights(self) -> frozenset[Right]:
        if self.role == "cluster":
            return frozenset({Right.CLUSTER})
        return ROLE_RIGHTS[self.role]

    @property
    def all_queues(self) -> bool:
        return "*" in self.queues

    def sees(self, queue: str) -> bool:
        return self._match is not None and self._match.fullmatch(queue) is not None


CLUSTER = Principal("cluster", "cluster")


def principal(e: tokens.Entry, roles: dict[str, tokens.RoleLimit] | None = None) -> Principal:
    """A token's Principal; each of its rate and burst is its own, else its role's (`roles`,
    the file's ``[roles.<role>]`` tables), else None: the server's."""
    role = (roles or {}).get(e.role, _NO_LIMIT)
    rate = e.rate if e.rate is not None else role.rate
    burst = e.burst if e.burst is not None else role.burst
    return Principal(e.name, e.role, tuple(e.queues), tokens.matcher(e.queues), rate, burst)


_NO_LIMIT = tokens.RoleLimit()


def read_cluster_token(path: Path) -> bytes:
    """The cluster's shared secret: the file's text, stripped. ValueError if unusable."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read the cluster token file {path}: {e}") from None
    if len(secret) < MIN_CLUSTER_TOKEN_CHARS or not secret.isascii() or not secret.isprintable():
        raise ValueError(f"the cluster token file {path} must hold one printable ASCII secret of "
                         f"at least {MIN_CLUSTER_TOKEN_CHARS} characters (e.g. "
                         "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return secret.encode()


def _warn_if_readable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); chmod 600 it", path, mode & 0o777)


class Credentials(NamedTuple):
    """What a token is checked against: the token file's entries and the cluster secret;
    and the roles' default rate limits."""

    entries: dict[str, tokens.Entry]  # by id
    cluster: bytes | None
    roles: dict[str, tokens.RoleLimit]


def load_credentials(auth_file: str, cluster_token_file: str) -> Credentials:
    """Both files, read and checked (ValueError/TokenFileError with the reason)."""
    entries: dict[str, tokens.Entry] = {}
    roles: dict[str, tokens.RoleLimit] = {}
    if auth_file:
        file = tokens.load_file(Path(auth_file))
        entries, roles = {e.id: e for e in file.entries}, file.roles
        _warn_if_readable(Path(auth_file))
    cluster = None
    if cluster_token_file:
        cluster = read_cluster_token(Path(cluster_token_file))
        _warn_if_readable(Path(cluster_token_file))
    return Credentials(entries, cluster, roles)


class Authenticator:
    """Bearer tokens to Principals. ``enabled``: whether client routes need a token (--auth);
    the cluster routes need the cluster token whenever auth is on or a cluster token file
    is set."""

    def __init__(self, auth_file: str, cluster_token_file: str) -> None:
        self.auth_file = auth_file
        self.cluster_token_file = cluster_token_file
        self.enabled = bool(auth_file)
        self.guards_cluster = bool(auth_file or cluster_token_file)
        self._creds = load_credentials(auth_file, cluster_token_file)
        self._known: dict[bytes, Principal] = {}
        self._generation = 0
        self._pool: ThreadPoolExecutor | None = None

    @property
    def token_count(self) -> int:
        return len(self._creds.entries)

    async def reload(self) -> None:
        """Re-read both files (SIGHUP). A bad file keeps the credentials in force, loudly."""
        loop = asyncio.get_running_loop()
        try:
            creds = await loop.run_in_executor(None, load_credentials, self.auth_file,
                                               self.cluster_token_file)
        except ValueError as e:  # TokenFileError too
            log.error("reload refused, the tokens in force stay: %s", e)
            return
        self._creds, self._known = creds, {}
        self._generation += 1
        log.info("reloaded the credentials: %d tokens", len(creds.entries))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    async def authenticate(self, header: str | None) -> Principal:
        """The Principal of an ``Authorization`` header's bearer token; Unauthorized if there
        is none or it is not valid."""
        if not header:
            raise Unauthorized("this call needs a token: Authorization: Bearer <token>")
        scheme, _, token = header.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be: Bearer <token>")
        raw = token.encode("utf-8", "surrogateescape")
        cluster = self._creds.cluster
        if cluster is not None and hmac.compare_digest(raw, cluster):
            return CLUSTER
        digest = hashlib.sha256(raw).digest()
        known = self._known.get(digest)
        if known is not None:
            return known
        return await self._verify(token, digest)

    async def _verify(self, token: str, digest: bytes) -> Principal:
        tid = tokens.token_id(token)
        entry = self._creds.entries.get(tid) if tid is not None else None
        if entry is None:
            raise Unauthorized("unknown or revoked token")
        generation = self._generation
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=min(2, os.cpu_count() or 1),
                                            thread_name_prefix="tqd-auth")
        ok = await asyncio.get_running_loop().run_in_executor(self._pool, tokens.verify, token,
                                                              entry.hash)
        if not ok:
            raise Unauthorized("unknown or revoked token")
        if generation != self._generation:  # re-read meanwhile: is it still there?
            return await self._verify(token, digest)
        who = principal(entry, self._creds.roles)
        if len(self._known) >= _CACHE_MAX:
            self._known.clear()
        self._known[digest] = who
        return who
