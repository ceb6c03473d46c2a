"""TTL clean-up (pimwatch.retention): the horizon from the detector catalogue and the config, what a
prune forgets and keeps on both stores (SQLite and Azure Tables on Azurite), how often it runs, that
the alerts are the same after a prune, and ``pimwatch prune`` on a state file."""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from pimwatch.cli import main
from pimwatch.config import Config, ConfigError, build
from pimwatch.detection.activities import ACTIVATION_APPROVED, ACTIVATION_COMPLETED
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import Plugin
from pimwatch.detection.event import Principal
from pimwatch.detection.pipeline import WATERMARK, Pipeline
from pimwatch.detection.principals import Principals
from pimwatch.detection.reader import classify
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.hosting.driver import Driver
from pimwatch.state import retention
from pimwatch.state import tables as tablestore
from pimwatch.state.progress import REGISTRY
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tables import TableStore
from pimwatch.testing import TENANT, guid, pim, user
from pimwatch.testing.harness import run_records
from tests.conftest import REPO

AnyStore = SqliteStore | TableStore
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # wall clock, for deliveries and maybe_prune
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
DEMO = REPO / "samples" / "demo"
DAY = timedelta(days=1)


def _prefix() -> str:
    return "r" + uuid.uuid4().hex[:16]


def _handles(request: pytest.FixtureRequest, n: int, tmp_path: Path) -> list[AnyStore]:
    """``n`` handles on one fresh state: connections to one SQLite file, or Table clients on one prefix."""
    if request.param == "sqlite":
        return [SqliteStore(str(tmp_path / "state.db")) for _ in range(n)]
    conn, prefix = request.getfixturevalue("azurite_storage"), _prefix()
    return [TableStore(conn, prefix=prefix) for _ in range(n)]


