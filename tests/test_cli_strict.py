"""Nothing silent (issue 10, "What to build" 3): a file that yields no usable record, or whose records
are mostly quarantined or skipped, is named with the reason in the last lines of stderr; with
``replay --strict`` such a run exits 3, without it the exit codes stay 0/1/2."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.test_reader import RECORDS, jsonl, replay

GOOD = jsonl(RECORDS)  # audit records and user sign-ins, all read
SERVICE_PRINCIPAL = jsonl(
    [{**r, "category": "ServicePrincipalSignInLogs"} for r in RECORDS if r["category"] == "SignInLogs"]
)


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: dict[str, bytes], *flags: str
) -> tuple[int, str]:
    paths = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    rc, _, err = replay(["--quarantine", str(tmp_path / "q.jsonl"), *flags, *paths], capsys)
    return rc, err


def _notes(err: str) -> list[str]:
    """The note lines: they must be the last lines of stderr."""
    lines = err.rstrip("\n").split("\n")
    starts = [
        i for i, line in enumerate(lines) if line.startswith("pimwatch: ") and "input file note" in line
    ]
    if not starts:
        return []
    assert len(starts) == 1
    return lines[starts[0] + 1 :]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no records in it"),
        (b"not json\n{broken\n", "no usable record: 2 quarantined (malformed JSON 2)"),
        (
            SERVICE_PRINCIPAL,
            "no usable record: {n} of categories pimwatch does not read (ServicePrincipalSignInLogs {n})",
        ),
        (b"PK\x03\x04\x14\x00\x00\x00" + bytes(range(256)), "no usable record: 1 quarantined (not text 1)"),
        (
            jsonl(RECORDS[:1]) + b"x\n{\n" + b"[1]\n" * 3,
            "most of its 6 records were not used: "
            "5 quarantined (expected a JSON object, got int 3, malformed JSON 2)",
        ),
    ],
    ids=["empty", "all malformed", "other category only", "binary", "mostly bad"],
)
def test_an_unusable_file_is_named_last_and_strict_exits_3(
    data: bytes, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    n = sum(1 for r in RECORDS if r["category"] == "SignInLogs")
    files = {"good.jsonl": GOOD, "bad.json": data}
    rc, err = _run(tmp_path, capsys, files)
    assert rc == 0
    assert _notes(err) == [f"  {tmp_path / 'bad.json'}: {reason.format(n=n)}"]
    rc, err = _run(tmp_path, capsys, files, "--strict")
    assert rc == 3
    assert len(_notes(err)) == 1


def test_a_good_file_with_a_few_bad_records_is_no_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = _run(tmp_path, capsys, {"a.jsonl": GOOD + b"{broken\n"}, "--strict")
    assert rc == 0
    assert "bad records: 1" in err and _notes(err) == []


def test_strict_keeps_exit_1_for_an_unreadable_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that fails while being read is exit 1 (the CLI contract), with or without --strict,
    and it is named among the notes too."""
    broken_gzip = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + b"\xff" * 64
    for flags in ((), ("--strict",)):
        rc, err = _run(tmp_path, capsys, {"good.jsonl": GOOD, "x.json.gz": broken_gzip}, *flags)
        assert rc == 1
        (note,) = _notes(err)
        assert note.startswith(
            f"  {tmp_path / 'x.json.gz'}: no usable record: 1 quarantined (unreadable input 1)"
        )


def test_a_folder_lists_each_file_to_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(GOOD)
    (folder / "b.json").write_bytes(b"")
    (folder / "c.jsonl").write_bytes(SERVICE_PRINCIPAL)
    rc, _, err = replay(["--quarantine", str(tmp_path / "q.jsonl"), "--strict", str(folder)], capsys)
    assert rc == 3
    assert [line.split(": ", 1)[0].strip() for line in _notes(err)] == [
        str(folder / "b.json"),
        str(folder / "c.jsonl"),
    ]
    assert err.rstrip("\n").split("\n")[-3] == "pimwatch: 2 input file notes (check these):"


def test_a_file_name_with_control_characters_is_shown_safely(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, err = _run(tmp_path, capsys, {"evil\x1b[31m.json": b""})
    assert rc == 0
    (note,) = _notes(err)
    assert "\x1b" not in note and "evil\ufffd[31m.json: no records in it" in note
