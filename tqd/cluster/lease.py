"""The leader lease's storage: one small object, written only by conditional writes.

The lease is one JSON object at ``<prefix>/leader/lease.json``. It is never deleted, so
terms are never reused; a leader that leaves writes ``holder: null`` instead. Every write
is conditional: ``create`` succeeds only if there is no object yet, ``swap`` only if the
object's etag is still the one the caller read (compare-and-swap). A lost condition is a
LeaseConflict, and the caller re-reads to learn who won.

The etag is derived from the content (S3: the MD5 of the body; file: its sha256). Two
identical bodies have the same etag, so a write that goes A -> B -> A would let a CAS
that read A succeed wrongly (ABA). Callers therefore bump ``renew_seq`` at every write,
which makes every body unique; the store does not check it.

A timeout or a lost answer leaves a write's outcome unknown: it may have been applied.
The caller re-reads and recognises its own write by (holder, incarnation, term,
renew_seq); the store does not retry conditional writes on its own.

Backends (``open_lease_store``):
  file:///abs/dir      FileLeaseStore, below: flock on a local disk, one host only
  s3://bucket/prefix   S3LeaseStore (lease_s3.py): S3 If-None-Match / If-Match via obstore

Some "S3-compatible" servers (rclone serve s3, s3rver) accept the conditional headers
and overwrite anyway. ``self_test`` catches them before a node trusts the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import math
import os
import re
import time
import urllib.parse
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

import msgspec

LEASE_KEY = "leader/lease.json"
# The lease is a few hundred bytes; anything far larger is not a lease, and is not read.
MAX_LEASE_BYTES = 64 * 1024


class Lease(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """The lease record. New fields get defaults, so that older nodes can read newer ones."""

    v: int = 1
    holder: str | None  # node id; None = released (a clean hand-over)
    incarnation: str = ""  # uuid per process start (tells restarts of one node apart)
    addr: str = ""  # the leader's advertised base URL
    term: int  # fencing token: +1 at every change of holder
    renew_seq: int = 0  # +1 at every write: every body is unique (the etag ABA guard)
    ttl_ms: int
    commit_seq: int = 0
    isr: list[str] = []  # in-sync set (node ids)
    written_at_ms: int = 0  # informational only: never compared across nodes


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Lease)


class LeaseConflict(Exception):
    """A conditional write lost: the object exists (create), its etag changed or it is
    missing (swap), or the store reported a concurrent conditional write (409)."""


class LeaseStoreError(Exception):
    """Transient: the store is unreachable, timed out, failed (5xx), or holds a body that
    is not a lease. The outcome of a write that failed so is unknown; re-read and retry."""


class LeaseStoreUnsafe(Exception):
    """The store does not enforce conditional writes: a lease on it would not be exclusive."""


def decode_lease(body: bytes, where: str) -> Lease:
    """The lease in `body`; LeaseStoreError saying what is wrong if it is not one."""
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as e:  # ValidationError is a DecodeError
        raise LeaseStoreError(f"{where}: the lease body is not a valid lease ({e}); "
                              f"it starts with {body[:80]!r}") from e


def encode_lease(lease: Lease) -> bytes:
    return _encoder.encode(lease)


class LeaseStore(ABC):
    """The lease's storage, over a backend's keyed conditional writes.

    A backend implements four primitives on keys relative to its prefix; the public
    methods apply them to the lease key, and ``self_test`` to a probe key beside it.
    """

    description: str  # e.g. "file:///x/y" or "s3://bucket/prefix", for logs and errors

    async def read(self) -> tuple[Lease, str] | None:
        """The lease and its etag, or None if there is none yet."""
        got = await self._get(LEASE_KEY)
        if got is None:
            return None
        body, etag = got
        return decode_lease(body, f"{self.description}/{LEASE_KEY}"), etag

    async def create(self, lease: Lease) -> str:
        """Write the first lease; its etag. LeaseConflict if one exists."""
        return await self._put_new(LEASE_KEY, encode_lease(lease))

    async def swap(self, lease: Lease, etag: str) -> str:
        """Replace the lease if its etag is still `etag`; the new etag.
        LeaseConflict if it changed or there is no lease."""
        return await self._put_if(LEASE_KEY, encode_lease(lease), etag)

    async def self_test(self) -> None:
        """Check on a fresh probe key that conditional writes are enforced: a second
        create and a CAS with a wrong etag must conflict, a CAS with the right one must
        not. LeaseStoreUnsafe if not; LeaseStoreError if the store cannot be reached."""
        key = f"leader/probe-{uuid.uuid4().hex}.json"
        where = f"{self.description}/{key}"
        try:
            etag = await self._put_new(key, b'{"probe": 1}')
        except LeaseConflict as e:
            raise LeaseStoreUnsafe(f"{where}: creating a fresh probe key reported a "
                                   f"conflict ({e}); the lease cannot be created there") from e
        try:
            try:
                await self._put_new(key, b'{"probe": 2}')
            except LeaseConflict:
                pass
            else:
                raise LeaseStoreUnsafe(
                    f"{self.description} does not enforce create-only writes: creating "
                    f"{key} twice succeeded (If-None-Match: * was ignored). A leader lease needs "
                    f"conditional writes (AWS S3, MinIO, R2, moto do them; rclone serve s3 and "
                    f"s3rver ignore them)")
            try:
                await self._put_if(key, b'{"probe": 3}', _forged(etag))
            except LeaseConflict:
                pass
            else:
                raise LeaseStoreUnsafe(
                    f"{self.description} does not enforce compare-and-swap: a write to {key} "
                    f"with a wrong etag succeeded (If-Match was ignored). A leader lease needs "
                    f"conditional writes")
            try:
                await self._put_if(key, b'{"probe": 4}', etag)
            except LeaseConflict as e:
                raise LeaseStoreUnsafe(f"{where}: a compare-and-swap with the current etag was "
                                       f"refused ({e}); the lease could never be renewed") from e
        finally:
            await self._discard(key)

    async def close(self) -> None:  # noqa: B027 (a hook: most backends hold nothing to close)
        """Release what the store holds; it is not used afterwards."""

    # The backend's primitives, on keys relative to its prefix.

    @abstractmethod
    async def _get(self, key: str) -> tuple[bytes, str] | None:
        """(body, etag), or None if absent."""

    @abstractmethod
    async def _put_new(self, key: str, body: bytes) -> str:
        """Create-only write; the etag. LeaseConflict if the key exists."""

    @abstractmethod
    async def _put_if(self, key: str, body: bytes, etag: str) -> str:
        """Write if the key's etag is `etag`; the new etag. LeaseConflict otherwise."""

    @abstractmethod
    async def _discard(self, key: str) -> None:
        """Delete a probe key, best effort: never raises."""


