"""Grouping (issue 11 item 1): one notification per action for the notification sinks, one event per
alert (with its group) for the rest, the same groups in any order, the wait in event time."""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from pimwatch.cli import main
from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.grouping import Grouping, group_alert, group_id
from pimwatch.delivery.sink import Http
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import discover
from pimwatch.state.sqlite import SqliteStore
from sinks import pagerduty, teams
from tests.loopback import serve
from tests.sinks.test_teams import PATH
from tests.test_demo import DEMO, EXPECTED

CHUCK_RECORD = "Directory_715cc4c9-20b0-42df-a840-6c7ae799e13e_CHK7Q_538120447"  # 10:22:14
CHUCK_DETECTORS = ["assignment.outside_pim", "assignment.permanent", "assignment.privileged"]


def _card(body: bytes) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(body)["attachments"][0]["content"]
    return content


def _texts(card: dict[str, Any]) -> str:
    return json.dumps(card, ensure_ascii=False)


@pytest.fixture(scope="module")
def demo_sent(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The demo day replayed with --send to a loopback Teams and a loopback PagerDuty."""
    tmp = tmp_path_factory.mktemp("grouping")
    with serve() as hook, serve() as pd:
        config = yaml.safe_load((DEMO / "pimwatch.yaml").read_text(encoding="utf-8"))
        config["sinks"] = {
            "channel": {"type": "teams", "webhook_url": hook.url + PATH},
            "oncall": {"type": "pagerduty", "routing_key": "R0UT1NGK3Y0000000000000000000042", "url": pd.url},
            "archive": {"type": "file", "path": str(tmp / "alerts.jsonl")},
        }
        path = tmp / "pimwatch.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(
                [
                    "replay",
                    "--config",
                    str(path),
                    "--format",
                    "jsonl",
                    "--send",
                    "--quarantine",
                    str(tmp / "q.jsonl"),
                    str(DEMO / "day.eventhub.jsonl.gz"),
                ]
            )
        return {
            "code": code,
            "err": err.getvalue(),
            "alerts": [json.loads(x) for x in out.getvalue().splitlines()],
            "file": [json.loads(x) for x in (tmp / "alerts.jsonl").read_text(encoding="utf-8").splitlines()],
            "cards": [_card(r.body) for r in hook.requests],
            "pages": [json.loads(r.body) for r in pd.requests],
        }


def test_demo_one_card_and_one_incident_per_action(demo_sent: dict[str, Any]) -> None:
    assert demo_sent["code"] == 0, demo_sent["err"]
    alerts = demo_sent["alerts"]
    assert len(alerts) == len(EXPECTED)  # the jsonl keeps one line per alert...
    assert all(len(a["group"]) == 32 for a in alerts)  # ...each with its group
    groups = Counter(a["group"] for a in alerts)
    chuck = [a for a in alerts if a["event_ids"][0] == CHUCK_RECORD]
    assert sorted(a["detector"] for a in chuck) == CHUCK_DETECTORS
    gid = chuck[0]["group"]
    assert {a["group"] for a in chuck} == {gid} and groups[gid] == 3

    cards, pages = demo_sent["cards"], demo_sent["pages"]
    assert len(cards) == len(groups) < len(alerts)  # one card per group, never one per alert
    triggers = [p for p in pages if p["event_action"] == "trigger"]
    assert {p["dedup_key"] for p in triggers} == set(groups)  # one incident per group
    # A group is triggered once; again only as an update when one of its alerts resolved while
    # others stay open (PagerDuty appends it to the incident; the resolve waits for all of them).
    partly = {a["group"] for a in alerts if a["status"] == "resolved"}
    again = Counter(p["dedup_key"] for p in triggers) - Counter(set(groups))
    assert set(again) <= partly and all(n == 1 for n in again.values())

    # The 10:22:14 direct assignment: one card, one incident, listing its three detectors.
    card = [c for c in cards if gid in _texts(c)]
    assert len(card) == 1
    for detector in CHUCK_DETECTORS:
        assert detector in _texts(card[0])
    page = [p for p in triggers if p["dedup_key"] == gid]
    assert len(page) == 1
    listed = page[0]["payload"]["custom_details"]["context"]["group"]
    assert [m["detector"] for m in listed["alerts"]] == CHUCK_DETECTORS
    assert page[0]["payload"]["severity"] == "error"  # the highest of the three (all high)


def test_demo_siem_sinks_keep_one_event_per_alert_with_its_group(demo_sent: dict[str, Any]) -> None:
    by_id = {a["id"]: a["group"] for a in demo_sent["alerts"]}
    written = demo_sent["file"]
    assert len([a for a in written if a["status"] == "open"]) == len(by_id)  # + the resolves
    assert all(by_id[a["id"]] == a["group"] for a in written)
    assert {a["id"] for a in written} == set(by_id)


def _alert(aid: str, detector: str, severity: Severity, t: str, record: str, **context: Any) -> Alert:
    return Alert(
        id=aid,
        detector=detector,
        severity=severity,
        title=f"{detector} on {record}",
        summary="s",
        runbook="r",
        mitre=["T1098"],
        principal={"id": "p-1", "upn": "p@contoso.com", "name": "P"},
        context=dict(context),
        events=[(t, record)],
    )


A = _alert(
    "a" * 32, "assignment.permanent", Severity.HIGH, "2026-03-10T10:22:14Z", "rec-1", correlation_id="C"
)
B = _alert(
    "b" * 32, "assignment.outside_pim", Severity.CRITICAL, "2026-03-10T10:22:14Z", "rec-1", correlation_id="C"
)
C = _alert("c" * 32, "activation.denied", Severity.LOW, "2026-03-10T10:22:20Z", "rec-2", request_id="R")
D = _alert(
    "d" * 32, "approval.self_approved", Severity.MEDIUM, "2026-03-10T10:24:50Z", "rec-3", request_id="r"
)


def test_group_ids_are_content_only() -> None:
    g = Grouping()
    assert group_id(A, g) == group_id(B, g) != group_id(C, g)
    assert group_id(C, g) == group_id(D, g)  # the same PIM request id (case-insensitive)
    assert group_id(A, None) == A.id and group_id(A, Grouping(group_by=())) == A.id
    by_principal = Grouping(group_by=("principal",), group_wait=300)
    assert len({group_id(x, by_principal) for x in (A, B, C, D)}) == 1  # one 5-minute slice
    assert group_id(D, Grouping(group_by=("principal",), group_wait=60)) != group_id(A, by_principal)


def test_group_alert_lists_every_detector_with_the_highest_severity() -> None:
    g = group_alert("g" * 32, [A, B])
    assert g.id == "g" * 32 and g.severity is Severity.CRITICAL and g.detector == B.detector
    assert [m["detector"] for m in g.context["group"]["alerts"]] == [B.detector, A.detector]
    assert "assignment.permanent" in g.title and not g.context["group"]["update"]
    update = group_alert("g" * 32, [A, B], sent_before=[A.id])
    assert update.title.startswith("Update (2 alerts)") and update.context["group"]["update"]
    assert [m["new"] for m in update.context["group"]["alerts"]] == [False, True] or [
        m["new"] for m in update.context["group"]["alerts"]
    ] == [True, False]


def test_routing_is_validated_with_key_paths() -> None:
    with pytest.raises(ConfigError) as caught:
        build({"routing": {"group_by": ["action", "tenant"], "group_wait": "soon"}}, discover(), "t")
    text = str(caught.value)
    assert "routing.group_by" in text and "tenant" in text and "routing.group_wait" in text
    with pytest.raises(ConfigError, match="routing"):
        build({"routing": {"group_by": ["principal"], "group_wait": 0}}, discover(), "t")
    assert build({"routing": {"group_wait": "2m"}}, discover(), "t").routing.group_wait == 120.0


def _hook_sinks(url: str) -> dict[str, LoadedSink]:
    cfg = teams.Config.model_validate({"type": "teams", "webhook_url": url + PATH})
    pd = pagerduty.Config.model_validate({"type": "pagerduty", "routing_key": "K" * 32, "url": url})
    return {"channel": LoadedSink("channel", cfg, teams), "oncall": LoadedSink("oncall", pd, pagerduty)}


def _run(
    order: list[Alert], release_at: list[str | None]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Enqueue ``order``, releasing at the tick clocks ``release_at`` between them; then deliver."""
    from pimwatch.detection.timeutil import parse_time

    store = SqliteStore()
    with serve() as server:
        d = Deliverer(
            _hook_sinks(server.url), store, Policy(), Http(), grouping=Grouping(), clock=lambda: 1000.0
        )
        for alert, clock in zip(order, release_at, strict=True):
            store.merge_alert(alert)
            d.enqueue(alert, "new")
            if clock is not None:
                d.release(parse_time(clock))
            d.run()
        d.release(None)
        d.run()
        d.http.close()
    cards = [_card(r.body) for r in server.requests if "attachments" in json.loads(r.body)]
    pages = [json.loads(r.body) for r in server.requests if "event_action" in json.loads(r.body)]
    return cards, pages


def test_the_wait_is_event_time_and_a_late_member_updates_the_group() -> None:
    # Held until the tick clock passes the first event + 30 s: nothing goes out at 10:22:30.
    cards, pages = _run([A, B], ["2026-03-10T10:22:30Z", "2026-03-10T10:22:40Z"])
    assert len(cards) == len(pages) == 1
    assert A.detector in _texts(cards[0]) and B.detector in _texts(cards[0])
    # B arrives after the group went out: a follow-up card and the same incident (dedup key).
    cards, pages = _run([A, B], ["2026-03-10T10:22:50Z", "2026-03-10T10:23:00Z"])
    assert len(cards) == len(pages) == 2
    assert "Update (2 alerts)" in _texts(cards[1])
    assert pages[0]["dedup_key"] == pages[1]["dedup_key"] == group_id(A, Grouping())


@pytest.mark.parametrize("seed", range(5))
def test_same_groups_in_any_order(seed: int) -> None:
    order = [A, B, C, D]
    random.Random(seed).shuffle(order)
    cards, pages = _run(order, [None] * len(order))
    assert sorted(p["dedup_key"] for p in pages) == sorted({group_id(x, Grouping()) for x in order})
    assert len(cards) == 2


def test_a_group_notification_is_claimed_once(tmp_path: Path) -> None:
    """Two deliverers on one state: each (group, sink) revision goes out once."""
    path = str(tmp_path / "s.db")
    store = SqliteStore(path)
    with serve() as server:
        sinks = _hook_sinks(server.url)
        first = Deliverer(sinks, store, Policy(), Http(), grouping=Grouping())
        for alert in (A, B, C):
            store.merge_alert(alert)
            first.enqueue(alert, "new")
        first.release(None)
        store.commit()
        second = Deliverer(sinks, SqliteStore(path), Policy(), Http(), grouping=Grouping())
        first.run()
        second.run()
        first.http.close()
        second.http.close()
    assert len(server.requests) == 4  # 2 groups x (Teams, PagerDuty)


def test_show_prints_a_demo_alert_its_group_and_its_raw_records(tmp_path: Path) -> None:
    state = str(tmp_path / "s.db")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            [
                *("replay", "--config", str(DEMO / "pimwatch.yaml"), "--state", state, "--format", "jsonl"),
                *("--quarantine", str(tmp_path / "q.jsonl"), str(DEMO / "day.eventhub.jsonl.gz")),
            ]
        )
    assert code == 0
    alerts = [json.loads(x) for x in out.getvalue().splitlines()]
    chuck = next(
        a for a in alerts if a["detector"] == "assignment.permanent" and a["event_ids"] == [CHUCK_RECORD]
    )

    def show(*args: str) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["show", *args, "--state", state]) == 0
        return buf.getvalue()

    doc = json.loads(show(chuck["id"], "--format", "json"))
    assert [m["detector"] for m in doc["group"]["alerts"]] == CHUCK_DETECTORS
    assert doc["group"]["id"] == chuck["group"]
    (item,) = doc["alerts"]
    (record,) = item["evidence"]
    assert record["record_id"] == CHUCK_RECORD
    assert record["raw"]["properties"]["id"] == CHUCK_RECORD  # the raw record as read
    text = show(chuck["id"])
    assert "EVIDENCE of " + chuck["id"] in text and '"activityDisplayName"' in text
    by_group = json.loads(show(chuck["group"], "--format", "json"))  # a group id shows every alert
    assert sorted(i["alert"]["detector"] for i in by_group["alerts"]) == CHUCK_DETECTORS
    assert all(i["evidence"][0]["raw"] is not None for i in by_group["alerts"])
    missing = io.StringIO()
    with contextlib.redirect_stderr(missing):
        assert main(["show", "0" * 32, "--state", state]) == 1
    assert "no alert or group" in missing.getvalue()


