"""The Functions entry points of ``function_app.py`` and :mod:`pimwatch.hosting.runtime`, end to end.

What this exercises, honestly: the decorated functions of ``function_app.py`` called directly (their
user functions, as the Python worker would call them), with real ``azure.functions`` objects —
``EventHubEvent`` batches built by the library's own trigger converter from a payload shaped like the
host's cardinality-many invocation, ``TimerRequest`` and ``HttpRequest`` — over a real SQLite state
file, a real quarantine folder and a real HTTP server on loopback for the sink. It does NOT run the
Functions host or a real Event Hub: the host's batching, its retry policy and its checkpointing are
simulated by calling the function again with the same batch (see ``docs/functions.md``).
"""

from __future__ import annotations

import copy
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import orjson
import pytest

from detectors.approval_overdue import R1, _ask
from pimwatch.cli import main
from pimwatch.detection.contract import StoreError
from pimwatch.detection.timeutil import iso
from pimwatch.hosting import runtime
from tests.functions_host import APP, FUNCTIONS, REPO, batch, health, messages, timer
from tests.loopback import Answer, serve


def outbox(state: Path) -> dict[str, int]:
    """Alert id → count, read from the committed state file with a connection of our own."""
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT id, count FROM outbox").fetchall())


def deliveries(state: Path) -> dict[str, int]:
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status").fetchall())


def watermark(state: Path) -> str | None:
    with sqlite3.connect(state) as db:
        row = db.execute("SELECT v FROM kv WHERE k='pipeline:watermark'").fetchone()
    return orjson.loads(row[0]) if row else None


def quarantined(folder: Path) -> list[dict[str, Any]]:
    return [
        orjson.loads(line) for f in sorted(folder.glob("*.jsonl")) for line in f.read_bytes().splitlines()
    ]


# --- the tests ---------------------------------------------------------------------------------------


def test_the_bindings_are_what_the_host_needs() -> None:
    """The generated function.json: the trigger's settings come from app settings, and the retry
    policy never gives up (a raise means a store outage: stall, never skip the batch)."""
    hub = json.loads(APP["entra_events"].get_function_json())["bindings"][0]
    assert hub["type"] == "eventHubTrigger" and hub["cardinality"] == "MANY"
    assert hub["eventHubName"] == "%PIMWATCH_EVENTHUB_NAME%"
    assert hub["consumerGroup"] == "%PIMWATCH_CONSUMER_GROUP%"
    assert hub["connection"] == "PIMWATCH_EVENTHUB"
    retry = APP["entra_events"].get_settings_dict("retry_policy")
    assert (
        retry is not None and retry["strategy"] == "exponential_backoff" and retry["max_retry_count"] == "-1"
    )
    http = json.loads(APP["health"].get_function_json())["bindings"][0]
    assert http["authLevel"] == "FUNCTION"


