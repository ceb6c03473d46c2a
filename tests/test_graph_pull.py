"""``pimwatch pull`` against the local Graph on loopback (pimwatch/graph/fake.py serving
``auditLogs/directoryAudits`` and ``auditLogs/signIns``): the alerts of a first pull are those replay
gives for the same records; the overlap reads late records again and what it reads twice counts once;
paging, 429 with Retry-After, 403 naming the permission, the cursor across a restart, the CLI and the
Functions timer."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from pimwatch.cli import _parser
from pimwatch.cli import pull as pull_cli
from pimwatch.config import Config, build
from pimwatch.delivery.sink import Http
from pimwatch.detection.detector import discover
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.timeutil import parse_time
from pimwatch.graph.fake import FakeGraph, Fault, serve
from pimwatch.graph.pull import CURSOR, DriverHost, PullResult, pull, read_cursor, timer
from pimwatch.hosting.driver import Driver, ProgressTick
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import as_graph, pim, user
from pimwatch.testing.harness import drive_records
from tests.streams import BREAK_GLASS, full_stream

PLUGINS = discover()
# Queries beyond the default (PIM, RoleManagement, GroupManagement, break-glass) that the stream's
# other detectors read: conditional_access.weakened, credentials.privileged_changed, elevation.root_access.
WIDE = [
    "category eq 'Policy'",
    "category eq 'UserManagement'",
    "loggedByService eq 'Azure RBAC (Elevated Access)'",
]
NEEDS_WIDE = {"conditional_access.weakened", "credentials.privileged_changed", "elevation.root_access"}


def _records() -> list[dict[str, Any]]:
    """Every detector case plus noise, as the tenant's Graph holds them (and replay gets them): v1.0
    ``signIns`` lists interactive sign-ins only, so the non-interactive ones are left out, and so is
    a case record whose activity is only in the Event Hub envelope's ``operationName`` (no Graph form)."""
    return [
        r
        for r in full_stream()
        if r["category"] != "NonInteractiveUserSignInLogs"
        and (r["category"] != "AuditLogs" or "activityDisplayName" in r["properties"])
    ]


RECORDS = _records()
OLDEST = min(t for r in RECORDS if (t := parse_time(r["time"])) is not None)
NEWEST = max(t for r in RECORDS if (t := parse_time(r["time"])) is not None)
NOW = NEWEST + timedelta(minutes=15)  # the pull's clock (now - overlap) is then replay's: the newest record


def _tenant(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "directoryAudits": [as_graph(r) for r in records if r["category"] == "AuditLogs"],
        "signIns": [as_graph(r) for r in records if r["category"] != "AuditLogs"],
    }


def _config(url: str, **pull_settings: Any) -> Config:
    data = {
        "graph": {"endpoint": url, "credential": "none", "pull": pull_settings},
        "break_glass": {"accounts": BREAK_GLASS},
    }
    return build(data, PLUGINS, "test config")


class Puller:
    """A state store and what ``pimwatch pull`` builds on it; a new one on the same file is a restart."""

    def __init__(self, path: str, config: Config, tmp: Path) -> None:
        self.store = SqliteStore(path)
        self.config = config
        pipeline = Pipeline(PLUGINS, config, self.store, Quarantine(str(tmp / "q.jsonl")))
        self.driver = Driver(pipeline, ProgressTick())
        self.waits: list[float] = []

    def pull(self, now: datetime, since: datetime | None = None) -> tuple[PullResult, DriverHost]:
        async def sleep(s: float) -> None:
            self.waits.append(s)

        from pimwatch.graph.client import GraphClient

        host = DriverHost(self.driver)
        client = GraphClient(self.config.graph, sleep=sleep)
        return pull(self.config, host, now, since=since, client=client), host

    def outbox(self) -> list[tuple[str, str, int, str, tuple[Any, ...]]]:
        return sorted((a.id, a.detector, a.count, a.status, tuple(a.events)) for a in self.store.alerts())

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def state(tmp_path: Path) -> Iterator[str]:
    yield str(tmp_path / "state.db")


