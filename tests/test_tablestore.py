"""The Store contract, run against SQLite and the Azure Table store (on Azurite), plus the Table store's
own cases: awkward keys, large documents, several processes writing the same keys at once."""

from __future__ import annotations

import multiprocessing
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import ServiceResponseError
from azure.data.tables import TableTransactionError

from pimwatch.detection.alerts import LIST_LIMIT, SAMPLE, Alert, Severity, sample
from pimwatch.detection.contract import StoreError
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tables import TableStore, table_key

T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
AnyStore = SqliteStore | TableStore
ODD_KEYS = [
    "a/b",
    "a\\b",
    "a#b",
    "a?b",
    "it's",
    "tab\there",
    "nl\n",
    "\x7f\x85",
    "%2F",
    "~!",
    "",
    "ü€😀",
    "x" * 2000,
]


def _alert(
    events: list[tuple[str, str]], title: str = "t", context: dict[str, object] | None = None, aid: str = "a1"
) -> Alert:
    return Alert(
        id=aid,
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


def _prefix() -> str:
    return "t" + uuid.uuid4().hex[:16]


@pytest.fixture(params=["sqlite", "table"])
def store(request: pytest.FixtureRequest) -> Iterator[AnyStore]:
    s: AnyStore
    if request.param == "sqlite":
        s = SqliteStore(":memory:")
    else:
        s = TableStore(request.getfixturevalue("azurite_tables"), prefix=_prefix())
    yield s
    s.close()


# the contract (both stores) ---------------------------------------------------------------------
def test_add_is_idempotent_per_member(store: AnyStore) -> None:
    assert store.add("k", "m1", T0, "x")
    assert not store.add("k", "m1", T0 + timedelta(minutes=5), "y")
    assert store.add("k", "m2", T0 + timedelta(minutes=1), "x")
    got = store.members("k", T0, T0 + timedelta(minutes=10))
    assert [(m.member, m.value, m.at) for m in got] == [
        ("m1", "x", T0.timestamp()),
        ("m2", "x", T0.timestamp() + 60),
    ]


def test_members_reads_an_event_time_range_in_order(store: AnyStore) -> None:
    for i in (4, 0, 3, 1, 2):
        store.add("k", f"m{i}", T0 + timedelta(minutes=10 * i), payload={"i": i})
    store.add("k", "a-same-time", T0 + timedelta(minutes=20))
    got = store.members("k", T0 + timedelta(minutes=10), T0 + timedelta(minutes=30))
    assert [(m.member, m.payload) for m in got] == [
        ("m1", {"i": 1}),
        ("a-same-time", None),
        ("m2", {"i": 2}),
        ("m3", {"i": 3}),
    ]
    assert store.members("other", T0, T0 + timedelta(days=1)) == []
    store.remove("k", "m2")
    store.remove("k", "never-added")
    assert [m.member for m in store.members("k", T0, T0 + timedelta(days=1))] == [
        "m0",
        "m1",
        "a-same-time",
        "m3",
        "m4",
    ]


def test_awkward_keys_and_members_are_distinct_and_round_trip(store: AnyStore) -> None:
    for i, k in enumerate(ODD_KEYS):
        assert store.add(k, k, T0 + timedelta(seconds=i), k)
        assert not store.add(k, k, T0, k)
        assert store.claim(k) and not store.claim(k)
        store.put(k, {"k": k})
    for i, k in enumerate(ODD_KEYS):
        got = store.members(k, T0, T0 + timedelta(hours=1))
        assert [(m.member, m.value, m.at) for m in got] == [(k, k, T0.timestamp() + i)]
        assert store.get(k) == {"k": k}


def test_claim_is_true_once(store: AnyStore) -> None:
    assert store.claim("x") and not store.claim("x")
    assert store.claim("y")


def test_get_put_and_ttl(store: AnyStore) -> None:
    assert store.get("k") is None
    store.put("k", {"a": [1, 2]})
    assert store.get("k") == {"a": [1, 2]}
    store.put("k", "replaced", ttl=timedelta(hours=1))
    assert store.get("k") == "replaced"
    store.put("gone", 1, ttl=timedelta(seconds=-1))
    assert store.get("gone") is None
    big = {"ids": [f"record-{i:06d}-" + "x" * 40 for i in range(3000)]}  # ~150 KB: several chunks
    store.put("big", big)
    assert store.get("big") == big


def test_outbox_folds_by_id(store: AnyStore) -> None:
    assert store.merge_alert(_alert([("2026-03-10T12:05:00Z", "e2")], "later", {"roles": ["B"]})) == "new"
    store.mark_queued("a1", "trigger")
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
    assert store.get_alert("nope") is None


def test_alerts_are_ordered_by_first_seen_then_id(store: AnyStore) -> None:
    store.merge_alert(_alert([("2026-03-10T12:05:00Z", "e")], aid="b"))
    store.merge_alert(_alert([("2026-03-10T12:01:00Z", "e")], aid="c"))
    store.merge_alert(_alert([("2026-03-10T12:05:00Z", "e")], aid="a"))
    assert [x.id for x in store.alerts()] == ["c", "a", "b"]


def test_a_busy_alert_is_bounded_and_its_count_exact(store: AnyStore) -> None:
    # 4000 records in two folds (the second repeats 100 of the first), 300 distinct roles: the alert
    # keeps an exact count, the first and last SAMPLE event ids and LIST_LIMIT roles + an omitted count.
    events = [
        (f"2026-03-10T12:{i // 100 % 60:02d}:{i % 60:02d}Z", f"record-{i:05d}-{'y' * 30}")
        for i in range(4000)
    ]
    roles = [f"R{i:03d}" for i in range(300)]
    assert store.merge_alert(_alert(events[:2000], context={"roles": roles[:200]})) == "new"
    store.mark_queued("a1", "trigger")
    assert store.merge_alert(_alert(events[1900:], context={"roles": roles[100:]})) == "updated"
    a = store.get_alert("a1")
    assert a is not None and a.count == 4000
    assert a.events == sample(events) and len(a.events) == 2 * SAMPLE
    assert (a.first_seen, a.last_seen) == (min(events)[0], max(events)[0])
    assert a.context["roles"] == roles[:LIST_LIMIT] and a.context["roles_omitted"] == 300 - LIST_LIMIT
    # everything again, in another split: nothing new, nothing changes
    assert store.merge_alert(_alert(events[::2], context={"roles": roles})) == "unchanged"
    assert store.get_alert("a1") == a


def test_a_duplicate_record_does_not_count_even_beyond_the_sample(store: AnyStore) -> None:
    # The sample forgets the middle records; the store's membership still knows them.
    events = [(f"2026-03-10T12:00:{i:02d}Z", f"e{i:02d}") for i in range(50)]
    for e in events:
        store.merge_alert(_alert([e], context={"roles": [f"R{int(e[1][1:]) % 30:02d}"]}))
    store.mark_queued("a1", "trigger")
    middle = events[25]
    assert store.merge_alert(_alert([middle], context={"roles": ["R25"]})) == "unchanged"
    a = store.get_alert("a1")
    assert a is not None and a.count == 50 and middle not in a.events
    assert len(a.context["roles"]) == LIST_LIMIT and a.context["roles_omitted"] == 30 - LIST_LIMIT
    assert store.merge_alert(_alert([middle], context={"roles": ["R99"]})) == "updated"  # a new value
    b = store.get_alert("a1")
    assert b is not None and b.count == 50 and b.context["roles_omitted"] == 31 - LIST_LIMIT


@pytest.mark.parametrize("in_unit", [False, True], ids=["direct", "unit"])
def test_an_alert_counts_the_entities_beyond_its_bound(store: AnyStore, in_unit: bool) -> None:
    """Entities past LIMIT are counted in entities_omitted, exactly: one pushed out of the kept list
    by a smaller one and seen again later is not counted twice; a repeat changes nothing."""
    ips = [{"type": "ip", "address": f"192.0.2.{i:03d}"} for i in range(30)]

    def merge(events: list[tuple[str, str]], ents: list[dict[str, str]]) -> str:
        a = _alert(events)
        a.entities = [dict(e) for e in ents]
        if in_unit and isinstance(store, TableStore):
            with store.unit():
                return store.merge_alert(a)
        return store.merge_alert(a)

    events = [(f"2026-03-10T12:00:{i:02d}Z", f"e{i:02d}") for i in range(20)]
    assert merge(events[:5], ips[5:]) == "new"  # 25 distinct: 20 kept, 5 left out
    a = store.get_alert("a1")
    assert a is not None and a.entities == ips[5:25] and a.entities_omitted == 5
    assert a.to_dict()["entities_omitted"] == 5
    store.mark_queued("a1", "trigger")
    assert merge(events[5:10], ips[:10]) == "updated"  # 0-4 new: they push 20-24 out
    b = store.get_alert("a1")
    assert b is not None and b.entities == ips[:20] and b.entities_omitted == 10
    assert merge(events[10:11], ips[20:]) == "updated"  # a new record, only entities counted before
    c = store.get_alert("a1")
    assert c is not None and c.count == 11 and c.entities_omitted == 10
    assert merge(events[:11], ips) == "unchanged"  # everything again
    assert merge(events[11:12], [{"type": "ip", "address": "198.51.100.1"}]) == "updated"
    d = store.get_alert("a1")
    assert d is not None and d.entities == ips[:20] and d.entities_omitted == 11


def test_entities_beyond_one_transaction_are_counted_once(store: AnyStore) -> None:
    """More new entities than one entity-group transaction holds: folded in parts, counted once."""
    ips = [{"type": "ip", "address": f"198.51.{i // 100}.{i % 100:02d}"} for i in range(260)]
    a = _alert([("2026-03-10T12:00:00Z", "e0")])
    a.entities = ips[40:]
    store.merge_alert(a)
    b = _alert([("2026-03-10T12:00:01Z", "e1")])
    b.entities = list(reversed(ips))
    store.merge_alert(b)
    got = store.get_alert("a1")
    assert got is not None and got.entities == ips[:20] and got.entities_omitted == 260 - 20


def test_an_alert_within_its_bound_says_nothing_omitted(store: AnyStore) -> None:
    a = _alert([("2026-03-10T12:00:00Z", "e")])
    a.entities = [{"type": "ip", "address": "192.0.2.1"}, {"type": "ip", "address": "192.0.2.1"}]
    store.merge_alert(a)
    got = store.get_alert("a1")
    assert got is not None and got.entities_omitted == 0 and "entities_omitted" not in got.to_dict()


def test_resolve_matches_the_key_or_the_key_and_one_record_id_and_only_earlier_alerts(
    store: AnyStore,
) -> None:
    def put(aid: str, key: str, first: str, detector: str = "d") -> None:
        a = _alert([(first, aid)])
        a.id, a.key, a.detector = aid, key, detector
        store.merge_alert(a)
        store.mark_queued(aid, "trigger")

    put("exact", "p|r", "2026-03-10T10:00:00Z")
    put("per-record", "p|r|PIM_Record_1", "2026-03-10T10:00:00Z")
    put("longer-key", "p|r|x|PIM_Record_2", "2026-03-10T10:00:00Z")
    put("other", "p|rr", "2026-03-10T10:00:00Z")
    put("later", "p|r|PIM_Record_3", "2026-03-10T13:00:00Z")
    put("like-chars", "p_r", "2026-03-10T10:00:00Z")
    put("other-detector", "p|r", "2026-03-10T10:00:00Z", detector="e")
    assert sorted(store.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z")) == ["exact", "per-record"]
    store.mark_queued("exact", "resolve")
    store.mark_queued("per-record", "resolve")
    assert store.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z") == []  # already resolved
    resolved = store.get_alert("exact")
    assert resolved is not None and (resolved.status, resolved.resolved_at) == (
        "resolved",
        "2026-03-10T12:00:00Z",
    )
    still = store.get_alert("other-detector")
    assert still is not None and still.status == "open"
    # Folding into a resolved alert keeps it resolved (as SQLite does).
    a = _alert([("2026-03-10T09:00:00Z", "more")])
    a.id, a.key = "exact", "p|r"
    assert store.merge_alert(a) == "updated"
    again = store.get_alert("exact")
    assert again is not None and again.status == "resolved" and again.count == 2


def test_deliveries_lifecycle(store: AnyStore) -> None:
    assert store.enqueue("a2", "pd", "trigger", now=20.0)
    assert store.enqueue("a1", "pd", "trigger", now=10.0)
    assert not store.enqueue("a1", "pd", "trigger", now=99.0)
    assert store.enqueue("a1", "pd", "resolve", now=30.0, due=500.0)
    assert store.enqueue("a1", "mail/x#1", "trigger", now=10.0)
    assert [(d.alert_id, d.kind) for d in store.due("pd", now=100.0)] == [
        ("a1", "trigger"),
        ("a2", "trigger"),
    ]
    assert [d.alert_id for d in store.due("pd", now=100.0, limit=1)] == ["a1"]
    assert [(d.alert_id, d.sink) for d in store.due("mail/x#1", now=100.0)] == [("a1", "mail/x#1")]

    store.mark_failed("a1", "pd", "trigger", dead=False, next_at=200.0, error="HTTP 500", now=100.0)
    store.mark_sent("a2", "pd", "trigger", "202 " + "z" * 600, now=101.0)
    store.mark_failed("a1", "mail/x#1", "trigger", dead=True, next_at=0.0, error="E" * 600, now=102.0)
    store.mark_sent("never", "pd", "trigger", "x", now=1.0)  # unknown: nothing happens
    assert store.due("pd", now=150.0) == []
    [retry] = store.due("pd", now=200.0)
    assert (retry.alert_id, retry.attempts, retry.last_error, retry.next_at) == ("a1", 1, "HTTP 500", 200.0)
    [sent] = store.deliveries("sent")
    assert (sent.alert_id, sent.attempts, len(sent.answer), sent.status) == ("a2", 1, 500, "sent")
    [dead] = store.deliveries("dead")
    assert (dead.sink, dead.attempts, len(dead.last_error)) == ("mail/x#1", 1, 500)
    assert [(d.first_at, d.alert_id, d.sink) for d in store.deliveries()][:2] == [
        (10.0, "a1", "mail/x#1"),
        (10.0, "a1", "pd"),
    ]
    assert len(store.deliveries()) == 4

    assert store.requeue("dead", sink="pd", now=300.0) == 0
    assert store.requeue("dead", now=300.0) == 1
    [back] = store.due("mail/x#1", now=300.0)
    assert (back.status, back.attempts, back.next_at) == ("pending", 0, 300.0)
    assert store.deliveries("dead") == []

    assert store.purge("sent", before=101.0) == 0
    assert store.purge("sent", before=102.0) == 1
    assert store.deliveries("sent") == []
    store.commit()


def test_prune_forgets_old_members_and_expired_keys(store: AnyStore) -> None:
    for i in range(5):
        store.add(f"k{i % 2}", f"m{i}", T0 + timedelta(hours=i))
    store.put("old", 1, ttl=timedelta(seconds=-1))
    store.put("kept", 2)
    assert store.prune(T0 + timedelta(hours=2)) == 2
    assert [m.member for m in store.members("k0", T0, T0 + timedelta(days=1))] == ["m2", "m4"]
    assert [m.member for m in store.members("k1", T0, T0 + timedelta(days=1))] == ["m3"]
    assert store.get("kept") == 2


# the Table store only -------------------------------------------------------------------------
def test_table_state_is_shared_and_survives_reopening(azurite_tables: str) -> None:
    prefix = _prefix()
    s = TableStore(azurite_tables, prefix=prefix)
    s.add("k", "m", T0)
    s.merge_alert(_alert([("2026-03-10T12:00:00Z", "e")]))
    s.close()
    again = TableStore(azurite_tables, prefix=prefix)
    assert not again.add("k", "m", T0)
    assert again.get_alert("a1") is not None
    other = TableStore(azurite_tables, prefix=_prefix())
    assert other.add("k", "m", T0) and other.get_alert("a1") is None


def test_resolve_reads_the_key_index_not_the_outbox(azurite_tables: str) -> None:
    s = TableStore(azurite_tables, prefix=_prefix())
    for aid, key, first in [
        ("open-1", "p|r|PIM_1", "2026-03-10T10:00:00Z"),
        ("later", "p|r", "2026-03-10T13:00:00Z"),
        ("elsewhere", "q|r", "2026-03-10T10:00:00Z"),
    ]:
        a = _alert([(first, aid)], aid=aid)
        a.key = key
        s.merge_alert(a)
    # An index row whose alert was never written (a crash between the two writes) is skipped.
    s._t["outboxkeys"].upsert_entity(
        {"PartitionKey": table_key("d") + "~" + table_key("p|r"), "RowKey": table_key("ghost"), "id": "ghost"}
    )
    scans: list[str] = []
    outbox = s._t["outbox"]
    outbox.query_entities = lambda *a, **k: scans.append("scan")  # type: ignore[method-assign,assignment]
    outbox.list_entities = lambda *a, **k: scans.append("scan")  # type: ignore[method-assign,assignment]
    assert s.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z") == ["open-1"]
    assert scans == []
    s.mark_queued("open-1", "resolve")
    left = sorted(e["id"] for e in s._t["outboxkeys"].list_entities())
    assert left == ["elsewhere", "elsewhere", "ghost", "later", "later"]  # resolved: its rows are gone


def test_table_keys_are_safe_and_injective() -> None:
    keys = [*ODD_KEYS, "x" * 2001, "x" * 299 + "!!", "%", "%25", "!", "!21", "k", "kk"]
    encoded = [table_key(k) for k in keys]
    assert len(set(encoded)) == len(keys)
    for e in encoded:
        assert e and len(e) <= 400 + 65
        assert not any(c in e for c in "/\\#?'%~") and all(
            ord(c) >= 0x20 and not 0x7F <= ord(c) <= 0x9F for c in e
        )


def test_too_large_an_alert_is_refused_clearly(azurite_tables: str) -> None:
    s = TableStore(azurite_tables, prefix=_prefix())
    # Its count cannot make an alert too large (it is bounded); a detector's own context can.
    rnd = random.Random(7)  # incompressible: ~1.2 MB even with zlib
    huge = {"dump": rnd.randbytes(1_000_000).hex()}
    with pytest.raises(StoreError, match="over the 896000 bytes"):
        s.merge_alert(_alert([("2026-03-10T12:00:00Z", "e")], context=huge))


def test_bad_prefix_and_unreachable_service_are_store_errors() -> None:
    with pytest.raises(StoreError, match="prefix"):
        TableStore("UseDevelopmentStorage=true", prefix="has-dash")
    from tests.azurite import _free_port, connection_string

    with pytest.raises(StoreError, match="cannot open the table store"):
        TableStore(connection_string(_free_port()), client_options={"retry_total": 0})


def test_a_concurrent_fold_is_retried_not_lost(azurite_tables: str) -> None:
    # B folds an event in between A's read and A's write: A's ETag-conditional write gets a 412,
    # A reads again and folds again, and the alert ends up with every event.
    prefix = _prefix()
    a, b = TableStore(azurite_tables, prefix=prefix), TableStore(azurite_tables, prefix=prefix)
    assert a.merge_alert(_alert([("2026-03-10T12:00:00Z", "e0")])) == "new"
    a.mark_queued("a1", "trigger")
    outbox = a._t["outbox"]
    real_get = outbox.get_entity
    interleaved: list[str] = []

    def get_then_race(*args: Any, **kwargs: Any) -> Any:
        got = real_get(*args, **kwargs)
        if not interleaved:
            interleaved.append(b.merge_alert(_alert([("2026-03-10T12:02:00Z", "eB")])))
        return got

    outbox.get_entity = get_then_race  # type: ignore[method-assign]
    real_submit = outbox.submit_transaction
    conflicts: list[str] = []

    def submit(*args: Any, **kwargs: Any) -> Any:
        try:
            return real_submit(*args, **kwargs)
        except TableTransactionError as exc:
            conflicts.append(str(exc.error_code))
            raise

    outbox.submit_transaction = submit  # type: ignore[method-assign]
    assert a.merge_alert(_alert([("2026-03-10T12:01:00Z", "eA")])) == "updated"
    assert interleaved == ["updated"] and conflicts == ["UpdateConditionNotSatisfied"]
    final = b.get_alert("a1")
    assert final is not None and [eid for _, eid in final.events] == ["e0", "eA", "eB"]


# several processes at once --------------------------------------------------------------------
WORKERS = 4
WINDOWS = 3
MEMBERS = 25
CLAIMS = 40
ALERTS = 5


def _worker(conn: str, prefix: str, idx: int, barrier: Any, out: Any) -> None:
    store = TableStore(conn, prefix=prefix)
    rnd = random.Random(idx)
    adds = [(w, m) for w in range(WINDOWS) for m in range(MEMBERS)]
    claims = list(range(CLAIMS))
    alerts = list(range(ALERTS))
    rnd.shuffle(adds)
    rnd.shuffle(claims)
    rnd.shuffle(alerts)
    barrier.wait()
    added = [(w, m) for w, m in adds if store.add(f"w{w}", f"m{m}", T0 + timedelta(seconds=m), str(idx))]
    claimed = [c for c in claims if store.claim(f"claim|{c}")]
    barrier.wait()  # all fold into the same alerts at the same moment
    merged, queued = [], []
    for a in alerts:
        event = (f"2026-03-10T12:{idx:02d}:00Z", f"e{idx}")
        result = store.merge_alert(_alert([event], f"t{idx}", {"roles": [f"R{idx}"]}, aid=f"al{a}"))
        merged.append((a, result))
        if result == "new":  # as the runtime does: queue it, then say so
            if store.enqueue(f"al{a}", "sink", "trigger", 0.0):
                queued.append(a)
            store.mark_queued(f"al{a}", "trigger")
    out.put((idx, added, claimed, merged, queued))
    store.close()


def test_several_processes_count_claim_and_fold_exactly_once(azurite_tables: str) -> None:
    prefix = _prefix()
    TableStore(azurite_tables, prefix=prefix).close()  # the tables exist before the race
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(azurite_tables, prefix, i, barrier, out)) for i in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs)

    added = Counter(x for _, a, _, _, _ in results for x in a)
    assert added == Counter({(w, m): 1 for w in range(WINDOWS) for m in range(MEMBERS)})
    claimed = Counter(c for _, _, c, _, _ in results for c in c)
    assert claimed == Counter({c: 1 for c in range(CLAIMS)})
    # Every writer folded its event in; an alert is "new" until its creator has queued it (a writer
    # that folds in before that sees "new" too), and the queueing itself happens exactly once.
    outcomes = Counter((a, r) for _, _, _, m, _ in results for a, r in m)
    for a in range(ALERTS):
        assert outcomes[(a, "new")] >= 1
        assert outcomes[(a, "new")] + outcomes[(a, "updated")] == WORKERS
    assert Counter(a for *_, q in results for a in q) == Counter({a: 1 for a in range(ALERTS)})

    store = TableStore(azurite_tables, prefix=prefix)
    for w in range(WINDOWS):
        got = store.members(f"w{w}", T0, T0 + timedelta(hours=1))
        assert [m.member for m in got] == [f"m{m}" for m in range(MEMBERS)]
    for a in range(ALERTS):
        alert = store.get_alert(f"al{a}")
        assert alert is not None
        assert sorted(eid for _, eid in alert.events) == [f"e{i}" for i in range(WORKERS)]
        assert (alert.title, alert.first_seen) == ("t0", "2026-03-10T12:00:00Z")  # earliest event wins
        assert alert.context["roles"] == [f"R{i}" for i in range(WORKERS)]


