"""``pimwatch consume``: the batch handler, checkpointing, shutdown and settings.

What is real: ``azure.eventhub.EventData`` objects as received (AMQP bytes with the sequence number,
offset and enqueued-time annotations, decoded by pyamqp), the ``BlobCheckpointStore`` and
``PartitionContext`` of the SDK on Azurite's blob service, the runtime (``Runtime.from_env()``) on a
SQLite state file or on Azure Tables (Azurite), the demo stream's messages (``samples/demo``,
``{"records": [...]}`` bodies), a webhook sink on a loopback HTTP server, worker processes killed with
SIGKILL and stopped with SIGTERM, and ``pimwatch replay`` as the reference. What is simulated: the
Event Hub and the SDK's event processor (``tests/eventhub_sim.py`` says exactly how) — there is no
Event Hub here, nor an emulator. The SDK's real client and (waiting) event processor run only against
an unreachable hub, owning no partition.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.data.tables import TableClient
from azure.eventhub import EventData, EventHubConsumerClient, PartitionContext
from azure.eventhub.extensions.checkpointstoreblob import BlobCheckpointStore

from detectors.approval_overdue import R1, _ask
from pimwatch import cli
from pimwatch.detection.timeutil import parse_time
from pimwatch.hosting.azure_settings import SettingsError, azure_storage, open_tables
from pimwatch.hosting.consume import Backoff, BatchHandler, Options, event_body, serve
from pimwatch.hosting.consume_settings import (
    checkpoint_settings,
    ensure_container,
    hub_settings,
    open_checkpoint_store,
    open_client,
    starting_position,
)
from pimwatch.hosting.eventhub_processor import IdleWaitingConsumers, ProcessorClient
from pimwatch.hosting.runtime import Runtime
from tests.eventhub_sim import (
    ENV_SIM_STORAGE,
    GROUP,
    HUB,
    NAMESPACE,
    SimulatedHub,
    checkpoints,
    partition_events,
    read_messages,
    received_event,
)
from tests.loopback import Answer
from tests.loopback import Server as HttpServer
from tests.loopback import serve as serve_http
from tests.tcpproxy import proxied

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "samples" / "demo"
DEMO_STREAM = DEMO / "day.eventhub.jsonl.gz"
BATCH = 5  # messages per batch (each message: 50-100 records)
EARLY = datetime(2026, 3, 10, tzinfo=UTC)
KILL_AT = 15  # the sink's 15th request (of 34), mid-stream: the worker is killed or stopped then


@pytest.fixture(scope="module")
def bodies() -> list[bytes]:
    return read_messages(DEMO_STREAM)


def write_config(folder: Path, sink_url: str | None = None) -> Path:
    """The demo's config, plus a webhook sink for high and critical alerts when ``sink_url`` is given."""
    text = (DEMO / "pimwatch.yaml").read_text()
    if sink_url:
        text += (
            f"\nsinks:\n  soar: {{type: webhook, url: '{sink_url}', min_severity: high, "
            "timeout_seconds: 30}\n"
            "delivery: {retries_in_run: 0, base_delay_seconds: 0.05, max_delay_seconds: 0.2}\n"
        )
    path = folder / "pimwatch.yaml"
    path.write_text(text)
    return path


def app_env(folder: Path, sink_url: str | None = None) -> dict[str, str]:
    """The settings of a worker whose state is a SQLite file (no PIMWATCH_STORAGE: the runtime keeps
    SQLite; the checkpoints are on Azurite all the same)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIMWATCH_", "AzureWebJobs"))}
    env.update(
        PIMWATCH_CONFIG=str(write_config(folder, sink_url)),
        PIMWATCH_STATE=str(folder / "state" / "state.db"),
        PIMWATCH_QUARANTINE_DIR=str(folder / "quarantine"),
    )
    (folder / "state").mkdir(exist_ok=True)
    return env


@pytest.fixture
def runtime_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    def setup(sink_url: str | None = None) -> Path:
        for k in list(os.environ):
            if k.startswith("PIMWATCH_"):
                monkeypatch.delenv(k)
        for k, v in app_env(tmp_path, sink_url).items():
            if k.startswith("PIMWATCH_"):
                monkeypatch.setenv(k, v)
        return tmp_path / "state" / "state.db"

    return setup


@pytest.fixture
def container(azurite_storage: str) -> str:
    """A checkpoint container of the test's own on Azurite, created by pimwatch (``ensure_container``)."""
    name = f"cp-{uuid.uuid4().hex[:12]}"
    ensure_container(checkpoint_settings(sim_env(azurite_storage, name)))
    return name


@pytest.fixture
def store(azurite_storage: str, container: str) -> BlobCheckpointStore:
    """The real blob checkpoint store on that container, built from the settings as ``consume`` does."""
    return open_checkpoint_store(checkpoint_settings(sim_env(azurite_storage, container)))


