"""Input shapes: every container the reader accepts gives the same events; bad input is kept, never fatal.

Formats and drift: shared/reference/entra-events.md §0, §1, §2. Real records: shared/samples/.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import shutil
import sys
import zlib
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimwatch.cli import main
from pimwatch.config import build
from pimwatch.detection.activities import ACTIVATION_COMPLETED, ROLE_SETTING_UPDATED
from pimwatch.detection.detector import Plugin
from pimwatch.detection.event import Event, Principal
from pimwatch.detection.normalize import audit_event, signin_event
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import (
    Bad,
    Item,
    Routed,
    Screen,
    Screened,
    Skipped,
    expand,
    read_file,
    route_record,
)
from pimwatch.hosting.driver import Driver
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import TENANT, directory, pim, signin, user
from pimwatch.testing import as_graph as to_graph
from pimwatch.testing import as_log_analytics as to_la
from pimwatch.testing import csv_bytes as to_csv
from tests.conftest import SHARED_SAMPLES

FIXTURES = Path(__file__).parent / "fixtures"


# --- helpers -------------------------------------------------------------------------------------


def read(path: str | Path, screen: Screen | None = None) -> list[Item]:
    return list(read_file(str(path), [0], screen))


def normalize(item: Routed) -> Event:
    fn = audit_event if item.route == "audit" else signin_event
    return fn(item.props, item.top, item.shape, item.category, item.raw)


def routed_events(items: Iterable[Item]) -> list[Event]:
    items = list(items)
    others = [i for i in items if not isinstance(i, Routed)]
    assert not others, others
    return [normalize(i) for i in items if isinstance(i, Routed)]


def who(p: Principal) -> tuple[str | None, ...]:
    return (p.id, p.upn, p.name, p.type)


def key_fields(e: Event) -> tuple[Any, ...]:
    """What must not depend on the container: kind, id, time, activity, actor, target, role, ..."""
    fields: tuple[Any, ...] = (
        e.kind,
        e.id,
        e.time,
        e.category,
        e.activity,
        who(e.actor),
        who(e.target),
        e.role_name,
        e.role_id,
        e.request_id,
        e.result,
        e.justification,
        e.start,
        e.service,
        e.audit_category,
    )
    s = e.signin
    if s is not None:
        fields += (
            s.app,
            s.ip,
            s.country,
            s.city,
            s.error_code,
            s.ca_status,
            s.auth_requirement,
            s.auth_methods,
            s.risk_during,
            s.risk_aggregated,
            s.interactive,
        )
    return fields


def tenant_of(e: Event) -> str | None:
    return e.signin.tenant_id if e.signin is not None else e.tenant_id


def jsonl(objs: Iterable[Any]) -> bytes:
    return b"".join(orjson.dumps(o) + b"\n" for o in objs)


def pipeline_for(plugins: list[Plugin], config: Mapping[str, Any], tmp_path: Path) -> Pipeline:
    cfg = build(dict(config), plugins, "test config")
    return Pipeline(plugins, cfg, SqliteStore(":memory:"), Quarantine(str(tmp_path / "quarantine.jsonl")))


def replay(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], str]:
    rc = main(["replay", "--format", "jsonl", *argv])
    out, err = capsys.readouterr()
    return rc, [orjson.loads(line) for line in out.splitlines() if line.strip()], err


def quarantined(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


# --- 1. the shared samples -----------------------------------------------------------------------

R_AUDIT_EH = ("Routed", "audit", "eventhub", "AuditLogs")
EXPECTED_ROUTING: dict[str, list[tuple[str, ...]]] = {
    "01": [R_AUDIT_EH],
    "02": [R_AUDIT_EH],
    "03": [R_AUDIT_EH],
    "04": [R_AUDIT_EH],
    "05": [("Routed", "signin", "eventhub", "SignInLogs")],
    "06": [("Skipped", "ServicePrincipalSignInLogs", "eventhub")],
    "07": [R_AUDIT_EH],  # one record inside a {"records": [...]} envelope
    "08": [("Routed", "audit", "graph", "AuditLogs")],  # a Graph page
    "09": [("Routed", "signin", "graph", "SignInLogs")],  # a Graph sign-in page
    "10": [("Routed", "audit", "graph", "AuditLogs")] * 2,  # a JSON array of two Graph objects
    "11": [("Bad",)],  # excerpts, not records
}


def _describe(item: Item) -> tuple[str, ...]:
    if isinstance(item, Routed):
        return ("Routed", item.route, item.shape, item.category)
    if isinstance(item, Skipped):
        return ("Skipped", item.category, item.shape)
    return (type(item).__name__,)


@pytest.fixture(scope="module")
def samples() -> Path:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"shared samples folder not found at {SHARED_SAMPLES}")
    return SHARED_SAMPLES


def sample(folder: Path, prefix: str) -> Path:
    (path,) = folder.glob(f"{prefix}_*.json")
    return path


def test_every_shared_sample_has_an_expected_routing(samples: Path) -> None:
    assert sorted(p.name[:2] for p in samples.glob("*.json")) == sorted(EXPECTED_ROUTING)


@pytest.mark.parametrize("prefix", sorted(EXPECTED_ROUTING))
def test_shared_sample_is_routed_as_expected(samples: Path, prefix: str) -> None:
    items = read(sample(samples, prefix))
    assert [_describe(i) for i in items] == EXPECTED_ROUTING[prefix]
    # Each record carries the line its value starts on (an array's elements are read one by one).
    lines = sample(samples, prefix).read_bytes().split(b"\n")
    for i in items:
        if isinstance(i, Routed | Bad):
            assert lines[i.line - 1].lstrip(b"\xef\xbb\xbf [")[:1] == b"{", (i.line, lines[i.line - 1][:40])


def test_sample_11_excerpts_are_quarantined_whole_as_an_unrecognised_shape(samples: Path) -> None:
    path = sample(samples, "11")
    (bad,) = read(path)
    assert isinstance(bad, Bad)
    assert bad.source == str(path) and bad.line == 1
    assert bad.reason.startswith("unrecognised record shape")
    assert "_about" in bad.reason and "excerpts" in bad.reason
    assert orjson.loads(bad.raw) == orjson.loads(path.read_bytes())


def test_replaying_the_samples_folder_reads_every_record_and_quarantines_only_sample_11(
    samples: Path, plugins: list[Plugin], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "q.jsonl"
    rc, _alerts, _ = replay(["--quarantine", str(q), str(samples)], capsys)
    assert rc == 0
    (entry,) = quarantined(q)
    assert entry["source"].endswith("11_EXCERPTS_pim_fields_lab_notebook_not_full_records.json")
    pipeline = pipeline_for(plugins, {}, tmp_path)
    for path in expand([str(samples)]):
        pipeline.feed(read_file(path, [0], pipeline.screen))
    Driver(pipeline).finish()
    assert pipeline.stats.records == {
        ("AuditLogs", "eventhub"): 5,
        ("AuditLogs", "graph"): 3,
        ("SignInLogs", "eventhub"): 1,
        ("SignInLogs", "graph"): 1,
    }
    assert pipeline.stats.skipped == {"ServicePrincipalSignInLogs": 1}
    assert sum(pipeline.stats.bad.values()) == 1


# --- 2. every container gives the same events ----------------------------------------------------

ALICE = user("alice")
BOB = user("bob")
EVE = user("adm-eve")
USER_ADMIN = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
GLOBAL_ADMIN = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")


def _published_later(rec: dict[str, Any], seconds: int = 95) -> dict[str, Any]:
    """Top-level ``time`` is when Entra published the record (entra-events.md §1.3), not the event time."""
    at = datetime.fromisoformat(rec["time"].replace("Z", "+00:00")) + timedelta(seconds=seconds)
    rec["time"] = at.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    return rec


RECORDS: list[dict[str, Any]] = [
    _published_later(rec)
    for rec in (
        pim(
            ACTIVATION_COMPLETED,
            "2026-03-10T09:00:00.1234567Z",
            ALICE,
            principal=ALICE,
            role=USER_ADMIN,
            justification="INC-4711 patch night",
        ),
        directory("Add member to role", "2026-03-10T09:00:04.5Z", "MS-PIM", ALICE, role=USER_ADMIN),
        directory("Remove member from role", "2026-03-10T17:00:00Z", "MS-PIM", ALICE, role=USER_ADMIN),
        pim(
            ROLE_SETTING_UPDATED,
            "2026-03-10T11:30:00+00:00",
            EVE,
            role=GLOBAL_ADMIN,
            reason="Setting changes in this session: Approval disabled.",
        ),
        signin(
            BOB,
            "2026-03-10T09:05:00Z",
            error=50126,
            ca="notApplied",
            requirement="singleFactorAuthentication",
            methods=("Password",),
            ip="203.0.113.9",
            country="DE",
            city="Berlin",
            risk="medium",
        ),
        signin(ALICE, "2026-03-10T09:06:00Z", category="NonInteractiveUserSignInLogs", app="Microsoft Graph"),
    )
]


def _graph_page(objs: list[dict[str, Any]], endpoint: str, more: bool) -> bytes:
    page: dict[str, Any] = {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#auditLogs/{endpoint}"
    }
    page["value"] = objs
    if more:
        page["@odata.nextLink"] = f"https://graph.microsoft.com/v1.0/auditLogs/{endpoint}?$skiptoken=abc"
    return json.dumps(page, indent=4).encode()


AUDITS = [r for r in RECORDS if r["category"] == "AuditLogs"]
SIGNINS = [r for r in RECORDS if r["category"] != "AuditLogs"]

# container name → {file name: bytes}
CONTAINERS: dict[str, Callable[[], dict[str, bytes]]] = {
    "eventhub-records-jsonl": lambda: {"records.jsonl": jsonl(RECORDS)},
    "eventhub-messages-jsonl": lambda: {
        "messages.jsonl": jsonl([{"records": RECORDS[:3]}, {"records": RECORDS[3:]}])
    },
    "eventhub-pretty-message": lambda: {"message.json": json.dumps({"records": RECORDS}, indent=2).encode()},
    "eventhub-json-array": lambda: {"records.json": json.dumps(RECORDS, indent=2).encode()},
    "eventhub-pretty-records-concatenated": lambda: {  # `jq . records.jsonl > records.json`
        "records.json": b"".join(json.dumps(r, indent=2).encode() + b"\n" for r in RECORDS)
    },
    "graph-objects-jsonl": lambda: {"graph.jsonl": jsonl(to_graph(r) for r in RECORDS)},
    "graph-json-array": lambda: {"graph.json": json.dumps([to_graph(r) for r in RECORDS]).encode()},
    "graph-pages": lambda: {
        "directoryAudits.json": _graph_page([to_graph(r) for r in AUDITS], "directoryAudits", more=True),
        "signIns.json": _graph_page([to_graph(r) for r in SIGNINS], "signIns", more=False),
    },
    "loganalytics-json-array": lambda: {
        "la.json": json.dumps([to_la(r) for r in RECORDS], indent=1).encode()
    },
    "loganalytics-json-per-table": lambda: {
        f"{table}.json": json.dumps([to_la(r) for r in RECORDS if to_la(r)["Type"] == table]).encode()
        for table in ("AuditLogs", "SigninLogs", "AADNonInteractiveUserSignInLogs")
    },
    "loganalytics-csv": lambda: {
        "AuditLogs.csv": to_csv([to_la(r) for r in AUDITS]),
        "SigninLogs.csv": to_csv([to_la(r) for r in SIGNINS if r["category"] == "SignInLogs"]),
        "AADNonInteractiveUserSignInLogs.csv": to_csv(
            [to_la(r) for r in SIGNINS if r["category"] != "SignInLogs"]
        ),
    },
}


def baseline() -> list[Event]:
    return sorted((normalize(route_record(r, "baseline", i)) for i, r in enumerate(RECORDS, 1)), key=_by_id)


def _by_id(e: Event) -> str:
    return e.id


def events_via(
    transport: str, files: dict[str, bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[Event]:
    events: list[Event] = []
    for name, data in files.items():
        if transport.endswith("gzip"):
            data = gzip.compress(data)
            name += ".gz"
        if transport.startswith("stdin"):
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
            items = read("-")
        else:
            path = tmp_path / name
            path.write_bytes(data)
            items = read(path)
        events += routed_events(items)
    return sorted(events, key=_by_id)


def test_baseline_events_carry_every_compared_field() -> None:
    """Guards the comparison below against comparing Nones: the builders' values come through."""
    by_activity = {e.activity: e for e in baseline() if e.kind == "audit"}
    act = by_activity[ACTIVATION_COMPLETED]
    assert act.time == datetime(2026, 3, 10, 9, 0, 0, 123456, tzinfo=UTC)
    assert who(act.actor) == (ALICE[0], ALICE[1], ALICE[2], "User")
    assert who(act.target) == (ALICE[0], ALICE[1], ALICE[2], "User")
    assert (act.role_name, act.role_id) == USER_ADMIN
    assert act.justification == "INC-4711 patch night" and act.request_id and act.start
    removed = by_activity["Remove member from role"]
    assert (removed.role_name, removed.role_id) == USER_ADMIN
    assert removed.actor.name == "MS-PIM" and removed.actor.type == "App"
    (bob,) = [e for e in baseline() if e.actor.upn == BOB[1]]
    assert bob.signin is not None
    assert (bob.signin.error_code, bob.signin.ip, bob.signin.city, bob.signin.risk_during) == (
        50126,
        "203.0.113.9",
        "Berlin",
        "medium",
    )
    assert bob.signin.auth_methods == ("Password",)


