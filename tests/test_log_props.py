"""Properties of the follower side of the replication log, against a model that is a dict
per sub-database (puts and deletes applied in order), and against hostile input: whatever
bytes a follower is handed, it applies a batch whole or refuses it whole (LogRejected), and
never fails any other way."""

from __future__ import annotations

import tempfile
from pathlib import Path

import hypothesis.strategies as st
import msgspec
from hypothesis import HealthCheck, given, settings

from tqd.storage import log
from tqd.storage.log import EFFECTS, TERM_START, Entry, LogRejected
from tqd.storage.store import Store

MAP = 1 << 24
Model = dict[str, dict[bytes, bytes]]

keys = st.one_of(st.sampled_from([b"a", b"b", b"q\x00k", b"\xff" * 8]), st.binary(min_size=1, max_size=12))
effects = st.lists(st.tuples(st.integers(0, len(log.REPLICATED) - 1), keys,
                             st.one_of(st.none(), st.binary(max_size=40))), max_size=12)
# a history: per entry, either a new term (a marker) or a list of effects
steps = st.lists(st.one_of(st.just(None), effects), min_size=1, max_size=25)


def entries_of(history: list[list[tuple[int, bytes, bytes | None]] | None]) -> list[bytes]:
    out, term = [], 1
    out.append(log.entry_encoder.encode(Entry(1, 1, TERM_START)))
    for fx in history:
        if fx is None:
            term += 1
            out.append(log.entry_encoder.encode(Entry(term, len(out) + 1, TERM_START)))
        else:
            flat = [x for effect in fx for x in effect]  # the entry's flat triples
            out.append(log.entry_encoder.encode(Entry(term, len(out) + 1, EFFECTS, flat)))
    return out


def model_of(history: list[list[tuple[int, bytes, bytes | None]] | None]) -> Model:
    m: Model = {name: {} for name in log.REPLICATED}
    for fx in history:
        for code, key, value in fx or []:
            db = m[log.REPLICATED[code]]
            if value is None:
                db.pop(key, None)
            else:
                db[key] = value
    return m


def contents(store: Store) -> Model:
    with store.env.begin() as t:
        return {name: {bytes(k): bytes(v) for k, v in t.cursor(db=store.dbs[name])}
                for name in log.REPLICATED}


def as_leader_wrote(history: list[list[tuple[int, bytes, bytes | None]] | None]) -> list:
    """The history with each delete of a key that is not there dropped: a leader logs only
    the deletes that happened (a follower takes any other as a sign it has diverged)."""
    held: set[tuple[int, bytes]] = set()
    out: list[list[tuple[int, bytes, bytes | None]] | None] = []
    for fx in history:
        if fx is None:
            out.append(None)
            continue
        kept = []
        for code, key, value in fx:
            if value is None and (code, key) not in held:
                continue
            (held.discard if value is None else held.add)((code, key))
            kept.append((code, key, value))
        out.append(kept)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps.map(as_leader_wrote), cut=st.integers(1, 8))
def test_applied_entries_give_the_model_whatever_the_batching(history: list, cut: int) -> None:
    raws = entries_of(history)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d), MAP)
        try:
            for i in range(0, len(raws), cut):
                store.apply_entries(raws[i:i + cut], 1 << 20, 1 << 30)
            assert contents(store) == model_of(history)
            assert store.position().seq == len(raws)
            with store.read() as t:  # the follower keeps the very bytes, at the same seqs
                assert [raw for _, raw in t.log_entries(0, 1 << 20)] == raws
        finally:
            store.close()


wild_fx = st.one_of(
    st.lists(st.tuples(st.integers(-2, 20), st.binary(max_size=600),  # wild triples
                       st.one_of(st.none(), st.binary(max_size=8))), min_size=1, max_size=3
             ).map(lambda ts: [x for t in ts for x in t]),
    st.builds(lambda good, extra: [x for t in good for x in t] + extra,  # good triples, then
              st.lists(st.tuples(st.integers(0, 9), keys, st.none()), max_size=2),  # a ragged end
              st.lists(st.one_of(st.integers(0, 9), keys), min_size=1, max_size=2)))
junk_entries = st.one_of(
    st.binary(max_size=60),  # not an entry at all
    # a header that fits (term 1, seq 2: the batch goes first) with wild effects
    st.builds(lambda fx: (0, msgspec.msgpack.encode([1, 2, EFFECTS, fx])), wild_fx),
    # a wild header
    st.builds(lambda t, s, k, fx: (1, msgspec.msgpack.encode([t, s, k, fx])),
              st.integers(-3, 2**64 - 1), st.integers(-3, 2**64 - 1), st.integers(-1, 3), wild_fx))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=steps.map(as_leader_wrote), junk=junk_entries, at=st.integers(0, 30))
def test_a_bad_entry_refuses_its_whole_batch(history: list, junk: bytes | tuple[int, bytes],
                                             at: int) -> None:
    raws = entries_of(history)
    with tempfile.TemporaryDirectory() as d:
        store = Store(Path(d), MAP)
        try:
            store.apply_entries(raws[:1], 1 << 20, 1 << 30)
            batch = raws[1:]
            where, raw = (0, junk[1]) if isinstance(junk, tuple) and junk[0] == 0 else \
                (min(at, len(batch)), junk[1] if isinstance(junk, tuple) else junk)
            batch.insert(where, raw)
            before = contents(store), store.position()
            try:
                store.apply_entries(batch, 1 << 20, 1 << 30)
            except LogRejected:
                assert (contents(store), store.position()) == before  # nothing of it stayed
            else:  # the junk happened to be a valid next entry: then all of it is applied
                assert store.position().seq == len(batch) + 1
        finally:
            store.close()
