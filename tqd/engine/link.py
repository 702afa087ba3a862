"""The wire between the server and its writer process: messages, answers, frames.

Parent to child: frames (u32 little-endian length, msgpack body) of lists of messages
(``Msg``: ops, long-poll parks and unparks, log pins, and the cluster's gate, term, apply
and restore). Child to parent: reply frames ``(earliest due ms or None, term, seq,
[(rid, OK|ERR, JSON bytes)])``, the position being the log's after the transaction the
answers come from. An answer is decoded as its op's declared Result (ops.py), except a
lease's jobs, which cross as raw JSON (the server writes them out again as they are).
"""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from ..queue import ops
from ..storage.log import Position

_LEN = struct.Struct("<I")
READY = b"tqd-writer-ready"


# ---- messages (parent -> child) ------------------------------------------------


class OpMsg(msgspec.Struct, tag=0, array_like=True):
    rid: int
    op: ops.Op


class ParkMsg(msgspec.Struct, tag=1, array_like=True):
    rid: int
    queues: list[str]
    max: int
    worker: str | None
    timeout: float | None


class UnparkMsg(msgspec.Struct, tag=2, array_like=True):
    rid: int


class UnparkAllMsg(msgspec.Struct, tag=3, array_like=True):
    pass


class StopMsg(msgspec.Struct, tag=4, array_like=True):
    pass


class PinMsg(msgspec.Struct, tag=5, array_like=True):
    """Keep the log from ``seq`` on for ``follower`` (seq 0: let go of it)."""

    follower: str
    seq: int


class ApplyMsg(msgspec.Struct, tag=6, array_like=True):
    """Follower: apply these log entries of the leader (answer: the position after them)."""

    rid: int
    entries: list[bytes]


class RestoreMsg(msgspec.Struct, tag=7, array_like=True):
    """Follower: replace the store with the snapshot file at ``path`` (answer: its position)."""

    rid: int
    path: str


class TermMsg(msgspec.Struct, tag=8, array_like=True):
    """Leader: begin ``term`` (write its marker; answer: the position after it)."""

    rid: int
    term: int


class GateMsg(msgspec.Struct, tag=9, array_like=True):
    """Take writes until ``until`` (time.monotonic(), shared by the host's processes); 0
    closes the gate and answers every parked long-poll with nothing."""

    until: float


class StatsMsg(msgspec.Struct, tag=10, array_like=True):
    """What the writer measured (answer: tqd.engine.stats.Stats as JSON)."""

    rid: int


class WatchMsg(msgspec.Struct, tag=11, array_like=True):
    """Report these jobs when a commit finishes them (answered once they are watched;
    rid 0: stop watching them, no answer)."""

    rid: int
    ids: list[str]


class BadMsg:
    """A message that failed to decode (never sent; made by the receiver)."""

    def __init__(self, rid: int, message: str) -> None:
        self.rid, self.message = rid, message


Msg = (OpMsg | ParkMsg | UnparkMsg | UnparkAllMsg | StopMsg | PinMsg | ApplyMsg | RestoreMsg
       | TermMsg | GateMsg | StatsMsg | WatchMsg)
Control = ApplyMsg | RestoreMsg | TermMsg
OK, ERR = 0, 1
# reply frame: (earliest due ms written or None, term, seq, [(rid, OK|ERR, JSON bytes)]); the
# position (term, seq) is the log's after the transaction that the answers come from
Reply = tuple[int | None, int, int, list[tuple[int, int, bytes]]]


class ReplyFrame(msgspec.Struct, array_like=True):
    """A reply frame as read: a Reply, and then the watched jobs its transaction finished
    (sent only when there are some)."""

    due: int | None
    term: int
    seq: int
    items: list[tuple[int, int, bytes]]
    finished: list[str] = []

_msgs_enc = msgspec.msgpack.Encoder()
_msgs_dec = msgspec.msgpack.Decoder(list[Msg])
_raw_list_dec = msgspec.msgpack.Decoder(list[msgspec.Raw])
_msg_dec = msgspec.msgpack.Decoder(Msg)
_head_dec = msgspec.msgpack.Decoder(list[Any])
_reply_dec = msgspec.msgpack.Decoder(ReplyFrame)
_json = msgspec.json.Encoder()
_ERR_DEC = msgspec.json.Decoder(dict[str, Any])
# Each answer is decoded as its op's declared Result (ops.py), except a lease's jobs: they
# cross as raw JSON, because the server only writes them out again as NDJSON lines, so
# decoding them here would cost time and tie this link to the record's field types.
_DEC: dict[type, msgspec.json.Decoder[Any]] = {
    t: msgspec.json.Decoder(list[msgspec.Raw] if t is ops.Lease else t.Result)
    for t in ops.Op.__args__
}
_LEASE_DEC = _DEC[ops.Lease]


class _PosDecoder:
    """The answer of a cluster message: a position."""

    def decode(self, body: bytes) -> Position:
        return Position(*_pos_dec.decode(body))


_pos_dec = msgspec.json.Decoder(tuple[int, int])
_POS_DEC: Any = _PosDecoder()


def _frame(body: bytes) -> bytes:
    return _LEN.pack(len(body)) + body


def _split(buf: bytearray) -> list[bytes]:
    """Take the complete frames off the front of buf."""
    out = []
    pos = 0
    while len(buf) - pos >= 4:
        (n,) = _LEN.unpack_from(buf, pos)
        if len(buf) - pos - 4 < n:
            break
        out.append(bytes(buf[pos + 4:pos + 4 + n]))
        pos += 4 + n
    del buf[:pos]
    return out
