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


def test_a_transaction_commits_at_its_end_and_holds_commits_inside(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SqliteStore(path)
    with store.transaction():
        store.put("a", 1)
        store.commit()  # held: the unit of work commits once, at its end
        with store.transaction():  # nested: joins the outer one
            store.put("b", 2)
        assert SqliteStore(path).get("a") is None  # another connection sees nothing yet
    other = SqliteStore(path)
    assert (other.get("a"), other.get("b")) == (1, 2)
    other.close()
    store.close()


def test_a_transaction_that_raises_keeps_nothing_and_the_store_goes_on(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SqliteStore(path)
    store.put("kept", 1)
    store.commit()
    with pytest.raises(KeyError), store.transaction():
        store.put("kept", 2)
        store.put("lost", 3)
        store.add("w", "m", datetime(2026, 3, 10, tzinfo=UTC))
        raise KeyError("a bug")
    assert (store.get("kept"), store.get("lost")) == (1, None)  # the key cache was dropped too
    assert store.members("w", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)) == []
    with store.transaction():
        store.put("after", 4)
    store.close()
    assert SqliteStore(path).get("after") == 4


def test_a_rollback_transaction_takes_back_even_a_clean_end(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = SqliteStore(path)
    with store.transaction(rollback=True):
        store.put("dry", 1)
        assert store.get("dry") == 1  # visible inside: a dry run counts what it would do
    assert store.get("dry") is None
    store.close()
    assert SqliteStore(path).get("dry") is None