@pytest.mark.parametrize("transport", ["file", "gzip", "stdin", "stdin-gzip"])
@pytest.mark.parametrize("container", sorted(CONTAINERS))
def test_every_container_gives_the_same_events(
    container: str, transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = events_via(transport, CONTAINERS[container](), tmp_path, monkeypatch)
    want = baseline()
    assert [key_fields(e) for e in got] == [key_fields(e) for e in want]
    if not container.startswith("graph"):  # Graph output carries no tenant (entra-events.md §2.1)
        assert {tenant_of(e) for e in got} == {TENANT}


def test_every_container_routes_by_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes: dict[str, set[str]] = {}
    for name, make in CONTAINERS.items():
        for fname, data in make().items():
            (tmp_path / fname).write_bytes(data)
            shapes.setdefault(name, set()).update(
                i.shape for i in read(tmp_path / fname) if isinstance(i, Routed)
            )
    assert shapes == {
        name: {"eventhub" if name.startswith("eventhub") else name.split("-")[0]} for name in CONTAINERS
    }


def test_event_time_is_activity_or_creation_time_not_publication_time() -> None:
    for e, rec in zip(baseline(), sorted(RECORDS, key=lambda r: r["properties"]["id"]), strict=True):
        published = datetime.fromisoformat(rec["time"].replace("Z", "+00:00"))
        assert published - e.time == timedelta(seconds=95)


def test_log_analytics_tenant_is_aadtenantid_never_the_workspace_tenantid() -> None:
    row = to_la(AUDITS[0])
    assert normalize(_only_routed(row)).tenant_id == TENANT
    del row["AADTenantId"]  # then unknown, or taken from ResourceId: never the workspace
    assert normalize(_only_routed(row)).tenant_id in (None, TENANT)
    srow = to_la(SIGNINS[0])
    del srow["AADTenantId"]
    e = normalize(_only_routed(srow))
    assert e.signin is not None and e.signin.tenant_id in (None, TENANT)


def _only_routed(obj: dict[str, Any]) -> Routed:
    item = route_record(obj, "test", 1)
    assert isinstance(item, Routed), item
    return item


def test_log_analytics_dynamic_columns_may_be_objects_or_json_strings() -> None:
    as_strings = [to_la(r) for r in RECORDS]
    as_objects = [
        {k: (json.loads(v) if isinstance(v, str) and v.startswith(("[", "{")) else v) for k, v in row.items()}
        for row in as_strings
    ]
    a = sorted((normalize(_only_routed(r)) for r in as_strings), key=_by_id)
    b = sorted((normalize(_only_routed(r)) for r in as_objects), key=_by_id)
    assert [key_fields(e) for e in a] == [key_fields(e) for e in b] == [key_fields(e) for e in baseline()]


def test_log_analytics_rows_without_type_column_are_routed_by_their_columns() -> None:
    rows = [to_la(r) for r in RECORDS]
    for row in rows:
        del row["Type"]
    routes = [(i.route, i.category) for i in (_only_routed(r) for r in rows)]
    assert routes == [
        ("audit", "AuditLogs"),
        ("audit", "AuditLogs"),
        ("audit", "AuditLogs"),
        ("audit", "AuditLogs"),
        ("signin", "SignInLogs"),
        ("signin", "NonInteractiveUserSignInLogs"),
    ]


def test_fully_quoted_csv_file_is_read_as_csv(tmp_path: Path) -> None:
    """PowerShell's Export-Csv quotes every header and value."""
    out = io.StringIO()
    rows = [to_la(r) for r in AUDITS]
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    path = tmp_path / "AuditLogs.csv"
    path.write_text(out.getvalue())
    got = sorted(routed_events(read(path)), key=_by_id)
    assert [key_fields(e) for e in got] == [key_fields(e) for e in baseline() if e.kind == "audit"]


def test_fully_quoted_csv_on_stdin_is_read_as_csv(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    rows = [to_la(r) for r in AUDITS]
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(rows)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(out.getvalue().encode())))
    got = sorted(routed_events(read("-")), key=_by_id)
    assert [key_fields(e) for e in got] == [key_fields(e) for e in baseline() if e.kind == "audit"]


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("container", ["graph-json-array", "graph-pages", "eventhub-records-jsonl"])
def test_json_with_a_utf8_byte_order_mark_gives_the_same_events(container: str, tmp_path: Path) -> None:
    events: list[Event] = []
    for name, data in CONTAINERS[container]().items():
        path = tmp_path / name
        path.write_bytes(BOM + data)
        events += routed_events(read(path))
    want = baseline()
    assert [key_fields(e) for e in sorted(events, key=_by_id)] == [key_fields(e) for e in want]