def test_importing_the_app_stays_small() -> None:
    """Cold start: no sink client (httpx, Jinja2, Azure SDKs), no storage or Event Hub SDK, no pandas
    imported by loading the app: the state store's and the sinks' SDKs come on first use."""
    code = (
        "import sys, function_app; heavy = ('httpx', 'jinja2', 'azure.identity', 'azure.monitor', 'msgraph',"
        " 'azure.data', 'azure.storage', 'azure.eventhub', 'pandas', 'cryptography');"
        "print([m for m in sys.modules if m.startswith(heavy)])"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_batch_puts_every_alert_in_the_outbox(
    app_env: Callable[[str | None], Path],
    records: list[dict[str, Any]],
    replayed: tuple[dict[str, int], str],
) -> None:
    """The same alerts, ids and counts as ``pimwatch replay`` of the same records."""
    tmp = app_env(None)
    bodies = messages(records)
    for i in range(0, len(bodies), 4):  # several invocations of 4 messages each
        assert FUNCTIONS["entra_events"](batch(bodies[i : i + 4])) is None
    assert outbox(tmp / "state.db") == replayed[0]
    assert watermark(tmp / "state.db") == replayed[1]
    assert quarantined(tmp / "quarantine") == []


def test_bad_bodies_and_records_are_quarantined_whole_and_the_rest_processed(
    app_env: Callable[[str | None], Path], records: list[dict[str, Any]], expected: dict[str, int]
) -> None:
    tmp = app_env(None)
    bodies = messages(records)
    not_json = b'{"records": [{"category": "AuditLogs", "properties": {'  # cut off mid-message
    bad_record = {"unexpected": "shape", "n": 1}
    no_time = copy.deepcopy(next(r for r in records if r["properties"].get("loggedByService") == "PIM"))
    no_time["properties"].update(id="broken-1", activityDateTime="yesterday-ish")
    no_time["time"] = "yesterday-ish"
    with_bad = orjson.dumps({"records": [bad_record, *records[:3], "a string", no_time]})
    events = batch([bodies[0], not_json, with_bad, *bodies[1:]])
    assert FUNCTIONS["entra_events"](events) is None
    assert outbox(tmp / "state.db") == expected  # everything usable was processed
    bad = quarantined(tmp / "quarantine")
    assert len(bad) == 4
    body, shape, non_object, unusable = bad
    assert body["reason"].startswith("malformed JSON") and body["raw"] == not_json.decode()
    assert body["source"] == f"eventhub:3/{events[1].sequence_number}" and body["line"] == 2
    assert shape["reason"].startswith("unrecognised record shape")
    assert orjson.loads(shape["raw"]) == bad_record
    assert non_object["reason"] == "expected a record object, got str"
    assert unusable["reason"].startswith("unusable AuditLogs record: audit record has no readable")
    assert orjson.loads(unusable["raw"]) == no_time  # whole, as it came
    assert {b["source"] for b in bad[1:]} == {f"eventhub:3/{events[2].sequence_number}"}
    assert health()[1]["quarantined"] == 4


def test_duplicates_across_batches_count_once(
    app_env: Callable[[str | None], Path], records: list[dict[str, Any]], expected: dict[str, int]
) -> None:
    """At-least-once in: the same messages again (a rebalance, a retry after a crash), and the same
    records re-published inside other messages, change nothing."""
    tmp = app_env(None)
    bodies = messages(records)
    FUNCTIONS["entra_events"](batch(bodies))
    FUNCTIONS["entra_events"](batch(bodies, partition="0"))
    FUNCTIONS["entra_events"](batch(messages(list(reversed(records)))))
    assert outbox(tmp / "state.db") == expected


def test_a_store_outage_raises_and_nothing_of_the_batch_is_kept(
    app_env: Callable[[str | None], Path],
    records: list[dict[str, Any]],
    expected: dict[str, int],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The disk fills up mid-run: the function raises (the host's retry policy then holds the
    partition), nothing of the batch is committed; the host's retry, once the store is back, records
    it all, with no alert lost or doubled."""
    tmp = app_env(None)
    state = tmp / "state.db"
    bodies = messages(records)
    half = len(bodies) // 2
    first, second = batch(bodies[:half]), batch(bodies[half:])
    FUNCTIONS["entra_events"](first)
    before = (outbox(state), deliveries(state), watermark(state))
    assert 0 < len(before[0]) < len(expected)
    rt = runtime.get_runtime()

    def fill_the_disk() -> None:  # on the runtime's thread, which owns the connection
        db = rt._session.store._db  # type: ignore[union-attr]
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL on the next new page

    rt._thread.submit(fill_the_disk).result()
    with pytest.raises((StoreError, sqlite3.Error)):
        FUNCTIONS["entra_events"](second)
    assert "state store failed" in caplog.text
    assert (outbox(state), deliveries(state), watermark(state)) == before  # nothing marked done
    FUNCTIONS["entra_events"](second)  # the host's retry of the same batch: the store is back
    assert outbox(state) == expected
    assert health()[0] == 200


def test_a_state_path_that_cannot_be_opened_raises_and_health_says_so(
    app_env: Callable[[str | None], Path], records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    tmp = app_env(None)
    (tmp / "gone").mkdir()
    monkeypatch.setenv("PIMWATCH_STATE", str(tmp / "gone"))  # a folder where the file should be
    with pytest.raises(StoreError):
        FUNCTIONS["entra_events"](batch(messages(records)[:1]))
    assert health() == (503, {"status": "unavailable", "error": "StoreError"})


def test_a_sink_outage_returns_and_the_timer_delivers_when_it_is_back(
    app_env: Callable[[str | None], Path], records: list[dict[str, Any]], expected: dict[str, int]
) -> None:
    with serve(Answer(500)) as hook:
        tmp = app_env(hook.url + "/hook")
        state = tmp / "state.db"
        assert FUNCTIONS["entra_events"](batch(messages(records))) is None  # returns: the batch is done
        assert outbox(state) == expected
        rows = sqlite3.connect(state).execute("SELECT alert_id, kind FROM deliveries")
        routed = {f"{a}_resolved" if kind == "resolve" else a for a, kind in rows}  # as the webhook-id
        assert routed and deliveries(state) == {"pending": len(routed)}
        assert len(hook.requests) == len(routed)  # one attempt each on the hot path; retries: the timer
        code, doc = health()
        assert code == 200 and doc["outbox_pending"] == len(routed) and doc["dead_letters"] == 0
        assert doc["last_record"] == watermark(state) and doc["quarantined"] == 0

        hook.script(Answer(202))
        hook.requests.clear()
        time.sleep(0.1)  # past the retry's backoff (max_delay_seconds 0.05)
        timer()
        timer()  # nothing left to send
        assert deliveries(state) == {"sent": len(routed)}
        assert sorted(r.headers["webhook-id"] for r in hook.requests) == sorted(routed)  # once each
        assert health()[1]["outbox_pending"] == 0


def test_the_timer_ticks_clock_driven_detectors(app_env: Callable[[str | None], Path]) -> None:
    """An activation request waiting for approval and no record after it: only the timer (the clock)
    can raise ``approval.overdue``."""
    tmp = app_env(None)
    FUNCTIONS["entra_events"](batch([orjson.dumps({"records": [_ask("2026-03-10T10:00:00Z", R1)]})]))
    assert "approval.overdue" not in detectors(tmp / "state.db")
    timer()
    assert "approval.overdue" in detectors(tmp / "state.db")


def detectors(state: Path) -> set[str]:
    with sqlite3.connect(state) as db:
        return {d for (d,) in db.execute("SELECT detector FROM outbox")}


def test_concurrent_invocations_share_one_runtime_safely(
    app_env: Callable[[str | None], Path], records: list[dict[str, Any]], expected: dict[str, int]
) -> None:
    """The Python worker may run the Event Hub, timer and HTTP functions at once on its thread pool
    (and build the runtime from any of them): the SQLite connection belongs to one thread, so the
    runtime does all its work on its own thread, one call at a time.

    Pinned, not wanted: a timer that runs before the first batch of a partition has been noted as
    behind (pimwatch/state/progress.py) ticks ``approval.overdue`` at the wall clock, which can raise an
    overdue alert for a request whose decision is further down the backlog; the decision resolves
    it when it arrives (a page, then its resolve)."""
    tmp = app_env(None)
    bodies = messages(records)

    def hub(i: int, body: bytes) -> Callable[[], None]:
        return lambda: FUNCTIONS["entra_events"](batch([body], partition=str(i % 4)))

    calls: list[Callable[[], Any]] = [timer, health, *(hub(i, b) for i, b in enumerate(bodies)), timer]
    with ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()
    with sqlite3.connect(tmp / "state.db") as db:
        rows = db.execute("SELECT id, count, detector, status FROM outbox").fetchall()
    assert {i: n for i, n, _, _ in rows if i in expected} == expected
    assert {(d, st) for i, _, d, st in rows if i not in expected} <= {("approval.overdue", "resolved")}


def test_the_test_alert_endpoint_sends_to_the_sinks(
    app_env: Callable[[str | None], Path],
) -> None:
    with serve(Answer(202)) as hook:
        app_env(hook.url + "/hook")

        def post(body: bytes) -> tuple[int, dict[str, Any]]:
            req = func.HttpRequest("POST", "http://localhost/api/test-alert", body=body)
            resp = FUNCTIONS["test_alert"](req)
            return resp.status_code, json.loads(resp.get_body())

        code, doc = post(b"")
        assert code == 200 and list(doc["sinks"]) == ["soar"] and len(hook.requests) == 1
        sent = json.loads(hook.requests[0].body)
        assert sent["data"]["detector"] == "pimwatch.test"  # min_severity high: routing is bypassed
        assert post(b'{"sink": "nope"}') == (404, {"error": "no sink named 'nope' in the config"})
        assert post(b'{"severity": "loud"}')[0] == 400
        assert post(b"not json")[0] == 400
        hook.script(Answer(500))
        code, doc = post(b'{"sink": "soar", "severity": "high"}')
        assert code == 502 and doc["sinks"]["soar"].startswith("FAILED")


def test_replay_and_the_functions_runtime_give_identical_outboxes(
    app_env: Callable[[str | None], Path], records: list[dict[str, Any]], tmp_path: Path
) -> None:
    """The same stream through ``pimwatch replay --state`` and through the Event Hub function (the
    partition caught up, then the timer): the same alert documents, and the same deliveries queued."""
    with serve(Answer(500)) as hook:
        tmp = app_env(hook.url + "/hook")
        now = datetime.now(UTC)
        caught_up = iso(now - timedelta(seconds=5))
        bodies = messages(records)
        for i in range(0, len(bodies), 4):
            FUNCTIONS["entra_events"](batch(bodies[i : i + 4], "0", enqueued=caught_up))
        timer()
        stream = tmp_path / "stream.jsonl"
        stream.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
        replayed = tmp_path / "replayed.db"
        config = str(tmp / "pimwatch.yaml")
        assert main(["replay", str(stream), "--state", str(replayed), "--config", config]) == 0
    functions = _outbox_docs(tmp / "state.db")
    assert len(functions) > 100 and functions == _outbox_docs(replayed)
    queued = _queued(tmp / "state.db")
    assert queued and queued == _queued(replayed)


def _outbox_docs(state: Path) -> dict[str, Any]:
    with sqlite3.connect(state) as db:
        return {aid: orjson.loads(doc) for aid, doc in db.execute("SELECT id, doc FROM outbox")}


def _queued(state: Path) -> set[tuple[str, str, str]]:
    with sqlite3.connect(state) as db:
        return set(db.execute("SELECT alert_id, sink, kind FROM deliveries").fetchall())
