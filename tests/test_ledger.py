"""The report's ledger in the state (issue 13 item 2) and the weekly report by e-mail (item 3), in the
Functions runtime: real ``azure.functions`` objects (tests/functions_host.py), SQLite and Azurite,
a real SMTP server (aiosmtpd) and a loopback Teams endpoint.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pimwatch.cli import main
from pimwatch.detection.activities import ACTIVATION_ENDED
from pimwatch.detection.ledger import LedgerWriter, rec_of, row, to_rec, wants
from pimwatch.detection.normalize import audit_event, signin_event
from pimwatch.hosting import runtime
from pimwatch.state import retention
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import PIM_SYSTEM, pim, signin
from tests.functions_host import FUNCTIONS, batch, messages, timer
from tests.loopback import Answer, serve
from tests.sinks.conftest import Recorder, smtp_server
from tests.test_report import ALICE, BG, CONFIG, DAY, UA, _activation, _report, _t, known_stream

LATER = "2026-03-17T12:00:00.000Z"  # when the day's records were enqueued: the tick clock passes it
STATE_TABLES = ("access_review", "activations", "approvals", "assignments", "breakglass")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Functions app's settings: a SQLite state and the config ``setup(text)`` writes."""

    def setup(text: str) -> Path:
        (tmp_path / "pimwatch.yaml").write_text(text, encoding="utf-8")
        monkeypatch.setenv("PIMWATCH_CONFIG", str(tmp_path / "pimwatch.yaml"))
        monkeypatch.setenv("PIMWATCH_STATE", str(tmp_path / "state.db"))
        monkeypatch.setenv("PIMWATCH_QUARANTINE_DIR", str(tmp_path / "quarantine"))
        return tmp_path

    runtime.reset_runtime()
    yield setup
    runtime.reset_runtime()


def _through_functions(records: list[dict[str, Any]], per_batch: int = 4, enqueued: str = LATER) -> None:
    bodies = messages(records)
    for i in range(0, len(bodies), per_batch):
        FUNCTIONS["entra_events"](batch(bodies[i : i + per_batch], enqueued=enqueued))


def test_the_report_from_the_ledger_of_the_functions_app_matches_the_report_from_the_files(
    app: Any, tmp_path: Path
) -> None:
    """The known day through the Functions app's Event Hub trigger, then ``pimwatch report --state``
    with no PATH: the tables built from PIM, role and break-glass records are byte-identical to the
    report of the files; what the ledger does not keep (other audit records, ordinary sign-ins) is
    the documented difference."""
    files = _report(tmp_path, known_stream(), "files")
    records = known_stream()
    records = records[1::2] + records[::2] + records[:7]  # another order, and duplicates
    app(CONFIG)
    _through_functions(records)
    timer()  # the clock-driven detectors decide what was absent (approval.overdue)
    runtime.reset_runtime()
    out = tmp_path / "ledger"
    args = ["report", "--config", str(tmp_path / "pimwatch.yaml"), "--from", DAY, "--to", "2026-03-17"]
    assert main([*args, "--state", str(tmp_path / "state.db"), "--out", str(out)]) == 0
    names = sorted(p.name for p in files.iterdir())
    same, differ, missing = filecmp.cmpfiles(files, out, names, shallow=False)
    assert missing == [] and sorted(p.name for p in out.iterdir()) == names
    assert sorted(same) == sorted(
        [*(f"{t}.csv" for t in STATE_TABLES), "PIM-Audit-2026-03-16.csv", "alerts.csv"]
    )
    # What differs, exactly: alice's "Update user" while elevated is a UserManagement record (not
    # kept), and the page's input line and coverage statement (the ledger counts only what it keeps).
    assert differ == ["elevated_activity.csv", "report.html"]
    from_files = (files / "elevated_activity.csv").read_text(encoding="utf-8-sig").splitlines()
    from_ledger = (out / "elevated_activity.csv").read_text(encoding="utf-8-sig").splitlines()
    assert from_ledger == from_files[:1] and len(from_files) == 2 and "Update user" in from_files[1]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "Input: state.db." in page and "<b>3</b>activations (3 principals, 2 roles)" in page


