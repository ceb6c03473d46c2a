"""Clock-driven detectors do not tick past a partition's backlog (pimwatch/state/progress.py).

``approval.overdue`` fires on a decision's absence: while a partition is still working through old
messages (after a stall, on a first deployment that starts an hour back), the decision may simply not
have been read yet. The Event Hub function passes each batch's partition and enqueued times; the
timer ticks at the wall clock held back to the slowest partition that is behind.

Exercised with the real entry points of ``function_app.py`` (``azure.functions`` batches whose
``EnqueuedTimeUtc`` the test sets) on a SQLite state file; no Functions host or Event Hub runs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from detectors.approval_overdue import R1, _ask, _decide
from pimwatch.detection.activities import ACTIVATION_APPROVED
from pimwatch.detection.timeutil import iso
from pimwatch.hosting.runtime import SetupError, _partitions
from pimwatch.state.progress import CAUGHT_UP, FORGET, Progress, clock, expect
from pimwatch.state.sqlite import SqliteStore
from tests.functions_host import FUNCTIONS, batch, health, timer

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_the_clock_is_held_back_by_partitions_that_are_behind_only() -> None:
    store = SqliteStore()
    p = Progress()
    assert clock(store, NOW) == NOW  # nothing noted: the wall clock
    p.note(store, "0", [NOW - timedelta(hours=3), NOW - timedelta(hours=2)], NOW)  # a backlog
    p.note(store, "1", [NOW - timedelta(seconds=20)], NOW)  # caught up
    assert clock(store, NOW) == NOW - timedelta(hours=2)
    later = NOW + timedelta(minutes=5)
    p.note(store, "0", [later - CAUGHT_UP / 2], later)  # caught up: noted at once, not a minute later
    assert clock(store, later) == later
    # A partition nobody has read for a long while no longer holds the clock back.
    other = Progress()
    other.note(store, "2", [NOW - timedelta(days=1)], NOW)
    assert clock(store, NOW + timedelta(minutes=1)) == NOW - timedelta(days=1)
    assert clock(store, NOW + FORGET + timedelta(minutes=1)) == NOW + FORGET + timedelta(minutes=1)


def test_an_approval_decided_further_down_another_partitions_backlog_is_not_overdue(
    app_env: Callable[[str | None], Path],
) -> None:
    tmp = app_env(None)
    asked = "2026-11-27T09:00:00Z"  # three hours ago: long past the 30 min SLA + 15 min lateness
    decided = "2026-11-27T09:10:00Z"
    # Partition 0 reads the request; partition 1 has not reached the decision yet (both behind).
    FUNCTIONS["entra_events"](batch([_body(_ask(asked, R1))], "0", enqueued="2026-11-27T09:01:00Z"))
    FUNCTIONS["entra_events"](batch([_body(_later("2026-11-27T09:05:00Z"))], "1", "2026-11-27T09:06:00Z"))
    timer()
    assert _overdue(tmp / "state.db") == []  # the clock is at 09:01, the SLA not yet passed there
    assert health()[1]["tick_clock"].startswith("2026-11-27T09:01:00")
    FUNCTIONS["entra_events"](
        batch([_body(_decide(ACTIVATION_APPROVED, decided, R1))], "1", enqueued="2026-11-27T09:11:00Z")
    )
    timer()
    assert _overdue(tmp / "state.db") == []


def test_once_every_partition_has_caught_up_a_missing_decision_is_overdue(
    app_env: Callable[[str | None], Path],
) -> None:
    tmp = app_env(None)
    now = datetime.now(UTC)
    asked = iso(now - timedelta(hours=3))
    FUNCTIONS["entra_events"](batch([_body(_ask(asked, R1))], "0", enqueued=iso(now - timedelta(hours=3))))
    timer()
    assert _overdue(tmp / "state.db") == []  # partition 0 is three hours behind
    FUNCTIONS["entra_events"](batch([_body(_later(iso(now)))], "0", enqueued=iso(now - timedelta(seconds=5))))
    timer()
    assert _overdue(tmp / "state.db") == ["open"]


def _ago(now: datetime, seconds: float) -> str:
    return iso(now - timedelta(seconds=seconds))


def _later(at: str) -> dict[str, object]:
    from detectors.approval_overdue import _later as later

    return later(at)


def _body(record: dict[str, object]) -> bytes:
    return orjson.dumps({"records": [record]})


def _overdue(state: Path) -> list[str]:
    with sqlite3.connect(state) as db:
        return [s for (s,) in db.execute("SELECT status FROM outbox WHERE detector='approval.overdue'")]


# --- the cross-partition page (architecture-review.md §10.1) and a partition not seen yet ------------
def test_a_caught_up_partitions_batch_does_not_page_past_another_partitions_backlog(
    app_env: Callable[[str | None], Path],
) -> None:
    """The §10.1 probe: partition 1 is behind, partition 2's batch is of now. Its batch ticks (no timer)
    at its watermark held back by partition 1: the decision further down partition 1 is not missing."""
    tmp = app_env(None)
    now = datetime.now(UTC).replace(microsecond=0)
    asked = iso(now - timedelta(hours=3))
    FUNCTIONS["entra_events"](batch([_body(_ask(asked, R1))], "0", enqueued=iso(now - timedelta(hours=3))))
    behind = now - timedelta(hours=2, minutes=54)
    FUNCTIONS["entra_events"](
        batch([_body(_later(iso(now - timedelta(hours=2, minutes=55))))], "1", enqueued=iso(behind))
    )
    FUNCTIONS["entra_events"](
        batch([_body(_later(iso(now - timedelta(seconds=30))))], "2", enqueued=_ago(now, 20))
    )
    assert _overdue(tmp / "state.db") == []
    assert health()[1]["tick_clock"] <= iso(behind)  # held back by partition 1, not by the batch
    decided = iso(now - timedelta(hours=2, minutes=50))
    FUNCTIONS["entra_events"](
        batch(
            [_body(_decide(ACTIVATION_APPROVED, decided, R1))],
            "1",
            enqueued=_ago(now, 2 * 3600 + 49 * 60),
        )
    )
    timer()
    assert _overdue(tmp / "state.db") == []  # neither a page nor its resolve


def test_a_partition_not_seen_yet_holds_the_clock_when_the_hub_s_partitions_are_known(
    app_env: Callable[[str | None], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decision is in partition 1, which no instance has read yet: partitions 0 and 2 have both
    caught up, yet nothing ticks until partition 1 reports (the app setting names three partitions)."""
    tmp = app_env(None)
    monkeypatch.setenv("PIMWATCH_EVENTHUB_PARTITIONS", "3")
    now = datetime.now(UTC).replace(microsecond=0)
    asked = iso(now - timedelta(hours=3))
    FUNCTIONS["entra_events"](batch([_body(_ask(asked, R1))], "0", enqueued=_ago(now, 30)))
    FUNCTIONS["entra_events"](
        batch([_body(_later(iso(now - timedelta(seconds=30))))], "2", enqueued=_ago(now, 20))
    )
    timer()
    assert _overdue(tmp / "state.db") == []
    assert health()[1]["tick_clock"] is None  # partition 1 has never reported: no clock
    decided = iso(now - timedelta(hours=2, minutes=50))
    FUNCTIONS["entra_events"](
        batch([_body(_decide(ACTIVATION_APPROVED, decided, R1))], "1", enqueued=_ago(now, 10))
    )
    timer()
    assert _overdue(tmp / "state.db") == []
    assert health()[1]["tick_clock"] is not None  # every partition has reported: the clock runs


