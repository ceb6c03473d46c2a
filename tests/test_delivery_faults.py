"""Fault scenarios end to end: `pimwatch replay --send` / `deliver` against a real HTTP server on
loopback standing in for PagerDuty's Events API v2, next to a healthy `file` sink."""

from __future__ import annotations

import json
import time
from pathlib import Path

import orjson
import pytest

from pimwatch.cli import main
from tests.loopback import Answer, serve
from tests.streams import BREAK_GLASS, mixed_stream

KEY = "R0UT1NGKEY-secret-value-123"


def _setup(tmp_path: Path, pd_url: str) -> tuple[Path, Path, str, Path]:
    sink = (
        "{type: pagerduty, min_severity: high, routing_key: '${PD_KEY}',"
        + f" url: '{pd_url}', timeout_seconds: 1}}"
    )
    delivery = "{retries_in_run: 1, base_delay_seconds: 0.01, max_delay_seconds: 0.05}"
    stream, cfg, archive = stream_and_config(tmp_path, delivery, oncall=sink)
    return stream, cfg, str(tmp_path / "state.db"), archive


def stream_and_config(tmp_path: Path, delivery: str, **sinks: str) -> tuple[Path, Path, Path]:
    """The mixed stream as a file, and a config with its break-glass accounts, ``delivery``, the
    ``sinks`` given (name: YAML flow mapping) and an ``archive`` file sink: (stream, config, archive)."""
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in mixed_stream()))
    archive = tmp_path / "alerts.jsonl"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "break_glass:\n  accounts:\n"
        + "".join(f"    - {a}\n" for a in BREAK_GLASS)
        + f"delivery: {delivery}\n"
        # Faults are counted per alert here: one notification each (tests/test_grouping.py groups).
        + "routing: {group_by: []}\n"
        + "sinks:\n"
        + "".join(f"  {name}: {sink}\n" for name, sink in sinks.items())
        + f"  archive: {{type: file, path: '{archive}'}}\n"
    )
    return stream, cfg, archive


def _paged(requests: list) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(r.body) for r in requests]


