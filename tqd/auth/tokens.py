"""The token file (``--auth FILE``): what it holds, how a token is hashed, create and revoke.

The file is TOML, one ``[[token]]`` table per token, written by ``tqd token create``::

    # tqd access tokens (tqd token create | list | revoke). Tokens are stored hashed.
    [[token]]
    name = "ci"                       # unique; what the audit log calls the caller
    id = "5f0c9a1e"                   # public: picks the entry a token is checked against
    role = "worker"                   # admin | producer | worker | viewer
    queues = ["emails*", "reports"]   # globs: * any run of characters, ? one character
    hash = "scrypt$16384$8$1$<salt, base64>$<derived key, base64>"
    created = "2026-11-30T18:00:00Z"
    rate = 50.0                       # optional: its own requests/s (0: not limited)
    burst = 100                       # optional: its own bucket size

``rate`` and ``burst`` (tqd.auth.limits) win over ``--rate-limit-rps`` and
``--rate-limit-burst`` for this token; a file without them reads as before.

A role's tokens may share a default rate limit, one optional table per role, written by
hand (``tqd token create`` and ``revoke`` keep it)::

    [roles.worker]
    rate = 200.0                      # requests/s of each worker token (0: not limited)
    burst = 400

Each of ``rate`` and ``burst`` is the token's own, else its role's, else the server's
flag. The names are the token's own keys: a role table is a default for its tokens'
fields, so it reads the same.

A token reads ``tqd_<id>_<secret>``: the ``tqd_`` prefix makes a leaked token easy to find
(secret scanners, logs), ``<id>`` (8 hex digits) names its entry, and ``<secret>`` is
``secrets.token_urlsafe(32)`` (256 random bits). The file holds neither the token nor the
secret, only ``scrypt(token, salt)`` with a salt of 16 random bytes per token.

Why scrypt and not HMAC with a server key: nothing else to keep (a second secret file
would have to be guarded, backed up and distributed to every node like this one), and
the hashes alone are useless to whoever copies the file. The cost (about 40 ms of CPU
and 16 MiB per verification) is paid once per token per reload: ``policy.Authenticator``
runs it in a thread of its own and then knows the token by its SHA-256. The id means a
presented token costs at most one scrypt, never one per entry.

Revoking removes the entry. Every write of the file is whole: temp file (mode 0600),
fsync, rename, fsync of the directory, under an exclusive lock on the directory so two
``tqd token`` commands do not lose each other's change.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import math
import os
import re
import secrets
import tomllib
from datetime import UTC, datetime
from fnmatch import translate
from pathlib import Path
from typing import Literal

import msgspec

PREFIX = "tqd_"
ROLES = ("admin", "producer", "worker", "viewer")
Role = Literal["admin", "producer", "worker", "viewer"]
# scrypt cost: n=2^14, r=8 is 16 MiB and ~40 ms on one core (the interactive-login setting
# of the scrypt paper); stored with each hash so it can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 14, 8, 1
_SALT_BYTES, _KEY_BYTES = 16, 32
NAME_RE = re.compile(r"[A-Za-z0-9_.:@-]{1,64}")
GLOB_RE = re.compile(r"[A-Za-z0-9_.:*?-]{1,128}")  # a queue name's characters, plus * and ?
_ID_RE = re.compile(r"[0-9a-f]{8}")
_HEADER = "# tqd access tokens (tqd token create | list | revoke). Tokens are stored hashed.\n"


class TokenFileError(ValueError):
    """The token file cannot be read, or is not valid; the message says where and why."""


class Entry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    id: str
    role: Role
    hash: str
    queues: list[str] = msgspec.field(default_factory=lambda: ["*"])
    created: str = ""
    rate: float | None = None  # requests/s of its own (tqd.auth.limits); 0: not limited
    burst: int | None = None  # its own bucket size


class RoleLimit(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``[roles.<role>]``: the rate limit of the role's tokens that set none of their own."""

    rate: float | None = None
    burst: int | None = None


