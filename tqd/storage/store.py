"""The store: the LMDB environment (``Store``), its schema, and where its transactions live.

Sub-databases (keys are sortable bytes; ``q`` is the queue name, never
containing NUL; integers are big-endian):

=========  =========================================  ===========================
db         key                                        value
=========  =========================================  ===========================
spec       id                                         JobSpec (written once)
state      id                                         JobState (small)
extra      id NUL kind(r|p|e)                         result / progress / errors
ready      q NUL (9-priority):u8 ready_seq:u64        ready_ms:u64 id
due        ms:u64 kind:u8 id                          -
qidx       q NUL qseq:u64                             id   (listing, oldest first)
dead       q NUL qseq:u64                             id
keys       q NUL key                                  id   (idempotency)
qstat      q                                          QStat (counters, paused)
meta       b"meta"                                    Meta (sequences, last op time)
log        seq:u64                                    log.Entry (node-local)
local      b"local"                                   log.LocalMeta (node-local)
=========  =========================================  ===========================

Every put and delete to the replicated sub-databases (all but ``log`` and
``local``) is also recorded in the transaction (``Tx.fx``) and written as the
commit's log entry (see log.py).

With a keyring (``--encryption-key-file``, crypt.py) the ``spec`` and ``extra`` values are
sealed before they are put (so the log, the snapshots and the followers carry ciphertext
only) and opened when read: ``SealedReadTx``/``SealedTx`` (sealed.py). Without one, the
plain classes do no extra work at all.

Leasing takes the first entries under ``q NUL``: O(log n) whatever the backlog.
Every put and delete is counted (``Tx.puts``/``Tx.dels``) so benchmarks and
tests can report write amplification per transition.

The modules: ``Store`` here (open, upgrade, snapshot, a follower's apply); the key and
value encodings in schema.py; ``ReadTx`` in readtx.py; ``Tx`` and ``StorageFailed`` in
tx.py; the sealed variants in sealed.py. All of them can be imported from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import lmdb
import msgspec

from ..queue.records import Meta, MetaV1, QStat
from .log import (
    LOG_FORMAT,
    REPLICATED,
    FormatTooNew,
    LocalMeta,
    LogRejected,
    Position,
    check_next,
    entry_decoder,
    local_decoder,
)
from .readtx import ReadTx
from .schema import DBS, MAX_ID_BYTES, U64, encoder, meta_decoder
from .sealed import SealedReadTx, SealedTx
from .tx import StorageFailed, Tx, truncate_log

if TYPE_CHECKING:
    from .crypt import Keyring

__all__ = ["MAX_ID_BYTES", "ReadTx", "SealedReadTx", "SealedTx", "StorageFailed", "Store", "Tx"]


class Store:
    """The LMDB environment. Writes only through ``write()``, from the one writer (the writer
    process), or ``apply_entries`` on a follower; the server process opens it read-only."""

    def __init__(self, path: Path, map_size: int, readonly: bool = False,
                 keys: Keyring | None = None) -> None:
        """``readonly``: this process only reads; another one (the writer process) writes.
        ``keys``: seal job data with them (and open it); None: store it as it is."""
        self.keys = keys
        self._read_tx: type[ReadTx] = ReadTx if keys is None else SealedReadTx
        self._write_tx: type[Tx] = Tx if keys is None else SealedTx
        path.mkdir(parents=True, exist_ok=True)
        self.env = lmdb.open(
            str(path / "lmdb"),
            readonly=readonly,
            map_size=map_size,
            max_dbs=len(DBS),
            subdir=True,
            sync=True,
            metasync=True,
            readahead=False,
            max_readers=512,
        )
        self.dbs: dict[str, Any] = {name: self.env.open_db(name.encode()) for name in DBS}
        self.codes: list[Any] = [self.dbs[name] for name in REPLICATED]  # by effect code
        if not readonly:
            self._upgrade()

    def _upgrade(self) -> None:
        """Give a new store its LocalMeta; bring a format-1 store (tqd 0.1) to this format;
        refuse a store of a newer format."""
        with self.env.begin(write=True) as t:
            raw = t.get(b"local", db=self.dbs["local"])
            if raw is not None:
                local = local_decoder.decode(raw)
                if local.version > LOG_FORMAT:
                    raise FormatTooNew(
                        f"the data dir was written by a newer tqd (store format {local.version}; "
                        f"this tqd reads format {LOG_FORMAT}): run the newer tqd")
                return
            local = LocalMeta()
            old = t.get(b"meta", db=self.dbs["meta"])
            if old is not None:  # format 1: Meta held the log's bounds; the log held ops
                v1 = msgspec.msgpack.decode(old, type=MetaV1)
                t.put(b"meta", encoder.encode(Meta(v1.seq, v1.id_ms, v1.id_n, v1.hexlike_ids)),
                      db=self.dbs["meta"])
                t.drop(self.dbs["log"], delete=False)  # ops no follower could read
                local.log_seq, local.log_first = v1.log_seq, v1.log_seq + 1
            t.put(b"local", encoder.encode(local), db=self.dbs["local"])

    def close(self) -> None:
        self.env.close()

    def read(self) -> ReadTx:
        return self._read_tx(self, self.env.begin(buffers=False))

    def write(self, meta: Meta, local: LocalMeta, qstats: dict[str, QStat]) -> Tx:
        return self._write_tx(self, self.env.begin(write=True), meta, local, qstats)

    def load_meta(self) -> Meta:
        with self.env.begin() as t:
            raw = t.get(b"meta", db=self.dbs["meta"])
        return meta_decoder.decode(raw) if raw else Meta()

    def load_local(self) -> LocalMeta:
        with self.env.begin() as t:
            return _read_local(t, self.dbs["local"])

    def position(self) -> Position:
        return self.load_local().position

    def snapshot(self, dest: Path) -> Position:
        """A consistent copy of the whole store in ``dest`` (an LMDB environment directory,
        created; it must not hold one), and the log position it is at. The copy is made
        inside one read transaction: it is exactly the store as of one commit, while the
        writer goes on. A follower opens it and fetches the log from that position."""
        dest.mkdir(parents=True, exist_ok=False)
        with self.env.begin() as t:
            pos = _read_local(t, self.dbs["local"]).position
            self.env.copy(str(dest), compact=True, txn=t)
        return pos

    def apply_entries(self, raws: list[bytes], keep_entries: int, keep_bytes: int) -> Position:
        """Follower side: apply log entries (as the leader wrote them) in one transaction,
        synced, and keep them in this store's own log at the same positions. Refuses
        (LogRejected, nothing applied) entries that do not continue this log."""
        dbs = self.codes
        with self.env.begin(write=True) as t:
            local = _read_local(t, self.dbs["local"])
            for raw in raws:
                try:
                    e = entry_decoder.decode(raw)
                except (msgspec.DecodeError, TypeError) as exc:
                    raise LogRejected(f"an entry after {local.log_seq} does not decode: {exc}") from exc
                check_next(local, e)
                for code, key, value in e.effects():
                    if value is None:
                        if not t.delete(key, db=dbs[code]):  # the leader logs only real deletes
                            raise LogRejected(f"entry {e.seq} deletes a key this store does "
                                              f"not hold (in {REPLICATED[code]}): it has diverged")
                    else:
                        t.put(key, value, db=dbs[code])
                t.put(U64.pack(e.seq), raw, db=self.dbs["log"])
                local.term, local.log_seq = e.term, e.seq
                local.log_bytes += len(raw)
            truncate_log(t, self.dbs["log"], local, keep_entries, keep_bytes, None, 0)
            t.put(b"local", encoder.encode(local), db=self.dbs["local"])
        return local.position


def _read_local(t: Any, db: Any) -> LocalMeta:
    raw = t.get(b"local", db=db)
    return local_decoder.decode(raw) if raw is not None else LocalMeta()
