"""Delivery written once: routing, per-sink state, retry and dead letters, the CLI around them.

Sinks here are the real ``file`` and ``console`` modules; the HTTP sinks have their own suites
against loopback servers (tests/sinks/)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from pimwatch.cli import main
from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.sink import PermanentError, TransientError, retry_after
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import Plugin, discover
from pimwatch.state.sqlite import SqliteStore
from sinks import file as file_sink
from tests.streams import BREAK_GLASS, mixed_stream

PLUGINS = discover()


def _alert(
    severity: Severity = Severity.HIGH, detector: str = "activation.simultaneous", aid: str = "a1"
) -> Alert:
    return Alert(
        id=aid,
        detector=detector,
        severity=severity,
        title="t",
        summary="s",
        runbook="r",
        mitre=[],
        principal={"id": None, "upn": "x@contoso.com", "name": None},
        context={},
        events=[("2026-03-10T10:00:00.000000Z", "e1")],
    )


def test_routing_by_severity_and_detector_globs(tmp_path: Path) -> None:
    cfg = file_sink.Config(
        type="file",
        path=str(tmp_path / "x"),
        min_severity=Severity.MEDIUM,
        detectors=["activation.*"],
        exclude=["activation.denied"],
    )
    assert cfg.routes(_alert(Severity.HIGH))
    assert not cfg.routes(_alert(Severity.LOW))
    assert not cfg.routes(_alert(Severity.HIGH, "settings.changed"))
    assert not cfg.routes(_alert(Severity.HIGH, "activation.denied"))


def test_sink_config_errors_name_the_key_path_and_never_echo_secrets(plugins: list[Plugin]) -> None:
    with pytest.raises(ConfigError) as exc:
        build(
            {
                "sinks": {
                    "a": {"type": "nope"},
                    "b": {"type": "file", "pth": "x"},
                    "c": {"type": "file", "path": "${PIMWATCH_MISSING_VAR}"},
                    "d": {"type": "console", "min_severity": "urgent"},
                }
            },
            plugins,
            "x.yaml",
            env={},
        )
    problems = "\n".join(exc.value.problems)
    assert "sinks.a.type: unknown sink type 'nope' (known: " in problems
    assert "sinks.b.pth: unknown key" in problems
    assert "sinks.c.path: environment variable PIMWATCH_MISSING_VAR is not set" in problems
    assert "sinks.d.min_severity:" in problems
    ok = build({"sinks": {"f": {"type": "file", "path": "${OUT}/a.jsonl"}}}, plugins, env={"OUT": "/tmp/o"})
    assert ok.sinks["f"].config.path == "/tmp/o/a.jsonl"  # type: ignore[attr-defined]


class Flaky:
    """A sink module stand-in with the real contract: fails as scripted, then succeeds."""

    BATCH = False
    RESOLVES = False

    def __init__(self, failures: list[Exception]):
        self.failures = failures
        self.sent: list[list[str]] = []

    def render(self, alerts: list[Alert], config: Any) -> list[str]:
        return [a.id for a in alerts]

    def send(self, rendered: list[str], config: Any, http: Any) -> str:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append(rendered)
        return "ok"


def _deliverer(store: SqliteStore, flaky: Flaky, clock: list[float], **policy: Any) -> Deliverer:
    cfg = file_sink.Config(type="file")
    sink = LoadedSink("flaky", cfg, flaky)  # type: ignore[arg-type]
    sleeps: list[float] = []

    def sleep(s: float) -> None:
        sleeps.append(s)
        clock[0] += s

    d = Deliverer(
        {"flaky": sink}, store, Policy(**policy), clock=lambda: clock[0], sleep=sleep, rng=random.Random(1)
    )
    d.sleeps = sleeps  # type: ignore[attr-defined]
    return d


def test_transient_errors_are_retried_in_the_run_honouring_retry_after() -> None:
    store, clock = SqliteStore(), [1000.0]
    store.merge_alert(_alert())
    flaky = Flaky([TransientError("429", retry_after=7.0), TransientError("503")])
    d = _deliverer(store, flaky, clock)
    d.enqueue(store.get_alert("a1"), "new")  # type: ignore[arg-type]
    out = d.run()
    assert out.sent == {"flaky": 1} and flaky.sent == [["a1"]]
    assert d.sleeps[0] >= 7.0  # type: ignore[attr-defined]
    assert [x.status for x in store.deliveries()] == ["sent"]
    assert d.run().sent == {}  # never sent twice


def test_still_failing_stays_pending_then_succeeds_on_a_later_run() -> None:
    store, clock = SqliteStore(), [1000.0]
    store.merge_alert(_alert())
    flaky = Flaky([TransientError("down")] * 3)
    d = _deliverer(store, flaky, clock, retries_in_run=2)
    d.enqueue(store.get_alert("a1"), "new")  # type: ignore[arg-type]
    assert d.run().pending == {"flaky": 1}
    (row,) = store.deliveries("pending")
    assert row.attempts == 1 and row.next_at > clock[0] and "down" in row.last_error
    assert d.run().sent == {}  # not due yet
    clock[0] = row.next_at
    assert d.run().sent == {"flaky": 1}
    assert flaky.sent == [["a1"]]


def test_permanent_errors_and_exhausted_retries_become_dead_letters_and_can_be_resent() -> None:
    store, clock = SqliteStore(), [1000.0]
    store.merge_alert(_alert(aid="a1"))
    store.merge_alert(_alert(aid="a2"))
    flaky = Flaky([PermanentError("400 bad request"), TransientError("x"), TransientError("y")])
    d = _deliverer(store, flaky, clock, retries_in_run=1, max_attempts=1)
    for aid in ("a1", "a2"):
        d.enqueue(store.get_alert(aid), "new")  # type: ignore[arg-type]
    out = d.run()
    assert out.dead == {"flaky": 2}
    assert {x.alert_id for x in store.deliveries("dead")} == {"a1", "a2"}
    assert store.requeue("dead", now=clock[0]) == 2
    assert d.run().sent == {"flaky": 2}


def test_backoff_grows_and_is_capped() -> None:
    d = _deliverer(SqliteStore(), Flaky([]), [0.0], base_delay_seconds=1, max_delay_seconds=10)
    delays = [d.backoff(n, None) for n in range(1, 8)]
    assert all(0.5 <= x <= 10 for x in delays) and delays[-1] >= 5
    assert d.backoff(1, 42.0) == 42.0
    assert retry_after("120") == 120.0 and retry_after(None) is None and retry_after("soon") is None


def _config(tmp_path: Path, sinks: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("break_glass:\n  accounts:\n" + "".join(f"    - {a}\n" for a in BREAK_GLASS) + sinks)
    return cfg


def test_replay_send_delivers_each_alert_once_and_a_dry_run_queues_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in mixed_stream()))
    out_file = tmp_path / "alerts.jsonl"
    cfg = _config(tmp_path, f"sinks:\n  archive: {{type: file, path: '{out_file}'}}\n")
    state = str(tmp_path / "s.db")
    assert main(["replay", "--config", str(cfg), "--state", state, "--format", "jsonl", str(stream)]) == 0
    printed = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert not out_file.exists()  # dry run
    assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
    written = [json.loads(x) for x in out_file.read_text().splitlines()]
    # every alert once as a trigger, and once more for the alerts resolved within the run
    assert sorted(a["id"] for a in written if a["status"] == "open") == sorted(a["id"] for a in printed)
    resolved = sorted(a["id"] for a in printed if a["status"] == "resolved")
    assert sorted(a["id"] for a in written if a["status"] == "resolved") == resolved
    assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
    assert main(["replay", "--config", str(cfg), "--state", state, "--send", str(stream)]) == 0
    assert len(out_file.read_text().splitlines()) == len(written)  # nothing twice
    capsys.readouterr()
    assert main(["outbox", "list", "--state", state, "--status", "sent"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("sent     archive") == len(written)


def test_an_unwritable_sink_keeps_its_alerts_as_dead_letters_listed_and_resendable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream = tmp_path / "s.jsonl"
    stream.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in mixed_stream()))
    locked = tmp_path / "locked"
    locked.mkdir()
    target = locked / "alerts.jsonl"
    target.mkdir()  # a folder where the file should be: writing fails
    cfg = _config(tmp_path, f"sinks:\n  archive: {{type: file, path: '{target}'}}\n")
    state = str(tmp_path / "s.db")
    main(["replay", "--config", str(cfg), "--state", state, "--send", str(stream)])
    err = capsys.readouterr().err
    assert "sink archive: 0 sent" in err and "dead letters" in err
    assert main(["deliver", "--config", str(cfg), "--state", state]) == 0  # nothing due: dead, not pending
    main(["outbox", "list", "--state", state, "--status", "dead"])
    dead = capsys.readouterr().out
    assert dead.count("dead     archive") > 0 and "last error: archive (file): cannot write" in dead
    target.rmdir()
    assert main(["outbox", "retry", "--state", state]) == 0
    assert main(["deliver", "--config", str(cfg), "--state", state]) == 0
    assert len(target.read_text().splitlines()) == dead.count("dead     archive")


def test_test_alert_and_render_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "t.jsonl"
    cfg = _config(
        tmp_path, f"sinks:\n  archive: {{type: file, path: '{out_file}'}}\n  screen: {{type: console}}\n"
    )
    assert main(["test-alert", "--config", str(cfg), "--sink", "archive", "--severity", "critical"]) == 0
    assert "archive: appended 1 alert(s)" in capsys.readouterr().out
    assert json.loads(out_file.read_text())["detector"] == "pimwatch.test"
    assert main(["render", "--config", str(cfg), "--sink", "screen", "--detector", "breakglass.signin"]) == 0
    assert "[CRITICAL] breakglass.signin" in capsys.readouterr().out
    assert main(["render", "--config", str(cfg), "--sink", "nope", "--detector", "breakglass.signin"]) == 2


def test_a_digest_holds_low_alerts_until_the_end_of_the_interval_and_sends_them_together() -> None:
    store, clock = SqliteStore(), [3600.0 * 100 + 10]
    flaky = Flaky([])
    flaky.BATCH = True  # type: ignore[misc]
    cfg = file_sink.Config(type="file", digest_minutes=60)
    d = Deliverer(
        {"digest": LoadedSink("digest", cfg, flaky)},  # type: ignore[arg-type]
        store,
        Policy(),
        clock=lambda: clock[0],
        sleep=lambda s: None,
    )
    for aid, sev in (("low1", Severity.LOW), ("info1", Severity.INFO), ("high1", Severity.HIGH)):
        store.merge_alert(_alert(sev, aid=aid))
        d.enqueue(store.get_alert(aid), "new")  # type: ignore[arg-type]
    d.run()
    assert flaky.sent == [["high1"]]  # above the digest severity: at once
    clock[0] = 3600.0 * 101  # the hour is over
    d.run()
    assert flaky.sent == [["high1"], ["info1", "low1"]] or flaky.sent == [["high1"], ["low1", "info1"]]


def test_a_deployment_can_override_a_template(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pimwatch.delivery import templating

    (tmp_path / "teams.title.txt.j2").write_text("OVERRIDDEN {{ '{{' }}")
    cfg = _config(tmp_path, f"templates: '{tmp_path}'\nsinks:\n  screen: {{type: console}}\n")
    try:
        assert (
            main(["render", "--config", str(cfg), "--sink", "screen", "--detector", "breakglass.signin"]) == 0
        )
        assert templating.render("teams.title.txt.j2").startswith("OVERRIDDEN {{")
    finally:
        templating.configure(None)
    bad = _config(tmp_path, "templates: /no/such/folder\n")
    assert main(["render", "--config", str(bad), "--sink", "screen", "--detector", "x"]) == 2
    assert "templates: expected a folder of template overrides" in capsys.readouterr().err
