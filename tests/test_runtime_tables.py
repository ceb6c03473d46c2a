"""The Functions entry points on the Azure Table store (Azurite on loopback), and the heartbeat and
test-alert triggers.

What this exercises, honestly: the user functions of ``function_app.py`` with real
``azure.functions`` objects (as in ``test_runtime.py``), the runtime built from the app settings
(``PIMWATCH_STORAGE`` = an Azurite connection string: Table state, Blob quarantine), a real HTTP sink
on loopback, and real network outages between the runtime and Azurite (a TCP proxy that cuts the
line). It does NOT run the Functions host or an Event Hub: the host's retry of a failed batch is
simulated by calling the function again with the same batch.
"""

from __future__ import annotations

import copy
import http.client
import itertools
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from pimwatch.config import build
from pimwatch.detection.alerts import Alert
from pimwatch.detection.contract import MergeResult, Store, StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.detection.pipeline import WATERMARK
from pimwatch.detection.timeutil import parse_time
from pimwatch.hosting import runtime
from pimwatch.hosting.heartbeat import SILENT
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.retention import KEEP_WINDOWS, LIMIT
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tables import TableStore
from pimwatch.testing.harness import run_records
from tests.functions_host import FUNCTIONS, _config, batch, health, messages
from tests.loopback import Answer, serve
from tests.streams import CONFIG
from tests.tcpproxy import proxied, table_port, via

_PREFIXES = (f"rt{int(time.time() * 1000) % 10**9}x{i}" for i in itertools.count())


@pytest.fixture
def table_env(
    azurite_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str | None], TableStore]]:
    """App settings for Azure Storage (fresh tables); returns a store of our own on the same tables."""
    opened: list[TableStore] = []

    def setup(sink_url: str | None = None) -> TableStore:
        prefix = next(_PREFIXES)
        monkeypatch.delenv("PIMWATCH_STATE", raising=False)
        monkeypatch.setenv("PIMWATCH_CONFIG", str(_config(tmp_path, sink_url)))
        monkeypatch.setenv("PIMWATCH_STORAGE", azurite_storage)
        monkeypatch.setenv("PIMWATCH_TABLE_PREFIX", prefix)
        monkeypatch.setenv("PIMWATCH_QUARANTINE_CONTAINER", f"q-{prefix.lower()}")
        opened.append(TableStore(azurite_storage, prefix))
        return opened[-1]

    runtime.reset_runtime()
    yield setup
    runtime.reset_runtime()
    for s in opened:
        s.close()


def outbox(store: Store) -> dict[str, int]:
    return {a.id: a.count for a in store.alerts()}


def test_batches_on_the_table_store_raise_what_replay_raises(
    table_env: Callable[[str | None], TableStore],
    records: list[dict[str, Any]],
    replayed: tuple[dict[str, int], str],
) -> None:
    store = table_env(None)
    bodies = messages(records)
    for i in range(0, len(bodies), 4):
        assert FUNCTIONS["entra_events"](batch(bodies[i : i + 4])) is None
    assert outbox(store) == replayed[0]
    assert store.get(WATERMARK) == replayed[1]
    # Duplicates: the same messages on another partition, and the records re-published in others.
    FUNCTIONS["entra_events"](batch(bodies, partition="0"))
    FUNCTIONS["entra_events"](batch(messages(list(reversed(records)))))
    assert outbox(store) == replayed[0]
    code, doc = health()
    assert code == 200 and doc["last_record"] == replayed[1] and doc["quarantined"] == 0


def test_bad_input_goes_to_the_blob_quarantine(
    table_env: Callable[[str | None], TableStore], records: list[dict[str, Any]], expected: dict[str, int]
) -> None:
    store = table_env(None)
    not_json = b'{"records": [{"category": "AuditLogs", "properties": {'
    events = batch([not_json, *messages(records)])
    FUNCTIONS["entra_events"](events)
    assert outbox(store) == expected
    rt = runtime.get_runtime()
    kept = [
        orjson.loads(line)
        for entry in rt.quarantine.archive.entries()
        for line in b"".join(rt.quarantine.archive.chunks(entry.name)).splitlines()
    ]
    assert [(k["source"], k["raw"]) for k in kept] == [
        (f"eventhub:3/{events[0].sequence_number}", not_json.decode())
    ]
    assert health()[1]["quarantined"] == 1