@pytest.fixture(params=["sqlite", "table"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AnyStore]:
    [one] = _handles(request, 1, tmp_path)
    yield one
    one.close()


@pytest.fixture(params=["sqlite", "table"])
def two_handles(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[AnyStore, AnyStore]]:
    one, other = _handles(request, 2, tmp_path)
    yield one, other
    one.close()
    other.close()


def _config(data: dict[str, Any], plugins: list[Plugin]) -> Config:
    return build(data, plugins, "test config")


# the horizon ----------------------------------------------------------------------------------------
def test_the_horizon_follows_the_enabled_detectors_and_the_config(plugins: list[Plugin]) -> None:
    def span(data: dict[str, Any]) -> timedelta:
        return retention.horizon(_config(data, plugins), plugins)

    # The catalogue's longest look-back is activation.first_time's 14 days, plus a day for late records.
    assert span({}) == timedelta(days=15)
    assert span({"detectors": {"activation.first_time": {"lookback_days": 30}}}) == timedelta(days=31)
    # Its learning period is counted from a key without TTL: it asks for no history.
    assert span({"detectors": {"activation.first_time": {"learning_hours": 2000}}}) == timedelta(days=15)
    off = {"activation.first_time": {"enabled": False}}
    assert span({"detectors": off}) == retention.FLOOR  # the rest need hours: the floor
    wide = {**off, "activation.too_frequent": {"within_minutes": 14400}}  # 10 days
    assert span({"detectors": wide}) == timedelta(days=11)
    assert span({"pipeline": {"retention_days": 40}}) == timedelta(days=40)
    assert span({"pipeline": {"retention_days": 15}}) == timedelta(days=15)


def test_what_each_detector_needs(plugins: list[Plugin]) -> None:
    config = _config(
        {"detectors": {"approval.overdue": {"sla_minutes": 120, "lateness_minutes": 30}}}, plugins
    )
    needs = {n.what: n.span for n in retention.needs(config.detectors, plugins)}
    assert needs["detectors.approval.overdue.sla_minutes + lateness_minutes"] == timedelta(minutes=150)
    assert needs["detectors.activation.simultaneous.within_minutes"] == timedelta(minutes=10)
    # Detectors that read activation ends keep pimwatch.lifecycle's memos for the longest activation.
    lifecycle = sorted(w for w in needs if w.endswith("(activation ends, pimwatch.lifecycle)"))
    assert [w.split()[0] for w in lifecycle] == [
        "detectors.activation.first_time",
        "detectors.activation.off_hours",
        "detectors.activation.privileged_role",
        "detectors.activation.risky_session",
        "detectors.activation.simultaneous",
    ]
    assert not [w for w in needs if "suppress_minutes" in w or "remember_hours" in w]


def test_durations_not_marked_as_history_ask_for_none(plugins: list[Plugin]) -> None:
    """A TTL, a learning period, a policy limit or a trimmed document: long values, no history."""
    cfg = _config(
        {
            "detectors": {
                "approval.self_approved": {"remember_hours": 5000},
                "settings.changed": {"max_activation_hours": 9000},
                "activation.first_time": {"learning_hours": 9000},
            }
        },
        plugins,
    )
    assert retention.horizon(cfg, plugins) == timedelta(days=15)  # lookback_days 14, plus a day


def test_retention_days_under_what_the_detectors_need_is_a_config_error(plugins: list[Plugin]) -> None:
    with pytest.raises(ConfigError) as err:
        _config({"pipeline": {"retention_days": 10}}, plugins)
    [problem] = err.value.problems
    assert problem.startswith("pipeline.retention_days: 10 days is less than the 15 days the detectors need")
    assert "detectors.activation.first_time.lookback_days: 14 days" in problem
    with pytest.raises(ConfigError) as err:
        _config(
            {"pipeline": {"retention_days": 3}, "detectors": {"activation.first_time": {"enabled": False}}},
            plugins,
        )
    assert err.value.problems[0].startswith(
        "pipeline.retention_days: 3 days is less than pimwatch's floor of 7"
    )
    with pytest.raises(ConfigError) as err:
        _config({"pipeline": {"retention_days": -1}}, plugins)
    assert err.value.problems[0].startswith("pipeline.retention_days: ")
    # Raising a detector's look-back past the operator's retention is the same error.
    with pytest.raises(ConfigError) as err:
        _config(
            {
                "pipeline": {"retention_days": 20},
                "detectors": {"activation.first_time": {"lookback_days": 21}},
            },
            plugins,
        )
    assert "22 days the detectors need" in err.value.problems[0]


# what a prune forgets and keeps (both stores) ---------------------------------------------------------
def test_prune_forgets_what_is_past_the_horizon_and_keeps_the_rest(
    store: AnyStore, plugins: list[Plugin], tmp_path: Path
) -> None:
    config = _config({}, plugins)
    admin = user("adm-pruned")
    # A real activation: the pipeline learns the privileged principal and keeps first_time's history.
    pipeline = Pipeline(plugins, config, store, Quarantine(str(tmp_path / "q.jsonl")))
    pipeline.feed(classify(pim(ACTIVATION_COMPLETED, iso(T0), admin, principal=admin, role=GA), "t", 1))
    Driver(pipeline).finish()
    for hours in (0, 1, 2):
        store.add("w", f"old{hours}", T0 + timedelta(hours=hours))
    store.add("w", "new", T0 + timedelta(days=20))
    store.add(REGISTRY, "partition-0", datetime(1970, 1, 1, tzinfo=UTC), "partition-0")
    store.put("expired", 1, ttl=timedelta(seconds=-1))
    store.put("fresh", 2, ttl=timedelta(hours=1))
    store.put("forever", 3)
    sent_old, sent_new, dead_old = (
        ("a-old", "s", "trigger"),
        ("a-new", "s", "trigger"),
        ("a-dead", "s", "trigger"),
    )
    for aid, sink, kind in (sent_old, sent_new, dead_old, ("a-pending", "s", "trigger")):
        store.enqueue(aid, sink, kind, now=(NOW - timedelta(days=60)).timestamp())
    store.mark_sent(*sent_old, answer="200", now=(NOW - timedelta(days=31)).timestamp())
    store.mark_sent(*sent_new, answer="200", now=(NOW - timedelta(days=29)).timestamp())
    store.mark_failed(
        *dead_old, dead=True, next_at=0.0, error="410", now=(NOW - timedelta(days=90)).timestamp()
    )
    alert = Alert(
        "kept-alert", "d", Severity.HIGH, "t", "s", "r", [], {"id": None, "upn": None, "name": None}, {}
    )
    alert.events = [(iso(T0), "e")]
    store.merge_alert(alert)
    store.commit()
    history = "activation.first_time\x1f" + "|".join((admin[0], GA[1], TENANT)).lower()
    everything = (datetime(1970, 1, 1, tzinfo=UTC), NOW)
    assert len(store.members(history, *everything)) == 1  # the detector's own key

    watermark = T0 + timedelta(days=21, hours=1)  # horizon 15 days: members before T0 + 6 d 1 h go
    done = retention.prune(store, watermark, retention.horizon(config, plugins), NOW)
    store.commit()
    assert done.before == T0 + timedelta(days=6, hours=1)
    # old0..2, first_time's history and its activation not judged yet (due), the activation in two
    # windows (too_frequent, simultaneous) and in simultaneous's own list of activations (matched
    # with their ends), credentials.privileged_changed's marker of the principal (id and UPN),
    # activation.privileged_role's memo of the GA activation (joined with its approval by request id),
    # and the evidence of its alert (the raw record and its index entry, pimwatch/detection/evidence.py)
    assert (done.members, done.deliveries, done.more) == (13, 1, False)
    assert [m.member for m in store.members("w", *everything)] == ["new"]
    assert store.members(history, *everything) == []
    assert [m.member for m in store.members(REGISTRY, *everything)] == ["partition-0"]
    assert (store.get("expired"), store.get("fresh"), store.get("forever")) == (None, 2, 3)
    assert store.get("activation.first_time\x1fwatching-since") == iso(T0)
    assert store.get(WATERMARK) == iso(T0)
    assert Principals(store, config.settings).knows(Principal(id=admin[0], upn=admin[1]))
    assert {(d.alert_id, d.status) for d in store.deliveries()} == {
        ("a-new", "sent"),
        ("a-dead", "dead"),
        ("a-pending", "pending"),
    }
    assert store.get_alert("kept-alert") is not None


def test_the_watermark_is_capped_at_the_wall_clock(store: AnyStore) -> None:
    store.add("w", "m", T0)
    future = T0 + timedelta(days=3650)  # one record stamped ten years ahead
    done = retention.prune(store, future, timedelta(days=15), now=T0 + DAY)
    assert done.before == T0 - timedelta(days=14)
    assert done.members == 0 and len(store.members("w", T0, T0)) == 1


def test_maybe_prune_runs_once_per_period_across_handles(two_handles: tuple[AnyStore, AnyStore]) -> None:
    one, other = two_handles
    one.add("w", "m1", T0)
    one.commit()
    watermark, span = T0 + timedelta(days=30), timedelta(days=15)
    assert retention.maybe_prune(one, None, span, NOW) is None  # nothing processed yet
    assert retention.maybe_prune(one, watermark, span, NOW) == 1
    other.add("w", "m2", T0)
    other.commit()
    assert retention.maybe_prune(other, watermark, span, NOW + timedelta(hours=1)) is None
    assert retention.maybe_prune(other, watermark, span, NOW + timedelta(hours=5, minutes=59)) is None
    assert len(other.members("w", T0, T0)) == 1
    assert retention.maybe_prune(other, watermark, span, NOW + timedelta(hours=6)) == 1
    assert other.members("w", T0, T0) == []


def test_a_capped_prune_continues_at_the_next_call(store: AnyStore) -> None:
    for i in range(5):
        store.add(f"w{i % 2}", f"m{i}", T0 + timedelta(minutes=i))
    store.add("w", "recent", T0 + timedelta(days=29))
    store.commit()
    watermark, span = T0 + timedelta(days=30), timedelta(days=15)
    counts = []
    for minute in range(5):
        counts.append(retention.maybe_prune(store, watermark, span, NOW + timedelta(minutes=minute), limit=2))
    assert counts == [2, 2, 1, None, None]  # the rest at once; then the next period
    assert [m.member for m in store.members("w", T0, watermark)] == ["recent"]
    assert retention.maybe_prune(store, watermark, span, NOW + timedelta(hours=6, minutes=2), limit=2) == 0


# the Table store's deletes ------------------------------------------------------------------------------
def test_table_prune_deletes_page_by_page_up_to_the_cap(
    azurite_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = TableStore(azurite_storage, prefix=_prefix())
    for i in range(23):
        s.add(f"k{i % 4}", f"m{i}", T0 + timedelta(seconds=i))
    monkeypatch.setattr(tablestore, "PAGE_SIZE", 5)
    deleted: list[int] = []
    real = s._delete_all

    def spy(table: Any, rows: list[Any]) -> int:
        deleted.append(len(rows))
        return real(table, rows)

    monkeypatch.setattr(s, "_delete_all", spy)
    before = s.round_trips
    assert s.prune(T0 + DAY, limit=12) == 12
    assert deleted[:3] == [5, 5, 2]  # the members' pages: never more than one page held
    # 3 pages read; the 12 deleted in per-partition transactions (4 window keys: at most 4 per page).
    assert s.round_trips - before <= 3 + 3 * 4 + 2  # + the key/value query (one empty page)
    assert s.prune(T0 + DAY) == 11
    s.close()


def test_table_prune_keeps_a_key_written_again_since_it_was_read(
    azurite_storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = TableStore(azurite_storage, prefix=_prefix())
    s.put("appr:1", {"v": "old"}, ttl=timedelta(seconds=-1))
    s.put("appr:2", {"v": "old"}, ttl=timedelta(seconds=-1))
    real = s._delete_all

    def racing(table: Any, rows: list[Any]) -> int:
        if rows and table is s._t["kv"]:
            s.put("appr:1", {"v": "new"}, ttl=timedelta(hours=48))  # another instance, meanwhile
        return real(table, rows)

    monkeypatch.setattr(s, "_delete_all", racing)
    s.prune(T0)
    assert s.get("appr:1") == {"v": "new"}
    assert s.get("appr:2") is None
    assert len(list(s._t["kv"].list_entities())) == 1
    s.close()


# the alerts are the same after a prune ------------------------------------------------------------------
def _demo_records() -> list[dict[str, Any]]:
    with gzip.open(DEMO / "day.eventhub.jsonl.gz", "rb") as f:
        return [r for line in f if line.strip() for r in orjson.loads(line)["records"]]


_MARCH = re.compile(r"2026-03-(\d\d)T")


def _later(records: list[dict[str, Any]], days: int) -> list[dict[str, Any]]:
    """The same day ``days`` later: times shifted, new record and PIM request ids."""
    requests: set[str] = set()
    for r in records:
        props = r.get("properties") or {}
        requests |= {d["value"] for d in props.get("additionalDetails") or [] if d.get("key") == "RequestId"}
        requests |= {t["id"] for t in props.get("targetResources") or [] if t.get("type") == "Request"}
    requests.discard("")

    def shift(m: re.Match[str]) -> str:
        return (date(2026, 3, int(m.group(1))) + timedelta(days=days)).isoformat() + "T"

    out = []
    for r in records:
        text = _MARCH.sub(shift, orjson.dumps(r).decode())
        if "Request" in text:
            for rid in requests:  # (not a regex over quoted strings: an escaped quote shifts its pairs)
                if f'"{rid}"' in text:
                    text = text.replace(f'"{rid}"', f'"{guid("later", rid)}"')
        copy = orjson.loads(text)
        if isinstance(copy.get("properties"), dict) and "id" in copy["properties"]:
            copy["properties"]["id"] = f"{copy['properties']['id']}-later"
        out.append(copy)
    return out


@pytest.fixture(scope="module")
def two_days(plugins: list[Plugin]) -> tuple[Config, list[dict[str, Any]], datetime]:
    """The demo day, then the same day 20 days later; the split: 14:08 on the second day."""
    day = _demo_records()
    data = yaml.safe_load((DEMO / "pimwatch.yaml").read_text())
    data.pop("sinks")
    return build(data, plugins, "demo"), day + _later(day, 20), datetime(2026, 3, 30, 14, 8, tzinfo=UTC)


def _replay(
    store: AnyStore, plugins: list[Plugin], config: Config, records: list[dict[str, Any]], tmp: Path
) -> None:
    pipeline = Pipeline(plugins, config, store, Quarantine(str(tmp / f"{uuid.uuid4().hex}.jsonl")))
    for i, rec in enumerate(records, 1):
        pipeline.feed(classify(rec, "demo", i))
    Driver(pipeline).finish()


def _alerts(store: AnyStore) -> list[dict[str, Any]]:
    return sorted((a.to_dict() for a in store.alerts()), key=lambda a: a["id"])


@pytest.fixture(scope="module")
def one_replay(
    two_days: tuple[Config, list[dict[str, Any]], datetime],
    plugins: list[Plugin],
    tmp_path_factory: pytest.TempPathFactory,
) -> list[dict[str, Any]]:
    config, records, _ = two_days
    s = SqliteStore(":memory:")
    _replay(s, plugins, config, records, tmp_path_factory.mktemp("one"))
    return _alerts(s)


def _split_with_prune(
    store: AnyStore,
    plugins: list[Plugin],
    two_days: tuple[Config, list[dict[str, Any]], datetime],
    tmp: Path,
    span: timedelta | None = None,
) -> retention.Pruned:
    config, records, split = two_days
    first, second = [], []
    for r in records:
        t = parse_time(r.get("time"))
        (first if t is None or t < split else second).append(r)
    _replay(store, plugins, config, first, tmp)
    watermark = parse_time(store.get(WATERMARK))
    assert watermark is not None and watermark < split
    done = retention.prune(store, watermark, span or retention.horizon(config, plugins), NOW)
    store.commit()
    _replay(store, plugins, config, second, tmp)  # a new pipeline on the pruned state: a restart
    return done


def test_the_same_alerts_after_a_prune_within_the_horizon(
    store: AnyStore,
    plugins: list[Plugin],
    two_days: tuple[Config, list[dict[str, Any]], datetime],
    one_replay: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    done = _split_with_prune(store, plugins, two_days, tmp_path)
    assert done.before < datetime(2026, 3, 16, tzinfo=UTC)
    assert done.members >= 50  # the first day's windows and activation history went
    assert len(one_replay) > 80 and _alerts(store) == one_replay


def test_a_horizon_shorter_than_the_windows_changes_the_alerts(
    plugins: list[Plugin],
    two_days: tuple[Config, list[dict[str, Any]], datetime],
    one_replay: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    """The control: the parity above is not for free. Pruning into the second day's windows (at the
    split, 14:08, activation.too_frequent's 4-hour window of adm-yasmin is open) changes its alert, and
    activations lose their 14-day history (first_time alerts that one replay does not raise)."""
    s = SqliteStore(":memory:")
    _split_with_prune(s, plugins, two_days, tmp_path, span=timedelta(minutes=10))
    got, want = ({a["id"]: a for a in alerts} for alerts in (_alerts(s), one_replay))
    differ = {
        (got.get(i) or want[i])["detector"] for i in got.keys() | want.keys() if got.get(i) != want.get(i)
    }
    assert differ == {"activation.too_frequent", "activation.first_time"}


# pimwatch prune --------------------------------------------------------------------------------------
def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_the_prune_command_on_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    records = tmp_path / "records.jsonl"
    admin = user("adm-cli")
    lines = [
        pim(ACTIVATION_COMPLETED, iso(T0 + timedelta(days=d)), admin, principal=admin, role=GA)
        for d in (0, 20)
    ]
    records.write_text("".join(orjson.dumps(r).decode() + "\n" for r in lines))
    code, _, err = _cli(
        "replay", str(records), "--state", str(state), "--quarantine", str(tmp_path / "q.jsonl")
    )
    assert code == 0, err
    history = "activation.first_time\x1f" + "|".join((admin[0], GA[1], TENANT)).lower()

    def members() -> int:
        s = SqliteStore(str(state))
        n = len(s.members(history, T0 - DAY, NOW))
        s.close()
        return n

    assert members() == 2
    code, out, _ = _cli("prune", "--state", str(state), "--dry-run")
    assert code == 0
    assert out == (
        # the first activation in first_time's history, too_frequent's and simultaneous's windows
        # and simultaneous's list; credentials.privileged_changed's marker of the admin (id, UPN);
        # activation.privileged_role's memo of the GA activation, and its alert's evidence (the raw
        # record and its index entry)
        f"{state}: would forget 9 window members older than 2026-03-15T12:00:00Z (watermark"
        " 2026-03-30T12:00:00Z less 15 days) and the expired keys;"
        " 0 sent deliveries older than 30 days would go\n"
    )
    assert members() == 2
    code, out, _ = _cli("prune", "--state", str(state))
    assert code == 0 and "forgot 9 window members" in out
    assert members() == 1
    config = tmp_path / "keep.yaml"
    config.write_text("pipeline:\n  retention_days: 60\n")
    code, out, _ = _cli("prune", "--state", str(state), "--config", str(config))
    assert code == 0 and "forgot 0 window members older than 2026-01-29T12:00:00Z" in out
    assert members() == 1


def test_the_prune_command_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    code, _, err = _cli("prune", "--state", str(tmp_path / "missing.db"))
    assert code == 1 and "no state file" in err
    assert not (tmp_path / "missing.db").exists()
    empty = tmp_path / "empty.db"
    SqliteStore(str(empty)).close()
    code, out, _ = _cli("prune", "--state", str(empty))
    assert code == 0 and "no watermark" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipeline:\n  retention_days: 2\n")
    code, _, err = _cli("prune", "--state", str(empty), "--config", str(bad))
    assert code == 2 and "pipeline.retention_days: 2 days is less than" in err


def test_approval_decisions_are_remembered_for_a_week_then_expire(plugins: list[Plugin]) -> None:
    from detectors.approval_overdue import DECIDED_KEPT, R1, _decide

    _, pipeline = run_records([_decide(ACTIVATION_APPROVED, "2026-03-10T10:00:00Z", R1)], plugins, {})
    db = pipeline.store._db  # type: ignore[attr-defined]
    (expires,) = db.execute("SELECT expires FROM kv WHERE k LIKE '%decided:%'").fetchone()
    assert expires is not None
    assert abs(expires - (time.time() + DECIDED_KEPT.total_seconds())) < 60
