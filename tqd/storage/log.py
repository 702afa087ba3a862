"""The replication log: one entry of *effects* per commit, and its blind apply on a follower.

Each write transaction of the leader that changed something appends one entry at the next
position ``(term, seq)``: the puts and deletes it made to the replicated sub-databases, in
order. A follower applies an entry by doing exactly those puts and deletes; it never runs the
queue rules, so its own settings (retention, backoff, key window...), clock, randomness and
even code version cannot make it differ: after the same entries it is byte-identical to the
leader in every replicated sub-database. (MySQL's row-based replication and Litestream's
physical pages make the same choice, for the same reason.)

``seq`` counts entries across terms (1, 2, 3...); ``term`` is the leadership that wrote the
entry and only grows. The first entry of a leadership is a term-start marker with no effects.
A follower refuses a gap (``LogGap``), an older term, or a newer term that does not begin
with its marker (``WrongTerm``): whoever ships it must then resend from the right place or
bootstrap the follower from a snapshot.

What is not replicated is node-local (``LocalMeta``, in the ``local`` sub-database): the log
format version of the store, the log's own bounds, and the position of the last entry.

An entry is a msgpack array ``[term, seq, kind, [db, key, value|nil, db, key, value|nil, ...]]``
(the effects as flat triples: one allocation per effect less on the writer, a byte less each
in the entry); ``db`` indexes ``REPLICATED``, ``nil`` means delete. Format changes bump ``LOG_FORMAT``; a store written by
a newer format is refused at open rather than misread.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec
from msgspec import Struct

LOG_FORMAT = 2  # 1: tqd 0.1 (a log of ops); 2: a log of effects with (term, seq)
EFFECTS, TERM_START = 0, 1
# the replicated sub-databases, in the order their codes in an entry name them
REPLICATED = ("spec", "state", "extra", "ready", "due", "qidx", "dead", "keys", "qstat", "meta")
SPEC, STATE, EXTRA, READY, DUE, QIDX, DEAD, KEYS, QSTAT, META = range(len(REPLICATED))
# node-local sub-databases: the log itself and LocalMeta
LOCAL = ("log", "local")
MAX_KEY_BYTES = 511  # LMDB's default key size limit

Effects = list[int | bytes | None]  # flat triples: db code, key, value (None: delete)


class Position(NamedTuple):
    """Where a log is: the term and seq of its last entry ((0, 0): empty, never written)."""

    term: int
    seq: int


NOWHERE = Position(0, 0)


class LocalMeta(Struct, array_like=True):
    """Node-local bookkeeping, never shipped."""

    version: int = LOG_FORMAT  # format of this store's records and log
    term: int = 0  # term of the last entry
    log_seq: int = 0  # seq of the last entry
    log_first: int = 1  # oldest entry kept
    log_bytes: int = 0  # size of the entries kept

    @property
    def position(self) -> Position:
        return Position(self.term, self.log_seq)


class Entry(Struct, array_like=True, forbid_unknown_fields=True):
    term: int
    seq: int
    kind: int  # EFFECTS or TERM_START
    fx: Effects = msgspec.field(default_factory=list)

    def effects(self) -> list[tuple[int, bytes, bytes | None]]:
        """The (db code, key, value or None) triples, checked for shape (LogRejected)."""
        fx = self.fx
        if len(fx) % 3:
            raise LogRejected(f"entry {self.seq}: its effects are not triples")
        out = []
        for i in range(0, len(fx), 3):
            code, key, value = fx[i], fx[i + 1], fx[i + 2]
            if (type(code) is not int or not 0 <= code < len(REPLICATED) or type(key) is not bytes
                    or not 0 < len(key) <= MAX_KEY_BYTES or isinstance(value, int)):
                raise LogRejected(f"entry {self.seq}: effect {i // 3} names no sub-database or "
                                  "no valid key")
            out.append((code, key, value))
        return out


class LogRejected(Exception):
    """A follower was handed entries that do not continue its log."""


class LogGap(LogRejected):
    pass


class WrongTerm(LogRejected):
    pass


class FormatTooNew(Exception):
    """The store was written by a newer tqd."""


entry_encoder = msgspec.msgpack.Encoder()
entry_decoder = msgspec.msgpack.Decoder(Entry)
local_decoder = msgspec.msgpack.Decoder(LocalMeta)


def check_next(local: LocalMeta, e: Entry) -> None:
    """Raise unless ``e`` may follow the log whose last entry ``local`` describes."""
    if e.seq != local.log_seq + 1:
        raise LogGap(f"entry {e.seq} does not follow {local.log_seq}: entries are missing "
                     "or repeated")
    if e.term < local.term:
        raise WrongTerm(f"entry {e.seq} is of term {e.term}, older than this log's term "
                        f"{local.term}")
    if e.term > local.term and e.kind != TERM_START:
        raise WrongTerm(f"entry {e.seq} opens term {e.term} without its term-start marker")
    if e.kind == TERM_START and e.term == local.term:
        raise WrongTerm(f"entry {e.seq} starts term {e.term} again")
    if e.kind not in (EFFECTS, TERM_START):
        raise LogRejected(f"entry {e.seq} has an unknown kind {e.kind} (a newer tqd?)")
    if e.term < 1:
        raise WrongTerm(f"entry {e.seq} has term {e.term}: terms start at 1")
    if e.kind == TERM_START and e.fx:
        raise LogRejected(f"entry {e.seq}: a term-start marker carries no effects")