def test_a_sink_down_for_the_whole_run_gets_everything_exactly_once_when_back(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("PD_KEY", KEY)
    with serve(Answer(500)) as pd:
        stream, cfg, state, archive = _setup(tmp_path, pd.url + "/v2/enqueue")
        assert (
            main(
                ["replay", "--config", str(cfg), "--state", state, "--send", "--format", "jsonl", str(stream)]
            )
            == 0
        )
        alerts = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        high = {a["id"] for a in alerts if a["severity"] in ("high", "critical")}
        closed = {a["id"] for a in alerts if a["id"] in high and a["status"] == "resolved"}  # + a resolve
        archived = archive.read_text().splitlines()
        resolved_in_run = sum(1 for a in alerts if a["status"] == "resolved")
        assert len(archived) == len(alerts) + resolved_in_run  # the healthy sink got everything at once
        assert len(pd.requests) == 2 * (len(high) + len(closed))  # one try and one retry each, all failed
        pd.script(Answer(202, b'{"status":"success"}'))
        pd.requests.clear()
        time.sleep(0.1)  # the retries' backoff (at most max_delay_seconds) has passed
        assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
        assert main(["deliver", "--config", str(cfg), "--state", state]) == 0  # nothing left to send
        events = _paged(pd.requests)
        sent = sorted((e["dedup_key"], e["event_action"]) for e in events)
        assert sent == sorted([(a, "trigger") for a in high] + [(a, "resolve") for a in closed])  # once each
    assert archive.read_text().splitlines() == archived  # the healthy sink untouched
    everything = capsys.readouterr()
    assert "will retry" in caplog.text  # the failures were logged...
    for where in (everything.out, everything.err, caplog.text, Path(state).read_bytes().decode("latin-1")):
        assert KEY not in where and "127.0.0.1" not in where  # ...without the key or the URL


def test_an_answer_lost_mid_delivery_is_retried_with_the_same_dedup_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PagerDuty received the event but the connection died before its answer (as if pimwatch were
    killed there): the retry carries the same dedup_key, so PagerDuty keeps one incident."""
    monkeypatch.setenv("PD_KEY", KEY)
    with serve(Answer(drop=True)) as pd:
        stream, cfg, state, _ = _setup(tmp_path, pd.url + "/v2/enqueue")
        main(["replay", "--config", str(cfg), "--state", state, "--send", str(stream)])
        first = [(e["dedup_key"], e["event_action"]) for e in _paged(pd.requests)]
        pd.script(Answer(202, b'{"status":"success"}'))
        pd.requests.clear()
        time.sleep(0.1)
        assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
        second = [(e["dedup_key"], e["event_action"]) for e in _paged(pd.requests)]
    assert set(second) == set(first) and len(second) == len(set(first))
    capsys.readouterr()


def test_a_permanent_4xx_is_a_dead_letter_listed_and_resendable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PD_KEY", KEY)
    with serve(Answer(400, b'{"status":"invalid event","message":"Event object is invalid"}')) as pd:
        stream, cfg, state, archive = _setup(tmp_path, pd.url + "/v2/enqueue")
        main(["replay", "--config", str(cfg), "--state", state, "--send", str(stream)])
        sent_once = len(pd.requests)
        assert "dead letters" in capsys.readouterr().err
        # the dead letters alert in their own right, through the sink that works
        meta = [json.loads(x) for x in archive.read_text().splitlines() if "delivery.dead_letters" in x]
        assert len(meta) == 1 and meta[0]["context"] == {"sink": "oncall", "dead_letters_in_run": sent_once}
        assert meta[0]["severity"] == "high" and "'oncall'" in meta[0]["title"]
        assert main(["deliver", "--config", str(cfg), "--state", state]) == 0  # dead: not retried
        assert len(pd.requests) == sent_once
        main(["outbox", "list", "--state", state, "--status", "dead"])
        listing = capsys.readouterr().out
        assert listing.count("dead     oncall") == sent_once
        assert "last error: oncall (pagerduty): HTTP 400 Bad Request" in listing
        assert KEY not in listing
        pd.script(Answer(202, b'{"status":"success"}'))
        assert main(["outbox", "retry", "--state", state, "--sink", "oncall"]) == 0
        assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
        assert len(pd.requests) == 2 * sent_once


def test_a_process_killed_mid_delivery_loses_nothing_when_restarted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pimwatch replay --send` is killed (SIGKILL) while PagerDuty is answering slowly; `pimwatch
    deliver` afterwards sends every alert, and whatever went out twice carries the same dedup_key."""
    import os
    import signal
    import subprocess
    import sys

    monkeypatch.setenv("PD_KEY", KEY)
    with serve(Answer(202, b'{"status":"success"}', delay=0.4)) as pd:
        stream, cfg, state, _ = _setup(tmp_path, pd.url + "/v2/enqueue")
        exe = Path(sys.executable).parent / "pimwatch"
        proc = subprocess.Popen(
            [str(exe), "replay", "--config", str(cfg), "--state", state, "--send", str(stream)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PD_KEY": KEY},
        )
        deadline = time.time() + 20
        while len(pd.requests) < 2 and time.time() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = [(e["dedup_key"], e["event_action"]) for e in _paged(pd.requests)]
        pd.script(Answer(202, b'{"status":"success"}'))
        assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
        after = [(e["dedup_key"], e["event_action"]) for e in _paged(pd.requests)][len(before) :]
    from pimwatch.state.sqlite import SqliteStore

    owed = {a.id for a in SqliteStore(state).alerts() if a.severity.value in ("high", "critical")}
    assert len(before) >= 2
    assert {key for key, _ in before + after} == owed  # nothing lost
    assert len(after) == len(set(after))
    assert set(after).isdisjoint(set(before[:-1]))  # only the one in flight may go out again
    capsys.readouterr()
