"""Clock-driven detectors do not tick past a partition's backlog (pimwatch/progress.py).

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

from detectors.approval_overdue import R1, _ask, _decide
from pimwatch.activities import ACTIVATION_APPROVED
from pimwatch.progress import CAUGHT_UP, FORGET, Progress, clock
from pimwatch.store import SqliteStore
from pimwatch.timeutil import iso
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


def _later(at: str) -> dict[str, object]:
    from detectors.approval_overdue import _later as later

    return later(at)


def _body(record: dict[str, object]) -> bytes:
    return orjson.dumps({"records": [record]})


def _overdue(state: Path) -> list[str]:
    with sqlite3.connect(state) as db:
        return [s for (s,) in db.execute("SELECT status FROM outbox WHERE detector='approval.overdue'")]
