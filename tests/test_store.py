"""The Store contract, against the SQLite implementation (the Azure Table store will join this suite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pimwatch.alerts import Alert, Severity
from pimwatch.store import SqliteStore, StoreError

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _alert(
    events: list[tuple[str, str]], title: str = "t", context: dict[str, object] | None = None
) -> Alert:
    return Alert(
        id="a1",
        detector="d",
        severity=Severity.HIGH,
        title=title,
        summary="s",
        runbook="r",
        mitre=[],
        principal={"id": None, "upn": None, "name": None},
        context=context or {},
        events=events,
        accumulate=("roles",),
    )


@pytest.fixture
def store() -> SqliteStore:
    return SqliteStore(":memory:")


def test_add_is_idempotent_per_member(store: SqliteStore) -> None:
    assert store.add("k", "m1", T0, "x")
    assert not store.add("k", "m1", T0 + timedelta(minutes=5), "y")
    assert store.add("k", "m2", T0 + timedelta(minutes=1), "x")
    got = store.members("k", T0, T0 + timedelta(minutes=10))
    assert [(m.member, m.value) for m in got] == [("m1", "x"), ("m2", "x")]


def test_members_reads_an_event_time_range(store: SqliteStore) -> None:
    for i in range(5):
        store.add("k", f"m{i}", T0 + timedelta(minutes=10 * i), payload={"i": i})
    got = store.members("k", T0 + timedelta(minutes=10), T0 + timedelta(minutes=30))
    assert [m.payload for m in got] == [{"i": 1}, {"i": 2}, {"i": 3}]
    assert store.members("other", T0, T0 + timedelta(days=1)) == []


def test_claim_is_true_once(store: SqliteStore) -> None:
    assert store.claim("x") and not store.claim("x")


def test_get_put_and_ttl(store: SqliteStore) -> None:
    assert store.get("k") is None
    store.put("k", {"a": [1, 2]})
    assert store.get("k") == {"a": [1, 2]}
    store.put("gone", 1, ttl=timedelta(seconds=-1))
    assert store.get("gone") is None


def test_outbox_folds_by_id(store: SqliteStore) -> None:
    assert store.merge_alert(_alert([("2026-03-10T12:05:00Z", "e2")], "later", {"roles": ["B"]})) == "new"
    assert (
        store.merge_alert(_alert([("2026-03-10T12:05:00Z", "e2")], "later", {"roles": ["B"]})) == "unchanged"
    )
    assert (
        store.merge_alert(_alert([("2026-03-10T12:01:00Z", "e1")], "earlier", {"roles": ["A"]})) == "updated"
    )
    a = store.get_alert("a1")
    assert a is not None
    assert (a.count, a.first_seen, a.last_seen, a.title) == (
        2,
        "2026-03-10T12:01:00Z",
        "2026-03-10T12:05:00Z",
        "earlier",
    )
    assert a.context["roles"] == ["A", "B"]
    assert [x.id for x in store.alerts()] == ["a1"]


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


def test_resolve_matches_the_key_or_the_key_and_one_record_id_and_only_earlier_alerts(
    store: SqliteStore,
) -> None:
    def put(aid: str, key: str, first: str) -> None:
        a = _alert([(first, aid)])
        a.id, a.key = aid, key
        store.merge_alert(a)

    put("exact", "p|r", "2026-03-10T10:00:00Z")
    put("per-record", "p|r|PIM_Record_1", "2026-03-10T10:00:00Z")
    put("longer-key", "p|r|x|PIM_Record_2", "2026-03-10T10:00:00Z")
    put("other", "p|rr", "2026-03-10T10:00:00Z")
    put("later", "p|r|PIM_Record_3", "2026-03-10T13:00:00Z")
    put("like-chars", "p_r", "2026-03-10T10:00:00Z")
    assert sorted(store.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z")) == ["exact", "per-record"]
    assert store.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z") == []  # already resolved
    resolved = store.get_alert("exact")
    assert resolved is not None and (resolved.status, resolved.resolved_at) == (
        "resolved",
        "2026-03-10T12:00:00Z",
    )
