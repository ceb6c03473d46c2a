"""SQLite-only store behaviour. The Store contract itself runs on SQLite and on the Azure Table store
in tests/test_tablestore.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pimwatch.alerts import Alert, Severity
from pimwatch.store import SqliteStore, StoreError

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _alert(events: list[tuple[str, str]]) -> Alert:
    return Alert(
        id="a1",
        detector="d",
        severity=Severity.HIGH,
        title="t",
        summary="s",
        runbook="r",
        mitre=[],
        principal={"id": None, "upn": None, "name": None},
        context={},
        events=events,
        accumulate=("roles",),
    )


def test_state_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    s = SqliteStore(path)
    s.add("k", "m", T0)
    s.merge_alert(_alert([("2026-03-10T12:00:00Z", "e")]))
    s.close()
    again = SqliteStore(path)
    assert not again.add("k", "m", T0)
    assert again.get_alert("a1") is not None


def test_unopenable_state_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open state file"):
        SqliteStore(str(tmp_path / "no" / "such" / "dir" / "s.db"))


def test_an_alert_is_resolved_at_the_earliest_closing_record_whatever_the_order() -> None:
    """Two ends of a role's activations read latest first: the alert ends at the earlier one (the
    first close after it began), not at whichever came first; it is resolved (and queued) once."""
    s = SqliteStore(":memory:")
    alert = _alert([("2026-03-10T12:00:00.000000Z", "e")])
    alert.key = "k"
    s.merge_alert(alert)
    assert s.resolve_alerts("d", "k", "2026-03-11T17:00:00.000000Z") == ["a1"]
    assert s.resolve_alerts("d", "k", "2026-03-10T17:00:00.000000Z") == []  # moved, not resolved anew
    assert s.resolve_alerts("d", "k", "2026-03-12T17:00:00.000000Z") == []  # a later one: no change
    assert s.resolve_alerts("d", "k", "2026-03-09T17:00:00.000000Z") == []  # before it began: none
    got = s.get_alert("a1")
    assert got is not None and (got.status, got.resolved_at) == ("resolved", "2026-03-10T17:00:00.000000Z")
