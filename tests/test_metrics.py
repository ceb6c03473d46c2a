"""Metrics (pimwatch/hosting/metrics.py) through the real Functions entry points, read back with the
OpenTelemetry SDK's in-memory reader.

What this exercises, honestly: the user functions of ``function_app.py`` with real ``azure.functions``
Event Hub batches and timer calls, the runtime built from the app settings (SQLite state, or Azure
Tables on Azurite), a real HTTP sink on loopback. The runtime's metrics are pointed at an SDK
``MeterProvider`` with an ``InMemoryMetricReader`` instead of Application Insights (the exporter is
the only part replaced); every value asserted is checked against what the state holds afterwards, or
against bounds measured around the call. The Azure Monitor exporter itself is configured only in a
subprocess (it sets process-wide providers) and never sends anything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from pimwatch.cli import main
from pimwatch.detection.contract import Store
from pimwatch.detection.timeutil import parse_time
from pimwatch.hosting import runtime
from pimwatch.hosting.metrics import Metrics, RequestCounter, from_env
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tables import TableStore
from tests.functions_host import FUNCTIONS, _config, batch, messages, timer
from tests.loopback import Answer, serve

REPO = Path(__file__).resolve().parent.parent
Points = dict[str, dict[tuple[tuple[str, Any], ...], Any]]


@pytest.fixture
def otel() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    """An SDK meter provider of the test's own (not the process-wide one) and its in-memory reader."""
    memory = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    provider = MeterProvider(metric_readers=[memory])
    yield provider, memory
    provider.shutdown()


def instrument(rt: runtime.Runtime, otel: tuple[MeterProvider, InMemoryMetricReader]) -> InMemoryMetricReader:
    """Point the worker's runtime (built from the app settings) at the in-memory reader."""
    rt.metrics = Metrics(otel[0].get_meter("pimwatch"))
    return otel[1]


def points(memory: InMemoryMetricReader) -> Points:
    """Metric name → {sorted attributes → data point}: counters since the runtime started, histograms
    since the last read (deltas, as the Azure Monitor exporter sends them)."""
    out: Points = {}
    data = memory.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for p in metric.data.data_points:
                    out.setdefault(metric.name, {})[tuple(sorted(p.attributes.items()))] = p
    return out


def alerts_by(store: Store) -> tuple[Counter[str], Counter[str]]:
    """Severities of every alert in the state, and of the resolved ones."""
    alerts = list(store.alerts())
    return (
        Counter(a.severity.value for a in alerts),
        Counter(a.severity.value for a in alerts if a.status == "resolved"),
    )


def test_a_batch_records_its_records_duration_lag_alerts_and_deliveries(
    app_env: Callable[[str | None], Path],
    records: list[dict[str, Any]],
    otel: tuple[MeterProvider, InMemoryMetricReader],
    capsys: pytest.CaptureFixture[str],
) -> None:
    half = len(records) // 2
    with serve(Answer(202)) as hook:
        tmp = app_env(hook.url)
        reader = instrument(runtime.get_runtime(), otel)
        calls = []
        for part, chunk, enqueued in (
            ("3", records[:half], "2026-03-10T12:00:00.123Z"),
            ("0", records[half:], "2026-03-10T12:05:00Z"),
        ):
            before, wall = datetime.now(UTC), time.perf_counter()
            FUNCTIONS["entra_events"](batch(messages(chunk), partition=part, enqueued=enqueued))
            calls.append((part, len(chunk), enqueued, before, datetime.now(UTC), time.perf_counter() - wall))
        sent_requests = len(hook.requests)

    got = points(reader)
    for part, n, enqueued, before, after, wall in calls:
        where = (("partition", part),)
        assert got["pimwatch.records"][where].value == n
        duration = got["pimwatch.batch.duration"][where]
        assert duration.count == 1 and 0 < duration.sum <= wall
        at = parse_time(enqueued)
        assert at is not None
        lag = got["pimwatch.partition.lag"][where]
        assert lag.count == 1 and (before - at).total_seconds() <= lag.sum <= (after - at).total_seconds()
    assert "pimwatch.batch.round_trips" not in got  # SQLite: no remote requests to count

    store = SqliteStore(str(tmp / "state.db"))
    try:
        raised, resolved = alerts_by(store)
        sent = Counter(d.sink for d in store.deliveries("sent"))
    finally:
        store.close()
    assert raised and sent["soar"] == sent_requests > 0
    alerts = {(dict(k)["change"], dict(k)["severity"]): p.value for k, p in got["pimwatch.alerts"].items()}
    assert alerts == {
        **{("new", sev): n for sev, n in raised.items()},
        **{("resolved", sev): n for sev, n in resolved.items()},
    }
    deliveries = {tuple(v for _, v in k): p.value for k, p in got["pimwatch.deliveries"].items()}
    assert deliveries == {("sent", "soar"): sent["soar"]}

    # `pimwatch stats` shows the same numbers from the state file.
    doc = stats_json(tmp / "state.db", capsys)
    assert {(c, sev) for c, sev in alerts} == {
        *(("new", sev) for sev, n in doc["alerts"].items() if n["open"] + n["resolved"]),
        *(("resolved", sev) for sev, n in doc["alerts"].items() if n["resolved"]),
    }
    for (change, sev), n in alerts.items():
        assert n == doc["alerts"][sev]["resolved"] + (doc["alerts"][sev]["open"] if change == "new" else 0)
    assert doc["deliveries"] == {"soar": {"sent": sent["soar"], "failed": 0, "pending": 0, "dead": 0}}
    for part, *_ in calls:
        lag = got["pimwatch.partition.lag"][(("partition", part),)].sum
        assert abs(doc["partitions"][part]["lag_seconds"] - lag) <= 0.0005


