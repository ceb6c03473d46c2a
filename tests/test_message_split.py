"""An Event Hub message split into its records' bytes before decoding (reader ``_Json._message``)
gives exactly what the whole message parsed at once gives: the same items in the same order and the
same screened sign-ins, on any mix of records — sign-ins the screen lets go or keeps (any layout of
the fields it reads), audit records, records that are no objects, and a record nested past the depth
limit (which leaves the message to the parsed path)."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from pimwatch.detection.activities import ACTIVATION_COMPLETED
from pimwatch.detection.reader import MAX_DEPTH, Item, Screen, Screened, _Json
from pimwatch.testing import pim, signin, user
from tests.test_reader import _SCREEN, _signin_lines

_AUDIT = orjson.dumps(pim(ACTIVATION_COMPLETED, "2026-03-10T02:30:00Z", user("alice")))
_SIGNINS = [
    orjson.dumps(signin(user("erin"), "2026-03-10T02:31:00Z")),
    orjson.dumps(signin(user("erin"), "2026-03-10T02:32:00Z", category="NonInteractiveUserSignInLogs")),
]
_ODD = [b"[1,2]", b'"text"', b"7", b'{"category":["SignInLogs"],"properties":{}}', b"{}"]
_NEST = MAX_DEPTH + 1
_DEEP = b'{"category":"SignInLogs","properties":{"x":' + b"[" * _NEST + b"]" * _NEST + b"}}"


def _split(line: bytes, screen: Screen | None) -> tuple[list[Item], dict[str, int]]:
    items: list[Item] = []
    counts: dict[str, int] = {}
    for item in _Json("m", [0], screen).read([line]):
        if isinstance(item, Screened):  # the counts, flushed at the end of the input
            counts[item.category] = counts.get(item.category, 0) + item.count
        else:
            items.append(item)
    return items, counts


def _parsed(line: bytes, screen: Screen | None) -> tuple[list[Item], dict[str, int]]:
    """The path before the split: the message decoded whole, then taken apart."""
    reader = _Json("m", [0], screen)
    items = list(reader._document(orjson.loads(line), line, 1, 0, checked=False))
    return items, reader.screened


@st.composite
def _messages(draw: st.DrawFn) -> bytes:
    parts: list[bytes] = draw(
        st.lists(
            st.one_of(
                _signin_lines(),
                st.sampled_from([_AUDIT, *_SIGNINS, *_ODD]),
                st.sampled_from([_DEEP]).filter(lambda _: draw(st.integers(0, 9)) == 0),
            ),
            max_size=12,
        )
    )
    sep = draw(st.sampled_from([b",", b", ", b",\n  "]))
    return b'{"records": [' + sep.join(parts) + b"]}\n"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(_messages(), st.booleans())
def test_a_split_message_reads_as_the_parsed_message(line: bytes, screened: bool) -> None:
    screen = _SCREEN if screened else None
    split, split_counts = _split(line, screen)
    parsed, parsed_counts = _parsed(line, screen)
    assert split == parsed
    assert split_counts == parsed_counts


def test_the_split_skips_the_sign_ins_of_no_interest_and_keeps_the_rest() -> None:
    line = b'{"records":[' + b",".join([_SIGNINS[0], _AUDIT, _SIGNINS[1]]) + b"]}"
    items, counts = _split(line, _SCREEN)
    assert counts == {"SignInLogs": 1, "NonInteractiveUserSignInLogs": 1}
    assert [getattr(i, "category", None) for i in items] == ["AuditLogs"]
    kept: Any = items[0]
    assert kept.raw == orjson.loads(_AUDIT)