def sim_env(connection_string: str, container: str) -> dict[str, str]:
    return {"PIMWATCH_STORAGE": connection_string, "PIMWATCH_CHECKPOINT_CONTAINER": container}


def context(store: BlobCheckpointStore, partition: str = "0") -> PartitionContext:
    return PartitionContext(NAMESPACE, HUB, GROUP, partition, store)


def checkpoint_of(store: BlobCheckpointStore, partition: str = "0") -> tuple[str, int] | None:
    cp = checkpoints(store).get(partition)
    return (cp["offset"], cp["sequence_number"]) if cp else None


def at(event: EventData) -> tuple[str | None, int | None]:
    return event.offset, event.sequence_number


def outbox(state: Path) -> dict[str, int]:
    """Alert id → count, from a committed state file, with a connection of our own."""
    with sqlite3.connect(state) as db:
        return dict(db.execute("SELECT id, count FROM outbox").fetchall())


def replay_state(folder: Path, messages: list[bytes], config: Path) -> Path:
    """The SQLite state of one uninterrupted ``pimwatch replay`` of the same messages (a dry run: its
    alerts' delivery rows queued for the config's sinks, nothing sent)."""
    folder.mkdir(exist_ok=True)
    stream = folder / "stream.jsonl.gz"
    stream.write_bytes(gzip.compress(b"\n".join(messages) + b"\n"))
    state = folder / "replay.db"
    args = ["replay", str(stream), "--config", str(config), "--state", str(state), "--format", "jsonl"]
    args += ["--quarantine", str(folder / "q.jsonl")]
    assert cli.main(args) == 0
    return state


def replayed(folder: Path, messages: list[bytes], config: Path) -> dict[str, int]:
    """Alert id → count from one uninterrupted ``pimwatch replay`` of the same messages."""
    return outbox(replay_state(folder, messages, config))


# --- the batch handler, in-process ---------------------------------------------------------------


def test_received_events_carry_what_the_handler_reads(bodies: list[bytes]) -> None:
    """The simulated events are EventData as received: the annotations decode as the SDK reads them."""
    when = datetime(2026, 3, 10, 12, 0, 0, 123000, tzinfo=UTC)
    event = received_event(bodies[0], 42, 4200, when)
    assert (event.sequence_number, event.offset, event.enqueued_time) == (42, "4200", when)
    assert event_body(event) == bodies[0]


