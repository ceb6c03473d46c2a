"""Log Analytics exports as the Azure portal and queries give them (issue 10, "What to build" 1).

Facts from shared/reference/export-shapes.md (a) and (b): the portal's "Export → CSV (all columns)"
suffixes datetime columns with `` [UTC]`` (``TimeGenerated [UTC]``, ``CreatedDateTime [UTC]``,
``ActivityDateTime [UTC]``), writes times as ``9/19/2023, 1:42:37.848 PM`` (month/day/year, comma,
12-hour clock, three fraction digits) and booleans as ``TRUE``/``FALSE``; a query can project or
overwrite ``Type``, and ``az monitor log-analytics query`` adds ``TableName``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from pimwatch.detection.reader import Routed, Skipped, route_record
from pimwatch.detection.timeutil import parse_time
from pimwatch.testing import as_log_analytics as to_la
from pimwatch.testing import csv_bytes as to_csv
from tests.test_reader import RECORDS, _by_id, baseline, jsonl, key_fields, read, replay, routed_events

TIME_COLUMNS = ("TimeGenerated", "CreatedDateTime", "ActivityDateTime")


def portal_time(value: str) -> str:
    dt = parse_time(value)
    assert dt is not None
    hour = dt.hour % 12 or 12
    half = "AM" if dt.hour < 12 else "PM"
    clock = f"{hour}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}"
    return f"{dt.month}/{dt.day}/{dt.year}, {clock} {half}"


def portal_row(rec: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in to_la(rec).items():
        if key in TIME_COLUMNS:
            row[f"{key} [UTC]"] = portal_time(value)
        elif isinstance(value, bool):
            row[key] = "TRUE" if value else "FALSE"
        else:
            row[key] = value
    return row


def _ms(e: Any) -> tuple[Any, ...]:
    """key_fields with the event time to the millisecond (the portal writes three digits)."""
    fields = key_fields(e)
    return (
        fields[0],
        fields[1],
        fields[2].replace(microsecond=fields[2].microsecond // 1000 * 1000),
        *fields[3:],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9/19/2023, 1:42:37.848 PM", datetime(2023, 9, 19, 13, 42, 37, 848000, tzinfo=UTC)),
        ("2/25/2025, 9:19:25.391 AM", datetime(2025, 2, 25, 9, 19, 25, 391000, tzinfo=UTC)),
        ("12/31/2025, 12:00:00.000 AM", datetime(2025, 12, 31, 0, 0, tzinfo=UTC)),
        ("1/9/2007 10:41:00 AM +01:00", datetime(2007, 1, 9, 9, 41, tzinfo=UTC)),
        ("1/9/2007 10:41 PM -0530", datetime(2007, 1, 10, 4, 11, tzinfo=UTC)),
        ("11/14/2025 1:48:53 AM", datetime(2025, 11, 14, 1, 48, 53, tzinfo=UTC)),
    ],
)
def test_portal_and_us_times_with_offsets_parse(text: str, expected: datetime) -> None:
    assert parse_time(text) == expected
    assert parse_time(text.replace("AM", "am").replace("PM", "pm")) == expected


@pytest.mark.parametrize(
    "text", ["1/9/2007 13:41:00 PM", "2/30/2025, 1:00:00.000 AM", "1/9/2007 10:41 AM +25:00"]
)
def test_impossible_us_times_are_not_times(text: str) -> None:
    assert parse_time(text) is None


def test_a_portal_csv_export_gives_the_events_of_the_event_hub_shape(tmp_path: Path) -> None:
    files = {
        "AuditLogs.csv": [portal_row(r) for r in RECORDS if r["category"] == "AuditLogs"],
        "SigninLogs.csv": [portal_row(r) for r in RECORDS if r["category"] == "SignInLogs"],
        "AADNonInteractiveUserSignInLogs.csv": [
            portal_row(r) for r in RECORDS if r["category"] == "NonInteractiveUserSignInLogs"
        ],
    }
    events = []
    for name, rows in files.items():
        assert any(k.endswith(" [UTC]") for k in rows[0])
        path = tmp_path / name
        path.write_bytes(to_csv(rows))
        events += routed_events(read(path))
    assert [_ms(e) for e in sorted(events, key=_by_id)] == [_ms(e) for e in baseline()]


def test_a_portal_csv_export_raises_the_alerts_of_the_event_hub_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eh = tmp_path / "records.jsonl"
    eh.write_bytes(jsonl(RECORDS))
    portal = tmp_path / "portal"
    portal.mkdir()
    for table in ("AuditLogs", "SignInLogs", "NonInteractiveUserSignInLogs"):
        rows = [portal_row(r) for r in RECORDS if r["category"] == table]
        (portal / f"{table}.csv").write_bytes(to_csv(rows))
    results = []
    for source in (eh, portal):
        rc, alerts, err = replay(
            ["--quarantine", str(tmp_path / f"q-{source.name}.jsonl"), str(source)], capsys
        )
        assert rc == 0 and "bad records" not in err, err
        results.append(sorted((a["detector"], a["title"]) for a in alerts))
    assert results[0] and results[0] == results[1]


@pytest.mark.parametrize("value", ["PrimaryResult", "x", "SignIns", "AuditLogs_projected"])
def test_rows_whose_type_is_no_table_name_are_routed_by_their_columns(value: str) -> None:
    routed = []
    for rec in RECORDS:
        row = to_la(rec)
        row["Type"] = value
        row["TableName"] = "PrimaryResult"  # az monitor log-analytics query adds it
        item = route_record(row, "q.json", 1)
        assert isinstance(item, Routed), item
        routed.append((item.route, item.category))
    assert routed == [
        ("audit", "AuditLogs") if r["category"] == "AuditLogs" else ("signin", r["category"]) for r in RECORDS
    ]


@pytest.mark.parametrize(
    "table",
    ["AADServicePrincipalSignInLogs", "AADManagedIdentitySignInLogs", "OfficeActivity", "AzureActivity"],
)
def test_rows_of_other_tables_stay_skipped_whatever_their_columns(table: str) -> None:
    signin = next(r for r in RECORDS if r["category"] == "SignInLogs")
    row = to_la(signin)
    row["Type"] = table
    item = route_record(row, "q.json", 1)
    assert item == Skipped(table, "loganalytics")


def test_a_row_with_an_unknown_type_and_no_telling_columns_is_skipped_under_its_type() -> None:
    row = {"TimeGenerated": "2026-03-10T08:00:00Z", "OperationName": "Something", "Type": "Heartbeat"}
    assert route_record(row, "q.json", 1) == Skipped("Heartbeat", "loganalytics")


def test_a_utc_offset_in_a_us_time_moves_the_event_time() -> None:
    rec = next(r for r in RECORDS if r["category"] == "AuditLogs")
    row = to_la(rec)
    at = parse_time(rec["properties"]["activityDateTime"])
    assert at is not None
    local = at.astimezone(timezone(timedelta(hours=2)))
    row["ActivityDateTime"] = local.strftime("%m/%d/%Y %I:%M:%S %p") + " +02:00"
    item = route_record(row, "q.json", 1)
    assert isinstance(item, Routed)
    (event,) = routed_events([item])
    assert event.time == at.replace(microsecond=0)


def az_rows(table: str) -> bytes:
    """``az monitor log-analytics query -w WS --analytics-query 'AuditLogs'`` > file (export-shapes.md
    (b)): one JSON array, every value str(value) (so "True", "None", "0"), TableName added, keys
    sorted, two-space indentation."""
    rows = []
    for rec in RECORDS:
        if rec["category"] != table:
            continue
        row: dict[str, Any] = {k: str(v) for k, v in to_la(rec).items()}
        row["TableName"] = "PrimaryResult"
        row["ResultDescription"] = "None"
        rows.append(row)
    return (
        json.dumps(rows, ensure_ascii=False, indent=2, sort_keys=True, separators=(",", ": ")).encode()
        + b"\n"
    )


@pytest.mark.parametrize(
    "encoding", ["utf-8", "utf-16"]
)  # `>` in Windows PowerShell 5.1: UTF-16 LE, BOM, CRLF
def test_az_monitor_log_analytics_query_output_gives_the_events_of_the_event_hub_shape(
    encoding: str, tmp_path: Path
) -> None:
    events = []
    for table in ("AuditLogs", "SignInLogs", "NonInteractiveUserSignInLogs"):
        data = az_rows(table)
        if encoding == "utf-16":
            data = data.decode().replace("\n", "\r\n").encode("utf-16")
        path = tmp_path / f"{table}.json"
        path.write_bytes(data)
        items = read(path)
        assert all(isinstance(i, Routed) and i.props.get("resultDescription") is None for i in items)
        events += routed_events(items)
    assert [key_fields(e) for e in sorted(events, key=_by_id)] == [key_fields(e) for e in baseline()]
