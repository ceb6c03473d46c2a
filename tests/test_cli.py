"""The CLI contract other issues and outside checks rely on: output formats, exit codes, state."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from pimwatch.cli import main
from pimwatch.detection.detector import discover
from tests.conftest import REPO
from tests.streams import BREAK_GLASS, mixed_stream

ALERT_KEYS = {
    "id",
    "detector",
    "severity",
    "title",
    "principal",
    "first_seen",
    "last_seen",
    "count",
    "event_ids",
    "context",
}


@pytest.fixture
def stream_file(tmp_path: Path) -> Path:
    path = tmp_path / "stream.jsonl"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in mixed_stream()))
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "pimwatch.yaml"
    path.write_text("break_glass:\n  accounts:\n" + "".join(f"    - {a}\n" for a in BREAK_GLASS))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _jsonl(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_jsonl_has_the_contract_fields_and_nothing_else_on_stdout(
    capsys: pytest.CaptureFixture[str], stream_file: Path, config_file: Path, tmp_path: Path
) -> None:
    code, out, err = _run(
        capsys, "replay", "--config", str(config_file), "--format", "jsonl", str(stream_file)
    )
    assert code == 0
    alerts = _jsonl(out)
    assert alerts
    for a in alerts:
        assert set(a) >= ALERT_KEYS
        assert a["severity"] in {"critical", "high", "medium", "low", "info"}
        assert set(a["principal"]) == {"id", "upn", "name"}
        assert a["first_seen"].endswith("Z") and a["last_seen"] >= a["first_seen"]
        assert a["count"] == len(a["event_ids"]) >= 1
    assert [a["first_seen"] for a in alerts] == sorted(a["first_seen"] for a in alerts)
    assert "records in" in err and "alerts:" in err and "read: AuditLogs/eventhub" in err


def test_replay_into_the_same_state_adds_nothing(
    capsys: pytest.CaptureFixture[str], stream_file: Path, config_file: Path, tmp_path: Path
) -> None:
    state = str(tmp_path / "state.db")
    args = ["replay", "--config", str(config_file), "--state", state, "--format", "jsonl", str(stream_file)]
    code, first, _ = _run(capsys, *args)
    assert code == 0 and first
    code, second, err = _run(capsys, *args)
    assert code == 0
    assert second == ""
    assert "alerts: none (0 new, 0 updated, 0 resolved)" in err


def test_replay_in_two_halves_into_one_state_equals_one_run(
    capsys: pytest.CaptureFixture[str], stream_file: Path, config_file: Path, tmp_path: Path
) -> None:
    """The second run reads the later records (as a resumed replay does): what the first run's final
    tick decided (an absence, past the allowed lateness) is what one run decides."""
    lines = stream_file.read_bytes().splitlines(keepends=True)
    lines.sort(key=lambda line: orjson.loads(line)["time"])
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"".join(lines[: len(lines) // 2][::-1]))  # each file in any order
    b.write_bytes(b"".join(lines[len(lines) // 2 :][::-1]))
    state = str(tmp_path / "halves.db")
    base = ["replay", "--config", str(config_file), "--format", "jsonl"]
    _run(capsys, *base, "--state", state, str(a))
    _run(capsys, *base, "--state", state, str(b))
    from pimwatch.state.sqlite import SqliteStore

    halves = sorted((x.to_dict() for x in SqliteStore(state).alerts()), key=lambda d: d["id"])
    _, out, _ = _run(capsys, *base, str(stream_file))
    one = sorted(_jsonl(out), key=lambda d: d["id"])
    assert all(d.pop("group") for d in one)  # the output's group is not stored: the config decides it
    assert halves == one


def test_text_format_is_a_table(
    capsys: pytest.CaptureFixture[str], stream_file: Path, config_file: Path
) -> None:
    code, out, _ = _run(capsys, "replay", "--config", str(config_file), str(stream_file))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SEVERITY", "FIRST", "SEEN"]
    assert any(line.startswith("critical") and "breakglass.signin" in line for line in lines)


def test_missing_input_path_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, "replay", str(tmp_path / "nope.jsonl"))
    assert code == 1 and out == ""
    assert "nope.jsonl" in err


def test_config_error_exits_2_before_reading_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("detectors:\n  activation.simultaneous:\n    threshold: many\n")
    code, out, err = _run(capsys, "replay", "--config", str(bad), str(tmp_path / "nope.jsonl"))
    assert code == 2 and out == ""
    assert "detectors.activation.simultaneous.threshold: expected an integer, got 'many'" in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", "--format", "xml", "x"])
    assert exc.value.code == 2


def test_detectors_catalogue_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "detectors", "--format", "json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    assert set(rows) == {p.meta.id for p in discover()}
    assert {"breakglass.signin", "activation.simultaneous", "settings.changed"} <= set(rows)
    assert rows["activation.simultaneous"]["parameters"] == {
        "threshold": 3,
        "within_minutes": 10,
        "suppress_minutes": 60,
    }
    assert rows["breakglass.signin"]["severity"] == "critical"


def test_detectors_catalogue_text_shows_configured_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detectors:\n  activation.simultaneous: {threshold: 5, enabled: false}\n")
    code, out, _ = _run(capsys, "detectors", "--config", str(cfg))
    assert code == 0
    line = next(x for x in out.splitlines() if x.startswith("activation.simultaneous"))
    assert "threshold=5" in line and "[disabled]" in line


def test_disabled_detector_raises_nothing(
    capsys: pytest.CaptureFixture[str], stream_file: Path, tmp_path: Path
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("detectors:\n  settings.changed: {enabled: false}\n")
    _, out, _ = _run(capsys, "replay", "--config", str(cfg), "--format", "jsonl", str(stream_file))
    detectors = {a["detector"] for a in _jsonl(out)}
    assert "settings.changed" not in detectors and "activation.simultaneous" in detectors


def test_console_script_and_module_entry_point(stream_file: Path, tmp_path: Path) -> None:
    """The installed ``pimwatch`` script: stdin input, gzip, exit code, nothing but alerts on stdout."""
    gz = tmp_path / "s.jsonl.gz"
    gz.write_bytes(gzip.compress(stream_file.read_bytes()))
    exe = Path(sys.executable).parent / "pimwatch"
    with gz.open("rb") as stdin:
        done = subprocess.run(
            [str(exe), "replay", "--format", "jsonl", "-"],
            stdin=stdin,
            capture_output=True,
            cwd=tmp_path,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    alerts = [json.loads(x) for x in done.stdout.splitlines()]
    assert {a["detector"] for a in alerts} >= {"activation.simultaneous", "settings.changed"}
    assert (REPO / "pimwatch" / "__main__.py").exists()


def test_envelopes_with_mixed_categories_give_the_same_alerts_as_bare_records(
    capsys: pytest.CaptureFixture[str], stream_file: Path, config_file: Path, tmp_path: Path
) -> None:
    """Event Hub messages mix sign-ins and audit records; the byte screen must not judge a message by
    its first record (a sign-in here)."""
    records = [orjson.loads(x) for x in stream_file.read_bytes().splitlines()]
    records.sort(key=lambda r: r["category"] != "SignInLogs")  # sign-ins first in every message
    env = tmp_path / "env.jsonl"
    env.write_bytes(b"".join(orjson.dumps({"records": records[i::7]}) + b"\n" for i in range(7)))
    base = ["replay", "--config", str(config_file), "--format", "jsonl"]
    _, bare, _ = _run(capsys, *base, str(stream_file))
    code, enveloped, err = _run(capsys, *base, str(env))
    assert code == 0

    def by_id(out: str) -> list[dict[str, Any]]:
        return sorted(_jsonl(out), key=lambda a: a["id"])

    assert by_id(enveloped) == by_id(bare)  # the records were reordered here
    assert "AuditLogs/eventhub" in err


def test_bad_records_are_listed_on_stderr_up_to_twenty(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(f"{{not json {i}\n" for i in range(25)))
    q = tmp_path / "q.jsonl"
    code, _, err = _run(capsys, "replay", "--quarantine", str(q), str(path))
    assert code == 0
    listed = [line for line in err.splitlines() if "bad record at" in line]
    assert len(listed) == 20
    assert f"bad record at {path} line 2: malformed JSON" in err
    assert "more bad records: not listed here, all are in" in err
    assert len(q.read_text().splitlines()) == 25


def test_text_output_neutralizes_terminal_control_characters(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, config_file: Path
) -> None:
    """A display name is attacker-controlled: an ANSI escape must not reach the analyst's terminal."""
    from pimwatch.testing import signin

    evil = (BREAK_GLASS[0], "bg-admin01@contoso.onmicrosoft.com", "x")
    rec = signin(evil, "2026-03-10T02:17:00Z", city="\x1b[2J\x1b]8;;http://evil\x07Seattle\u202e")
    path = tmp_path / "s.jsonl"
    path.write_bytes(orjson.dumps(rec) + b"\n")
    code, out, _ = _run(capsys, "replay", "--config", str(config_file), str(path))
    assert code == 0 and "breakglass.signin" in out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\ufffd[2J" in out
    code, out, _ = _run(capsys, "replay", "--config", str(config_file), "--format", "jsonl", str(path))
    assert "\x1b" not in out and "\\u001b[2J" in out  # JSON escapes it; the value itself is kept
