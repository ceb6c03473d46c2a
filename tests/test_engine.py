"""Engine behaviour that detector cases do not show on their own: isolation, skips, late records."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

from pimwatch.detection.activities import ACTIVATION_COMPLETED
from pimwatch.detection.alerts import SAMPLE, Severity
from pimwatch.detection.detector import Detector, Hit, Plugin, Skip, State, discover
from pimwatch.detection.engine import bucket_of
from pimwatch.detection.event import Event
from pimwatch.detection.timeutil import iso
from pimwatch.testing import pim, user
from pimwatch.testing.harness import drive_records, run_records

REAL = discover()
ALICE = user("adm-alice")
ROLES = [
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de"),
    ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d"),
]


def _plugin(det_id: str, fn: Any) -> Plugin:
    meta = Detector(id=det_id, severity=Severity.LOW, summary="s", runbook="r", mitre=("T0",))
    return Plugin(meta, fn, [], ModuleType(det_id))


def _boom(event: Event, state: State) -> Hit | None:
    raise RuntimeError("bug in a detector")


def _skip(event: Event, state: State) -> Hit | None:
    raise Skip("needs a field")


def _act(at: str, role: tuple[str, str], who: tuple[str, str | None, str | None] = ALICE) -> dict[str, Any]:
    return pim(ACTIVATION_COMPLETED, at, who, principal=who, role=role)


BURST = [_act("2026-03-10T14:00:00Z", ROLES[0]), _act("2026-03-10T14:03:00Z", ROLES[1])]
BURST.append(_act("2026-03-10T14:06:00Z", ROLES[2]))


def test_a_raising_detector_is_isolated_and_counted() -> None:
    plugins = [*REAL, _plugin("test.boom", _boom), _plugin("test.skip", _skip)]
    alerts, pipeline = run_records(BURST, plugins)
    assert [a.detector for a in alerts] == ["activation.simultaneous"]
    assert pipeline.stats.detector_errors == {"test.boom": 3}
    assert pipeline.stats.detector_skipped == {"test.skip": 3}


def test_a_late_record_completes_a_burst_that_already_passed() -> None:
    """The middle activation arrives last (minutes late): the alert still forms, with the same id and
    anchor as when the records arrive in order."""
    in_order, _ = run_records(BURST, REAL)
    late, _ = run_records([BURST[0], BURST[2], BURST[1]], REAL)
    assert [a.to_dict() for a in late] == [a.to_dict() for a in in_order]
    assert in_order[0].count == 3 and in_order[0].first_seen.startswith("2026-03-10T14:00:00")


def test_a_record_older_than_the_window_does_not_join() -> None:
    old = _act("2026-03-10T13:40:00Z", ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"))
    alerts, _ = run_records([*BURST, old], REAL)
    alerts = [a for a in alerts if a.detector == "activation.simultaneous"]  # (GA: privileged_role too)
    assert len(alerts) == 1 and alerts[0].count == 3
    assert "Global Administrator" not in alerts[0].context["roles"]


def test_a_later_record_in_the_same_bucket_folds_into_the_alert() -> None:
    fourth = _act("2026-03-10T14:08:00Z", ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"))
    alerts, _, result = drive_records([*BURST, fourth], REAL)
    alerts = [a for a in alerts if a.detector == "activation.simultaneous"]  # (GA: privileged_role too)
    assert len(alerts) == 1 and alerts[0].count == 4
    assert alerts[0].context["roles"][0] == "Exchange Administrator"  # sorted union
    assert result.summary()[alerts[0].id] == "new"


def test_a_record_with_an_unreadable_time_is_quarantined_not_processed() -> None:
    bad = _act("2026-03-10T14:09:00Z", ROLES[0])
    bad["properties"]["activityDateTime"] = "yesterday"
    bad["time"] = "soon"
    alerts, pipeline = run_records([*BURST, bad], REAL)
    assert len(alerts) == 1 and alerts[0].count == 3
    assert sum(pipeline.stats.bad.values()) == 1


def test_windows_evaluated_incrementally_match_the_whole_window_rule_in_any_order() -> None:
    """The engine folds only what a new member changes; the alerts still equal the rule evaluated
    over the whole set (every window [r - 10 min, r] with 3 distinct roles joins the alert of r's
    hour), whatever the order and duplication."""
    rnd = random.Random(5)
    roles = [(f"Role {i}", f"00000000-0000-4000-8000-{i:012d}") for i in range(4)]
    base = datetime(2026, 3, 10, 13, 30, tzinfo=UTC)
    picks = [(base + timedelta(seconds=rnd.randrange(0, 7200)), rnd.choice(roles)) for _ in range(120)]
    picks.sort()
    records = [_act(iso(t), role) for t, role in picks]
    reference: dict[str, set[int]] = {}
    for t, _ in picks:
        window = [i for i, (u, _) in enumerate(picks) if t - timedelta(minutes=10) <= u <= t]
        if len({picks[i][1] for i in window}) >= 3:
            reference.setdefault(bucket_of(t.timestamp(), timedelta(minutes=60)), set()).update(window)
    in_order, _ = run_records(records, REAL)
    burst = [a for a in in_order if a.detector == "activation.simultaneous"]
    assert sorted(a.count for a in burst) == sorted(len(v) for v in reference.values())
    assert all(len(a.events) == min(a.count, 2 * SAMPLE) for a in burst)
    want = [a.to_dict() for a in in_order]
    for seed in range(3):
        shuffled = records + records[seed::7]  # duplicates too
        random.Random(seed).shuffle(shuffled)
        got, _ = run_records(shuffled, REAL)
        assert [a.to_dict() for a in got] == want