# --- the weekly report, sent by the Functions timer ---------------------------------------------------


def _weekly_config(smtp_port: int, teams_url: str, now: datetime) -> str:
    """Due today at this hour (UTC), so the real timer trigger (which passes the wall clock) sends it."""
    weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]
    return (
        CONFIG
        + "sinks:\n"
        + "  weekly: {type: email, sender: pimwatch@contoso.com, to: [secops@contoso.com],"
        + f" smtp_host: 127.0.0.1, smtp_port: {smtp_port}, tls: none, detectors: [none]}}\n"
        + f"  channel: {{type: teams, webhook_url: '{teams_url}/wf', detectors: [none]}}\n"
        + f"report: {{schedule: {{weekday: {weekday}, hour: {now.hour}}}, mail: weekly, teams: channel}}\n"
    )


def _last_week(now: datetime) -> list[dict[str, Any]]:
    """Yesterday: alice's approved activation and its end, and a break-glass sign-in."""
    day = f"{now - timedelta(days=1):%Y-%m-%d}"
    recs = _activation(
        ALICE,
        _t("09:00:00", day),
        _t("11:11:00", day),
        justification="INC123456 mailbox restore",
        mfa="True",
        completed_at=_t("09:11:00", day),
    )
    recs.append(pim(ACTIVATION_ENDED, _t("11:11:00", day), PIM_SYSTEM, principal=ALICE, role=UA))
    recs.append(signin(BG, _t("03:00:00", day)))
    return recs


def _kv(state: Path, prefix: str) -> dict[str, Any]:
    store = SqliteStore(str(state))
    try:
        rows = store._db.execute("SELECT k FROM kv WHERE k LIKE ?", (prefix + "%",)).fetchall()
        return {k: store.get(k) for (k,) in rows}
    finally:
        store.close()


