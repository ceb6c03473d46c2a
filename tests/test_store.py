"""SQLite-only store behaviour. The Store contract itself runs on SQLite and on the Azure Table store
in tests/test_tablestore.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from random import Random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimwatch.detection.alerts import SAMPLE, Alert, Severity
from pimwatch.detection.contract import StoreError
from pimwatch.state.sqlite import SqliteStore

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


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 59), st.integers(0, 40)), min_size=1, max_size=60),
    st.randoms(use_true_random=False),
)
def test_a_bounded_alert_is_the_same_for_any_order_batching_and_duplication(
    records: list[tuple[int, int]], rnd: Random
) -> None:
    """Count, event-id sample, bounded lists and omitted counts depend on the set of records only."""

    def one(i: int, minute: int, role: int) -> Alert:
        a = _alert([(f"2026-03-10T12:{minute:02d}:00Z", f"r{i:03d}")])
        a.title, a.context = f"title {i}", {"roles": [f"R{role:02d}"], "n": i}
        a.entities = [{"type": "ip", "address": f"192.0.2.{role:02d}"}, {"type": "role", "name": "R"}]
        return a

    def merged(batches: list[list[Alert]]) -> dict[str, object]:
        s = SqliteStore(":memory:")
        for batch in batches:
            first = min(batch, key=lambda a: a.events)  # the engine's title: the earliest record's
            first.events = [e for a in batch for e in a.events]
            first.context = {**first.context, "roles": [r for a in batch for r in a.context["roles"]]}
            first.entities = [e for a in batch for e in a.entities]
            s.merge_alert(first)  # a batch: several records folded at once (the windowed path)
        got = s.get_alert("a1")
        assert got is not None
        return got.to_dict()

    alerts = [one(i, m, r) for i, (m, r) in enumerate(records)]
    reference = merged([[a] for a in sorted(alerts, key=lambda a: a.events)])
    again = [one(i, m, r) for i, (m, r) in enumerate(records)]
    again += [one(i, m, r) for i, (m, r) in enumerate(records) if rnd.random() < 0.3]  # duplicates
    rnd.shuffle(again)
    cuts = sorted(rnd.sample(range(1, len(again)), k=min(len(again) - 1, rnd.randint(0, 5))))
    batches = [again[i:j] for i, j in zip([0, *cuts], [*cuts, len(again)], strict=True)]
    assert merged(batches) == reference
    distinct_roles = {r for _, r in records}
    assert reference["count"] == len(records)
    assert len(reference["event_ids"]) == min(len(records), 2 * SAMPLE)
    context = reference["context"]
    assert isinstance(context, dict)
    assert len(context["roles"]) + context.get("roles_omitted", 0) == len(distinct_roles)
    entities, omitted = reference["entities"], reference.get("entities_omitted", 0)
    assert isinstance(entities, list) and isinstance(omitted, int)
    assert len(entities) + omitted == len(distinct_roles) + 1  # each role's IP, and the one role


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