@pytest.mark.parametrize("container", ["eventhub-messages-jsonl", "loganalytics-csv", "graph-pages"])
def test_cli_reads_stdin_like_a_file(
    container: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (name, data), *_ = CONTAINERS[container]().items()
    path = tmp_path / name
    path.write_bytes(data)
    rc, from_file, _ = replay(["--quarantine", str(tmp_path / "q1.jsonl"), str(path)], capsys)
    assert rc == 0 and from_file, "the container holds a role-setting change that must alert"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(gzip.compress(data))))
    rc, from_stdin, _ = replay(["--quarantine", str(tmp_path / "q2.jsonl"), "-"], capsys)
    assert rc == 0
    assert from_stdin == from_file
    assert not (tmp_path / "q1.jsonl").exists() and not (tmp_path / "q2.jsonl").exists()


# --- 4. bad input never stops a run and never vanishes -------------------------------------------

BAD_LINES = FIXTURES / "bad_lines.jsonl"


def test_bad_lines_do_not_stop_the_run_and_good_records_are_all_processed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "q.jsonl"
    rc, alerts, _ = replay(["--quarantine", str(q), str(BAD_LINES)], capsys)
    assert rc == 0
    assert sorted(a["first_seen"] for a in alerts) == [
        "2026-03-10T08:00:00.000000Z",
        "2026-03-10T08:05:00.000000Z",
        "2026-03-10T08:10:00.000000Z",
    ]
    assert len(quarantined(q)) == 4