def _forged(etag: str) -> str:
    """An etag of the same shape as `etag` (quotes, length) that is not `etag`: a strict
    server must answer it with 412, not with 400 for a malformed header."""
    forged = re.sub(r"[0-9A-Za-z]", "0", etag)
    return forged if forged != etag else re.sub(r"0", "1", etag)


class FileLeaseStore(LeaseStore):
    """The lease in a directory: ``<dir>/leader/lease.json``, with CAS by flock.

    One host only: fcntl.flock on a local disk serialises the daemons of one machine; on
    a network file system it may not lock at all. A write takes ``flock(LOCK_EX)`` on
    ``lease.json.lock`` beside the lease, reads and compares the etag (the sha256 of the
    content), writes a temp file, fsyncs it, renames it over the lease and fsyncs the
    directory. Reads take no lock: the rename makes every read see a whole body.

    The lock is waited for at most `timeout_s` (a stopped process holding it must not
    stall the election loop); then LeaseStoreError. All file work runs in threads.
    """

    def __init__(self, root: Path, *, timeout_s: float) -> None:
        self.root = root
        self.timeout_s = timeout_s
        self.description = root.as_uri()

    async def _get(self, key: str) -> tuple[bytes, str] | None:
        return await asyncio.to_thread(self._get_sync, key)

    async def _put_new(self, key: str, body: bytes) -> str:
        return await asyncio.to_thread(self._put_sync, key, body, None)

    async def _put_if(self, key: str, body: bytes, etag: str) -> str:
        return await asyncio.to_thread(self._put_sync, key, body, etag)

    async def _discard(self, key: str) -> None:
        await asyncio.to_thread(self._discard_sync, key)

    def _get_sync(self, key: str) -> tuple[bytes, str] | None:
        path = self.root / key
        try:
            body = _read_bounded(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise LeaseStoreError(f"{self.description}/{key}: cannot read: {e}") from e
        return body, _etag(body)

    def _put_sync(self, key: str, body: bytes, etag: str | None) -> str:
        """Create (etag None) or compare-and-swap, under the key's lock."""
        path = self.root / key
        where = f"{self.description}/{key}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                try:
                    current: str | None = _etag(_read_bounded(path))
                except FileNotFoundError:
                    current = None
                if etag is None and current is not None:
                    raise LeaseConflict(f"{where}: exists already")
                if etag is not None and current is None:
                    raise LeaseConflict(f"{where}: does not exist")
                if etag is not None and current != etag:
                    raise LeaseConflict(f"{where}: etag {etag} is stale (now {current})")
                _write_durably(path, body)
        except OSError as e:
            raise LeaseStoreError(f"{where}: cannot write: {e}") from e
        return _etag(body)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """flock(LOCK_EX) on `path`.lock, polled so that the wait ends at timeout_s: a
        thread blocked in flock could not be called off, and would write after its
        caller had given up."""
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            deadline = time.monotonic() + self.timeout_s
            pause_s = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise LeaseStoreError(f"{self.description}: {path.name}.lock is held by "
                                              f"another writer for over {self.timeout_s:g}s") from None
                    time.sleep(pause_s)
                    pause_s = min(pause_s * 2, 0.01)
            yield  # closing the fd below releases the lock
        finally:
            os.close(fd)

    def _discard_sync(self, key: str) -> None:
        path = self.root / key
        for p in (path, Path(f"{path}.lock")):
            with contextlib.suppress(OSError):
                p.unlink()


def _etag(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _read_bounded(path: Path) -> bytes:
    with path.open("rb") as f:
        body = f.read(MAX_LEASE_BYTES + 1)
    if len(body) > MAX_LEASE_BYTES:
        raise LeaseStoreError(f"{path}: over {MAX_LEASE_BYTES} bytes: not a lease")
    return body


def _write_durably(path: Path, body: bytes) -> None:
    """temp -> fsync -> rename -> fsync dir: after a crash the lease is the old or the new
    body, never a mix. The caller holds the lock, so one temp name is enough."""
    tmp = path.with_name(f"{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        view = memoryview(body)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def open_lease_store(url: str, *, timeout_s: float) -> LeaseStore:
    """The store at `url`: ``file:///abs/dir`` or ``s3://bucket[/prefix]``.

    `timeout_s` bounds each call (for s3 the request timeout; see lease_s3.py for the
    worst case with its one retry). S3 endpoint, region and credentials come from the
    AWS_* environment variables. A malformed URL is a ValueError.
    """
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"lease store timeout must be a positive number of seconds, not {timeout_s!r}")
    u = urllib.parse.urlsplit(url)
    if u.query or u.fragment:
        raise ValueError(f"lease store URL {url!r}: no query or fragment allowed")
    if u.scheme == "file":
        path = urllib.parse.unquote(u.path)
        if u.netloc not in ("", "localhost") or not path.startswith("/"):
            raise ValueError(f"lease store URL {url!r}: a file URL takes an absolute path, "
                             f"as in file:///var/lib/tqd/cluster")
        return FileLeaseStore(Path(path), timeout_s=timeout_s)
    if u.scheme == "s3":
        bucket = u.netloc
        if not bucket or any(c in bucket for c in "@:"):
            raise ValueError(f"lease store URL {url!r}: expected s3://bucket/prefix (credentials "
                             f"and endpoint come from AWS_* environment variables)")
        prefix = u.path.strip("/")
        if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
            raise ValueError(f"lease store URL {url!r}: the prefix has an empty, '.' or '..' part")
        from tqd.cluster.lease_s3 import S3LeaseStore  # obstore is loaded only for s3://

        return S3LeaseStore(bucket, prefix, timeout_s=timeout_s)
    raise ValueError(f"lease store URL {url!r}: the scheme must be file:// or s3://")