def test_the_timer_mails_the_weekly_report_once_per_period_with_its_csvs_and_a_teams_card(
    app: Any, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    handler = Recorder()
    with smtp_server(handler) as port, serve(Answer(202)) as teams:
        app(_weekly_config(port, teams.url, now))
        _through_functions(_last_week(now), enqueued=f"{now:%Y-%m-%dT%H:%M:%S}.000Z")
        timer()
        timer()  # the same instance again
        runtime.reset_runtime()
        timer()  # another instance (a fresh runtime on the same state)
    assert len(handler.received) == 1
    msg = handler.received[0].parsed()
    assert msg["Subject"].startswith("[pimwatch] PIM report ") and "1 activations" in msg["Subject"]
    names = sorted(str(p.get_filename()) for p in msg.iter_attachments())
    tables = (*STATE_TABLES, "alerts", "elevated_activity")
    assert names == sorted(
        [f"PIM-Audit-{now - timedelta(days=1):%Y-%m-%d}.csv", "report.html"] + [f"{t}.csv" for t in tables]
    )
    body = msg.get_body(("html",))
    assert body is not None and "Activations outside business hours" in body.get_content()
    activations = next(p for p in msg.iter_attachments() if p.get_filename() == "activations.csv")
    text = activations.get_payload(decode=True).decode("utf-8-sig")
    assert "adm-alice@contoso.com" in text and "INC123456" in text
    assert len(teams.requests) == 1
    card = json.loads(teams.requests[0].body)
    facts = {
        f["title"]: f["value"]
        for item in card["attachments"][0]["content"]["body"]
        for f in item.get("facts", [])
    }
    assert facts["Activations"] == "1" and facts["Break-glass sign-ins and actions"] == "1"
    sent = _kv(tmp_path / "state.db", "report:weekly:sent:")
    assert len(sent) == 1 and "250" in next(iter(sent.values()))


def test_a_weekly_report_the_mail_server_refused_is_sent_by_the_next_timer(app: Any, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    handler = Recorder(data_reply="451 4.3.0 try again later")
    with smtp_server(handler) as port, serve(Answer(202)) as teams:
        app(_weekly_config(port, teams.url, now))
        _through_functions(_last_week(now), enqueued=f"{now:%Y-%m-%dT%H:%M:%S}.000Z")
        timer()
        assert len(handler.received) >= 1 and _kv(tmp_path / "state.db", "report:weekly:sent:") == {}
        assert list(_kv(tmp_path / "state.db", "report:weekly:failed:").values()) == [1]
        assert teams.requests == []  # the card follows the mail, never precedes it
        refused = len(handler.received)
        handler.data_reply = "250 2.0.0 OK queued as T2"
        timer()
        timer()
    assert len(handler.received) == refused + 1
    assert len(teams.requests) == 1
    assert len(_kv(tmp_path / "state.db", "report:weekly:sent:")) == 1


# --- the Ledger role: SQLite and Azure Tables (Azurite) ----------------------------------------------


@pytest.fixture(params=["sqlite", "table"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "sqlite":
        s: Any = SqliteStore(":memory:")
    else:
        from pimwatch.state.tables import TableStore

        s = TableStore(request.getfixturevalue("azurite_tables"), prefix="t" + uuid.uuid4().hex[:16])
    yield s
    s.close()


def _write_ledger(store: Any, records: list[dict[str, Any]], into: Any = None) -> LedgerWriter:
    """The records through a real pipeline with the ledger on (written to ``into``, default the same
    store), one unit of work."""
    from pimwatch.config import build
    from pimwatch.detection.detector import discover
    from pimwatch.detection.pipeline import Pipeline
    from pimwatch.detection.reader import classify
    from pimwatch.hosting.driver import Driver
    from pimwatch.state.quarantine import Quarantine

    plugins = discover()
    config = build({"break_glass": {"accounts": [BG[0]]}}, plugins)
    pipeline = Pipeline(plugins, config, store, Quarantine(os.devnull), report=lambda _m: None)
    pipeline.ledger = writer = LedgerWriter(store if into is None else into, config.settings)
    items = [item for i, r in enumerate(records) for item in classify(r, "test", i + 1)]
    driver = Driver(pipeline)
    unit = getattr(store, "unit", None)
    with unit() if unit is not None else contextlib.nullcontext():
        driver.batch(items, datetime(2026, 3, 17, tzinfo=UTC))
    return writer


def test_the_ledger_keeps_pim_role_and_break_glass_records_once_each(store: Any) -> None:
    records = known_stream()
    _write_ledger(store, records + records[:10])  # duplicates count once
    rows = store.ledger_rows("2026-03-16", "2026-03-17")
    recs = [rec_of(r) for r in rows if "id" in r]
    assert len({r.id for r in recs}) == len(recs)
    assert all(wants(r) for r in recs)
    kinds = {(r.kind, r.audit_category or r.category) for r in recs}
    assert kinds == {("audit", "RoleManagement"), ("signin", "SignInLogs")}
    assert [r.subject.upn for r in recs if r.kind == "signin"] == [BG[1]]  # no ordinary sign-in
    assert not any(r.activity == "Update user" for r in recs)  # UserManagement: not kept
    marks = sorted((r["category"], r["hour"]) for r in rows if "id" not in r)
    assert ("SignInLogs", "2026-03-16T03") in marks and ("AuditLogs", "2026-03-16T09") in marks
    # Day partitions: one day's read holds only that day's rows.
    late = store.ledger_rows("2026-03-17", "2026-03-17")
    assert late and all(str(r.get("time", r.get("hour")))[:10] == "2026-03-17" for r in late)
    assert store.ledger_rows("2026-01-05", "2026-01-05")  # hank's eligibility, two months before


def test_a_row_round_trips_to_the_same_rec() -> None:
    from pimwatch.detection.detector import Settings
    from pimwatch.detection.reader import Routed, classify

    settings = Settings.build([BG[0]], None)
    recs = []
    for i, record in enumerate(known_stream()):
        for item in classify(record, "test", i + 1):
            assert isinstance(item, Routed)
            norm = signin_event if item.route == "signin" else audit_event
            recs.append(to_rec(norm(item.props, item.top, item.shape, item.category, item.raw), settings))
    assert sum(1 for r in recs if r.flat) >= 10 and any(r.start and r.end for r in recs)
    for rec in recs:
        assert rec_of(json.loads(json.dumps(row(rec)))) == rec


def test_retention_forgets_ledger_days_older_than_report_retention_days(store: Any) -> None:
    _write_ledger(store, known_stream())
    assert store.ledger_rows("2026-01-05", "2026-01-05")
    watermark = datetime(2026, 3, 17, 2, tzinfo=UTC)
    now = datetime(2026, 12, 8, tzinfo=UTC)
    kept = retention.prune(store, watermark, timedelta(days=7), now, ledger=timedelta(days=400))
    assert kept.ledger == 0 and store.ledger_rows("2026-01-05", "2026-01-05")
    done = retention.prune(store, watermark, timedelta(days=7), now, ledger=timedelta(days=30))
    assert done.ledger == 2  # hank's eligibility of 2026-01-05 and its hour mark
    assert store.ledger_rows("0000", "2026-02-14") == []
    assert store.ledger_rows("2026-03-16", "2026-03-17")  # the rest stays


def test_ledger_rows_ride_in_the_batch_s_unit_of_work(azurite_tables: str) -> None:
    """On Azure Tables the rows are written with the batch's first wave (one transaction per day): a
    batch with its ledger costs no more round trips than without it."""
    from pimwatch.state.tables import TableStore

    records = [r for r in known_stream() if str(r["time"]).startswith(DAY)]
    costs = []
    for ledger in (False, True):
        s = TableStore(azurite_tables, prefix="t" + uuid.uuid4().hex[:16])
        try:
            before = s.round_trips
            elsewhere = SqliteStore(":memory:")  # the same records read, the rows kept elsewhere
            _write_ledger(s, records, into=None if ledger else elsewhere)
            elsewhere.close()
            costs.append(s.round_trips - before)
            assert bool(s.ledger_rows(DAY, DAY)) == ledger
        finally:
            s.close()
    assert costs[1] == costs[0], costs


# --- report: in the config ------------------------------------------------------------------------------


def test_the_schedule_is_validated_and_names_its_key() -> None:
    from pimwatch.config import ConfigError, build
    from pimwatch.detection.detector import discover

    plugins = discover()
    mail = {"m": {"type": "email", "sender": "p@contoso.com", "to": ["s@contoso.com"], "smtp_host": "mx"}}
    cases = [
        ({"schedule": {"weekday": "monday"}}, "report.schedule.weekday"),
        ({"schedule": {"hour": 24}, "mail": "m"}, "report.schedule.hour"),
        ({"schedule": {"weekday": "mon"}}, "report.mail: the weekly report"),
        ({"schedule": {}, "mail": "nosuch"}, "report.mail: 'nosuch' is not an email sink"),
        ({"schedule": {}, "mail": "m", "teams": "m"}, "report.teams: 'm' is not a teams sink"),
        ({"retention_days": 0}, "report.retention_days"),
        ({"schedule": {}, "mail": "m", "ledger": False}, "report.schedule: the weekly report is built"),
    ]
    for report, problem in cases:
        with pytest.raises(ConfigError) as err:
            build({"sinks": mail, "report": report}, plugins)
        assert any(p.startswith(problem) for p in err.value.problems), (report, err.value.problems)
    config = build(
        {"sinks": mail, "report": {"schedule": {"weekday": "fri", "hour": 6}, "mail": "m"}}, plugins
    )
    assert config.report.retention_days == 400 and config.report.ledger


def test_the_schedule_s_due_time_and_period() -> None:
    from pimwatch.report.settings import Schedule

    s = Schedule(weekday="mon", hour=7)
    monday = datetime(2026, 3, 16, 7, tzinfo=UTC)
    assert s.last(monday) == monday and s.last(monday - timedelta(seconds=1)) == monday - timedelta(days=7)
    assert s.last(monday + timedelta(days=6, hours=23)) == monday
    assert s.period(monday) == (datetime(2026, 3, 9, tzinfo=UTC), datetime(2026, 3, 16, tzinfo=UTC))
