"""Encryption at rest: the key file and the value codec (``--encryption-key-file``).

What is encrypted: the values that hold what clients sent or workers reported, i.e. the
``spec`` value (JobSpec: payload, type, key, queue...) and the ``extra`` values (result,
progress, error details). Keys of every sub-database and the other values stay plaintext:
job ids, queue names, idempotency keys (``keys`` db) and the indexes (``ready``, ``due``,
``qidx``, ``dead``) are names a client chose to be looked up by, not payload; ``state``
holds times, counters and the worker name. Tokens (leases) are random.

A sealed value::

    MAGIC:u8  key_id:u32 (big-endian)  nonce:12 bytes  AES-256-GCM(value) + tag:16 bytes

with ``MAGIC, key_id, db code, the value's LMDB key`` as associated data: a value moved to
another job, another kind or another sub-database does not decrypt. ``MAGIC`` (0xC1) is a
byte no plaintext value starts with (msgpack never uses it; it is not UTF-8, so no JSON
text starts with it): a store switched to encryption reads its older plaintext values as
they are and writes new ones sealed. Old values are not re-encrypted (they go as jobs are
purged). Integrity against someone who can *write* the data file is not the goal: such a
person can put a plaintext value where a sealed one was.

The key file (JSON, mode 0600, made by ``tqd keys create`` and ``tqd keys rotate``)::

    {"keys": [{"id": 1, "created": "2026-11-30T18:00:00Z", "key": "<base64 of 32 bytes>"}]}

The key with the highest id seals new values; every key opens the values it sealed. Keys are
read once at start (by the server and by the writer process): after a rotation, restart.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import struct
import tempfile
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import Internal
from .log import REPLICATED

log = logging.getLogger("tqd.storage.crypt")

MAGIC = 0xC1
_HEAD = struct.Struct(">BI")
NONCE_BYTES = 12
KEY_BYTES = 32
OVERHEAD = _HEAD.size + NONCE_BYTES + 16  # bytes a sealed value adds (header, nonce, tag)
_MAX_ID = 2**32 - 1


class KeyFileInvalid(ValueError):
    """A key file that is missing, unreadable, readable by others, or malformed."""


class Undecryptable(Internal):
    """A stored value that the keys at hand cannot open (a key id missing from the key file,
    or a corrupt value): that request fails with 500, the server goes on."""


class Keyring:
    """The keys of a key file: ``seal`` with the newest, ``open`` with the one a value names."""

    def __init__(self, keys: dict[int, bytes]) -> None:
        if not keys:
            raise KeyFileInvalid("the key file holds no key")
        self.ids = sorted(keys)
        self.write_id = self.ids[-1]
        self._aead = {i: AESGCM(k) for i, k in keys.items()}
        self._seal = self._aead[self.write_id].encrypt
        self._head = _HEAD.pack(MAGIC, self.write_id)

    def seal(self, code: int, key: bytes, value: bytes) -> bytes:
        """``value`` of ``key`` in the sub-database of effect ``code``, sealed."""
        head, nonce = self._head, os.urandom(NONCE_BYTES)
        return head + nonce + self._seal(nonce, value, head + bytes((code,)) + key)

    def open(self, code: int, key: bytes, value: bytes) -> bytes:
        """The plaintext of a stored value (a plaintext one as it is). Undecryptable if it
        cannot be opened."""
        if not value or value[0] != MAGIC:
            return value  # written before the store was switched to encryption
        if len(value) < OVERHEAD:
            raise _refuse(code, key, "it is too short to be a sealed value")
        _, kid = _HEAD.unpack_from(value)
        aead = self._aead.get(kid)
        if aead is None:
            raise _refuse(code, key, f"it was sealed with key id {kid}, which the key file "
                          f"does not hold (it holds {self.ids})")
        head, nonce = value[:_HEAD.size], value[_HEAD.size:_HEAD.size + NONCE_BYTES]
        try:
            return aead.decrypt(nonce, value[_HEAD.size + NONCE_BYTES:], head + bytes((code,)) + key)
        except InvalidTag:
            raise _refuse(code, key, f"it does not authenticate under key id {kid} (corrupt, "
                          "or moved from another key)") from None

    @staticmethod
    def key_id(value: bytes) -> int | None:
        """The key id a stored value was sealed with (None: a plaintext value)."""
        if len(value) < OVERHEAD or value[0] != MAGIC:
            return None
        return int(_HEAD.unpack_from(value)[1])


def _refuse(code: int, key: bytes, why: str) -> Undecryptable:
    jid, _, kind = key.decode(errors="backslashreplace").partition("\x00")
    db = REPLICATED[code] if 0 <= code < len(REPLICATED) else str(code)
    where = f"job {jid}, {db}{' ' + kind if kind else ''}"
    log.error("cannot decrypt the stored value of %s: %s", where, why)
    return Undecryptable(f"a stored value cannot be decrypted ({where}): {why}")


# ---- the key file -------------------------------------------------------------------------

def load(path: str) -> Keyring | None:
    """The keyring of the key file at ``path`` (None for ""). KeyFileInvalid, with the
    reason, for a file that cannot be used."""
    if not path:
        return None
    return Keyring(_read(Path(path), check_mode=True))


def _read(p: Path, check_mode: bool) -> dict[int, bytes]:
    try:
        st = p.stat()
        text = p.read_text()
    except OSError as e:
        raise KeyFileInvalid(f"encryption key file {p}: {e.strerror or e}") from None
    if check_mode and st.st_mode & 0o077:
        raise KeyFileInvalid(f"encryption key file {p} is readable by others (mode "
                             f"{st.st_mode & 0o777:o}): chmod 600 it")
    try:
        doc = json.loads(text)
        entries = doc["keys"]
        if not isinstance(entries, list):
            raise TypeError("'keys' is not a list")
        keys: dict[int, bytes] = {}
        for ent in entries:
            kid, raw = ent["id"], base64.b64decode(ent["key"], validate=True)
            if type(kid) is not int or not 0 < kid <= _MAX_ID:
                raise ValueError(f"key id {kid!r} is not an integer in 1..{_MAX_ID}")
            if kid in keys:
                raise ValueError(f"key id {kid} appears twice")
            if len(raw) != KEY_BYTES:
                raise ValueError(f"key {kid} is {len(raw)} bytes, not {KEY_BYTES} (AES-256)")
            keys[kid] = raw
    except (ValueError, TypeError, KeyError) as e:
        why = f"missing field {e}" if isinstance(e, KeyError) else str(e)
        raise KeyFileInvalid(f"encryption key file {p} is malformed: {why}") from None
    if not keys:
        raise KeyFileInvalid(f"encryption key file {p} holds no key")
    return keys


def _entries(p: Path) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(p.read_text())["keys"]
    return entries


def create(path: str) -> int:
    """A new key file with one key; refuses to replace a file. Returns the key id."""
    p = Path(path)
    if p.exists():
        raise KeyFileInvalid(f"{p} exists: `tqd keys rotate` adds a key to it")
    _write(p, [_new_entry(1)])
    return 1


def rotate(path: str) -> int:
    """Add a key (the new write key) to an existing key file, keeping the old ones (values
    sealed with them stay readable). Returns the new key id."""
    p = Path(path)
    keys = _read(p, check_mode=False)
    kid = max(keys) + 1
    _write(p, [*_entries(p), _new_entry(kid)])
    return kid


def listing(path: str) -> list[tuple[int, str, bool]]:
    """(id, created, is the write key) of each key, oldest first; never the key bytes."""
    p = Path(path)
    keys = _read(p, check_mode=False)
    created = {int(str(e["id"])): str(e.get("created", "")) for e in _entries(p)}
    top = max(keys)
    return [(k, created.get(k, ""), k == top) for k in sorted(keys)]


def _new_entry(kid: int) -> dict[str, object]:
    return {"id": kid, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "key": base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()}


def _write(p: Path, entries: list[dict[str, object]]) -> None:
    """temp (0600) -> fsync -> rename -> fsync dir: a crash leaves the old file or the new."""
    d = p.parent if str(p.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{p.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": entries}, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dfd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
