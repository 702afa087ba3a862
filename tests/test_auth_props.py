"""Properties of the token file and of queue globs (tqd.auth.tokens), with Hypothesis."""

from __future__ import annotations

from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from tqd.auth import tokens
from tqd.auth.policy import Principal, principal

QCHARS = "ab.:_-0"
queue_names = st.text(alphabet=QCHARS, min_size=1, max_size=12)
globs = st.text(alphabet=QCHARS + "*?", min_size=1, max_size=10)


def reference_match(glob: str, name: str) -> bool:
    """`*` any run of characters, `?` exactly one, everything else itself: by the book."""

    @cache
    def m(i: int, j: int) -> bool:
        if i == len(glob):
            return j == len(name)
        if glob[i] == "*":
            return m(i + 1, j) or (j < len(name) and m(i, j + 1))
        return j < len(name) and glob[i] in ("?", name[j]) and m(i + 1, j + 1)

    return m(0, 0)


@settings(max_examples=400, deadline=None)
@given(st.lists(globs, min_size=1, max_size=3), queue_names)
def test_globs_match_as_written(gs: list[str], name: str) -> None:
    expected = any(reference_match(g, name) for g in gs)
    assert (tokens.matcher(gs).fullmatch(name) is not None) == expected
    who = Principal("t", "viewer", tuple(gs), tokens.matcher(gs))
    assert who.sees(name) == expected


entries = st.builds(
    tokens.Entry,
    name=st.from_regex(tokens.NAME_RE, fullmatch=True),
    id=st.from_regex(r"[0-9a-f]{8}", fullmatch=True),
    role=st.sampled_from(tokens.ROLES),
    hash=st.just(tokens.hash_token("tqd_00000000_x", salt=b"0123456789abcdef")),
    queues=st.lists(globs, min_size=1, max_size=4),
    created=st.text(max_size=30).filter(lambda s: "\x00" not in s),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(entries, max_size=5, unique_by=(lambda e: e.name, lambda e: e.id)))
def test_token_file_round_trip(es: list[tokens.Entry]) -> None:
    assert tokens.parse(tokens.render(es)) == es
    for e in es:
        assert principal(e).queues == tuple(e.queues)


def test_token_shape() -> None:
    t = tokens.new_token("0123abcd")
    assert tokens.token_id(t) == "0123abcd" and t.startswith("tqd_0123abcd_")
    assert tokens.token_id("tqd_0123abcd_") is None and tokens.token_id("tqd_xyz_secret") is None
    assert tokens.token_id("ghp_0123abcd_secret") is None