@pytest.mark.parametrize("seed", range(3))
def test_evidence_is_the_bounded_sample_in_any_order(seed: int) -> None:
    from datetime import UTC, datetime, timedelta

    from pimwatch.detection import evidence
    from pimwatch.detection.alerts import SAMPLE, sample
    from pimwatch.detection.timeutil import iso

    start = datetime(2026, 3, 10, tzinfo=UTC)
    records = [(start + timedelta(minutes=i), f"rec-{i:03}", {"n": i}) for i in range(3 * SAMPLE)]
    random.Random(seed).shuffle(records)
    store = SqliteStore()
    for r in records:
        evidence.keep(store, "a" * 32, [r])
    events = sample((iso(at), rid) for at, rid, _ in records)
    alert = Alert("a" * 32, "x.y", Severity.LOW, "t", "s", "r", [], {}, {}, events=events)
    kept = evidence.records(store, alert)
    assert [k["record_id"] for k in kept] == [rid for _, rid in events] and len(kept) == 2 * SAMPLE
    assert all(k["raw"] == {"n": int(k["record_id"][4:])} for k in kept)
    stored = store.members(evidence.EVIDENCE + "a" * 32, start, start + timedelta(days=1))
    assert 2 * SAMPLE <= len(stored) < len(records)  # trimmed (one record in TRIM_EVERY trims)
    evidence.keep(store, "a" * 32, [(start, "rec-trims-1", {})])  # its crc32 % 8 == 0: it trims
    stored = store.members(evidence.EVIDENCE + "a" * 32, start, start + timedelta(days=1))
    assert len(stored) == 2 * SAMPLE
