"""Engine behaviour that detector cases do not show on their own: isolation, skips, late records."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from pimwatch.activities import ACTIVATION_COMPLETED
from pimwatch.alerts import Severity
from pimwatch.detector import Detector, Hit, Plugin, Skip, State, discover
from pimwatch.event import Event
from pimwatch.harness import drive_records, run_records
from pimwatch.testing import pim, user

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
    assert len(alerts) == 1 and alerts[0].count == 3
    assert "Global Administrator" not in alerts[0].context["roles"]


def test_a_later_record_in_the_same_bucket_folds_into_the_alert() -> None:
    fourth = _act("2026-03-10T14:08:00Z", ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"))
    alerts, _, result = drive_records([*BURST, fourth], REAL)
    assert len(alerts) == 1 and alerts[0].count == 4
    assert alerts[0].context["roles"][0] == "Exchange Administrator"  # sorted union
    assert result.summary() == {alerts[0].id: "new"}


def test_a_record_with_an_unreadable_time_is_quarantined_not_processed() -> None:
    bad = _act("2026-03-10T14:09:00Z", ROLES[0])
    bad["properties"]["activityDateTime"] = "yesterday"
    bad["time"] = "soon"
    alerts, pipeline = run_records([*BURST, bad], REAL)
    assert len(alerts) == 1 and alerts[0].count == 3
    assert sum(pipeline.stats.bad.values()) == 1