def _replayed(records: list[dict[str, Any]]) -> list[tuple[str, str, int, str, tuple[Any, ...]]]:
    alerts, _, _ = drive_records(records, PLUGINS, {"break_glass": {"accounts": BREAK_GLASS}})
    return sorted((a.id, a.detector, a.count, a.status, tuple(a.events)) for a in alerts)


def _filters(g: FakeGraph, endpoint: str) -> list[str]:
    return [
        parse_qs(urlsplit(r).query)["$filter"][0]
        for r in g.requests
        if f"/auditLogs/{endpoint}" in r and "$skiptoken" not in r
    ]


def test_a_first_pull_raises_what_replay_raises_for_the_same_records(state: str, tmp_path: Path) -> None:
    """Across pages of 7 (Graph lists newest first; the pull feeds oldest first): the same alerts,
    counts and records as ``pimwatch replay`` of the tenant's records, absence detectors included."""
    with serve(_tenant(RECORDS), page_size=7) as g:
        p = Puller(state, _config(g.url, audit_filters=WIDE), tmp_path)
        try:
            result, host = p.pull(NOW, since=OLDEST)
            got = p.outbox()
        finally:
            p.close()
    audits, signins = result.endpoints
    assert result.complete and audits.pages > audits.queries  # paged
    assert audits.records == sum(r["category"] == "AuditLogs" for r in RECORDS)
    assert got == _replayed(RECORDS)
    assert {d for _, d, *_ in got} >= {"approval.overdue", "breakglass.signin", "activation.risky_session"}
    assert set(host.changes.values()) <= {"new", "resolved"} and len(host.changes) == len(got)
    assert audits.cursor == max(
        t for r in RECORDS if r["category"] == "AuditLogs" and (t := parse_time(r["time"])) is not None
    )
    assert signins.records > 0 and signins.error is None


def test_the_default_queries_miss_only_the_detectors_the_docs_name(state: str, tmp_path: Path) -> None:
    with serve(_tenant(RECORDS)) as g:
        p = Puller(state, _config(g.url), tmp_path)
        try:
            p.pull(NOW, since=OLDEST)
            got = p.outbox()
        finally:
            p.close()
    replayed = _replayed(RECORDS)
    missed = {d for _, d, *_ in replayed} - {d for _, d, *_ in got}
    assert set(got) <= set(replayed) and missed == NEEDS_WIDE