def test_a_crash_between_the_alert_writes_and_their_queueing_loses_nothing(
    azurite_storage: str,
    tmp_path: Path,
    plugins: list[Plugin],
    records: list[dict[str, Any]],
    expected: dict[str, int],
) -> None:
    """Table writes are not one transaction: the line to the store is cut just as the batch starts
    queueing its alerts (every alert written, none queued). The function raises; the retried batch
    queues every alert, and the sink gets each one exactly once."""
    prefix = next(_PREFIXES)
    with serve(Answer(202)) as hook, proxied(table_port(azurite_storage)) as proxy:
        cfg = build(
            {
                **CONFIG,
                "sinks": {"soar": {"type": "webhook", "url": hook.url + "/h", "min_severity": "high"}},
            },
            plugins,
        )
        conn = via(azurite_storage, proxy)

        def open_store() -> TableStore:
            return _CutBeforeQueueing(conn, prefix, client_options={"retry_total": 0}, cut=proxy.cut)

        rt = runtime.Runtime(cfg, plugins, open_store, Quarantine(str(tmp_path / "q.jsonl")))
        try:
            bodies = messages(records)
            with pytest.raises(StoreError):
                rt.handle(bodies)
            mine = TableStore(azurite_storage, prefix)
            assert outbox(mine) == expected  # every alert was written before the line went down
            assert mine.deliveries() == [] and hook.requests == []
            proxy.restore()
            _CutBeforeQueueing.armed = False
            report = rt.handle(bodies)  # the host's retry of the same batch
            # the webhook-id of a resolve is "<alert id>_resolved"
            routed = {
                f"{d.alert_id}_resolved" if d.kind == "resolve" else d.alert_id for d in mine.deliveries()
            }
            assert routed and report.queued == len(routed)
            assert Counter(d.status for d in mine.deliveries()) == {"sent": len(routed)}
            assert sorted(r.headers["webhook-id"] for r in hook.requests) == sorted(routed)
            rt.handle(bodies)  # and once more: nothing new to queue or send
            assert len(hook.requests) == len(routed)
        finally:
            rt.close()