class TokenFile(msgspec.Struct, frozen=True):
    """What the file holds: the tokens, and the roles' default rate limits."""

    entries: list[Entry]
    roles: dict[str, RoleLimit]


class _Doc(msgspec.Struct, forbid_unknown_fields=True):
    token: list[Entry] = msgspec.field(default_factory=list)
    roles: dict[str, RoleLimit] = msgspec.field(default_factory=dict)


# ---- globs --------------------------------------------------------------------------


def check_glob(glob: str) -> str:
    if not GLOB_RE.fullmatch(glob):
        raise ValueError(f"queue glob {glob!r}: use queue-name characters "
                         "[A-Za-z0-9_.:-] and * or ?, at most 128")
    return glob


def matcher(globs: list[str]) -> re.Pattern[str]:
    """One pattern for all the globs: ``*`` any run of characters, ``?`` one, the rest
    literal (GLOB_RE admits no ``[``, so fnmatch's classes never apply)."""
    return re.compile("|".join(f"(?:{translate(check_glob(g))})" for g in globs) or "(?!)")


def check_rate(rate: float | None, burst: int | None) -> None:
    if rate is not None and not (math.isfinite(rate) and rate >= 0):
        raise ValueError(f"rate {rate!r}: requests per second, a number >= 0 (0: not limited)")
    if burst is not None and burst < 1:
        raise ValueError(f"burst {burst!r}: at least 1")


# ---- hashing ------------------------------------------------------------------------


def new_token(token_id: str) -> str:
    return f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"


def token_id(token: str) -> str | None:
    """The entry id a token names, or None if it is not shaped like one of ours."""
    if not token.startswith(PREFIX):
        return None
    tid, sep, secret = token[len(PREFIX):].partition("_")
    return tid if sep and secret and _ID_RE.fullmatch(tid) else None


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def hash_token(token: str, salt: bytes | None = None) -> str:
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    dk = hashlib.scrypt(token.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                        dklen=_KEY_BYTES)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(dk)}"


def verify(token: str, stored: str) -> bool:
    """Whether token hashes to stored (slow: scrypt; call it off the event loop)."""
    try:
        kind, n, r, p, salt, dk = stored.split("$")
        want = base64.b64decode(dk, validate=True)
        got = hashlib.scrypt(token.encode(), salt=base64.b64decode(salt, validate=True),
                             n=int(n), r=int(r), p=int(p), dklen=len(want),
                             maxmem=256 * int(r) * int(n) + (1 << 20))
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(got, want)


def _check_hash(stored: str) -> None:
    parts = stored.split("$")
    try:
        ok = (len(parts) == 6 and parts[0] == "scrypt" and all(int(x) > 0 for x in parts[1:4])
              and len(base64.b64decode(parts[4], validate=True)) >= 8
              and len(base64.b64decode(parts[5], validate=True)) >= 16)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("hash is not scrypt$N$r$p$salt$key")


# ---- the file -----------------------------------------------------------------------


def parse(text: str, where: str = "token file") -> list[Entry]:
    """The entries of a token file's text, checked (see read). Raises TokenFileError."""
    return read(text, where).entries


def read(text: str, where: str = "token file") -> TokenFile:
    """A token file's text, checked (unique names and ids, known roles, valid globs,
    hashes and rates). Raises TokenFileError."""
    try:
        doc = msgspec.convert(tomllib.loads(text), _Doc)
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as e:
        raise TokenFileError(f"{where}: {e}") from None
    for role, lim in doc.roles.items():
        try:
            if role not in ROLES:
                raise ValueError(f"no such role; one of {', '.join(ROLES)}")
            check_rate(lim.rate, lim.burst)
        except ValueError as err:
            raise TokenFileError(f"{where}: [roles.{role}]: {err}") from None
    names: set[str] = set()
    ids: set[str] = set()
    for n, t in enumerate(doc.token, 1):
        try:
            if not NAME_RE.fullmatch(t.name):
                raise ValueError(f"name {t.name!r} is not [A-Za-z0-9_.:@-]{{1,64}}")
            if not _ID_RE.fullmatch(t.id):
                raise ValueError(f"id {t.id!r} is not 8 hex digits")
            if t.name in names or t.id in ids:
                raise ValueError(f"name {t.name!r} or id {t.id!r} is used twice")
            if not t.queues:
                raise ValueError("queues is empty")
            matcher(t.queues)
            _check_hash(t.hash)
            check_rate(t.rate, t.burst)
        except ValueError as err:
            raise TokenFileError(f"{where}: token {n} ({t.name!r}): {err}") from None
        names.add(t.name)
        ids.add(t.id)
    return TokenFile(doc.token, doc.roles)


