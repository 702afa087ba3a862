"""How the store's keys and values are encoded: the byte layouts and codecs that the
Store and both kinds of transaction share (the sub-databases and their keys are tabled in
store.py's docstring).

Integers in keys are big-endian, so keys sort as their numbers do; a queue's keys start
with ``q NUL`` (``queue_prefix``); values are msgpack, each codec built once.
"""

from __future__ import annotations

import struct

import msgspec

from ..queue.records import JobSpec, JobState, Meta, QStat
from .log import LOCAL, REPLICATED

U64 = struct.Struct(">Q")  # seqs and ms: log keys, qidx/dead keys' qseq, ready values' ms
DUE_KEY = struct.Struct(">QB")  # due: ms, kind (then the id, or a seq for a batch)
READY_KEY = struct.Struct(">BQ")  # ready, after the queue prefix: 9-priority, ready_seq
encoder = msgspec.msgpack.Encoder()
spec_decoder = msgspec.msgpack.Decoder(JobSpec)
state_decoder = msgspec.msgpack.Decoder(JobState)
qstat_decoder = msgspec.msgpack.Decoder(QStat)
meta_decoder = msgspec.msgpack.Decoder(Meta)
DBS = REPLICATED + LOCAL  # every sub-database, replicated first (effect codes index them)

MAX_ID_BYTES = 400  # a job id longer than this is no job's (LMDB keys end at 511 bytes)


def queue_prefix(queue: str) -> bytes:
    """``q NUL``: how a queue's keys start in ready, qidx, dead and keys."""
    return queue.encode() + b"\x00"