def test_a_batch_is_committed_then_checkpointed_at_its_last_event(
    runtime_env: Callable[..., Path],
    azurite_storage: str,
    container: str,
    store: BlobCheckpointStore,
    bodies: list[bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = runtime_env()
    events = partition_events(bodies[:10], 1, EARLY)["0"]
    seen_at_checkpoint: list[dict[str, int]] = []

    class Observing(BlobCheckpointStore):  # the real store, reading the state file before it writes
        def update_checkpoint(self, checkpoint: dict[str, Any], **kwargs: Any) -> None:
            seen_at_checkpoint.append(outbox(state))
            super().update_checkpoint(checkpoint, **kwargs)

    observing = Observing.from_connection_string(azurite_storage, container)
    runtime = Runtime.from_env()
    handler = BatchHandler(runtime, threading.Event())
    try:
        assert checkpoint_of(store) is None
        with caplog.at_level(logging.INFO, logger="pimwatch.consume"):
            handler(context(observing), events[:BATCH])
        assert checkpoint_of(store) == at(events[BATCH - 1])
        first = outbox(state)
        assert seen_at_checkpoint == [first] and first  # the batch's alerts were committed before
        handler(context(observing), events[BATCH:])
        assert checkpoint_of(store) == at(events[-1])
    finally:
        runtime.close()
    config = Path(os.environ["PIMWATCH_CONFIG"])
    assert outbox(state) == replayed(tmp_path / "replay", bodies[:10], config)
    lines = logged(caplog)
    assert [(x["partition"], x["first"], x["last"]) for x in lines] == [("0", 0, BATCH - 1)]
    assert lines[0]["checkpoint"] == {"offset": events[BATCH - 1].offset, "sequence_number": BATCH - 1}
    assert lines[0]["messages"] == BATCH and sum(lines[0]["alerts"].values()) == len(first)


def test_with_the_state_in_azure_tables_on_the_checkpoint_account(
    runtime_env: Callable[..., Path],
    azurite_storage: str,
    container: str,
    store: BlobCheckpointStore,
    bodies: list[bytes],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The production settings: PIMWATCH_STORAGE holds the state (Table store), the quarantine and the
    checkpoints; the handler's batches end as one replay of the same messages."""
    runtime_env()
    prefix = f"pw{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("PIMWATCH_STORAGE", azurite_storage)
    monkeypatch.setenv("PIMWATCH_TABLE_PREFIX", prefix)
    monkeypatch.setenv("PIMWATCH_CHECKPOINT_CONTAINER", container)
    events = partition_events(bodies[:10], 2, EARLY)
    runtime = Runtime.from_env()
    handler = BatchHandler(runtime, threading.Event())
    try:
        for pid in ("0", "1", "0", "1"):
            done = (checkpoint_of(store, pid) or ("", -1))[1] + 1
            handler(context(store, pid), events[pid][done : done + 3])
    finally:
        runtime.close()
    assert {p: checkpoint_of(store, p) for p in events} == {p: at(e[-1]) for p, e in events.items()}
    tables = open_tables(azure_storage())
    try:
        alerts = {a.id: a.count for a in tables.alerts()}
        # Each partition's progress (an enqueued time handled, noted at most once a minute while it
        # stays behind) is shared for the tick clock (pimwatch/state/progress.py).
        for pid, evs in events.items():
            noted = tables.get(f"pipeline:partition:{pid}")
            assert noted is not None
            assert parse_time(noted["enqueued"]) in {e.enqueued_time for e in evs[:3]}
    finally:
        tables.close()
    assert alerts == replayed(tmp_path / "replay", bodies[:10], Path(os.environ["PIMWATCH_CONFIG"]))


def test_a_store_outage_is_retried_in_process_and_nothing_is_checkpointed_until_it_is_back(
    runtime_env: Callable[..., Path],
    store: BlobCheckpointStore,
    bodies: list[bytes],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The state file cannot be opened (its folder is gone, a file in its place): handle() raises
    StoreError, the handler waits 10 s-like doubling delays (scaled down), never checkpoints, and
    retries the same batch; when the store is back the batch is committed, then checkpointed."""
    state = runtime_env()
    events = partition_events(bodies[:10], 1, EARLY)["0"]
    runtime = Runtime.from_env()
    BatchHandler(runtime, threading.Event())(context(store), events[:BATCH])
    runtime.close()
    before = outbox(state)
    folder, away = state.parent, state.parent.with_name("state.away")
    folder.rename(away)
    folder.write_text("not a folder")  # the store is down from the first attempt

    waits: list[float] = []

    def wait(delay: float) -> bool:
        waits.append(delay)
        assert checkpoint_of(store) == at(events[BATCH - 1])  # still the previous batch's
        if len(waits) == 4:
            folder.unlink()
            away.rename(folder)
            assert outbox(state) == before  # nothing of the failed attempts
        return False

    runtime = Runtime.from_env()
    handler = BatchHandler(runtime, threading.Event(), backoff=Backoff(0.01, 0.04), wait=wait)
    try:
        with caplog.at_level(logging.WARNING, logger="pimwatch.consume"):
            handler(context(store), events[BATCH:])
    finally:
        runtime.close()
    assert waits == [0.01, 0.02, 0.04, 0.04]
    assert checkpoint_of(store) == at(events[-1])
    config = Path(os.environ["PIMWATCH_CONFIG"])
    assert outbox(state) == replayed(tmp_path / "replay", bodies[:10], config)
    retries = [r.getMessage() for r in caplog.records if "retried" in r.getMessage()]
    assert len(retries) == 4 and all("state store failed on batch eventhub:0/5-9" in m for m in retries)


def test_a_checkpoint_that_cannot_be_written_is_retried_without_handling_the_batch_again(
    runtime_env: Callable[..., Path],
    azurite_storage: str,
    container: str,
    store: BlobCheckpointStore,
    bodies: list[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The network to the checkpoint account is cut (a TCP proxy in front of Azurite's blob service):
    the batch is committed, the checkpoint write fails and is retried with backoff — not the batch."""
    state = runtime_env()
    events = partition_events(bodies[:3], 1, EARLY)["0"]
    blob_port = int(azurite_storage.split("BlobEndpoint=http://127.0.0.1:", 1)[1].split("/", 1)[0])
    waits: list[float] = []
    with proxied(blob_port) as proxy:
        through = azurite_storage.replace(f"127.0.0.1:{blob_port}/", f"127.0.0.1:{proxy.port}/")
        cut_off = BlobCheckpointStore.from_connection_string(through, container, retry_total=0)

        def wait(delay: float) -> bool:
            waits.append(delay)
            assert checkpoint_of(store) is None and outbox(state)  # committed, not checkpointed
            if len(waits) == 2:
                proxy.restore()
            return False

        runtime = Runtime.from_env()
        handler = BatchHandler(runtime, threading.Event(), backoff=Backoff(0.01, 1.0), wait=wait)
        proxy.cut()
        try:
            with caplog.at_level(logging.INFO, logger="pimwatch.consume"):
                handler(PartitionContext(NAMESPACE, HUB, GROUP, "0", cut_off), events)
        finally:
            runtime.close()
    assert waits == [0.01, 0.02]
    assert checkpoint_of(store) == at(events[-1])
    (line,) = logged(caplog)  # handled once: a second handle() would have reported no new alert
    assert line["alerts"] == {"new": len(outbox(state))}
    assert sum("checkpoint failed on batch eventhub:0/0-2" in r.getMessage() for r in caplog.records) == 2


def test_shutdown_during_an_outage_leaves_the_batch_for_the_next_owner(
    runtime_env: Callable[..., Path], store: BlobCheckpointStore, bodies: list[bytes]
) -> None:
    state = runtime_env()
    state.parent.rmdir()
    state.parent.write_text("not a folder")
    events = partition_events(bodies[:2], 1, EARLY)["0"]
    stop = threading.Event()

    def shutdown_requested(delay: float) -> bool:
        stop.set()
        return True

    runtime = Runtime.from_env()
    handler = BatchHandler(runtime, stop, wait=shutdown_requested)
    try:
        handler(context(store), events[:1])  # returns instead of retrying, without a checkpoint
        assert checkpoint_of(store) is None
        state.parent.unlink()  # the store is back, but shutdown was requested: no new batch starts
        state.parent.mkdir()
        handler(context(store), events[1:])
        assert checkpoint_of(store) is None and not state.exists()
    finally:
        runtime.close()


# --- serve(): the receive loop, the ticker and shutdown, in-process over the simulated hub ---------


def test_serve_starts_where_the_checkpoints_say_or_looks_back_and_ticks(
    runtime_env: Callable[..., Path],
    store: BlobCheckpointStore,
    bodies: list[bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Partition 0 has a checkpoint: it resumes after it. Partition 1 has none: it starts at the look-back
    (1 h before now), skipping older events. The ticker calls tick(now): a request with no decision is
    overdue by the wall clock (approval.overdue, which only the clock can raise)."""
    state = runtime_env()
    now = datetime.now(UTC)
    messages = [*bodies[:8], orjson.dumps({"records": [_ask("2026-03-10T10:00:00Z", R1)]})]
    # nine messages, two hours: 0, 15, ..., 120 minutes ago; partition 0 gets 0, 2, 4, 6, 8
    hub_events = partition_events(messages, 2, now - timedelta(hours=2), timedelta(minutes=15))
    context(store, "0").update_checkpoint(hub_events["0"][1])  # as if a worker had done the first two
    hub = SimulatedHub(hub_events, store)
    stop = threading.Event()
    runtime = Runtime.from_env()
    options = Options(start=starting_position("1h", now), max_batch_size=2, tick_seconds=0.2)
    done: list[int] = []
    worker = threading.Thread(target=lambda: done.append(serve(runtime, hub, options, stop)))
    with caplog.at_level(logging.INFO, logger="pimwatch.consume"):
        worker.start()
        try:
            wait_for(lambda: "approval.overdue" in detectors(state), "a tick to raise approval.overdue", 30)
        finally:
            stop.set()
            worker.join(30)
    assert done == [0]  # a clean stop: the runtime closed, the client closed
    batches = [(b["partition"], b["first"], b["last"]) for b in logged(caplog)]
    # Partition 0 after its checkpoint (seq 1); partition 1, without one, from now - 1 h: messages 5
    # and 7 (45 and 15 minutes ago), its seq 2 and 3 — not 1 and 3 (105 and 75 minutes ago).
    assert sorted(batches) == [("0", 2, 3), ("0", 4, 4), ("1", 2, 3)]
    assert checkpoint_of(store, "0") == at(hub_events["0"][-1])
    assert checkpoint_of(store, "1") == at(hub_events["1"][-1])
    assert [r for r in caplog.records if "pimwatch tick: " in r.getMessage()]


def detectors(state: Path) -> set[str]:
    """The detectors of the alerts committed so far (none while the worker has not made the file)."""
    try:
        with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as db:
            return {d for (d,) in db.execute("SELECT detector FROM outbox")}
    except sqlite3.OperationalError:
        return set()


def logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The JSON of the ``pimwatch batch:`` lines (one per checkpointed batch)."""
    lines = (r.getMessage() for r in caplog.records)
    return [json.loads(m.split("pimwatch batch: ", 1)[1]) for m in lines if "pimwatch batch: " in m]


# --- worker processes over the simulated hub --------------------------------------------------------


def start_worker(folder: Path, env: dict[str, str], container: str, log: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "tests.eventhub_sim", "--messages", str(DEMO_STREAM), "--partitions", "2"]
    args += ["--batch", str(BATCH), "--container", container, "--start", "earliest"]
    with (folder / log).open("wb") as out:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_mid_batch(
    folder: Path,
    env: dict[str, str],
    container: str,
    store: BlobCheckpointStore,
    hook: HttpServer,
    log: str,
    sig: signal.Signals,
) -> tuple[dict[str, int], int]:
    """Start a worker; when the sink has its ``KILL_AT``-th request (the worker is delivering a batch it
    has committed, before its checkpoint), note the checkpoints and send ``sig``. Returns those and the
    exit code."""
    worker = start_worker(folder, env, container, log)
    try:
        wait_for(
            lambda: len(hook.requests) >= KILL_AT,
            f"alert {KILL_AT} at the sink",
            progress=lambda: (len(hook.requests), (folder / log).stat().st_size),
        )
        then = sequence_numbers(store)
        worker.send_signal(sig)
        return then, worker.wait(30)
    finally:
        worker.kill()


def sequence_numbers(store: BlobCheckpointStore) -> dict[str, int]:
    return {p: cp["sequence_number"] for p, cp in checkpoints(store).items()}


def slow_at(n: int, delay: float) -> list[Answer]:
    """The sink's answers: quick, but the ``n``-th request waits ``delay`` s (the worker is mid-batch)."""
    return [*[Answer(202)] * (n - 1), Answer(202, delay=delay), Answer(202)]


def wait_for(
    condition: Callable[[], bool],
    what: str,
    timeout: float = 60.0,
    progress: Callable[[], object] | None = None,
) -> None:
    """Poll ``condition``. It fails after ``timeout`` s — counted, when ``progress`` is given, from
    the last time its value changed: a slow machine still makes progress, a hang does not."""
    deadline = time.monotonic() + timeout
    seen = progress() if progress is not None else None
    while not condition():
        if progress is not None and (now := progress()) != seen:
            seen, deadline = now, time.monotonic() + timeout
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what} (no progress for {timeout:g} s)")
        time.sleep(0.05)


def logged_batches(path: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line.split("pimwatch batch: ", 1)[1])
        for line in path.read_text().splitlines()
        if "pimwatch batch: " in line
    ]


Row = tuple[str, str, str]  # a delivery: (alert id, sink, kind)


class SqliteState:
    """What a worker committed to its SQLite state file, read with a connection of our own."""

    def __init__(self, env: dict[str, str]) -> None:
        self.path = Path(env["PIMWATCH_STATE"])

    def alerts(self) -> dict[str, int]:
        return outbox(self.path)

    def deliveries(self) -> dict[Row, str]:
        return sqlite_deliveries(self.path)

    def unqueued(self) -> list[str]:
        return []  # the alert and its delivery rows are one transaction: there is no flag to leave

    def close(self) -> None:
        pass


class TableState:
    """What workers committed to the Azure Tables of their ``PIMWATCH_TABLE_PREFIX`` (Azurite), read
    through the Table store's own ``alerts()`` and ``deliveries()``, and its outbox rows' ``tq`` flag."""

    def __init__(self, env: dict[str, str]) -> None:
        storage = azure_storage(env)
        assert storage is not None and storage.connection_string is not None
        self.tables = open_tables(storage)
        self.outbox = TableClient.from_connection_string(storage.connection_string, storage.prefix + "outbox")

    def alerts(self) -> dict[str, int]:
        return {a.id: a.count for a in self.tables.alerts()}

    def deliveries(self) -> dict[Row, str]:
        rows = [((d.alert_id, d.sink, d.kind), d.status) for d in self.tables.deliveries()]
        assert len(rows) == len(dict(rows)), rows  # one row per (alert, sink, kind): queued once
        return dict(rows)

    def unqueued(self) -> list[str]:
        """Alerts whose trigger was never marked queued (``mark_queued``): still "new" to the store."""
        return [
            str(e["id"])
            for e in self.outbox.query_entities("RowKey eq 'a'", select=["id", "tq"])  # not members
            if e.get("tq") is not True
        ]

    def close(self) -> None:
        self.tables.close()
        self.outbox.close()


def sqlite_deliveries(state: Path) -> dict[Row, str]:
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT alert_id, sink, kind, status FROM deliveries").fetchall()
    return {(a, s, k): status for a, s, k, status in rows}


@pytest.fixture
def worker_setup(
    tmp_path: Path, azurite_storage: str, bodies: list[bytes]
) -> Iterator[tuple[Path, BlobCheckpointStore, str, Callable[..., dict[str, str]]]]:
    container = f"cp-{uuid.uuid4().hex[:12]}"
    settings = checkpoint_settings(sim_env(azurite_storage, container))
    ensure_container(settings)

    def env_for(sink_url: str, state: str = "sqlite") -> dict[str, str]:
        """A worker's settings: the state in a SQLite file, or (``tables``) in Azure Tables of a prefix
        of the test's own on the checkpoints' Azurite account, as in production."""
        env = app_env(tmp_path, sink_url)
        env[ENV_SIM_STORAGE] = azurite_storage
        if state == "tables":
            del env["PIMWATCH_STATE"], env["PIMWATCH_QUARANTINE_DIR"]
            unique = uuid.uuid4().hex[:10]
            env.update(
                PIMWATCH_STORAGE=azurite_storage,
                PIMWATCH_TABLE_PREFIX=f"pw{unique}",
                PIMWATCH_QUARANTINE_CONTAINER=f"q-{unique}",
                PIMWATCH_DEADLETTER_CONTAINER=f"dl-{unique}",
            )
        return env

    yield tmp_path, open_checkpoint_store(settings), container, env_for


def _delivery_row(webhook_id: str, sink: str) -> tuple[str, str, str]:
    """The delivery row a webhook request is: a trigger, or a resolve ("<alert id>_resolved")."""
    if webhook_id.endswith("_resolved"):
        return webhook_id.removesuffix("_resolved"), sink, "resolve"
    return webhook_id, sink, "trigger"


@pytest.mark.parametrize("state_in", ["sqlite", "tables"])
def test_a_worker_killed_mid_batch_and_restarted_loses_and_doubles_nothing(
    worker_setup: tuple[Path, BlobCheckpointStore, str, Callable[..., dict[str, str]]],
    bodies: list[bytes],
    state_in: str,
) -> None:
    """SIGKILL mid-stream, while the sink is receiving an alert: that batch is committed (its alerts and
    their delivery rows) but not checkpointed. The restarted worker re-reads it from the checkpoint; the
    state ends equal to one uninterrupted replay — alert ids and counts, and one delivery row per routed
    alert and sink — and the alert in flight is delivered again, same id. On Azure Tables (every write
    durable on its own) also: no alert is left unmarked as queued."""
    folder, store, container, env_for = worker_setup
    halves = {p: len(e) for p, e in partition_events(bodies, 2, EARLY).items()}
    with serve_http(*slow_at(KILL_AT, 20.0)) as hook:
        env = env_for(hook.url + "/hook", state_in)
        state = TableState(env) if state_in == "tables" else SqliteState(env)
        try:
            at_kill, code = stop_mid_batch(folder, env, container, store, hook, "first.log", signal.SIGKILL)
            assert code == -signal.SIGKILL
            in_flight = hook.requests[KILL_AT - 1].headers["webhook-id"]
            row = _delivery_row(in_flight, "soar")
            assert state.deliveries()[row] == "pending"  # committed, not sent
            killed_run = logged_batches(folder / "first.log")
            for p, last in at_kill.items():  # every batch logged was checkpointed, the one in progress not
                assert max(b["last"] for b in killed_run if b["partition"] == p) == last
            assert at_kill and sum(c + 1 for c in at_kill.values()) < sum(halves.values())  # mid-stream

            second = start_worker(folder, env, container, "second.log")
            try:
                done = {p: n - 1 for p, n in halves.items()}
                checkpoints = lambda: sequence_numbers(store)  # noqa: E731
                wait_for(
                    lambda: checkpoints() == done,
                    "the restarted worker to checkpoint every event",
                    progress=checkpoints,
                )
                sent = lambda: sorted(state.deliveries().values())  # noqa: E731
                wait_for(lambda: set(sent()) == {"sent"}, "every delivery sent", progress=sent)
                second.send_signal(signal.SIGTERM)
                assert second.wait(30) == 0
            finally:
                second.kill()
            requests = [r.headers["webhook-id"] for r in hook.requests]
            alerts, delivered, unqueued = state.alerts(), state.deliveries(), state.unqueued()
        finally:
            state.close()

    restarted = logged_batches(folder / "second.log")
    for p in halves:  # re-read from the checkpoint: the batch in progress at the kill comes again
        assert min(b["first"] for b in restarted if b["partition"] == p) == at_kill.get(p, -1) + 1
    checkpointed = Counter(
        (b["partition"], n) for b in killed_run + restarted for n in range(b["first"], b["last"] + 1)
    )
    assert checkpointed == Counter((p, n) for p, size in halves.items() for n in range(size))  # once each
    reference = replay_state(folder / "replay", bodies, Path(env["PIMWATCH_CONFIG"]))
    assert alerts == outbox(reference)  # same alert ids, same counts: none lost, none doubled
    assert set(delivered) == set(sqlite_deliveries(reference))  # each routed alert queued once per sink
    assert unqueued == []
    # every delivery row (a trigger, or a resolve: webhook-id "<alert id>_resolved") was sent, with its id
    routed = {f"{a}_resolved" if kind == "resolve" else a for a, _, kind in delivered}
    assert routed and set(requests) == routed
    assert Counter(requests) - Counter(routed) == Counter({in_flight: 1})  # at least once: only it twice


def test_sigterm_finishes_the_batch_in_progress_checkpoints_it_and_exits_0(
    worker_setup: tuple[Path, BlobCheckpointStore, str, Callable[[str], dict[str, str]]],
    bodies: list[bytes],
) -> None:
    folder, store, container, env_for = worker_setup
    with serve_http(*slow_at(KILL_AT, 1.5)) as hook:
        env = env_for(hook.url + "/hook")
        state = Path(env["PIMWATCH_STATE"])
        before, code = stop_mid_batch(folder, env, container, store, hook, "worker.log", signal.SIGTERM)
        assert code == 0
    log = (folder / "worker.log").read_text()
    batches = logged_batches(folder / "worker.log")
    last = batches[-1]  # the batch that was in progress at SIGTERM, finished and checkpointed
    assert before and before.get(last["partition"], -1) == last["first"] - 1
    after = sequence_numbers(store)
    assert after == {**before, last["partition"]: last["last"]}  # nothing started after the signal
    slow = hook.requests[KILL_AT - 1].headers["webhook-id"]
    assert _delivery_row(slow, "soar") in {d for d, s in sqlite_deliveries(state).items() if s == "sent"}
    assert "SIGTERM" in log and "pimwatch consume: stopped" in log


# --- a process that owns no partition ----------------------------------------------------------------

UNREACHABLE_HUB = "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=listen;SharedAccessKey=S3CRET-KEY="


def test_a_consumer_that_owns_no_partition_waits_instead_of_spinning(
    azurite_storage: str, container: str
) -> None:
    """The real client and event processor as ``pimwatch consume`` builds them (``open_client``), the
    hub unreachable (nothing on 127.0.0.1:5671), checkpoints and ownership on Azurite: the processor
    owns no partition. The SDK's stock loop would spin its thread at 100 % of a core (about 3 CPU-s
    in these 3 s; ``bench/consume_idle.py`` measures it); this one waits. Close ends it at once, even
    with a 60 s idle wait, because stopping wakes the wait."""
    env = {
        "PIMWATCH_EVENTHUB": UNREACHABLE_HUB,
        "PIMWATCH_EVENTHUB_NAME": "entra-logs",
        "PIMWATCH_CONSUMER_GROUP": "pimwatch",
        **sim_env(azurite_storage, container),
    }
    client = open_client(hub_settings(env), open_checkpoint_store(checkpoint_settings(env)))
    client.idle_wait = 60.0
    receiving = threading.Thread(target=client.receive_batch, args=(lambda context, events: None,))
    receiving.start()
    try:
        wait_for(lambda: client.processor is not None and client.processor._running, "the processor", 10)
        time.sleep(0.5)
        assert receiving.ident is not None
        clock = time.pthread_getcpuclockid(receiving.ident)
        before = time.clock_gettime(clock)
        time.sleep(3.0)
        used = time.clock_gettime(clock) - before
        assert client.processor is not None and not client.processor._consumers  # owns no partition
    finally:
        closed_at = time.monotonic()
        client.close()
        receiving.join(30)
    assert used < 0.3, f"the receive thread used {used:.2f} CPU-s in 3 s owning no partition"
    assert not receiving.is_alive() and time.monotonic() - closed_at < 10


def test_idle_waiting_consumers_wake_when_a_partition_is_claimed() -> None:
    """The receive loop's ``list(consumers.items())`` on no partition waits; adding a consumer (what the
    load balancer does on a claim) ends the wait at once, not after the 60 s idle wait."""
    running = True
    consumers = IdleWaitingConsumers(lambda: running, idle_wait=60.0)
    seen: list[list[tuple[str, Any]]] = []
    loop = threading.Thread(target=lambda: seen.append(list(consumers.items())))
    loop.start()
    time.sleep(0.3)
    assert loop.is_alive() and not seen  # waiting, not spinning
    claimed_at = time.monotonic()
    consumers["3"] = "consumer of partition 3"
    loop.join(10)
    assert seen == [[("3", "consumer of partition 3")]] and time.monotonic() - claimed_at < 10
    del consumers["3"]
    running = False
    assert list(consumers.items()) == []  # a stopped processor's shutdown pass does not wait


# --- settings ----------------------------------------------------------------------------------------

HUB_CONN = "Endpoint=sb://contoso-logs.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=S3CRET-KEY="


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({}, "PIMWATCH_EVENTHUB"),
        ({"PIMWATCH_EVENTHUB": "Endpoint=nonsense;SharedAccessKey=S3CRET-KEY="}, "PIMWATCH_EVENTHUB"),
        (
            {
                "PIMWATCH_EVENTHUB": HUB_CONN,
                "PIMWATCH_EVENTHUB__fullyQualifiedNamespace": "x.servicebus.windows.net",
            },
            "not both",
        ),
        ({"PIMWATCH_EVENTHUB__fullyQualifiedNamespace": "sb://x.servicebus.windows.net/"}, "host name"),
        ({"PIMWATCH_EVENTHUB": HUB_CONN, "PIMWATCH_CONSUMER_GROUP": "pimwatch"}, "PIMWATCH_EVENTHUB_NAME"),
        ({"PIMWATCH_EVENTHUB": HUB_CONN, "PIMWATCH_EVENTHUB_NAME": "entra-logs"}, "PIMWATCH_CONSUMER_GROUP"),
        (
            {
                "PIMWATCH_EVENTHUB": HUB_CONN,
                "PIMWATCH_EVENTHUB_NAME": "entra-logs",
                "PIMWATCH_CONSUMER_GROUP": "$Default",
            },
            "not $Default",
        ),
        (
            {
                "PIMWATCH_EVENTHUB": HUB_CONN + ";EntityPath=other",
                "PIMWATCH_EVENTHUB_NAME": "entra-logs",
                "PIMWATCH_CONSUMER_GROUP": "pimwatch",
            },
            "EntityPath",
        ),
    ],
)
def test_hub_settings_errors_name_the_setting_and_never_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError) as err:
        hub_settings(env)
    assert named in str(err.value) and "S3CRET" not in str(err.value)


def test_checkpoint_and_start_settings_errors_name_the_setting() -> None:
    with pytest.raises(SettingsError, match="PIMWATCH_STORAGE"):
        checkpoint_settings({})
    with pytest.raises(SettingsError, match="PIMWATCH_CHECKPOINT_CONTAINER"):
        checkpoint_settings(
            {"PIMWATCH_STORAGE": "UseDevelopmentStorage=true", "PIMWATCH_CHECKPOINT_CONTAINER": "Bad_Name"}
        )
    with pytest.raises(SettingsError, match="PIMWATCH_START"):
        starting_position("yesterday", datetime.now(UTC))
    with pytest.raises(SettingsError, match="--start"):
        starting_position("0h", datetime.now(UTC), "--start")


def test_starting_positions_in_the_sdk_terms() -> None:
    now = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert starting_position("latest", now) == "@latest"
    assert starting_position("Earliest", now) == "-1"
    assert starting_position("1h", now) == datetime(2026, 3, 10, 11, 0, tzinfo=UTC)
    assert starting_position("30m", now) == datetime(2026, 3, 10, 11, 30, tzinfo=UTC)
    assert starting_position("2d", now) == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert starting_position("2026-03-09T08:00:00Z", now) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    assert starting_position("2026-03-09T09:00:00+01:00", now) == datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def test_the_settings_build_real_sdk_clients_without_connecting(azurite_storage: str) -> None:
    env = {
        "PIMWATCH_EVENTHUB": HUB_CONN + ";EntityPath=entra-logs",
        "PIMWATCH_CONSUMER_GROUP": "pimwatch",
        "PIMWATCH_STORAGE": azurite_storage,
    }
    hub = hub_settings(env)
    assert (hub.namespace, hub.eventhub_name, hub.consumer_group) == (
        "contoso-logs.servicebus.windows.net",
        "entra-logs",
        "pimwatch",
    )
    assert "S3CRET" not in repr(hub)
    checkpoints_at = checkpoint_settings(env)
    assert checkpoints_at.container == "pimwatch-checkpoints"
    client = open_client(hub, open_checkpoint_store(checkpoints_at))
    assert isinstance(client, ProcessorClient) and isinstance(client.client, EventHubConsumerClient)
    assert client.eventhub_name == "entra-logs" and client.consumer_group == "pimwatch"
    assert client.client._checkpoint_store is client.checkpoint_store is not None
    client.close()
    identity = hub_settings(
        {
            "PIMWATCH_EVENTHUB__fullyQualifiedNamespace": "contoso-logs.servicebus.windows.net",
            "PIMWATCH_EVENTHUB__clientId": "11111111-2222-3333-4444-555555555555",
            "PIMWATCH_EVENTHUB_NAME": "entra-logs",
            "PIMWATCH_CONSUMER_GROUP": "pimwatch",
        }
    )
    managed = open_client(identity, open_checkpoint_store(checkpoints_at))
    assert managed.eventhub_name == "entra-logs" and identity.client_id is not None
    managed.close()


def test_the_command_exits_2_naming_a_missing_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], azurite_storage: str
) -> None:
    for k in list(os.environ):
        if k.startswith("PIMWATCH_"):
            monkeypatch.delenv(k)
    monkeypatch.setenv("PIMWATCH_EVENTHUB", HUB_CONN)
    monkeypatch.setenv("PIMWATCH_EVENTHUB_NAME", "entra-logs")
    assert cli.main(["consume"]) == 2
    assert "PIMWATCH_CONSUMER_GROUP" in capsys.readouterr().err
    monkeypatch.setenv("PIMWATCH_CONSUMER_GROUP", "pimwatch")
    assert cli.main(["consume"]) == 2
    assert "PIMWATCH_STORAGE" in capsys.readouterr().err
    monkeypatch.setenv("PIMWATCH_STORAGE", azurite_storage)
    assert cli.main(["consume", "--start", "last tuesday"]) == 2
    err = capsys.readouterr().err
    assert "--start" in err and "S3CRET" not in err