def test_failed_and_dead_deliveries_and_the_outbox_depth(
    app_env: Callable[[str | None], Path],
    records: list[dict[str, Any]],
    otel: tuple[MeterProvider, InMemoryMetricReader],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A sink that fails (500: kept for a retry), then refuses (400: dead letters): the counters per
    sink and the outbox gauge follow the state's delivery rows, and so does ``pimwatch stats``."""
    with serve(Answer(500)) as hook:
        tmp = app_env(hook.url)
        reader = instrument(runtime.get_runtime(), otel)
        FUNCTIONS["entra_events"](batch(messages(records)))
        state = SqliteStore(str(tmp / "state.db"))
        try:
            pending = len(state.deliveries("pending"))
        finally:
            state.close()
        assert pending > 0
        got = points(reader)
        assert got["pimwatch.deliveries"][(("result", "failed"), ("sink", "soar"))].value == pending

        hook.script(Answer(400))
        # Due again only after the backoff: the deliverers' clock is moved past it (no waiting), then
        # one timer run sends every due delivery, and 400 is permanent: each becomes a dead letter.
        rt = runtime.get_runtime()
        assert rt._session is not None
        later = time.time() + 86_400
        for deliverer in (rt._session.deliverer, rt._session.hot):
            deliverer.clock = lambda: later
        timer()
        state = SqliteStore(str(tmp / "state.db"))
        try:
            left, dead = len(state.deliveries("pending")), len(state.deliveries("dead"))
        finally:
            state.close()
        assert left == 0 and dead == pending
        got = points(reader)
        assert got["pimwatch.deliveries"][(("result", "dead"), ("sink", "soar"))].value == dead
        timer()  # one more: the depth it counts is this call's alone (histograms are read as deltas)
    depth = {
        tuple(v for _, v in k): (p.count, p.sum) for k, p in points(reader)["pimwatch.outbox.depth"].items()
    }
    assert depth == {("soar", "dead"): (1, dead), ("soar", "pending"): (1, 0)}
    doc = stats_json(tmp / "state.db", capsys)
    assert doc["outbox"] == {"pending": 0, "dead": dead}
    assert doc["deliveries"]["soar"] == {"sent": 0, "failed": 0, "pending": 0, "dead": dead}
    assert main(["stats", "--state", str(tmp / "state.db")]) == 0
    text = capsys.readouterr().out
    assert f"outbox      pending 0   dead {dead}" in text and "soar" in text
    assert main(["stats", "--state", str(tmp / "missing.db")]) == 1
    assert "no state file" in capsys.readouterr().err


def stats_json(state: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["stats", "--state", str(state), "--format", "json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


@pytest.fixture
def tables_env(
    azurite_storage: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], None]]:
    def setup() -> None:
        prefix = f"mt{int(time.time() * 1000) % 10**9}"
        monkeypatch.delenv("PIMWATCH_STATE", raising=False)
        monkeypatch.setenv("PIMWATCH_CONFIG", str(_config(tmp_path, None)))
        monkeypatch.setenv("PIMWATCH_STORAGE", azurite_storage)
        monkeypatch.setenv("PIMWATCH_TABLE_PREFIX", prefix)
        monkeypatch.setenv("PIMWATCH_QUARANTINE_CONTAINER", f"q-{prefix}")

    runtime.reset_runtime()
    yield setup
    runtime.reset_runtime()


def test_round_trips_per_batch_on_azure_tables(
    tables_env: Callable[[], None],
    records: list[dict[str, Any]],
    otel: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    """The round trips of each batch in the metric are the Table store's own count for that batch
    (its unit of work counts the concurrent requests of one wave once)."""
    tables_env()
    rt = runtime.get_runtime()
    reader = instrument(rt, otel)
    rt.health()  # opens the store: its set-up is not a batch's
    assert rt._session is not None
    store = rt._session.store
    assert isinstance(store, TableStore)
    answered = []
    bodies = messages(records)
    for part, chunk in (("1", bodies[:2]), ("2", bodies[2:])):
        before = store.round_trips
        FUNCTIONS["entra_events"](batch(chunk, partition=part))
        answered.append((part, store.round_trips - before))
    got = points(reader)["pimwatch.batch.round_trips"]
    for part, n in answered:
        trips = got[(("partition", part),)]
        assert n > 0 and trips.count == 1 and trips.sum == n


def test_the_request_counter_counts_every_call_of_its_hook() -> None:
    counter = RequestCounter()
    hook = counter.client_options()["raw_request_hook"]
    for _ in range(3):
        hook(object())
    assert counter.count == 3


def test_metrics_are_off_and_not_imported_without_a_connection_string(tmp_path: Path) -> None:
    """No connection string: the no-op, and neither OpenTelemetry nor the distro is imported by a
    Functions batch or by ``pimwatch replay``."""
    assert not from_env({}).enabled and not from_env({"APPLICATIONINSIGHTS_CONNECTION_STRING": " "}).enabled
    recs = messages_records()
    records = tmp_path / "records.jsonl"
    records.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    body = tmp_path / "body.json"
    body.write_bytes(orjson.dumps({"records": recs}))
    code = (
        "import os, sys\n"
        "from pimwatch.cli import main\n"
        f"assert main(['replay', {str(records)!r}, '--state', {str(tmp_path / 'r.db')!r}]) == 0\n"
        "from pimwatch.hosting.runtime import get_runtime\n"
        f"os.environ['PIMWATCH_STATE'] = {str(tmp_path / 's.db')!r}\n"
        f"os.environ['PIMWATCH_CONFIG'] = {str(_cfg(tmp_path))!r}\n"
        f"assert get_runtime().handle([open({str(body)!r}, 'rb').read()]).records == {len(recs)}\n"
        "otel = ('opentelemetry', 'azure.monitor.opentelemetry')\n"
        "print(sorted({m for m in sys.modules if m.startswith(otel)}))\n"
        "os._exit(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "APPLICATIONINSIGHTS_CONNECTION_STRING"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def messages_records() -> list[dict[str, Any]]:
    from tests.streams import mixed_stream

    return mixed_stream()[:30]


def _cfg(tmp_path: Path) -> Path:
    return _config(tmp_path, None)


def test_a_connection_string_configures_metrics_only(tmp_path: Path) -> None:
    """With ``APPLICATIONINSIGHTS_CONNECTION_STRING``: the distro's meter provider is the global one
    and pimwatch's instruments are on it; no tracer provider, no log handler, no instrumentation."""
    code = (
        "import json, logging, os, sys\n"
        "from pimwatch.hosting.metrics import from_env\n"
        "handlers = len(logging.getLogger().handlers)\n"
        "m = from_env()\n"
        "from opentelemetry import metrics, trace\n"
        "import opentelemetry.sdk.metrics as sdk\n"
        "print(json.dumps({'enabled': m.enabled,"
        " 'meter': isinstance(metrics.get_meter_provider(), sdk.MeterProvider),"
        " 'tracer': type(trace.get_tracer_provider()).__name__,"
        " 'handlers': len(logging.getLogger().handlers) - handlers,"
        " 'detectors': os.environ.get('OTEL_EXPERIMENTAL_RESOURCE_DETECTORS'),"
        " 'instrumented': sorted(m for m in sys.modules if m.startswith('opentelemetry.instrumentation.')"
        " and m.split('.')[2] in ('httpx', 'requests', 'urllib', 'urllib3', 'flask', 'django'))}))\n"
        "os._exit(0)\n"  # no flush at exit: nothing is sent anywhere
    )
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    }
    for name in ("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "OTEL_TRACES_EXPORTER", "OTEL_LOGS_EXPORTER"):
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "enabled": True,
        "meter": True,
        "tracer": "ProxyTracerProvider",
        "handlers": 0,
        "detectors": "azure_app_service",
        "instrumented": [],
    }
