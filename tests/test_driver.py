"""The driver (pimwatch/hosting/driver.py): one unit of work per call, ticks only through its policy, one
queueing mechanism, and one result that says what the alerts did, in order."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from detectors.approval_overdue import R1, _ask, _decide, _later
from pimwatch.config import build
from pimwatch.detection.activities import ACTIVATION_APPROVED
from pimwatch.detection.detector import Plugin
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import InputError, Item, classify
from pimwatch.hosting.driver import COMMIT_EVERY, BatchResult, Driver, WatermarkTick
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from tests.streams import BREAK_GLASS, signin

BG = (BREAK_GLASS[0], BREAK_GLASS[1], "Break Glass")


def _driver(plugins: list[Plugin], tmp_path: Path, commit_every: int = COMMIT_EVERY) -> Driver:
    config = build({"break_glass": {"accounts": list(BREAK_GLASS)}}, plugins, "test")
    store = SqliteStore(str(tmp_path / "state.db"))
    pipeline = Pipeline(plugins, config, store, Quarantine(str(tmp_path / "q.jsonl")))
    return Driver(pipeline, WatermarkTick(), commit_every=commit_every)


def _items(*records: dict[str, object]) -> Iterator[Item]:
    for i, rec in enumerate(records, 1):
        yield from classify(rec, "test", i)


def test_replay_ticks_once_at_the_end_so_a_decision_in_a_later_file_is_not_missing(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    """File one: a request and records hours later (past its SLA); file two: the decision. Ticking as
    the watermark advanced would page after file one; replay ticks only at finish."""
    driver = _driver(plugins, tmp_path)
    driver.feed(_items(_ask("2026-03-10T09:00:00Z", R1), _later("2026-03-10T12:00:00Z")))
    driver.feed(_items(_decide(ACTIVATION_APPROVED, "2026-03-10T09:10:00Z", R1)))
    result = driver.finish()
    assert result.tick_clock is not None and result.tick_clock.isoformat().startswith("2026-03-10T12:00")
    assert [a for a in driver.store.alerts() if a.detector == "approval.overdue"] == []


def test_without_the_decision_the_end_tick_raises_it(plugins: list[Plugin], tmp_path: Path) -> None:
    driver = _driver(plugins, tmp_path)
    driver.feed(_items(_ask("2026-03-10T09:00:00Z", R1), _later("2026-03-10T12:00:00Z")))
    result = driver.finish()
    (overdue,) = [a for a in driver.store.alerts() if a.detector == "approval.overdue"]
    assert result.changes == [(overdue.id, "new")] and result.counts() == {"new": 1}


def test_changes_are_in_order_each_once_and_new_wins_in_the_summary(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    driver = _driver(plugins, tmp_path)
    driver.feed(_items(*(signin(BG, f"2026-03-10T10:0{i}:00Z", record_id=f"s{i}") for i in range(3))))
    result = driver.finish()
    ids = [aid for aid, _ in result.changes]
    assert ids and len(set(result.changes)) == len(result.changes)  # each (alert, change) once
    assert result.summary() == {aid: "new" for aid in ids}
    again = driver.finish()
    assert again == BatchResult(watermark=result.watermark, tick_clock=result.tick_clock)  # taken once


def test_replay_commits_every_unit_and_an_input_error_keeps_what_was_fed(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    """Units of ``commit_every`` items, each committed (memory stays flat); a file that cannot be read
    further keeps the records before the error."""
    driver = _driver(plugins, tmp_path, commit_every=2)

    def broken() -> Iterator[Item]:
        yield from _items(*(signin(BG, f"2026-03-10T10:0{i}:00Z", record_id=f"s{i}") for i in range(3)))
        raise InputError("disk gone")

    with pytest.raises(InputError, match="disk gone"):
        driver.feed(broken())
    with sqlite3.connect(tmp_path / "state.db") as db:  # another connection sees it: committed
        (n,) = db.execute("SELECT count(*) FROM outbox").fetchone()
    assert n >= 1
    assert driver.finish().counts().get("new", 0) == n