def load(path: Path) -> list[Entry]:
    return load_file(path).entries


def load_file(path: Path) -> TokenFile:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"cannot read the token file {path}: {e}") from None
    return read(text, f"token file {path}")


def _toml_str(s: str) -> str:
    """A TOML basic string: quote and backslash escaped, control characters as \\uXXXX."""
    return '"' + "".join(
        "\\" + c if c in '"\\' else f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
        for c in s) + '"'


def _limit_lines(rate: float | None, burst: int | None) -> str:
    return ("" if rate is None else f"rate = {float(rate)!r}\n") + (
        "" if burst is None else f"burst = {int(burst)}\n")


def render(entries: list[Entry], roles: dict[str, RoleLimit] | None = None) -> str:
    out = [_HEADER]
    for role, lim in sorted((roles or {}).items()):
        out.append(f"\n[roles.{role}]\n{_limit_lines(lim.rate, lim.burst)}")
    for e in entries:
        q = ", ".join(_toml_str(g) for g in e.queues)
        out.append(f"\n[[token]]\nname = {_toml_str(e.name)}\nid = {_toml_str(e.id)}\n"
                   f"role = {_toml_str(e.role)}\nqueues = [{q}]\nhash = {_toml_str(e.hash)}\n"
                   f"created = {_toml_str(e.created)}\n{_limit_lines(e.rate, e.burst)}")
    return "".join(out)


def _write(path: Path, entries: list[Entry], roles: dict[str, RoleLimit]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(entries, roles))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class _Locked:
    """An exclusive lock on the file's directory while the file is read and rewritten."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> TokenFile:
        self.fd = os.open(self.path.parent, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return load_file(self.path) if self.path.exists() else TokenFile([], {})

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)  # releases the lock


def create(path: Path, name: str, role: str, queues: list[str], *, rate: float | None = None,
           burst: int | None = None) -> tuple[str, Entry]:
    """A new token: its entry is added to the file (created, mode 0600, if missing).
    Returns the token (shown once, stored nowhere) and its entry. ValueError on bad input.
    `rate` and `burst`: its own rate limit (None: the server's)."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"name {name!r}: use [A-Za-z0-9_.:@-], at most 64")
    if role not in ROLES:
        raise ValueError(f"role {role!r}: one of {', '.join(ROLES)}")
    if not queues:
        raise ValueError("queues: at least one glob")
    matcher(queues)
    check_rate(rate, burst)
    with _Locked(path) as file:
        entries = file.entries
        if any(e.name == name for e in entries):
            raise ValueError(f"a token named {name!r} exists (revoke it first)")
        used = {e.id for e in entries}
        tid = secrets.token_hex(4)
        while tid in used:
            tid = secrets.token_hex(4)
        token = new_token(tid)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = Entry(name=name, id=tid, role=role, hash=hash_token(token),  # type: ignore[arg-type]
                      queues=list(queues), created=now, rate=rate, burst=burst)
        _write(path, [*entries, entry], file.roles)
    return token, entry


def revoke(path: Path, name: str) -> Entry:
    """Remove the token called name from the file; KeyError if there is none."""
    with _Locked(path) as file:
        gone = [e for e in file.entries if e.name == name]
        if not gone:
            raise KeyError(name)
        _write(path, [e for e in file.entries if e.name != name], file.roles)
    return gone[0]