def test_each_bad_line_is_quarantined_with_source_line_reason_and_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "q.jsonl"
    replay(["--quarantine", str(q), str(BAD_LINES)], capsys)
    text = BAD_LINES.read_text().split("\n")
    entries = quarantined(q)
    assert [set(e) for e in entries] == [{"source", "line", "reason", "raw", "offset"}] * 4
    assert [(e["source"], e["line"]) for e in entries] == [(str(BAD_LINES), n) for n in (2, 4, 5, 7)]
    starts = [0]
    for t in text:
        starts.append(starts[-1] + len(t.encode()) + 1)
    assert [e["offset"] for e in entries] == [starts[n - 1] for n in (2, 4, 5, 7)]  # byte offsets
    by_line = {e["line"]: e for e in entries}
    assert by_line[2]["reason"].startswith("malformed JSON")
    assert by_line[4]["reason"] == "expected a JSON object, got int"
    assert by_line[5]["reason"].startswith("unrecognised record shape (keys: error)")
    assert by_line[7]["reason"].startswith("malformed JSON")
    # Kept as the text that was read, also when it is valid JSON (line 5 has json.dumps spacing).
    assert [by_line[n]["raw"] for n in (2, 4, 5, 7)] == [text[1], text[3], text[4], text[6]]
    assert by_line[4]["raw"] == "42" and ": {" in by_line[5]["raw"]


def test_jsonl_whose_first_line_is_malformed_still_yields_every_other_record(tmp_path: Path) -> None:
    good = [orjson.dumps(r).decode() for r in AUDITS]
    path = tmp_path / "first-line-bad.jsonl"
    path.write_text("\n".join([good[0][:200], *good[1:]]) + "\n")
    items = read(path)
    assert [_describe(i) for i in items] == [("Bad",)] + [R_AUDIT_EH] * (len(AUDITS) - 1)
    bad = items[0]
    assert isinstance(bad, Bad) and (bad.line, bad.raw) == (1, good[0][:200])


