"""A fuzz test of the reader (issue 10, "What to build" 7): any bytes, any layout, any encoding.

Bounded in time: a fixed number of examples, derandomized (the same inputs on every run), no
per-example deadline. Properties:

- nothing raises out of ``read_file``, whatever the bytes;
- every record put in the input is counted exactly once: read (a Routed item carrying its id) or
  quarantined (its id inside exactly one Bad entry's raw text), never both, never twice, never lost
  (or the whole file is refused as binary, which is one entry naming it);
- what the reader quarantines reads back, from the quarantine file, as the same entries.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimwatch.detection.reader import Bad, Item, Routed, Screened, Skipped, read_bytes, read_file
from pimwatch.state.quarantine import entry
from tests.test_reader import RECORDS

FUZZ = settings(
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
IDS = [r["properties"]["id"] for r in RECORDS]
assert len(set(IDS)) == len(IDS)

# Text that is no record: random bytes, near-JSON, truncated records, deep brackets, bad numbers.
JUNK = st.one_of(
    st.binary(max_size=64),
    st.text(alphabet=st.sampled_from('{}[],:"\\ \t\nab1-.eE'), max_size=40).map(str.encode),
    st.sampled_from(
        [
            b"NaN",
            b'{"a": Infinity}',
            b'["\\ud800"]',
            b"18446744073709551616",
            b'{"a": 1, "a": 2}',
            b"[" * 200 + b"]" * 200,
            b'{"a":' * 100 + b"1" + b"}" * 100,
            b"\xff\xfe\xfd",
            b'{"records": [1, "x", null]}',
            b'{"value": [[[]]]}',
            b"\x00\x01\x02",
        ]
    ),
    st.integers(1, 400).map(lambda n: orjson.dumps(RECORDS[0])[:n]),  # a record cut short (id 0)
)
PIECES = st.lists(
    st.one_of(st.integers(0, len(RECORDS) - 1), JUNK.map(lambda j: ("junk", j))), min_size=1, max_size=12
)
LAYOUTS = ["lines", "array", "pretty-array", "envelopes", "concatenated-pretty", "odd-pretty", "deep-pretty"]
ENCODINGS = ["utf-8", "utf-8-bom", "utf-16-le-bom", "utf-16-be-bom", "utf-32-le-bom"]


def _render(pieces: list[Any], layout: str) -> bytes:
    def good(i: int, pretty: bool = False) -> bytes:
        if not pretty:
            return orjson.dumps(RECORDS[i])
        text = json.dumps(RECORDS[i], indent=2)
        if layout == "odd-pretty":  # hand-edited: closing brackets at the left margin
            text = "\n".join(
                x.lstrip() if x.strip() in ("}", "},", "]", "],") else x for x in text.split("\n")
            )
        elif layout == "deep-pretty":  # every line but the first indented further
            text = text.replace("\n", "\n      ")
        return text.encode()

    parts: list[bytes] = []
    for p in pieces:
        if isinstance(p, int):
            parts.append(good(p, layout not in ("lines", "array", "envelopes")))
        else:
            parts.append(p[1])
    if layout == "array":
        return b"[" + b",".join(parts) + b"]"
    if layout in ("pretty-array", "odd-pretty"):
        return b"[\n" + b",\n".join(parts) + b"\n]\n"
    if layout == "envelopes":
        lines = [
            b'{"records":[' + orjson.dumps(RECORDS[p]) + b"]}" if isinstance(p, int) else p[1] for p in pieces
        ]
        return b"\n".join(lines) + b"\n"
    return b"\n".join(parts) + b"\n"


def _encode(data: bytes, encoding: str) -> bytes:
    if encoding == "utf-8":
        return data
    if encoding == "utf-8-bom":
        return b"\xef\xbb\xbf" + data
    text = data.decode("utf-8", errors="replace")
    name, bom = {
        "utf-16-le-bom": ("utf-16-le", b"\xff\xfe"),
        "utf-16-be-bom": ("utf-16-be", b"\xfe\xff"),
        "utf-32-le-bom": ("utf-32-le", b"\xff\xfe\x00\x00"),
    }[encoding]
    return bom + text.encode(name)


def _read(path: Path) -> list[Item]:
    items = list(read_file(str(path), [0]))
    assert all(type(i) in (Routed, Skipped, Screened, Bad) for i in items)
    return items


def _counted_once(items: list[Item], pieces: list[Any]) -> None:
    if len(items) == 1 and isinstance(items[0], Bad) and items[0].reason.startswith("not text"):
        return  # the whole file refused as binary: one entry naming it
    put = {IDS[p] for p in pieces if isinstance(p, int)}
    for rid in put:
        read = sum(1 for i in items if isinstance(i, Routed) and i.props.get("id") == rid)
        quarantined = sum(1 for i in items if isinstance(i, Bad) and rid in i.raw)
        assert read + quarantined >= 1, f"record {rid} lost"
        assert read <= pieces.count(IDS.index(rid)), f"record {rid} read more often than written"
        if pieces.count(IDS.index(rid)) == 1 and not any(
            isinstance(p, tuple) and rid.encode() in p[1] for p in pieces
        ):
            assert read + quarantined == 1, f"record {rid} counted {read} + {quarantined} times"


@FUZZ
@given(pieces=PIECES, layout=st.sampled_from(LAYOUTS), encoding=st.sampled_from(ENCODINGS), gz=st.booleans())
def test_any_layout_and_encoding_counts_every_record_once(
    pieces: list[Any], layout: str, encoding: str, gz: bool, tmp_path: Path
) -> None:
    data = _encode(_render(pieces, layout), encoding)
    path = tmp_path / "fuzz.json"
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    _counted_once(_read(path), pieces)


@FUZZ
@given(data=st.binary(max_size=2048), gz=st.booleans())
def test_any_bytes_never_raise(data: bytes, gz: bool, tmp_path: Path) -> None:
    path = tmp_path / "bytes.log"
    path.write_bytes(gzip.compress(data, mtime=0)[: max(1, len(data))] if gz else data)
    _read(path)


@FUZZ
@given(pieces=PIECES)
def test_the_quarantine_of_json_lines_reads_back_as_itself(pieces: list[Any], tmp_path: Path) -> None:
    items = list(read_bytes(_render(pieces, "lines"), "fuzz.jsonl"))
    bad = [entry(i) for i in items if isinstance(i, Bad)]
    again = list(read_bytes(b"".join(orjson.dumps(e) + b"\n" for e in bad), "quarantine.jsonl"))
    assert [entry(i) for i in again if isinstance(i, Bad)] == bad
    assert not any(isinstance(i, Routed) for i in again)
