"""The reader never crashes, stalls or stays silent (issue 10, "What to build" 4 and 6).

Every case of issue 10's "Why" about the reader: deep nesting, ``[[[...]]]``, duplicate keys, EIO,
2^64, a lone surrogate, a wrong-type ``modifiedProperties``, a bad first line (memory) and the
quarantine replayed. Each run goes through the real CLI, SQLite store and quarantine file.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import os
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
import pytest

from pimwatch.detection.detector import Plugin
from pimwatch.detection.reader import MAX_DEPTH, PIECE, Bad, Routed, Screened, Skipped, read_file
from pimwatch.hosting.driver import Driver
from pimwatch.testing import as_graph as to_graph
from pimwatch.testing import signin
from tests.test_reader import (
    AUDITS,
    BG_UPN,
    ORDINARY,
    R_AUDIT_EH,
    _describe,
    pipeline_for,
    quarantined,
    read,
    replay,
)

DEEP = f"too deeply nested (more than {MAX_DEPTH} levels): not read"
BG = ("c0ffee00-0000-4000-8000-00000000b0b0", BG_UPN, "Break glass")


def _lines(*parts: bytes) -> bytes:
    return b"".join(p.rstrip(b"\n") + b"\n" for p in parts)


def _good() -> list[bytes]:
    return [orjson.dumps(r) for r in AUDITS]


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], *paths: Path | str
) -> tuple[int, Any, str, Path]:
    q = tmp_path / "q.jsonl"
    rc, alerts, err = replay(["--quarantine", str(q), *map(str, paths)], capsys)
    return rc, alerts, err, q


def _baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(_lines(*_good()))
    rc, alerts, _, q = _run(tmp_path, capsys, clean)
    assert rc == 0 and alerts and not q.exists()
    clean.unlink()
    return sorted(a["id"] for a in alerts)


# --- nesting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_10000_deep_line_is_quarantined_as_too_deep_and_every_other_record_is_read(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = _baseline(tmp_path, capsys)
    deep = b'{"a":' * 10_000 + b"1" + b"}" * 10_000
    good = _good()
    at = {"first": 0, "middle": 2, "last": len(good)}[where]
    path = tmp_path / "deep.jsonl"
    path.write_bytes(_lines(*good[:at], deep, *good[at:]))
    rc, alerts, err, q = _run(tmp_path, capsys, path)
    assert rc == 0 and "Traceback" not in err
    assert sorted(a["id"] for a in alerts) == expected
    (entry,) = quarantined(q)
    assert (entry["line"], entry["reason"], entry["raw"]) == (at + 1, DEEP, deep.decode())


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1_000, 10_000])
def test_a_deep_array_document_is_quarantined_never_dropped(depth: int, tmp_path: Path) -> None:
    doc = b"[" * depth + b"]" * depth
    shapes = {"one.json": doc, "flat.json": doc.replace(b"[", b"[\n").replace(b"]", b"]\n")}
    if depth <= 1_000:  # as a pretty printer would write it
        opening = b"".join(b" " * i + b"[\n" for i in range(depth))
        shapes["pretty.json"] = opening + b"".join(b" " * i + b"]\n" for i in reversed(range(depth)))
    for name, data in shapes.items():
        path = tmp_path / name
        path.write_bytes(data)
        (bad,) = read(path)
        assert isinstance(bad, Bad) and bad.reason == DEEP, name
        assert bad.line == (1 if name == "one.json" else 2)
        # The document when it parses at all (orjson reads up to 1024 levels), else its only element.
        assert bad.raw.encode() in (data.strip(), data.strip()[1:-1].strip())


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    rec = copy.deepcopy(AUDITS[0])
    inner: dict[str, Any] = rec["properties"]["additionalDetails"][0]
    for _ in range(MAX_DEPTH - 5):  # the record, properties, additionalDetails, its entry, ...
        inner["x"] = {}
        inner = inner["x"]
    path = tmp_path / "ok.jsonl"
    path.write_bytes(_lines(orjson.dumps(rec)))
    assert [_describe(i) for i in read(path)] == [R_AUDIT_EH]


# --- duplicate keys -------------------------------------------------------------------------------


def _duplicated(rec: dict[str, Any], first: tuple[str, str]) -> bytes:
    """``rec`` as one line whose properties start with other userId/userPrincipalName values."""
    line = orjson.dumps(rec)
    i = line.index(b'"properties":{') + len(b'"properties":{')
    return line[:i] + b'"userId":"%s","userPrincipalName":"%s",' % tuple(s.encode() for s in first) + line[i:]


@pytest.mark.parametrize("order", ["break-glass-last", "break-glass-first"])
def test_duplicate_keys_resolve_the_same_way_in_the_screen_and_the_parser(
    order: str, plugins: list[Plugin], tmp_path: Path
) -> None:
    """The last value of a repeated key wins (orjson): a bare line and the same record in an
    envelope give the same alerts, with the screen on."""
    bob = ORDINARY[0]["properties"]
    bg, other = signin(BG, "2026-03-10T02:30:00Z"), signin(ORDINARY_USER, "2026-03-10T02:30:00Z")
    if order == "break-glass-last":  # ordinary values first, the break-glass ones (kept) last
        line = _duplicated(bg, (bob["userId"], bob["userPrincipalName"]))
    else:
        line = _duplicated(other, (BG[0], BG[1]))
    assert orjson.loads(line)["properties"]["userPrincipalName"] == (
        BG_UPN if order == "break-glass-last" else ORDINARY_USER[1]
    )
    results = []
    for name, data in {
        "bare.jsonl": _lines(line),
        "envelope.jsonl": _lines(b'{"records":[' + line + b"]}"),
    }.items():
        pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [BG_UPN]}}, tmp_path / name)
        assert pipeline.screen is not None
        path = tmp_path / name
        path.write_bytes(data)
        pipeline.feed(read_file(str(path), [0], pipeline.screen))
        Driver(pipeline).finish()
        results.append(sorted(a.detector for a in pipeline.store.alerts()))
    expected = ["breakglass.signin"] if order == "break-glass-last" else []
    assert results == [expected, expected]


ORDINARY_USER = ("0b0b0b0b-0000-4000-8000-000000000001", "bob@contoso.onmicrosoft.com", "Bob")


# --- unreadable input -----------------------------------------------------------------------------


@pytest.mark.skipif(not os.access("/proc/self/mem", os.R_OK), reason="needs /proc/self/mem (Linux)")
def test_a_file_failing_on_its_first_read_is_reported_and_the_run_goes_on_with_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``/proc/self/mem`` opens like a regular file and its first read(2) fails with EIO (offset 0 is
    never mapped): the kernel's own EIO, as from a failing disk or a network file system."""
    with open("/proc/self/mem", "rb") as f, pytest.raises(OSError) as exc:
        f.read(1)
    assert exc.value.errno == 5  # EIO
    expected = _baseline(tmp_path, capsys)
    path = tmp_path / "day.jsonl"
    path.write_bytes(_lines(*_good()))
    rc, alerts, err, q = _run(tmp_path, capsys, "/proc/self/mem", path)
    assert rc == 1
    assert sorted(a["id"] for a in alerts) == expected  # the other file is read in full
    assert "/proc/self/mem" in err and "Input/output error" in err
    (entry,) = quarantined(q)
    assert entry["source"] == "/proc/self/mem" and entry["reason"].startswith("unreadable input")