def test_quarantine_file_is_valid_jsonl_and_can_be_read_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "q.jsonl"
    replay(["--quarantine", str(q), str(BAD_LINES)], capsys)
    lines = q.read_bytes().splitlines()
    assert len(lines) == 4
    assert all(isinstance(orjson.loads(line), dict) for line in lines)
    again = read(q)  # quarantine entries are not records: each is reported again, nothing raises
    assert [type(i) for i in again] == [Bad] * 4


@pytest.mark.parametrize(
    "fixture", ["broken_array_no_closing_bracket.json", "broken_array_no_opening_bracket.json"]
)
def test_broken_json_array_of_one_line_records_still_yields_every_record(
    fixture: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = read(FIXTURES / fixture)
    assert [_describe(i) for i in items] == [R_AUDIT_EH] * 3
    q = tmp_path / "q.jsonl"
    rc, alerts, _ = replay(["--quarantine", str(q), str(FIXTURES / fixture)], capsys)
    assert rc == 0 and len(alerts) == 3 and not q.exists()


def test_broken_json_array_quarantines_only_its_bad_element(tmp_path: Path) -> None:
    lines = [orjson.dumps(r).decode() for r in AUDITS[:3]]
    lines[1] = lines[1][:150]
    path = tmp_path / "broken.json"
    path.write_text("[\n" + ",\n".join(lines) + "\n")
    items = read(path)
    assert [_describe(i) for i in items] == [R_AUDIT_EH, ("Bad",), R_AUDIT_EH]
    bad = items[1]
    assert isinstance(bad, Bad)
    assert bad.line == 3 and bad.raw.rstrip(",") == lines[1]
    assert bad.reason.startswith("malformed JSON")


def test_broken_pretty_printed_array_quarantines_the_broken_object_whole(tmp_path: Path) -> None:
    objs = [json.dumps(r, indent=2) for r in AUDITS[:3]]
    broken = objs[1].replace('"result": "success"', '"result": success"', 1)
    assert broken != objs[1]
    text = "[\n" + ",\n".join([objs[0], broken, objs[2]]) + "\n]\n"
    path = tmp_path / "pretty.json"
    path.write_text(text)
    items = read(path)
    assert [_describe(i) for i in items] == [R_AUDIT_EH, ("Bad",), R_AUDIT_EH]
    bad = items[1]
    assert isinstance(bad, Bad)
    assert bad.line == text.count("\n", 0, text.index(broken)) + 1
    assert bad.raw.rstrip(",") == broken
    assert [e.id for e in routed_events(i for i in items if isinstance(i, Routed))] == [
        AUDITS[0]["properties"]["id"],
        AUDITS[2]["properties"]["id"],
    ]


def test_broken_pretty_printed_json_array_still_yields_its_records(samples: Path, tmp_path: Path) -> None:
    text = sample(samples, "10").read_text().rstrip()
    assert text.endswith("]")
    path = tmp_path / "10_truncated.json"
    path.write_text(text[:-1])
    items = read(path)
    assert [_describe(i) for i in items] == EXPECTED_ROUTING["10"]
    assert [normalize(i).id for i in items if isinstance(i, Routed)] == [
        e.id for e in routed_events(read(sample(samples, "10")))
    ]


def _many_audit_lines(n: int) -> bytes:
    at = "2026-03-10T{:02d}:{:02d}:00Z"
    recs = [
        pim(ACTIVATION_COMPLETED, at.format(i // 60 % 24, i % 60), user(f"u{i}"), principal=user(f"u{i}"))
        for i in range(n)
    ]
    return jsonl(recs)


def test_gzip_truncated_mid_way_keeps_the_records_before_and_reports_the_error(tmp_path: Path) -> None:
    data = _many_audit_lines(1500)  # > 1 MiB once decompressed
    packed = gzip.compress(data)
    path = tmp_path / "day.jsonl.gz"
    path.write_bytes(packed[: len(packed) * 3 // 4])
    items = read(path)
    assert 500 < sum(isinstance(i, Routed) for i in items) < 1500
    last = items[-1]
    assert isinstance(last, Bad) and last.reason.startswith("unreadable input") and last.source == str(path)


@pytest.mark.parametrize("damage", ["crc", "truncated"])
def test_small_corrupt_gzip_reports_an_error_and_does_not_crash(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    packed = bytearray(gzip.compress(_many_audit_lines(20)))
    if damage == "crc":
        mid = len(packed) // 2
        packed[mid : mid + 8] = bytes(b ^ 0xFF for b in packed[mid : mid + 8])
    else:
        packed = packed[: len(packed) // 2]
    path = tmp_path / "small.jsonl.gz"
    path.write_bytes(bytes(packed))
    q = tmp_path / "q.jsonl"
    rc, _, _ = replay(["--quarantine", str(q), str(path)], capsys)
    assert rc in (0, 1)
    assert any(e["reason"].startswith("unreadable input") for e in quarantined(q))


def test_gzip_with_a_corrupt_block_after_good_records_reports_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = gzip.compress(_many_audit_lines(1500))
    corrupt_member = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff" + b"\x07" + b"\x00" * 16  # BTYPE=11
    with pytest.raises(zlib.error):
        gzip.decompress(good + corrupt_member)
    path = tmp_path / "two-members.jsonl.gz"
    path.write_bytes(good + corrupt_member)
    items = read(path)
    assert sum(isinstance(i, Routed) for i in items) == 1500
    assert isinstance(items[-1], Bad) and items[-1].reason.startswith("unreadable input")


# --- 5. folders and paths ------------------------------------------------------------------------

TREE = FIXTURES / "tree"


def test_folders_are_read_recursively_and_skip_non_log_files() -> None:
    assert expand([str(TREE)]) == [
        str(TREE / "graph" / "page.json"),
        str(TREE / "nested" / "deeper" / "audit.jsonl"),
    ]


def test_folder_suffix_filter_looks_under_gz_and_skips_dotfiles(tmp_path: Path) -> None:
    root = tmp_path / "logs"
    shutil.copytree(TREE, root)
    (root / "nested" / "day.jsonl.gz").write_bytes(gzip.compress(jsonl(AUDITS[:1])))
    (root / "nested" / "pimwatch.yaml.gz").write_bytes(gzip.compress(b"break_glass: {}\n"))
    (root / "nested" / ".partial.jsonl").write_bytes(jsonl(AUDITS[1:2])[:50])
    (root / "la.csv").write_bytes(to_csv([to_la(AUDITS[2])]))
    assert [Path(p).relative_to(root).as_posix() for p in expand([str(root)])] == [
        "graph/page.json",
        "la.csv",
        "nested/day.jsonl.gz",
        "nested/deeper/audit.jsonl",
    ]


def test_replaying_a_folder_reads_only_its_logs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    q = tmp_path / "q.jsonl"
    rc, alerts, _ = replay(["--quarantine", str(q), str(TREE)], capsys)
    assert rc == 0
    assert len(alerts) == 3
    assert not q.exists(), "README.md, pimwatch.yaml or notes.txt was read as input"


def test_missing_path_exits_1_before_reading_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    q = tmp_path / "q.jsonl"
    missing = tmp_path / "no-such-folder"
    rc, alerts, err = replay(["--quarantine", str(q), str(BAD_LINES), str(missing)], capsys)
    assert rc == 1
    assert alerts == []
    assert str(missing) in err
    assert not q.exists(), "the readable file was read although another path is missing"


# --- 6. the byte screen --------------------------------------------------------------------------

BG_UPN = "bg-admin01@contoso.onmicrosoft.com"
BG_UPPER = (
    "c0ffee00-0000-4000-8000-00000000b0ff",  # not configured: only the UPN can match
    BG_UPN.upper(),
    "Emergency Admin 01",
)
ORDINARY = [signin(user(n), f"2026-03-10T0{i}:00:00Z") for i, n in enumerate(("bob", "carol", "dave"), 1)]


def _alerts(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [a.to_dict() for a in pipeline.store.alerts()]


def test_screen_keeps_a_break_glass_signin_whose_upn_is_upper_cased(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    path = tmp_path / "signins.jsonl"
    path.write_bytes(jsonl([*ORDINARY[:2], signin(BG_UPPER, "2026-03-10T02:30:00Z"), ORDINARY[2]]))
    pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [BG_UPN]}}, tmp_path)
    assert pipeline.screen is not None
    items = read(path, pipeline.screen)
    assert _kinds(items) == ([Routed], 3)
    pipeline.feed(items)
    Driver(pipeline).finish()
    assert pipeline.stats.screened == 3
    (alert,) = _alerts(pipeline)
    assert alert["detector"] == "breakglass.signin"
    assert alert["principal"]["upn"] == BG_UPN.upper()


def test_screen_counts_ordinary_signins_without_reading_them(plugins: list[Plugin], tmp_path: Path) -> None:
    path = tmp_path / "signins.jsonl"
    path.write_bytes(jsonl(ORDINARY))
    pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [BG_UPN]}}, tmp_path)
    pipeline.feed(read_file(str(path), [0], pipeline.screen))
    Driver(pipeline).finish()
    assert pipeline.stats.screened == 3
    assert pipeline.stats.records == {("SignInLogs", "eventhub"): 3}
    assert _alerts(pipeline) == []


def test_a_break_glass_upn_escaped_in_the_bytes_is_still_matched(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    """A JSON writer may escape a non-ASCII UPN (\\u00c4): the screen sees an escape in the value,
    parses that line, and the break-glass sign-in still alerts; ordinary lines are still screened."""
    upn = "notfall-zugang-ä@contoso.onmicrosoft.com"
    pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [upn]}}, tmp_path)
    assert pipeline.screen is not None
    bg = signin(("c0ffee00-0000-4000-8000-00000000b0aa", upn.upper(), "Notfall"), "2026-03-10T02:30:00Z")
    path = tmp_path / "signins.jsonl"
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in [*ORDINARY, bg]))
    assert b"\\u00c4" in path.read_bytes()
    items = read(path, pipeline.screen)
    assert _kinds(items) == ([Routed], len(ORDINARY))
    pipeline.feed(items)
    Driver(pipeline).finish()
    (alert,) = _alerts(pipeline)
    assert alert["detector"] == "breakglass.signin" and alert["principal"]["upn"] == upn.upper()