def test_without_a_partition_list_an_unseen_partition_does_not_hold_the_clock(
    app_env: Callable[[str | None], Path],
) -> None:
    """``func start`` with no PIMWATCH_EVENTHUB_PARTITIONS: as before, only partitions read so far count
    (documented in docs/functions.md) — the same stream pages, which is why the setting is deployed."""
    tmp = app_env(None)
    now = datetime.now(UTC).replace(microsecond=0)
    FUNCTIONS["entra_events"](
        batch([_body(_ask(iso(now - timedelta(hours=3)), R1))], "0", enqueued=_ago(now, 30))
    )
    timer()
    assert _overdue(tmp / "state.db") == ["open"]


def test_an_expected_partition_that_never_reports_holds_the_clock_for_forget_only() -> None:
    store = SqliteStore()
    p = Progress()
    expect(store, ["0", "1"], NOW)
    assert clock(store, NOW) is None  # neither has reported
    p.note(store, "0", [NOW - timedelta(seconds=5)], NOW)
    assert clock(store, NOW + timedelta(minutes=1)) is None  # "1" still has not
    assert clock(store, NOW + FORGET) is None  # the last moment it may hold the clock
    after = NOW + FORGET + timedelta(seconds=1)
    assert clock(store, after) == after  # an idle partition of a quiet tenant: ticking goes on
    expect(store, ["0", "1"], after)  # a restart says it again: the first time it was expected counts
    assert clock(store, after) == after
    p.note(store, "1", [NOW + timedelta(minutes=3)], NOW + timedelta(minutes=4))  # reports at last
    assert clock(store, NOW + timedelta(minutes=5)) == NOW + timedelta(minutes=5)


def test_a_cached_reading_never_moves_a_held_clock_forward() -> None:
    store = SqliteStore()
    p = Progress()
    p.note(store, "0", [NOW - timedelta(hours=1)], NOW)
    assert p.clock(store, NOW) == NOW - timedelta(hours=1)
    assert p.clock(store, NOW + timedelta(seconds=50), cached=True) == NOW - timedelta(hours=1)
    q = Progress()
    q.note(store, "0", [NOW + timedelta(seconds=55)], NOW + timedelta(minutes=1))  # caught up
    assert q.clock(store, NOW + timedelta(minutes=1)) == NOW + timedelta(minutes=1)
    later = NOW + timedelta(minutes=1, seconds=30)
    assert q.clock(store, later, cached=True) == later  # nothing held it: the wall clock


def test_the_partitions_setting_is_a_count_or_a_list_and_bad_values_are_named() -> None:
    assert _partitions("4") == ["0", "1", "2", "3"]
    assert _partitions(" 0, 1 ,7 ") == ["0", "1", "7"]
    assert _partitions(None) == [] and _partitions("") == []
    for bad in ("0", "1,,2"):
        with pytest.raises(SetupError, match="PIMWATCH_EVENTHUB_PARTITIONS"):
            _partitions(bad)