def test_an_alert_stays_new_until_queued_and_resolved_until_its_resolve_is_queued(
    azurite_tables: str,
) -> None:
    # A writer that dies between writing an alert and queueing it (Table writes are not one
    # transaction) leaves it "new": whoever merges it next (the retried batch) queues it.
    s = TableStore(azurite_tables, prefix=_prefix())
    a = _alert([("2026-03-10T10:00:00Z", "e1")])
    a.key = "p|r"
    assert s.merge_alert(a) == "new"
    assert s.merge_alert(a) == "new"  # the crash: nobody queued it
    b = _alert([("2026-03-10T10:05:00Z", "e2")])
    b.key = "p|r"
    assert s.merge_alert(b) == "new"  # folded in, still owed its trigger
    s.mark_queued("a1", "trigger")
    assert s.merge_alert(a) == "unchanged"
    assert s.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z") == ["a1"]
    assert s.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z") == ["a1"]  # crash before queueing
    s.mark_queued("a1", "resolve")
    assert s.resolve_alerts("d", "p|r", "2026-03-10T12:00:00Z") == []
    assert list(s._t["outboxkeys"].list_entities()) == []  # done with: its index rows are gone
    got = s.get_alert("a1")
    assert got is not None and (got.status, got.count) == ("resolved", 2)