def test_screen_never_drops_an_envelope_whose_first_record_is_a_signin(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    """Any message can mix categories (entra-events.md §1.1); the audit record after the sign-in counts."""
    setting = AUDITS[3]
    path = tmp_path / "messages.jsonl"
    path.write_bytes(jsonl([{"records": [ORDINARY[0], setting]}]))
    pipeline = pipeline_for(plugins, {}, tmp_path)
    assert pipeline.screen is not None
    items = read(path, pipeline.screen)
    assert [_describe(i) for i in items if not isinstance(i, Screened)] == [R_AUDIT_EH]
    assert _kinds(items)[1] == 1  # the sign-in is counted, not lost
    pipeline.feed(items)
    Driver(pipeline).finish()
    assert [a["detector"] for a in _alerts(pipeline)] == ["settings.changed"]


def test_screen_never_drops_a_jsonl_array_line_whose_first_record_is_a_signin(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    setting = AUDITS[3]
    path = tmp_path / "batches.jsonl"
    path.write_bytes(jsonl([ORDINARY[1], [ORDINARY[0], setting]]))
    without_screen = [_describe(i) for i in read(path)]
    assert without_screen == [("Routed", "signin", "eventhub", "SignInLogs")] * 2 + [R_AUDIT_EH]
    pipeline = pipeline_for(plugins, {}, tmp_path)
    assert R_AUDIT_EH in [_describe(i) for i in read(path, pipeline.screen)]


def test_screen_parses_a_signin_whose_upn_bytes_hold_an_escape(plugins: list[Plugin], tmp_path: Path) -> None:
    """A writer may escape any character (\\u0040 for "@"): the bytes then hold no plain UPN to compare."""
    line = orjson.dumps(signin(BG_UPPER, "2026-03-10T02:30:00Z")).replace(b"@", b"\\u0040")
    assert BG_UPN.upper().encode() not in line and b"\\u0040" in line
    path = tmp_path / "signins.jsonl"
    path.write_bytes(jsonl(ORDINARY) + line + b"\n")
    pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [BG_UPN]}}, tmp_path)
    items = read(path, pipeline.screen)
    assert _kinds(items) == ([Routed], 3)
    pipeline.feed(items)
    Driver(pipeline).finish()
    (alert,) = _alerts(pipeline)
    assert alert["principal"]["upn"] == BG_UPN.upper()


