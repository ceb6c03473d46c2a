"""The Azure Table store's per-batch unit of work (pimwatch/state/tableunit.py) on Azurite: writes wait for
the commit and then go in a few concurrent waves, reads are not repeated, a fold is the same as
outside a unit, and a window another instance added to meanwhile stops the commit before any alert.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pimwatch.config import build
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.contract import Member
from pimwatch.detection.detector import Plugin
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.tables import TableStore
from pimwatch.state.tableunit import Reads, Unit, UnitConflict
from tests.functions_host import messages
from tests.streams import CONFIG

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def prefix(azurite_tables: str) -> str:
    return f"tu{uuid.uuid4().hex[:10]}"


@pytest.fixture
def two(azurite_tables: str, prefix: str) -> Iterator[tuple[TableStore, TableStore]]:
    a, b = TableStore(azurite_tables, prefix), TableStore(azurite_tables, prefix)
    yield a, b
    a.close()
    b.close()


def _alert(n: int, record: str, akey: str = "k") -> Alert:
    return Alert(
        id=f"a{n}",
        detector="test.det",
        severity=Severity.HIGH,
        title="t",
        summary="s",
        runbook="r",
        mitre=[],
        principal={"id": None, "upn": None, "name": None},
        context={},
        events=[(f"2026-03-10T12:00:0{record[-1]}Z", record)],
        key=akey,
    )


def test_writes_wait_for_the_commit_and_reads_are_answered_by_the_unit(
    two: tuple[TableStore, TableStore],
) -> None:
    mine, other = two
    with mine.unit():
        mine.put("k", {"v": 1})
        assert mine.members("w", T0 - timedelta(hours=1), T0) == []
        assert mine.add("w", "m1", T0) is True and mine.add("w", "m1", T0) is False
        assert mine.merge_alert(_alert(1, "r1")) == "new"
        before = mine.requests
        assert mine.get("k") == {"v": 1}
        assert [m.member for m in mine.members("w", T0 - timedelta(hours=1), T0)] == ["m1"]
        assert (found := mine.get_alert("a1")) is not None and found.count == 1
        assert mine.requests == before  # what the unit wrote is never read back
        assert other.get("k") is None and other.get_alert("a1") is None  # not written yet
        assert other.members("w", T0 - timedelta(hours=1), T0) == []
    assert other.get("k") == {"v": 1}
    assert other.members("w", T0 - timedelta(hours=1), T0) == [Member("m1", T0.timestamp(), "", None)]
    assert (alert := other.get_alert("a1")) is not None and alert.count == 1
    assert other.resolve_alerts("test.det", "k", "2026-03-10T13:00:00Z") == ["a1"]  # indexed


def test_a_fold_in_a_unit_counts_as_one_outside_it(two: tuple[TableStore, TableStore]) -> None:
    mine, other = two
    assert other.merge_alert(_alert(1, "r1")) == "new"
    other.mark_queued("a1", "trigger")
    with mine.unit():
        assert mine.merge_alert(_alert(1, "r1")) == "unchanged"  # counted before
        assert mine.merge_alert(_alert(1, "r2")) == "updated"
        assert mine.merge_alert(_alert(1, "r2")) == "unchanged"  # counted in this unit
        assert mine.merge_alert(_alert(1, "r3")) == "updated"
    assert (alert := other.get_alert("a1")) is not None and alert.count == 3
    with mine.unit():  # a retried batch changes nothing
        assert mine.merge_alert(_alert(1, "r3")) == "unchanged"
    assert (again := other.get_alert("a1")) is not None and again.count == 3


def test_a_fold_that_loses_the_race_is_replayed_exactly(two: tuple[TableStore, TableStore]) -> None:
    mine, other = two
    assert other.merge_alert(_alert(1, "r1")) == "new"
    with mine.unit():
        mine.prefetch(Reads(alerts={"a1"}))
        assert mine.merge_alert(_alert(1, "r2")) == "new"  # not queued yet
        other.merge_alert(_alert(1, "r2"))  # the same record, counted by another instance first
        other.merge_alert(_alert(1, "r4"))
    assert (alert := other.get_alert("a1")) is not None and alert.count == 3  # r1, r2, r4: once each


def test_a_window_another_instance_added_to_stops_the_commit_before_the_alerts(
    two: tuple[TableStore, TableStore],
) -> None:
    mine, other = two
    span = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    with pytest.raises(UnitConflict), mine.unit():
        assert mine.members("w", *span) == []
        assert mine.add("w", "m1", T0) is True  # decided without m2
        other.add("w", "m2", T0)
        mine.merge_alert(_alert(1, "r1"))
    assert other.get_alert("a1") is None  # no alert of the batch was written
    assert {m.member for m in other.members("w", *span)} == {"m1", "m2"}  # the retry will see both


def test_an_add_answered_new_without_a_read_is_checked_by_the_read_that_follows(
    two: tuple[TableStore, TableStore],
) -> None:
    mine, other = two
    span = (T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    other.add("w", "m1", T0, payload={"p": 1})
    with mine.unit():  # no read of the window: the answer is not used, the upsert changes nothing
        assert mine.add("w", "m1", T0, payload={"p": 1}) is True
    assert other.members("w", *span) == [Member("m1", T0.timestamp(), "", {"p": 1})]
    with pytest.raises(UnitConflict, match="answered as new"), mine.unit():
        assert mine.add("w", "m1", T0, payload={"p": 1}) is True
        mine.members("w", *span)  # the answer was wrong: the batch must not decide on it
        mine.merge_alert(_alert(1, "r1"))
    assert other.get_alert("a1") is None


def test_concurrent_requests_count_as_one_round_trip(two: tuple[TableStore, TableStore]) -> None:
    mine, _ = two
    keys = [f"k{i}" for i in range(8)]
    before_requests, before_trips = mine.requests, mine.round_trips
    with mine.unit():
        mine.prefetch(Reads(kv=set(keys)))
        assert [mine.get(k) for k in keys] == [None] * 8
        for k in keys:
            mine.put(k, k)
    assert mine.requests - before_requests == 16  # 8 reads, 8 writes
    assert mine.round_trips - before_trips == 2  # one wave each
    assert [mine.get(k) for k in keys] == keys


class _ConflictOnce(TableStore):
    """The first commit check reports a conflict (the store side is tested for real above): what the
    runtime does with it. Counts the batches run in a unit of work (each prefetches first)."""

    conflicts = 0
    units = 0

    def prefetch(self, reads: Reads) -> None:
        assert self._unit is not None
        _ConflictOnce.units += 1
        super().prefetch(reads)

    def _check_window(self, u: Unit, key: str) -> None:
        if not _ConflictOnce.conflicts:
            _ConflictOnce.conflicts += 1
            raise UnitConflict(f"window {key!r} changed (simulated)")
        super()._check_window(u, key)


def test_a_batch_whose_unit_conflicts_runs_again_one_request_at_a_time(
    azurite_storage: str,
    prefix: str,
    tmp_path: Path,
    plugins: list[Plugin],
    records: list[dict[str, Any]],
    expected: dict[str, int],
) -> None:
    rt = Runtime(
        build(CONFIG, plugins),
        plugins,
        lambda: _ConflictOnce(azurite_storage, prefix),
        Quarantine(str(tmp_path / "q.jsonl")),
    )
    try:
        report = rt.handle(messages(records))
    finally:
        rt.close()
    assert _ConflictOnce.conflicts == 1 and _ConflictOnce.units == 1  # the run again opened none
    assert report.records == len(records)
    store = TableStore(azurite_storage, prefix)
    assert {a.id: a.count for a in store.alerts()} == expected
    store.close()