def test_a_second_pull_reads_the_overlap_again_and_changes_nothing(state: str, tmp_path: Path) -> None:
    with serve(_tenant(RECORDS)) as g:
        p = Puller(state, _config(g.url, audit_filters=WIDE), tmp_path)
        try:
            first, _ = p.pull(NOW, since=OLDEST)
            before = p.outbox()
            again, host = p.pull(NOW + timedelta(minutes=5))
            after = p.outbox()
        finally:
            p.close()
        second = _filters(g, "directoryAudits")[len(_filters(g, "directoryAudits")) // 2 :]
    cursor = first.endpoints[0].cursor
    assert cursor is not None
    start = (cursor - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert second and all(f.startswith(f"activityDateTime ge {start} and ") for f in second)
    assert again.endpoints[0].records > 0  # the overlap was read again ...
    assert host.changes == {} and after == before  # ... and counted once
    assert again.endpoints[0].cursor == cursor


def test_a_late_record_inside_the_overlap_is_picked_up_once(state: str, tmp_path: Path) -> None:
    """Graph lists a record minutes after it happened: one older than the newest seen, within the
    overlap, arrives after the first pull. The second pull raises its alert; a third changes nothing."""
    records = [r for r in RECORDS if r["category"] == "AuditLogs"]
    newest = max(t for r in records if (t := parse_time(r["time"])) is not None)
    late_at = (newest - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ga = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
    late = pim(
        "Add member to role in PIM completed (permanent)",
        late_at,
        user("adm-late"),
        principal=user("x"),
        role=ga,
    )
    tenant = _tenant(records)
    with serve(tenant) as g:
        p = Puller(state, _config(g.url, signins=False), tmp_path)
        try:
            p.pull(newest + timedelta(minutes=1), since=OLDEST)
            tenant["directoryAudits"].append(as_graph(late))
            _, second = p.pull(newest + timedelta(minutes=6))
            _, third = p.pull(newest + timedelta(minutes=11))
            raised = [p.store.get_alert(a) for a, c in second.changes.items() if c == "new"]
        finally:
            p.close()
    assert raised and all(
        a is not None and late["properties"]["id"] in {e[1] for e in a.events} for a in raised
    )
    assert third.changes == {}


def test_paging_gives_the_same_alerts_as_one_page(tmp_path: Path) -> None:
    outboxes = []
    for size in (1000, 25):
        with serve(_tenant(RECORDS), page_size=size) as g:
            p = Puller(str(tmp_path / f"s{size}.db"), _config(g.url, audit_filters=WIDE), tmp_path)
            try:
                result, _ = p.pull(NOW, since=OLDEST)
                outboxes.append((p.outbox(), result.endpoints[0].records))
            finally:
                p.close()
    assert outboxes[0] == outboxes[1] and outboxes[0][0]


def test_429_with_a_fractional_retry_after_is_waited_and_the_pull_completes(
    state: str, tmp_path: Path
) -> None:
    with serve(_tenant(RECORDS)) as g:
        g.faults.append(
            Fault("auditLogs/directoryAudits", 429, "TooManyRequests", {"Retry-After": "2.128"}, times=2)
        )
        p = Puller(state, _config(g.url, audit_filters=WIDE), tmp_path)
        try:
            result, _ = p.pull(NOW, since=OLDEST)
            got = p.outbox()
        finally:
            p.close()
    assert p.waits == [2.128, 2.128]
    assert result.complete and got == _replayed(RECORDS)


def test_403_names_audit_log_read_all_and_keeps_the_cursor(state: str, tmp_path: Path) -> None:
    with serve(_tenant(RECORDS)) as g:
        p = Puller(state, _config(g.url), tmp_path)
        try:
            first, _ = p.pull(NOW, since=OLDEST)
            g.faults.append(
                Fault(
                    "auditLogs/directoryAudits",
                    403,
                    "Authorization_RequestDenied",
                    message="Insufficient privileges to complete the operation.",
                    times=99,
                )
            )
            denied, host = p.pull(NOW + timedelta(hours=1))
            kept = read_cursor(p.store, "directoryAudits")
        finally:
            p.close()
    audits = denied.endpoints[0]
    assert not denied.complete and audits.error is not None
    assert "needs AuditLog.Read.All" in audits.error and "403 Authorization_RequestDenied" in audits.error
    assert audits.records == 0 and host.changes == {}
    assert kept == first.endpoints[0].cursor is not None


def _cli(
    tmp_path: Path, url: str, *extra: str, wait: Callable[[float], None] | None = None
) -> tuple[int, str, str]:
    cfg = tmp_path / "pimwatch.yaml"
    cfg.write_text(
        json.dumps(
            {
                "graph": {"endpoint": url, "credential": "none", "pull": {"audit_filters": WIDE}},
                "break_glass": {"accounts": BREAK_GLASS},
                "sinks": {"file": {"type": "file", "path": str(tmp_path / "alerts.jsonl")}},
            }
        )
    )
    args = _parser().parse_args(["pull", "--config", str(cfg), "--state", str(tmp_path / "state.db"), *extra])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if wait is None:
            code = pull_cli.run(args, PLUGINS, clock=lambda: NOW)
        else:
            code = pull_cli.run(args, PLUGINS, clock=lambda: NOW, wait=wait)
    return code, out.getvalue(), err.getvalue()


def test_the_cli_once_twice_keeps_the_cursor_across_a_restart_and_sends(tmp_path: Path) -> None:
    since = OLDEST.strftime("%Y-%m-%dT%H:%M:%SZ")
    with serve(_tenant(RECORDS)) as g:
        code, out, err = _cli(tmp_path, g.url, "--once", "--since", since, "--format", "jsonl", "--send")
        code2, out2, _ = _cli(tmp_path, g.url, "--once", "--format", "jsonl")
        second = _filters(g, "directoryAudits")[-1]
    first = [json.loads(x) for x in out.splitlines()]
    again = [json.loads(x) for x in out2.splitlines()]
    assert code == 0 and code2 == 0, err
    endpoints = [x for x in first if x["type"] == "endpoint"]
    alerts = [x for x in first if x["type"] == "alert"]
    assert [e["endpoint"] for e in endpoints] == ["directoryAudits", "signIns"]
    assert len(alerts) == len(_replayed(RECORDS)) and {a["change"] for a in alerts} <= {"new", "resolved"}
    cursor = endpoints[0]["cursor"]
    at = parse_time(cursor)
    assert at is not None
    start = (at - timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert second.startswith(f"activityDateTime ge {start} and ")  # read from the stored cursor
    assert [x for x in again if x["type"] == "alert"] == []
    assert [x["cursor"] for x in again if x["type"] == "endpoint"] == [e["cursor"] for e in endpoints]
    sent = (tmp_path / "alerts.jsonl").read_text().splitlines()
    # each new alert sent once, and once more for its resolve when this pull also resolved it
    assert len(sent) == len(alerts) + sum(a["status"] == "resolved" for a in alerts)
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        doc = store.get(CURSOR + "directoryAudits")
        assert isinstance(doc, dict) and doc["newest"] == cursor
    finally:
        store.close()


def test_without_once_it_pulls_every_interval_and_since_is_for_the_first_pull(tmp_path: Path) -> None:
    waits: list[float] = []

    def wait(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise KeyboardInterrupt  # Ctrl-C during the third wait: a clean exit

    since = OLDEST.strftime("%Y-%m-%dT%H:%M:%SZ")
    with serve(_tenant(RECORDS)) as g:
        code, out, err = _cli(
            tmp_path, g.url, "--since", since, "--interval", "42", "--format", "jsonl", wait=wait
        )
        starts = [f.split(" and ")[0] for f in _filters(g, "directoryAudits")]
    pulls = [json.loads(x) for x in out.splitlines() if '"endpoint":"directoryAudits"' in x]
    assert code == 0 and waits == [42.0] * 3 and len(pulls) == 3, err
    assert (
        pulls[0]["start"].startswith(since[:19])
        and pulls[1]["start"] == pulls[2]["start"] != pulls[0]["start"]
    )
    assert len(set(starts)) == 2


def test_the_cli_exits_1_naming_the_permission_and_2_on_a_bad_since(tmp_path: Path) -> None:
    with serve(_tenant(RECORDS)) as g:
        g.faults.append(Fault("auditLogs/signIns", 403, "Authorization_RequestDenied", times=99))
        code, out, err = _cli(tmp_path, g.url, "--once")
        bad, _, why = _cli(tmp_path, g.url, "--once", "--since", "last tuesday")
    assert code == 1 and "signIns: pimwatch pull needs AuditLog.Read.All" in err
    assert "signIns" in out and "ERROR" in out
    assert bad == 2 and "--since" in why and "last tuesday" in why


def test_the_functions_timer_is_off_unless_enabled_then_pulls_into_the_outbox(tmp_path: Path) -> None:
    from tests.functions_host import APP

    assert APP["pull"].get_trigger().schedule == "0 */5 * * * *"
    alerts_file = tmp_path / "alerts.jsonl"
    sinks = {"file": {"type": "file", "path": str(alerts_file)}}
    db = str(tmp_path / "state.db")
    with serve(_tenant(RECORDS)) as g:
        results = []
        for enabled in (False, True):
            data = {
                "graph": {
                    "endpoint": g.url,
                    "credential": "none",
                    "pull": {"enabled": enabled, "audit_filters": WIDE, "lookback_hours": 720},
                },
                "break_glass": {"accounts": BREAK_GLASS},
                "sinks": sinks,
            }
            config = build(data, PLUGINS, "test config")
            runtime = Runtime(
                config,
                PLUGINS,
                lambda: SqliteStore(db),
                Quarantine(str(tmp_path / "q.jsonl")),
                http=Http(),
                clock=lambda: NOW,
            )
            try:
                results.append((timer(runtime, NOW), len(g.requests)))
            finally:
                runtime.close()
    (off, requests_off), (on, _) = results
    assert off == {"skipped": "graph.pull.enabled is false"} and requests_off == 0
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        outbox = sorted((a.id, a.detector, a.count, a.status, tuple(a.events)) for a in store.alerts())
        cursor = read_cursor(store, "directoryAudits")
    finally:
        store.close()
    in_window = [
        r for r in RECORDS if (t := parse_time(r["time"])) is not None and t >= NOW - timedelta(hours=720)
    ]
    assert outbox == _replayed(in_window) and outbox
    assert cursor is not None and [e["error"] for e in on["endpoints"]] == [None, None]
    resolved = sum(status == "resolved" for _, _, _, status, _ in outbox)
    assert on["alerts"]["new"] == len(outbox) and on["queued"] == len(outbox) + resolved
    assert len(alerts_file.read_text().splitlines()) == on["queued"]


def test_the_decorated_pull_function_reads_graph_into_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The function as the worker calls it (tests/functions_host.py), with the app settings; it reads
    the wall clock, so the tenant's record is built around it."""
    from azure.functions.timer import TimerRequest

    from pimwatch.hosting import runtime
    from tests.functions_host import FUNCTIONS

    at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ga = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
    rec = pim(
        "Add member to role in PIM completed (permanent)", at, user("adm-a"), principal=user("b"), role=ga
    )
    with serve(_tenant([rec])) as g:
        cfg = tmp_path / "pimwatch.yaml"
        cfg.write_text(
            json.dumps({"graph": {"endpoint": g.url, "credential": "none", "pull": {"enabled": True}}})
        )
        monkeypatch.setenv("PIMWATCH_CONFIG", str(cfg))
        monkeypatch.setenv("PIMWATCH_STATE", str(tmp_path / "state.db"))
        runtime.reset_runtime()
        try:
            FUNCTIONS["pull"](TimerRequest(past_due=False))
        finally:
            runtime.reset_runtime()
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        events = {e[1] for a in store.alerts() for e in a.events}
        cursor = read_cursor(store, "directoryAudits")
    finally:
        store.close()
    assert events == {rec["properties"]["id"]} and cursor == parse_time(at)


def test_the_timer_on_azure_tables_keeps_the_cursor_across_a_restart(
    azurite_tables: Any, tmp_path: Path
) -> None:
    """The Functions path on the deployed store (Azure Tables on Azurite): the cursor is in the
    store's key-value role, a new runtime (a restarted worker) reads from it, and the overlap read
    again changes nothing."""
    import uuid

    from pimwatch.state.tables import TableStore

    prefix = "t" + uuid.uuid4().hex[:16]
    records = [r for r in RECORDS if r["category"] == "AuditLogs"]
    with serve(_tenant(records)) as g:
        config = build(
            {
                "graph": {
                    "endpoint": g.url,
                    "credential": "none",
                    "pull": {"enabled": True, "signins": False, "lookback_hours": 720},
                },
                "break_glass": {"accounts": BREAK_GLASS},
            },
            PLUGINS,
            "test config",
        )
        reports = []
        for at in (NOW, NOW + timedelta(minutes=5)):  # two workers, one after the other
            runtime = Runtime(
                config,
                PLUGINS,
                lambda: TableStore(azurite_tables, prefix=prefix),
                Quarantine(str(tmp_path / "q.jsonl")),
                http=Http(),
                clock=lambda: at,  # noqa: B023 (used inside the loop iteration only)
            )
            try:
                reports.append(timer(runtime, at))
            finally:
                runtime.close()
        second = _filters(g, "directoryAudits")[-1]
    first, again = reports
    cursor = first["endpoints"][0]["cursor"]
    assert first["alerts"].get("new", 0) > 0 and first["endpoints"][0]["error"] is None
    at = parse_time(cursor)
    assert at is not None
    assert second.startswith(
        f"activityDateTime ge {(at - timedelta(minutes=15)).strftime('%Y-%m-%dT%H:%M:%SZ')} and "
    )
    assert again["endpoints"][0]["records"] > 0 and again["alerts"] == {} and again["queued"] == 0
    store = TableStore(azurite_tables, prefix=prefix)
    try:
        assert read_cursor(store, "directoryAudits") == at
    finally:
        store.close()