# --- values no store can hold ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [str(2**64), str(-(2**63) - 1), "1" * 400, "²"])
def test_a_result_type_no_store_can_hold_is_read_without_crashing_the_store(
    code: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = signin(BG, "2026-03-10T02:30:00Z")
    rec["resultType"] = code
    path = tmp_path / "s.jsonl"
    path.write_bytes(_lines(orjson.dumps(rec)))
    config = tmp_path / "pimwatch.yaml"
    config.write_text(f"break_glass:\n  accounts: [{BG_UPN}]\n")
    rc, alerts, err, _ = _run(
        tmp_path, capsys, "--config", str(config), "--state", str(tmp_path / "s.db"), path
    )
    assert rc == 0, err
    assert [a["detector"] for a in alerts] == ["breakglass.signin"]


def test_a_2_64_number_literal_is_read_as_a_float(tmp_path: Path) -> None:
    line = _good()[0].replace(b'"durationMs":', b'"durationMs":%d,"x":' % 2**64)
    path = tmp_path / "big.jsonl"
    path.write_bytes(_lines(line))
    (item,) = read(path)
    assert isinstance(item, Routed) and item.raw["durationMs"] == float(2**64)
    orjson.dumps(item.raw)  # what the store writes


@pytest.mark.parametrize("text", ['"\\ud800"', '"\\udfff x"', "NaN", "Infinity", "-Infinity", "1e999"])
def test_lone_surrogates_and_non_finite_numbers_are_quarantined_in_any_layout(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _good()
    bad = good[1].replace(b'"result":"success"', b'"result":' + text.encode())
    assert bad != good[1]
    expected = _baseline(tmp_path, capsys)
    pretty = [orjson.dumps(orjson.loads(g), option=orjson.OPT_INDENT_2) for g in good]
    pretty[1] = pretty[1].replace(b'"result": "success"', b'"result": ' + text.encode())
    for name, data in {
        "lines.jsonl": _lines(*good[:1], bad, *good[2:]),
        "graph-array.json": b"[" + b",".join([*good[:1], bad, *good[2:]]) + b"]",
        "pretty-array.json": b"[\n" + b",\n".join(pretty) + b"\n]\n",
    }.items():
        path = tmp_path / name
        path.write_bytes(data)
        rc, alerts, err, q = _run(tmp_path, capsys, path)
        assert rc == 0 and "Traceback" not in err, name
        assert sorted(a["id"] for a in alerts) == [e for e in expected if e in {a["id"] for a in alerts}]
        (entry,) = quarantined(q)
        assert entry["reason"].startswith("malformed JSON"), (name, entry["reason"])
        assert text.encode() in entry["raw"].encode()
        q.unlink()
        path.unlink()


# --- detectors and wrong types --------------------------------------------------------------------


@pytest.mark.parametrize("value", [5, 2.5, True, False, "text", None, {"a": 1}, [1, "x", None]])
def test_settings_changed_does_not_raise_on_a_wrong_type_modified_properties(
    value: Any, plugins: list[Plugin], tmp_path: Path
) -> None:
    rec = copy.deepcopy(AUDITS[3])
    for target in rec["properties"]["targetResources"]:
        target["modifiedProperties"] = value
    path = tmp_path / "s.jsonl"
    path.write_bytes(_lines(orjson.dumps(rec)))
    pipeline = pipeline_for(plugins, {}, tmp_path)
    pipeline.feed(read_file(str(path), [0]))
    Driver(pipeline).finish()
    assert not pipeline.stats.detector_errors
    assert not pipeline.stats.bad
    assert [a.detector for a in pipeline.store.alerts()] == ["settings.changed"]  # from resultReason


# --- memory ---------------------------------------------------------------------------------------


def test_a_bad_first_line_does_not_make_memory_grow_with_the_file(tmp_path: Path) -> None:
    good = _good()
    body = b"".join(g + b"\n" for g in good) * 2_000  # ~ 8 MB
    path = tmp_path / "first-bad.jsonl"
    path.write_bytes(_lines(good[0][:300]) + body)
    counts = {"Routed": 0, "Bad": 0}
    tracemalloc.start()
    try:
        for item in read_file(str(path), [0]):
            counts[type(item).__name__] += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert counts == {"Routed": len(good) * 2_000, "Bad": 1}
    # The read buffer (1 MiB) and one line: not the file (the reader once held it all).
    assert peak < 4 << 20 < len(body), f"peak {peak:,} bytes for a {len(body):,}-byte file"


def test_text_that_is_no_json_is_quarantined_in_bounded_pieces(tmp_path: Path) -> None:
    junk = (b"this is not json at all; " * 40 + b"\n") * 3_000  # ~3 MB, no bracket anywhere
    path = tmp_path / "notes.log"
    path.write_bytes(junk + _lines(*_good()))
    items = read(path)
    bads = [i for i in items if isinstance(i, Bad)]
    assert [_describe(i) for i in items if not isinstance(i, Bad)] == [R_AUDIT_EH] * len(AUDITS)
    assert all(len(b.raw) <= PIECE + 2_000 for b in bads) and len(bads) >= 3
    assert b" ".join(b.raw.encode() for b in bads).split() == junk.split()  # every word, in order
    assert bads[0].offset == 0 and all(b.offset is not None for b in bads)


def test_broken_json_in_the_middle_of_a_big_file_keeps_every_good_record(tmp_path: Path) -> None:
    good = _good()
    head = b"".join(g + b"\n" for g in good) * 300
    broken = good[0][: len(good[0]) // 2] + b"\n"
    path = tmp_path / "big.jsonl"
    path.write_bytes(head + broken + head)
    items = read(path)
    (bad,) = [i for i in items if isinstance(i, Bad)]
    assert sum(isinstance(i, Routed) for i in items) == 2 * len(good) * 300
    assert bad.offset == len(head) and bad.raw.encode() == broken.strip()
    assert bad.line == head.count(b"\n") + 1


def test_an_unclosed_pretty_printed_object_ends_at_the_next_record(tmp_path: Path) -> None:
    pretty = [orjson.dumps(orjson.loads(g), option=orjson.OPT_INDENT_2) for g in _good()]
    cut = pretty[1][: len(pretty[1]) // 2]
    data = b"[\n" + b",\n".join([pretty[0], cut, *pretty[2:]]) + b"\n]\n"
    path = tmp_path / "cut.json"
    path.write_bytes(data)
    items = read(path)
    assert [_describe(i) for i in items] == [R_AUDIT_EH, ("Bad",)] + [R_AUDIT_EH] * (len(pretty) - 2)
    bad = items[1]
    assert isinstance(bad, Bad) and bad.offset == data.index(cut) and bad.raw.encode() == cut + b","


# --- the quarantine round-trips ---------------------------------------------------------------------


def test_replaying_the_quarantine_gives_the_same_quarantine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _good()
    invalid = good[0].replace(b"success", b"succ\xff\xfess")
    lines = tmp_path / "lines.jsonl"
    lines.write_bytes(
        _lines(
            good[0],
            invalid,  # not UTF-8
            b'{"a": NaN}',  # accepted by Python's json, not by orjson
            b'{"a": [1, 2',  # truncated
            b"[" * 300 + b"]" * 300,  # too deep
            b"42",
            b'{"error": "no such record"}',  # unrecognised shape
            *good[1:],
        )
    )
    ragged = tmp_path / "la.csv"
    ragged.write_text(
        "TimeGenerated,OperationName,Category\n"
        "2026-03-10T08:00:00Z,Add member to role,RoleManagement\n"
        '2026-03-10T08:01:00Z,Add member to role,RoleManagement,"one, too many"\n'
    )
    rc, alerts, _, q = _run(tmp_path, capsys, lines, ragged)
    assert rc == 0 and len(alerts) == 1  # good[0] and good[1:] are one PIM activation
    first = quarantined(q)
    assert len(first) == 7
    by_reason = {e["reason"].split(":")[0]: e for e in first}
    binary = next(e for e in first if "raw_base64" in e)
    assert base64.b64decode(binary["raw_base64"]) == invalid  # the exact bytes
    assert by_reason["CSV row has more fields than the header"]["raw"].endswith('"one, too many"')

    q2 = tmp_path / "q2.jsonl"
    rc2, alerts2, _ = replay(["--quarantine", str(q2), str(q)], capsys)
    assert rc2 == 0 and alerts2 == []
    assert quarantined(q2) == first
    q3 = tmp_path / "q3.jsonl"
    replay(["--quarantine", str(q3), str(q2)], capsys)
    assert q3.read_bytes() == q2.read_bytes() == q.read_bytes()


def test_a_quarantined_record_that_the_reader_now_reads_is_replayed(tmp_path: Path) -> None:
    entry = {"source": "day.jsonl", "line": 7, "reason": "old parser bug", "raw": _good()[0].decode()}
    path = tmp_path / "q.jsonl"
    path.write_bytes(_lines(orjson.dumps(entry)))
    (item,) = read(path)
    assert isinstance(item, Routed) and (item.source, item.line) == ("day.jsonl", 7)


def test_a_quarantine_entry_nested_in_itself_is_not_read_without_end(tmp_path: Path) -> None:
    entry: dict[str, Any] = {"source": "s", "line": 1, "reason": "r", "raw": "{"}
    for _ in range(12):  # each level escapes the one inside: the text grows as 2^levels
        entry = {"source": "s", "line": 1, "reason": "r", "raw": orjson.dumps(entry).decode()}
    path = tmp_path / "q.jsonl"
    path.write_bytes(_lines(orjson.dumps(entry)))
    (item,) = read(path)
    assert isinstance(item, Bad) and item.reason == "r"


# --- compressed input -----------------------------------------------------------------------------


def test_a_gzip_file_is_read_like_the_plain_one_including_its_bad_spans(tmp_path: Path) -> None:
    data = _lines(*_good()[:2], b'{"a": tru', *_good()[2:])
    plain, packed = tmp_path / "d.jsonl", tmp_path / "d.jsonl.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    a, b = read(plain), read(packed)
    assert [_describe(i) for i in a] == [_describe(i) for i in b]
    assert [(i.line, i.offset, i.raw) for i in a if isinstance(i, Bad)] == [
        (i.line, i.offset, i.raw) for i in b if isinstance(i, Bad)
    ]
    assert not any(isinstance(i, Screened) for i in a)


@pytest.mark.parametrize("depth", [MAX_DEPTH, MAX_DEPTH + 1, 2_000])
def test_a_deep_pretty_printed_object_is_quarantined_and_the_next_one_read(
    depth: int, tmp_path: Path
) -> None:
    opening = b"".join(b" " * i + b'"a": {\n' for i in range(1, depth))
    closing = b"".join(b" " * i + b"}\n" for i in reversed(range(1, depth)))
    deep = b"{\n" + opening + b" " * depth + b'"a": 1\n' + closing + b"}"
    if depth < 1_000:
        assert json.loads(deep)
    good = orjson.dumps(orjson.loads(_good()[0]), option=orjson.OPT_INDENT_2)
    path = tmp_path / "deep.json"
    path.write_bytes(deep + b"\n" + good + b"\n")
    items = read(path)
    if depth <= MAX_DEPTH:
        assert [_describe(i) for i in items] == [("Bad",), R_AUDIT_EH]  # read; {"a": ...} is no record
        assert isinstance(items[0], Bad) and items[0].reason.startswith("unrecognised record shape")
    else:
        assert [_describe(i) for i in items] == [("Bad",), R_AUDIT_EH]
        assert isinstance(items[0], Bad) and items[0].reason == DEEP and items[0].raw.encode() == deep


def test_valid_json_with_closing_brackets_at_odd_indentation_is_still_read(tmp_path: Path) -> None:
    """Where a pretty-printed value ends is guessed from the indentation, and checked by the parser;
    a wrong guess (hand-edited JSON) falls back to counting brackets: valid JSON is always read."""
    rec = orjson.loads(_good()[0])
    text = json.dumps(rec, indent=2)
    odd = "\n".join(
        line.lstrip() if line.strip() in ("}", "},", "]", "],") else line for line in text.split("\n")
    )
    assert odd != text and json.loads(odd) == rec
    early = "{\n" + text[1:].replace("\n  }", "\n}", 1)  # an inner "}" where the outer one goes
    assert json.loads(early) == rec
    for name, doc in {"odd": odd, "early": early, "indented": text.replace("\n", "\n    ")}.items():
        path = tmp_path / f"{name}.json"
        path.write_text(f"[\n{doc},\n{doc}\n]\n{doc}\n")
        assert [_describe(i) for i in read(path)] == [R_AUDIT_EH] * 3, name


def _page(pretty: bool) -> bytes:
    page = {
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#auditLogs/directoryAudits",
        "value": [to_graph(r) for r in AUDITS],
    }
    return json.dumps(page, indent=2).encode() if pretty else orjson.dumps(page)


@pytest.mark.parametrize("pretty", [True, False], ids=["pretty", "compact"])
@pytest.mark.parametrize("damage", ["truncated", "broken-record", "truncated-then-a-record"])
def test_a_damaged_graph_page_or_event_hub_message_gives_its_whole_records(
    damage: str, pretty: bool, tmp_path: Path
) -> None:
    """A download cut short, or one damaged record: the page's (or message's) head is quarantined
    and every whole record in it is read; the damaged one is quarantined."""
    for kind, data in {"page": _page(pretty), "message": _lines(orjson.dumps({"records": AUDITS}))}.items():
        if kind == "message" and pretty:
            data = json.dumps({"records": AUDITS}, indent=2).encode()
        cut = data.index(b"activityDisplayName" if kind == "page" else b'"operationName"', len(data) * 2 // 3)
        damaged = {
            "truncated": data[:cut],
            "broken-record": data[: cut - 1] + b"oops" + data[cut - 1 :],
            "truncated-then-a-record": data[:cut] + b"\n" + _good()[0] + b"\n",
        }[damage]
        path = tmp_path / f"{kind}.json"
        path.write_bytes(damaged)
        items = read(path)
        routed = [i for i in items if isinstance(i, Routed)]
        # the records whose id is before the cut, but the cut one (a Graph object starts with its id)
        whole = sum(1 for r in AUDITS if r["properties"]["id"].encode() in data[:cut]) - (kind == "page")
        extra = 1 if damage == "truncated-then-a-record" else 0
        if damage == "broken-record":
            whole = len(AUDITS) - 1
        assert len(routed) == whole + extra, (kind, damage, [_describe(i) for i in items])
        bads = [i for i in items if isinstance(i, Bad)]
        assert (
            bads[0].line == 1 and bads[0].offset == 0 and "its records are read one by one" in bads[0].reason
        )


def test_a_csv_row_with_an_unclosed_quote_is_quarantined_not_swallowed(tmp_path: Path) -> None:
    head = "TimeGenerated,OperationName,Category\n"
    good = "2026-03-10T08:00:00Z,Add member to role,RoleManagement\n"
    broken = '2026-03-10T08:01:00Z,"Add member to role,RoleManagement\n'
    path = tmp_path / "la.csv"
    path.write_text(head + good + broken + good * 3)
    items = read(path)
    assert [type(i) for i in items] == [Skipped, Bad]  # the rows have no table: skipped, not lost
    bad = items[1]
    assert isinstance(bad, Bad) and bad.reason == "malformed CSV: unexpected end of data"
    assert (bad.line, bad.offset) == (3, len(head + good)) and bad.raw == (broken + good * 3).strip()


def test_the_depth_limit_is_what_the_store_can_write() -> None:
    def nest(n: int) -> Any:
        x: Any = 1
        for _ in range(n):
            x = [x]
        return x

    orjson.dumps(nest(MAX_DEPTH))
    with pytest.raises(orjson.JSONEncodeError):
        orjson.dumps(nest(MAX_DEPTH + 1))