def test_screen_keeps_a_break_glass_signin_by_object_id_in_any_case(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    oid = "c0ffee00-0000-4000-8000-00000000b001"
    bg = (oid.upper(), "someone-else@contoso.com", "Emergency Admin 01")
    path = tmp_path / "signins.jsonl"
    path.write_bytes(jsonl([ORDINARY[0], signin(bg, "2026-03-10T02:30:00Z")]))
    pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [oid]}}, tmp_path)
    items = read(path, pipeline.screen)
    assert _kinds(items) == ([Routed], 1)
    pipeline.feed(items)
    Driver(pipeline).finish()
    (alert,) = _alerts(pipeline)
    assert alert["principal"]["id"] == oid.upper()


def test_screen_reads_only_properties_level_user_fields(plugins: list[Plugin], tmp_path: Path) -> None:
    """A nested object holding another userId before the real one (a layout Entra does not use
    today) must not hide a break-glass sign-in: the screen then parses the line."""
    bg = ("c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com", "BG")
    rec = signin(bg, "2026-03-10T02:30:00Z")
    props = rec.pop("properties")
    rec["properties"] = {"signInIdentity": {"userId": "11111111-0000-4000-8000-000000000000"}, **props}
    line = json.dumps(rec, separators=(",", ":")).encode()
    pipeline = pipeline_for(plugins, {"break_glass": {"accounts": [bg[0]]}}, tmp_path)
    assert pipeline.screen is not None
    assert not pipeline.screen.uninteresting(line)
    ordinary = json.dumps(ORDINARY[0], separators=(",", ":")).encode()
    assert pipeline.screen.uninteresting(ordinary)


def _kinds(items: list[Item]) -> tuple[list[type], int]:
    """The types of the items that are not screened, in order, and how many records were screened
    (screened sign-ins are counted in batches, so their place in the sequence means nothing)."""
    return [type(i) for i in items if not isinstance(i, Screened)], sum(
        i.count for i in items if isinstance(i, Screened)
    )


def _risky_line(risk: str = "high", ca: str = "success") -> bytes:
    return orjson.dumps(signin(user("erin"), "2026-03-10T02:30:00Z", risk=risk, ca=ca))


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        (_risky_line("none"), False),
        (_risky_line("high"), True),
        (_risky_line("HIGH"), True),  # compared in lower case, like the parsed record
        (_risky_line("low"), True),  # a level a config may ask for: the detector judges it
        (_risky_line("none", ca="failure"), True),
        (_risky_line("none", ca="notApplied"), False),
        (
            _risky_line("none").replace(b'"riskLevelDuringSignIn":"none"', b'"riskLevelDuringSignIn":null'),
            False,
        ),
        # read as the parser reads them: an escape in the value, the field nested deeper (not a
        # properties-level one), repeated (the last counts), another layout after the key
        (
            _risky_line("none").replace(
                b'"riskLevelDuringSignIn":"none"', b'"riskLevelDuringSignIn":"hig\\u0068"'
            ),
            True,
        ),
        (
            _risky_line("none").replace(b'"riskState":', b'"x":{"riskLevelAggregated":"high"},"riskState":'),
            False,
        ),
        (
            _risky_line("high").replace(b'"riskState":', b'"riskLevelAggregated":"none","riskState":'),
            True,  # (riskLevelDuringSignIn is still high)
        ),
        (
            _risky_line("none").replace(b'"riskState":', b'"riskLevelAggregated":"HIGH","riskState":'),
            True,
        ),
        (
            _risky_line("none").replace(
                b'"riskLevelDuringSignIn":"none"', b'"riskLevelDuringSignIn": "high"'
            ),
            True,
        ),
    ],
)
def test_screen_lets_through_sign_ins_by_their_own_risk_and_conditional_access(
    plugins: list[Plugin], tmp_path: Path, line: bytes, parsed: bool
) -> None:
    """What a sign-in detector needs besides break-glass accounts is read from the record itself
    (activation.risky_session: risk levels, Conditional Access failure), so the screen is the same
    whatever was read before; the byte check and the check on the parsed record agree."""
    pipeline = pipeline_for(plugins, {}, tmp_path)
    screen = pipeline.screen
    assert screen is not None
    assert screen.uninteresting(line) is not parsed
    assert screen.wants(orjson.loads(line)["properties"]) is parsed


