"""Encryption at rest: the same transactions, sealing and opening job data.

With a keyring (``--encryption-key-file``, crypt.py) the ``spec`` and ``extra`` values are
sealed before they are put (so the log, the snapshots and the followers carry ciphertext
only) and opened when read. ``Store`` picks these classes only when it has keys, so a plain
store's transactions do no extra work at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..queue.records import JobSpec, Meta, QStat
from .log import EXTRA, SPEC, LocalMeta
from .readtx import ReadTx
from .schema import MAX_ID_BYTES, encoder, spec_decoder
from .tx import Tx

if TYPE_CHECKING:
    from .crypt import Keyring
    from .store import Store


def _sealed_get_spec(self: SealedReadTx | SealedTx, jid: str) -> JobSpec | None:
    k = jid.encode()
    if not 0 < len(k) <= MAX_ID_BYTES:
        return None
    raw = self.txn.get(k, db=self._spec)
    return None if raw is None else spec_decoder.decode(self.keys.open(SPEC, k, raw))


def _sealed_get_extra(self: SealedReadTx | SealedTx, jid: str, kind: bytes) -> bytes | None:
    k = jid.encode()
    if not 0 < len(k) <= MAX_ID_BYTES:
        return None
    k += b"\x00" + kind
    raw = self.txn.get(k, db=self._extra)
    return None if raw is None else bytes(self.keys.open(EXTRA, k, raw))


class SealedReadTx(ReadTx):
    """ReadTx of an encrypted store: spec and extra values are opened as they are read."""

    def __init__(self, store: Store, txn: Any) -> None:
        super().__init__(store, txn)
        assert store.keys is not None
        self.keys: Keyring = store.keys

    get_spec = _sealed_get_spec
    get_extra = _sealed_get_extra

    def decode_spec(self, key: bytes, raw: bytes) -> JobSpec:
        return spec_decoder.decode(self.keys.open(SPEC, key, raw))


class SealedTx(Tx):
    """Tx of an encrypted store: spec and extra values are sealed before they are put (and
    recorded in the log), opened as they are read."""

    def __init__(self, store: Store, txn: Any, meta: Meta, local: LocalMeta,
                 qstats: dict[str, QStat]) -> None:
        super().__init__(store, txn, meta, local, qstats)
        assert store.keys is not None
        self.keys: Keyring = store.keys
        self._seal = self.keys.seal

    get_spec = _sealed_get_spec
    get_extra = _sealed_get_extra

    def put_spec(self, jid: str, spec: JobSpec) -> None:
        k = jid.encode()
        self._put(SPEC, k, self.keys.seal(SPEC, k, encoder.encode(spec)))

    def put_extra(self, jid: str, kind: bytes, value: bytes) -> None:
        k = jid.encode() + b"\x00" + kind
        self._put(EXTRA, k, self.keys.seal(EXTRA, k, value))
