"""Encodings and folders as people have them (issue 10, "What to build" 1 (encodings) and 5).

Windows PowerShell 5.1 ``>`` and ``Out-File`` write UTF-16 LE with a BOM and CRLF line ends
(export-shapes.md); ``Out-File -Encoding utf8`` writes UTF-8 with a BOM; ``-Encoding bigendianunicode``
UTF-16 BE and ``-Encoding utf32`` UTF-32 LE, each with its BOM. The encoding is found from the
content, per file, and decoded chunk by chunk.
"""

from __future__ import annotations

import gzip
import tracemalloc
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pimwatch.detection.reader import Bad, Routed, expand, read_file
from tests.test_reader import AUDITS, CONTAINERS, _by_id, baseline, key_fields, read, replay, routed_events

ENCODINGS = {
    "utf-8-bom": lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),
    "utf-16-le-bom": lambda t: t.encode("utf-16"),  # Python writes the platform order: LE here
    "utf-16-le-bom-crlf": lambda t: b"\xff\xfe" + t.replace("\n", "\r\n").encode("utf-16-le"),
    "utf-16-be-bom": lambda t: b"\xfe\xff" + t.encode("utf-16-be"),
    "utf-32-le-bom": lambda t: b"\xff\xfe\x00\x00" + t.encode("utf-32-le"),
    "utf-32-be-bom": lambda t: b"\x00\x00\xfe\xff" + t.encode("utf-32-be"),
    "utf-16-le-no-bom": lambda t: t.encode("utf-16-le"),
    "utf-16-be-no-bom": lambda t: t.encode("utf-16-be"),
}
assert ENCODINGS["utf-16-le-bom"]("{")[:2] == b"\xff\xfe"


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@pytest.mark.parametrize(
    "container",
    ["eventhub-records-jsonl", "eventhub-json-array", "graph-pages", "loganalytics-csv", "graph-json-array"],
)
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
def test_every_encoding_gives_the_same_events(
    encoding: str, container: str, gz: bool, tmp_path: Path
) -> None:
    events = []
    for name, data in CONTAINERS[container]().items():
        encoded = ENCODINGS[encoding](data.decode())
        assert encoded != data
        path = tmp_path / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(encoded) if gz else encoded)
        events += routed_events(read(path))
    assert [key_fields(e) for e in sorted(events, key=_by_id)] == [key_fields(e) for e in baseline()]


def test_a_non_ascii_value_survives_every_encoding(tmp_path: Path) -> None:
    rec = orjson.loads(orjson.dumps(AUDITS[0]))
    rec["properties"]["resultReason"] = "Begründung: Notfall – 緊急 🚨"
    text = orjson.dumps(rec).decode() + "\n"
    for encoding, encode in ENCODINGS.items():
        path = tmp_path / f"{encoding}.jsonl"
        path.write_bytes(encode(text))
        (item,) = read(path)
        assert isinstance(item, Routed), (encoding, item)
        assert item.props["resultReason"] == "Begründung: Notfall – 緊急 🚨", encoding


def test_a_utf16_file_is_decoded_chunk_by_chunk(tmp_path: Path) -> None:
    line = orjson.dumps(AUDITS[0]).decode() + "\r\n"
    path = tmp_path / "ps51.json"
    path.write_bytes(ENCODINGS["utf-16-le-bom"](line * 4_000))  # ~ 24 MB as UTF-16
    size = path.stat().st_size
    n = 0
    tracemalloc.start()
    try:
        for item in read_file(str(path), [0]):
            n += isinstance(item, Routed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 4_000
    assert peak < 8 << 20 < size, f"peak {peak:,} bytes for a {size:,}-byte file"  # never the whole file


def test_invalid_utf16_is_replaced_not_fatal(tmp_path: Path) -> None:
    good = orjson.dumps(AUDITS[0]).decode() + "\n"
    data = b"\xff\xfe" + good.encode("utf-16-le") + b"\x00\xd8" + b"x\x00\n\x00" + good.encode("utf-16-le")
    path = tmp_path / "lone.json"
    path.write_bytes(data)  # a lone high surrogate (0xD800) in the middle
    items = read(path)
    assert [type(i) for i in items] == [Routed, Bad, Routed]


# --- folders as people have them ---------------------------------------------------------------


def _tree(root: Path) -> None:
    good = orjson.dumps(AUDITS[0]) + b"\n"
    (root / "logs" / "2026-03").mkdir(parents=True)
    (root / "logs" / "2026-03" / "day1.jsonl").write_bytes(good)
    (root / "logs" / "day2.json.gz").write_bytes(gzip.compress(good))
    (root / "logs" / "ps51.json").write_bytes(ENCODINGS["utf-16-le-bom"](good.decode()))
    (root / ".git" / "objects" / "ab").mkdir(parents=True)
    (root / ".git" / "objects" / "ab" / "cdef").write_bytes(bytes(range(256)) * 100)
    (root / ".git" / "HEAD.json").write_bytes(good)  # hidden folder: never read, whatever inside
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "data.json").write_bytes(good)
    (root / ".env").write_text("SECRET=1\n")
    (root / "README.md").write_text("# logs\n")
    (root / "dump.json").write_bytes(b"\x00\x01binary" * 1000)  # a log's name, not a log's bytes
    (root / "archive.json.gz").write_bytes(gzip.compress(b"\x7fELF\x02\x01\x01\x00" + bytes(4000)))
    (root / "latin1.csv").write_bytes("Name,Wert\nM\xfcller,1\n".encode("latin-1"))  # text: read


def test_folders_skip_hidden_folders_and_files_that_are_not_text_and_count_them(tmp_path: Path) -> None:
    _tree(tmp_path)
    skipped: Counter[str] = Counter()
    files = expand([str(tmp_path)], skipped)
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "latin1.csv",
        "logs/2026-03/day1.jsonl",
        "logs/day2.json.gz",
        "logs/ps51.json",
    ]
    assert skipped == {
        "hidden folder": 2,
        "hidden file": 1,
        "not a log file name": 1,
        "not text (binary content)": 2,
    }


def test_replaying_a_folder_names_what_it_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _tree(tmp_path / "in")
    q = tmp_path / "q.jsonl"
    rc, _, err = replay(["--quarantine", str(q), str(tmp_path / "in")], capsys)
    assert rc == 0
    assert (
        "in the folders, not read: 1 hidden file, 2 hidden folder, 1 not a log file name, "
        "2 not text (binary content)" in err
    )
    assert "read: AuditLogs/eventhub 3\n" in err  # day1, day2 and ps51 (UTF-16): the same record
    assert "bad records: 1 (unrecognised record shape 1)" in err  # latin1.csv's row is no log record
    assert not any(".git" in line or ".venv" in line for line in err.splitlines())


def test_a_binary_file_named_on_the_command_line_is_reported_not_copied(tmp_path: Path) -> None:
    path = tmp_path / "image.json"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 50)
    (bad,) = read(path)
    assert isinstance(bad, Bad) and bad.reason == "not text (binary content): not read" and bad.raw == ""