# The sign-in screen's byte check against the parsed record, on any layout of the fields it reads:
# the fields in any order, a field missing, repeated at the properties level or nested, a value
# that is null, not a string, escaped or not ASCII, and a field that shares the risk fields' prefix.
_BG_ID, _BG_UPN = "c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com"
_SCREEN = Screen(
    ((frozenset({_BG_ID}), frozenset({_BG_UPN})),),
    (
        ("conditionalAccessStatus", frozenset({"failure"})),
        ("riskLevelAggregated", frozenset({"low", "medium", "high"})),
        ("riskLevelDuringSignIn", frozenset({"low", "medium", "high"})),
    ),
)
_FIELD_VALUES: dict[str, list[Any]] = {
    "conditionalAccessStatus": ["success", "failure", "FAILURE", "notApplied", None, 1, "failur\\u0065"],
    "riskLevelAggregated": ["none", "low", "High", "medium", None, True, "hīgh", "hig\\u0068"],
    "riskLevelDuringSignIn": ["none", "HIGH", "hidden", "", None, ["high"], "nóne"],
    "riskLevelOther": ["high", "none"],  # shares the probe "riskLevel, is no field the screen reads
    "userId": ["11111111-0000-4000-8000-000000000000", _BG_ID, _BG_ID.upper(), "c0ffee00\\u002d"],
    "userPrincipalName": ["erin@contoso.com", _BG_UPN, _BG_UPN.upper(), "Ērin@contoso.com", "bg\\u002dadmin"],
}


def _json_pairs(pairs: list[tuple[str, Any]]) -> bytes:
    """An object from key/value pairs, keys possibly repeated; a string value holding ``\\u`` is
    written as that escape (so the bytes hold an escape sequence)."""
    out = []
    for key, value in pairs:
        text = orjson.dumps(value).replace(b"\\\\u", b"\\u")
        out.append(orjson.dumps(key) + b":" + text)
    return b"{" + b",".join(out) + b"}"


@st.composite
def _signin_lines(draw: st.DrawFn) -> bytes:
    pairs: list[tuple[str, Any]] = [("id", "r1")]
    for name, values in _FIELD_VALUES.items():
        for _ in range(draw(st.sampled_from([1] * 6 + [0, 2]))):
            value = draw(st.one_of(st.just(values[0]), st.just(values[0]), st.sampled_from(values)))
            nested = draw(st.sampled_from([False] * 5 + [True]))
            pairs.append(("x", {name: value}) if nested else (name, value))
    pairs = [pairs[i] for i in draw(st.permutations(range(len(pairs))))] + [("status", {"errorCode": 0})]
    top = orjson.dumps({"time": "2026-03-10T02:30:00Z", "category": "SignInLogs", "tenantId": TENANT})
    return top[:-1] + b',"properties":' + _json_pairs(pairs) + b"}"


@settings(max_examples=600, deadline=None, derandomize=True)
@given(_signin_lines())
def test_screen_decides_as_the_parsed_record_on_any_layout(line: bytes) -> None:
    """The check before parsing and the check on the parsed record agree on every layout: fields in
    any order, missing, repeated (the last one counts, as in orjson), nested deeper (not read),
    escaped, not ASCII, not strings; a sign-in the detectors want is never skipped, and one they do
    not want is never parsed."""
    assert _SCREEN.uninteresting(line) is not _SCREEN.wants(orjson.loads(line)["properties"])


def test_a_sign_in_line_whose_category_is_repeated_is_left_to_the_parser(tmp_path: Path) -> None:
    """The byte path reads the first "category", the parser keeps the last: a line whose last
    category is another table must not be counted as a screened sign-in."""
    from pimwatch.detection.reader import Screen, Screened, read_file

    screen = Screen(((frozenset({"bg"}), frozenset()),), (("riskLevelDuringSignIn", frozenset({"high"})),))
    props = b'"properties":{"userId":"u1","userPrincipalName":"a@contoso.com"}'
    same = b'{"category":"SignInLogs",' + props + b',"category":"SignInLogs"}\n'
    other = b'{"category":"SignInLogs",' + props + b',"category":"AuditLogs"}\n'
    path = tmp_path / "repeated.jsonl"
    path.write_bytes(same + other)
    items = list(read_file(str(path), [0], screen))
    assert sum(i.count for i in items if isinstance(i, Screened)) == 1
    assert [i for i in items if not isinstance(i, Screened)]  # the other line went to the parser