def test_an_alert_never_reaches_the_entity_limit(azurite_tables: str) -> None:
    # Once, 12,000 records with long ids overflowed one entity (the alert then stopped growing).
    # Bounded, the alert entity stays one small chunk whatever its count, and the count is exact.
    s = TableStore(azurite_tables, prefix=_prefix())
    rnd = random.Random(8)
    events = [(f"2026-03-10T12:00:{i % 60:02d}Z", rnd.randbytes(48).hex()) for i in range(12_000)]
    assert s.merge_alert(_alert(events[:6000])) == "new"
    s.mark_queued("a1", "trigger")
    assert s.merge_alert(_alert(events[6000:])) == "updated"
    entity = s._t["outbox"].get_entity(table_key("a1"), "a")
    assert entity["doc_n"] == 1 and len(bytes(entity["doc_0"])) < 8000
    kept = s.get_alert("a1")
    assert kept is not None and kept.count == entity["count"] == 12_000


def test_a_fold_whose_answer_is_lost_is_not_counted_twice(azurite_tables: str) -> None:
    # The transaction commits but its answer never arrives (the line drops): the caller raises, the
    # batch is retried, and the retry finds its membership rows: the count stays right.
    s = TableStore(azurite_tables, prefix=_prefix())
    assert s.merge_alert(_alert([("2026-03-10T12:00:00Z", "e0")], context={"roles": ["A"]})) == "new"
    s.mark_queued("a1", "trigger")
    outbox = s._t["outbox"]
    real = outbox.submit_transaction

    def commit_then_lose(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        raise ServiceResponseError("connection reset after the commit")

    outbox.submit_transaction = commit_then_lose  # type: ignore[method-assign]
    late = _alert([("2026-03-10T12:05:00Z", "e1")], context={"roles": ["B"]})
    with pytest.raises(StoreError):
        s.merge_alert(late)
    outbox.submit_transaction = real  # type: ignore[method-assign]
    assert s.merge_alert(late) == "unchanged"  # the retry
    got = s.get_alert("a1")
    assert got is not None and (got.count, got.context["roles"]) == (2, ["A", "B"])


def test_instances_learning_different_principals_keep_each_others(azurite_tables: str) -> None:
    """Learned privileged principals are insert-if-absent members, not one document rewritten whole:
    two instances learning at once both keep theirs, and each sees the other's after a refresh."""
    from pimwatch.detection.activities import ACTIVATION_COMPLETED
    from pimwatch.detection.detector import Settings
    from pimwatch.detection.normalize import audit_event
    from pimwatch.detection.principals import Principals
    from pimwatch.testing import pim, user

    prefix = _prefix()
    a, b = TableStore(azurite_tables, prefix=prefix), TableStore(azurite_tables, prefix=prefix)
    a.put("principals:privileged", {"ids": ["old-id"], "upns": []})  # written by an earlier version
    settings = Settings.build([], None)
    pa, pb = Principals(a, settings), Principals(b, settings)
    ga = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")

    def event(name: str) -> Any:
        rec = pim(ACTIVATION_COMPLETED, "2026-03-10T10:00:00Z", user(name), principal=user(name), role=ga)
        return audit_event(rec["properties"], rec, "eventhub", "AuditLogs", rec)

    assert pa.learn(event("alice")) and pb.learn(event("bob"))
    fresh = Principals(TableStore(azurite_tables, prefix=prefix), settings)
    assert {u for u in fresh.upns if u.startswith(("alice", "bob"))} == {
        "alice@contoso.com",
        "bob@contoso.com",
    }
    assert {"old-id", user("alice")[0], user("bob")[0]} <= fresh.ids
    assert "bob@contoso.com" not in pa.upns
    pa.refresh()
    assert "bob@contoso.com" in pa.upns


def test_a_transaction_scopes_durable_writes_and_cannot_roll_back(azurite_tables: str) -> None:
    store = TableStore(azurite_tables, f"tx{uuid.uuid4().hex[:8]}")
    try:
        with pytest.raises(KeyError), store.transaction():
            store.put("k", 1)
            raise KeyError("a bug")
        assert store.get("k") == 1  # durable per call: the contract's queueing marks cover this
        with pytest.raises(StoreError, match="cannot roll back"), store.transaction(rollback=True):
            pass
    finally:
        store.close()