class _CutBeforeQueueing(TableStore):
    """Cuts the network line on the first ``enqueue`` (the moment between writing and queueing)."""

    armed = True

    def __init__(self, *args: Any, cut: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cut = cut

    def enqueue(self, alert_id: str, sink: str, kind: str, now: float, due: float | None = None) -> bool:
        if _CutBeforeQueueing.armed:
            self._cut()
        return super().enqueue(alert_id, sink, kind, now, due)


WINDOWED = ("activation.simultaneous", "activation.repeated_failure")


def _windowed_records(plugins: list[Plugin]) -> list[dict[str, Any]]:
    """The Event Hub records of the windowed detectors' cases (not the whole mixed stream: through
    the cutting proxy every record costs round trips, and only these reach a windowed fold)."""
    seen: dict[str, dict[str, Any]] = {}
    for plugin in plugins:
        if plugin.meta.id in WINDOWED:
            for case in plugin.cases:
                if not set(case.config) - {"break_glass"}:
                    for rec in case.records:
                        if "properties" in rec:
                            seen.setdefault(rec["properties"]["id"], rec)
    return list(seen.values())


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_crash_around_a_windowed_fold_still_ends_with_exact_counts(
    when: str, azurite_storage: str, tmp_path: Path, plugins: list[Plugin]
) -> None:
    """The line drops just before a windowed alert's fold (its window member is written, the alert
    is not) or just after it (folded, the rest of the batch lost). The retried batch ends with
    exactly the counts of one clean run: nothing lost, nothing counted twice."""
    records = _windowed_records(plugins)
    clean, _ = run_records(records, plugins, CONFIG)
    expected = {a.id: a.count for a in clean}
    assert any(a.detector in WINDOWED and a.count > 1 for a in clean)  # there is a windowed fold
    prefix = next(_PREFIXES)
    with proxied(table_port(azurite_storage)) as proxy:
        conn = via(azurite_storage, proxy)
        _CutAroundWindowedFold.when, _CutAroundWindowedFold.fired = when, 0

        def open_store() -> TableStore:
            return _CutAroundWindowedFold(conn, prefix, client_options={"retry_total": 0}, cut=proxy.cut)

        rt = runtime.Runtime(
            build(CONFIG, plugins), plugins, open_store, Quarantine(str(tmp_path / "q.jsonl"))
        )
        try:
            bodies = messages(records)
            with pytest.raises(StoreError):
                rt.handle(bodies)
            assert _CutAroundWindowedFold.fired == 1
            proxy.restore()
            rt.handle(bodies)  # the host's retry of the same batch
            assert outbox(TableStore(azurite_storage, prefix)) == expected
            rt.handle(bodies)  # and once more: still the same counts
            assert outbox(TableStore(azurite_storage, prefix)) == expected
        finally:
            rt.close()


class _CutAroundWindowedFold(TableStore):
    """Cuts the line once, just before or just after folding an alert of a windowed detector."""

    when = "before"
    fired = 0

    def __init__(self, *args: Any, cut: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cut = cut

    def merge_alert(self, alert: Alert) -> MergeResult:
        windowed = alert.detector in WINDOWED
        armed = windowed and not _CutAroundWindowedFold.fired
        if armed and self.when == "before":
            _CutAroundWindowedFold.fired += 1
            self._cut()
        result = super().merge_alert(alert)
        if armed and self.when == "after":
            _CutAroundWindowedFold.fired += 1
            self._cut()
        return result


def test_a_table_store_outage_raises_and_the_retry_records_the_batch(
    azurite_storage: str,
    tmp_path: Path,
    plugins: list[Plugin],
    records: list[dict[str, Any]],
    expected: dict[str, int],
) -> None:
    prefix = next(_PREFIXES)
    with proxied(table_port(azurite_storage)) as proxy:
        conn = via(azurite_storage, proxy)
        rt = runtime.Runtime(
            build(CONFIG, plugins),
            plugins,
            lambda: TableStore(conn, prefix, client_options={"retry_total": 0}),
            Quarantine(str(tmp_path / "q.jsonl")),
        )
        try:
            bodies = messages(records)
            rt.handle(bodies[:2])
            proxy.cut()
            with pytest.raises(StoreError):
                rt.handle(bodies[2:])
            with pytest.raises(StoreError):  # still down: the runtime cannot even reopen it
                rt.health()
            proxy.restore()
            rt.handle(bodies[2:])
            assert outbox(TableStore(azurite_storage, prefix)) == expected
        finally:
            rt.close()


def test_the_line_drops_only_when_the_test_cuts_it(azurite_storage: str) -> None:
    """The outage tests run with ``retry_total=0``: a kept-alive connection idle for longer than
    Node's default keep-alive timeout (5 s) is still answered on, through the proxy, and only
    ``cut()`` drops it — else a batch on a loaded machine fails where no line was cut."""
    with proxied(table_port(azurite_storage)) as proxy:
        conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=30)

        def ask() -> int:
            conn.request("GET", "/devstoreaccount1/Tables")  # unauthorised: any answer will do
            answer = conn.getresponse()
            answer.read()
            return answer.status

        try:
            assert ask() and conn.sock is not None  # answered, kept alive
            first = conn.sock
            time.sleep(6)  # idle past the 5 s at which Node (and the proxy) used to close it
            assert ask() and conn.sock is first  # answered on the same connection
            proxy.cut()
            with pytest.raises((ConnectionError, http.client.HTTPException)):
                ask()
        finally:
            conn.close()


# --- the heartbeat (on SQLite: its logic is in the store's contract, not in a store) ---------------


def test_silence_raises_pipeline_silent_once_and_records_resolve_it(
    tmp_path: Path, plugins: list[Plugin], records: list[dict[str, Any]]
) -> None:
    clock = [datetime(2026, 11, 27, 9, 0, tzinfo=UTC)]
    with serve(Answer(202)) as hook:
        cfg = build(
            {
                **CONFIG,
                "pipeline": {"silent_minutes": 30},
                "sinks": {"page": {"type": "webhook", "url": hook.url + "/h", "min_severity": "high"}},
            },
            plugins,
        )
        state = str(tmp_path / "state.db")
        rt = runtime.Runtime(
            cfg,
            plugins,
            lambda: SqliteStore(state),
            Quarantine(str(tmp_path / "q.jsonl")),
            clock=lambda: clock[0],
        )
        try:
            t0 = clock[0]
            rt.handle(messages(records)[:1])
            hook.requests.clear()
            for minutes in (1, 10, 29):
                rt.tick(t0 + timedelta(minutes=minutes))
            assert _silent(state) == []
            for minutes in (31, 32, 45, 90):  # one silence, one alert, one page
                rt.tick(t0 + timedelta(minutes=minutes))
            [(aid, status, count)] = _silent(state)
            assert (status, count) == ("open", 1)
            pages = [json.loads(r.body) for r in hook.requests]
            assert [(p["data"]["detector"], p["type"]) for p in pages] == [(SILENT, "pimwatch.alert")]
            assert "30 minutes" in pages[0]["data"]["title"]
            assert parse_time(rt.health()["last_arrival"]) == t0
            clock[0] = t0 + timedelta(minutes=95)  # records again
            rt.handle(messages(records)[1:2])
            rt.tick(t0 + timedelta(minutes=96))
            assert _silent(state) == [(aid, "resolved", 1)]
            assert json.loads(hook.requests[-1].body)["type"] == "pimwatch.alert.resolved"
        finally:
            rt.close()


def _silent(state: str) -> list[tuple[str, str, int]]:
    s = SqliteStore(state)
    try:
        return [(a.id, a.status, a.count) for a in s.alerts() if a.detector == SILENT]
    finally:
        s.close()


def test_a_new_install_that_receives_nothing_raises_pipeline_silent(
    tmp_path: Path, plugins: list[Plugin]
) -> None:
    state = str(tmp_path / "state.db")
    rt = runtime.Runtime(
        build({"pipeline": {"silent_minutes": 30}}, plugins),
        plugins,
        lambda: SqliteStore(state),
        Quarantine(str(tmp_path / "q.jsonl")),
    )
    try:
        t0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
        rt.tick(t0)  # the first tick starts the clock
        rt.tick(t0 + timedelta(minutes=29))
        assert _silent(state) == []
        rt.tick(t0 + timedelta(minutes=31))
        assert [s for _, s, _ in _silent(state)] == ["open"]
    finally:
        rt.close()


def test_the_timer_forgets_state_older_than_the_horizon_every_six_hours(
    tmp_path: Path, plugins: list[Plugin], records: list[dict[str, Any]]
) -> None:
    state = str(tmp_path / "state.db")
    rt = runtime.Runtime(
        build(CONFIG, plugins), plugins, lambda: SqliteStore(state), Quarantine(str(tmp_path / "q"))
    )
    try:
        march = [r for r in records if str(r.get("time", "")).startswith("2026-03-1")]
        rt.handle(messages(march))
        kept = _members(state)
        now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
        assert kept > 0 and rt.tick(now).pruned == 0  # within the horizon of the watermark (March)
        moved = copy.deepcopy(march[0])  # the stream moves on: a record read by a detector
        moved["time"] = moved["properties"]["activityDateTime"] = "2026-11-20T12:00:00Z"
        moved["properties"]["id"] = "moved-on-1"
        rt.handle(messages([moved]))
        assert rt.tick(now + timedelta(hours=1)).pruned is None  # not due: every 6 hours
        first = rt.tick(now + timedelta(hours=7)).pruned
        assert first == min(kept, LIMIT)
        total, minute = first, 1
        while total < kept:  # past the cap: due again at once, at most LIMIT a call, each call progresses
            more = rt.tick(now + timedelta(hours=7, minutes=minute)).pruned
            assert more is not None and 0 < more <= LIMIT
            total, minute = total + more, minute + 1
        assert total == kept
    finally:
        rt.close()
    with sqlite3.connect(state) as db:  # only the new record's own windows are left (and the kept)
        left = db.execute(f"SELECT member FROM members WHERE wkey NOT IN {_KEPT}").fetchall()
    assert {m for (m,) in left} <= {"moved-on-1"}


_KEPT = "(" + ", ".join(f"'{k}'" for k in KEEP_WINDOWS) + ")"


def _members(state: str) -> int:
    """Window members the clean-up may forget (not the learned principals, not the partitions)."""
    with sqlite3.connect(state) as db:
        return int(db.execute(f"SELECT count(*) FROM members WHERE wkey NOT IN {_KEPT}").fetchone()[0])
