"""The host-independent runtime: what the Azure Functions triggers (``function_app.py``) call.

One :class:`Runtime` per worker process, built lazily from the environment by :func:`get_runtime`:

* ``PIMWATCH_CONFIG`` — the YAML config (unset: the defaults, which watch no break-glass account);
* ``PIMWATCH_STORAGE`` (or its identity-based ``PIMWATCH_STORAGE__*`` forms) — Azure Storage: the state
  in Azure Tables, shared by every instance, and the quarantine in Blob Storage
  (:mod:`pimwatch.hosting.azure_settings`);
* otherwise ``PIMWATCH_STATE`` — a SQLite state file (``func start``, one instance) and
  ``PIMWATCH_QUARANTINE_DIR`` — where bad input is kept whole, one JSON Lines file per worker
  process (default: ``quarantine/`` beside the state file);
* ``PIMWATCH_EVENTHUB_PARTITIONS`` — the hub's partitions: a count (``4``: ids ``0``–``3``) or a comma
  list of ids. Set by ``infra/main.bicep`` from the hub's partition count; clock-driven detectors do
  not tick past a partition that has not been read yet (:mod:`pimwatch.state.progress`). Unset (a local
  ``func start``): only the partitions read so far hold the clock back.

Three entry points, each a few lines in the host:

* :meth:`Runtime.handle` — one Event Hub batch (the message bodies): every body goes through the
  same reader as ``pimwatch replay`` (a body that is not JSON, or a record that cannot be used, is
  quarantined whole with the reason and the rest go on), the pipeline, and one commit that holds the
  batch's state *and* the delivery rows of its new/resolved alerts; then the alerts are delivered. A
  sink failure never raises (the alerts stay pending in the outbox for the timer). A failure of the
  state store raises :class:`pimwatch.detection.contract.StoreError` — see :meth:`Runtime.handle` for why.
* :meth:`Runtime.tick` — the timer: clock-driven detectors, the ``pipeline.silent`` heartbeat
  (:mod:`pimwatch.hosting.heartbeat`), then the outbox is drained; the clean-up when due, and the
  periodic report when due (``report.schedule``, :mod:`pimwatch.report.weekly`).
* :meth:`Runtime.health` — the watermark (newest event time seen), outbox depth, dead letters,
  quarantined records.
* :meth:`Runtime.test_alert` — a synthetic alert straight to the sinks (the HTTP trigger).

All work runs on one thread owned by the runtime: the Functions Python worker may run the Event Hub
and timer invocations concurrently on its thread pool, and a SQLite connection belongs to the thread
that opened it; one thread also serializes the pipeline's in-memory state (windows' principals,
watermark) without a lock in the pipeline.

**An alert is never separated from its queueing.** With SQLite the batch's state and the delivery
rows of its new and resolved alerts are one transaction. With Azure Tables every write is durable on
its own, so the store keeps with each alert whether its deliveries were queued
(``Store.mark_queued``, pimwatch.detection.contract): an instance that dies in between leaves the alert "new"
for the retried batch, which queues it (idempotently per sink).
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pimwatch.config import Config, load
from pimwatch.delivery import templating
from pimwatch.delivery.deliverer import Deliverer, Outcome
from pimwatch.delivery.sink import Http, SinkError
from pimwatch.detection.alerts import Severity, synthetic_alert
from pimwatch.detection.contract import STORE_ERRORS, Store
from pimwatch.detection.detector import Plugin, discover
from pimwatch.detection.ledger import LedgerWriter
from pimwatch.detection.pipeline import WATERMARK, Pipeline
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.hosting import heartbeat
from pimwatch.hosting.azure_settings import SettingsError, azure_storage, blob_archive, open_tables
from pimwatch.hosting.driver import BatchResult, Change, Driver, ProgressTick
from pimwatch.hosting.gcfreeze import settle
from pimwatch.hosting.metrics import OUTBOX_STATUSES, Metrics, RequestCounter
from pimwatch.hosting.metrics import from_env as metrics_from_env
from pimwatch.hosting.prefetch import Predictor
from pimwatch.state import retention
from pimwatch.state.archive import Archive, FileArchive, writer_id
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tableunit import UnitConflict

log = logging.getLogger("pimwatch.runtime")
ENV_CONFIG = "PIMWATCH_CONFIG"
ENV_STATE = "PIMWATCH_STATE"
ENV_QUARANTINE = "PIMWATCH_QUARANTINE_DIR"
ENV_PARTITIONS = "PIMWATCH_EVENTHUB_PARTITIONS"
T = TypeVar("T")


class SetupError(RuntimeError):
    """A required app setting is missing: raised (never skipped), so no batch is consumed without state."""


ARRIVAL_EVERY = timedelta(seconds=60)  # how often an instance records that records are arriving


@dataclass
class Report:
    """What one invocation did (logged by the host; counts of this call only)."""

    messages: int = 0
    records: int = 0  # records read: processed, counted-and-skipped, and bad
    quarantined: int = 0  # bad bodies and bad records kept whole in the quarantine
    alerts: dict[str, int] = field(default_factory=dict)  # new / updated / resolved
    queued: int = 0  # deliveries queued for the sinks
    sent: dict[str, int] = field(default_factory=dict)  # per sink, in this call
    pending: dict[str, int] = field(default_factory=dict)  # per sink: left for the timer's retries
    dead: dict[str, int] = field(default_factory=dict)
    watermark: str | None = None
    tick_clock: str | None = None  # the timer: the clock the clock-driven detectors ticked at
    pruned: int | None = None  # the timer: state entities forgotten (None: clean-up not due)
    seconds: float | None = None  # a batch: read, detect, commit and deliver (the metrics' duration)
    # a batch: the state store's round trips (concurrent requests count once; Tables' unit of work
    # counts them) or, for a remote store that does not, its HTTP requests; None: SQLite
    round_trips: int | None = None
    weekly: str | None = None  # the timer: the periodic report's answers (report.schedule), when sent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Session:
    """What a store failure invalidates: the connection and every in-memory mirror of the state."""

    store: Store
    pipeline: Pipeline
    driver: Driver  # queues for ``deliverer``'s sinks
    deliverer: Deliverer  # the timer's: the configured in-run retries
    hot: Deliverer  # the Event Hub path's: one attempt, retries are the timer's job


class Runtime:
    def __init__(
        self,
        config: Config,
        plugins: Sequence[Plugin],
        open_store: Callable[[], Store],
        quarantine: Quarantine,
        *,
        http: Http | None = None,
        quarantined: Callable[[], int] | None = None,
        dead_letters: Archive | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        partitions: Sequence[str] = (),
        metrics: Metrics | None = None,
        requests: RequestCounter | None = None,
    ) -> None:
        """``open_store`` builds the state store (again after a failure); ``quarantined`` counts the
        records in the quarantine across all workers (for ``health``); ``dead_letters`` is where
        deliveries that die are also written (pimwatch/state/archive.py); ``partitions``: the hub's
        partition ids, when known (:class:`pimwatch.hosting.driver.ProgressTick`); ``metrics``: where
        each batch and delivery run is recorded (:mod:`pimwatch.hosting.metrics`; None: nowhere);
        ``requests``: counts the state store's HTTP requests (a remote store), for the metrics."""
        self.config = config
        self.plugins = list(plugins)
        self.open_store = open_store
        self.quarantine = quarantine
        self.quarantined = quarantined or self.quarantine.archive.count
        self.dead_letters = dead_letters
        self.http = http or Http()
        self.clock = clock
        self._session: _Session | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pimwatch-runtime")
        self._warned = False
        self._arrival_noted: datetime | None = None
        self._one_by_one = False  # the retry of a batch whose unit of work conflicted
        self.ticks = ProgressTick(partitions)
        self.horizon = retention.horizon(config, self.plugins)
        self.metrics = metrics or Metrics()
        self.requests = requests
        templating.configure(config.templates)

    @classmethod
    def from_env(cls) -> Runtime:
        """From the app settings (:mod:`pimwatch.hosting.azure_settings`): Azure Storage when
        ``PIMWATCH_STORAGE*``
        is set, else a SQLite file in ``PIMWATCH_STATE``; neither is a :class:`SetupError`."""
        try:
            storage = azure_storage()
        except SettingsError as exc:
            raise SetupError(str(exc)) from None
        plugins = discover()
        config = load(_config_path(os.environ.get(ENV_CONFIG) or None), plugins)
        partitions = _partitions(os.environ.get(ENV_PARTITIONS))
        metrics = metrics_from_env()
        if storage is not None:
            quarantine = Quarantine.on(blob_archive(storage, storage.quarantine_container))
            requests = RequestCounter()
            return cls(
                config,
                plugins,
                lambda: open_tables(storage, **requests.client_options()),
                quarantine,
                dead_letters=blob_archive(storage, storage.deadletter_container),
                partitions=partitions,
                metrics=metrics,
                requests=requests,
            )
        state = os.environ.get(ENV_STATE)
        if not state:
            raise SetupError(
                "no state store: set app setting PIMWATCH_STORAGE (or PIMWATCH_STORAGE__accountName) for "
                f"Azure Storage, or {ENV_STATE} for a local SQLite file"
            )
        folder = os.environ.get(ENV_QUARANTINE) or os.path.join(
            os.path.dirname(os.path.abspath(state)), "quarantine"
        )
        return cls(
            config,
            plugins,
            lambda: SqliteStore(state),
            Quarantine.on(FileArchive(folder, f"quarantine-{writer_id()}.jsonl")),  # counts every writer's
            dead_letters=FileArchive(os.path.join(os.path.dirname(os.path.abspath(state)), "deadletters")),
            partitions=partitions,
            metrics=metrics,
        )

    # --- the entry points ------------------------------------------------------------------------
    def handle(
        self,
        bodies: Sequence[bytes],
        sources: Sequence[str] | None = None,
        *,
        partition: str | None = None,
        enqueued: Sequence[datetime | None] | None = None,
    ) -> Report:
        """One Event Hub batch: read, detect, commit, queue and deliver the new/resolved alerts.

        Returns normally for everything about the input (bad bodies and records are quarantined whole
        with the reason) and for any sink failure (the alerts stay pending in the outbox and the timer
        retries them): the host then checkpoints the batch, which is right — it is in our state.

        Raises :class:`StoreError` (or :class:`sqlite3.Error`) when the state store itself fails,
        after rolling back everything this batch wrote. The Functions host checkpoints a batch even
        when the function raises (platform.md §1c) — but not until the function's retry policy has
        finished with it, and the partition waits meanwhile. ``function_app.py`` sets an exponential
        backoff retry that never gives up (``max_retry_count=-1``, 10 s up to 5 min): the batch is
        retried until the store is back, the partition stalls instead of skipping a batch we never
        recorded (stall, never lose). Retrying forever is safe only because nothing else raises: the
        input cannot poison the partition. The stall is visible: the health endpoint's watermark stops.

        ``sources`` names each body for the quarantine (e.g. partition and sequence number);
        ``partition`` and the messages' ``enqueued`` times tell how far that partition has got
        (:mod:`pimwatch.state.progress`: clock-driven detectors do not tick past a partition's backlog).
        """
        return self._call(lambda s: self._handle(s, bodies, sources, partition, enqueued))

    def tick(self, now: datetime) -> Report:
        """The timer: tick the clock-driven detectors at ``now``, queue what they raised or
        resolved, commit, then drain the outbox (new alerts and the retries that are due)."""
        return self._call(lambda s: self._tick(s, now))

    def apply(self, now: datetime, changes: Callable[[Store], Iterable[Change]]) -> Report:
        """Alert changes worked out off the Event Hub path (posture findings, pimwatch/graph/run.py):
        ``changes`` runs inside the timer's unit of work; queued, committed and delivered as a tick."""
        return self._call(lambda s: self._apply(s, now, changes))

    def _apply(self, s: _Session, now: datetime, changes: Callable[[Store], Iterable[Change]]) -> Report:
        report = _report(s.driver.timer(now, also=lambda: changes(s.store)))
        s.pipeline.refresh()  # the changes may include a new directory enrichment (graph/enrich.py)
        self._deliver(s.deliverer, report)
        return report

    def with_store(self, work: Callable[[Store], T]) -> T:
        """``work`` on the runtime's thread with its store (the Graph pull's cursor: graph/pull.py)."""
        return self._call(lambda s: work(s.store))

    def work(self, fn: Callable[[Store], T]) -> T:
        """``fn`` on the state store in one unit of work, on the runtime's thread (no ticking, no
        delivery): the re-check queue (pimwatch/graph/recheck.py)."""

        def run(s: _Session) -> T:
            with s.store.transaction():
                return fn(s.store)

        return self._call(run)

    def expect_partitions(self, partitions: Sequence[str]) -> None:
        """The hub's partition ids, learned by the host (``pimwatch consume`` asks its client):
        recorded as expected, so the tick clock waits for those not read yet (progress.py)."""
        self.ticks.partitions = tuple(str(p) for p in partitions)
        self._call(lambda s: self._expect(s.store))

    def _expect(self, store: Store) -> None:
        with store.transaction():
            self.ticks.expect(store, self.clock())

    def health(self) -> dict[str, Any]:
        """Watermark (newest event time seen, committed), outbox pending and dead, quarantined records."""
        return self._call(self._health)

    def test_alert(self, sink: str | None = None, severity: Severity = Severity.INFO) -> dict[str, str]:
        """Send a synthetic alert to one sink (or every sink) now, bypassing routing and the outbox:
        sink name → its answer, or ``FAILED: <error>`` (errors name the sink, never a secret)."""
        return self._call(lambda s: self._test_alert(sink, severity))

    def close(self) -> None:
        def shut(s: _Session | None) -> None:
            if s is not None:
                s.store.close()
            self._session = None

        try:
            self._thread.submit(lambda: shut(self._session)).result()
        finally:
            self._thread.shutdown(wait=True)
            self.quarantine.close()
            self.http.close()

    # --- on the runtime's thread -----------------------------------------------------------------
    def _call(self, work: Callable[[_Session], T]) -> T:
        try:
            return self._thread.submit(self._guarded, work).result()
        except UnitConflict as exc:
            # Another instance wrote to a window this batch read and wrote; none of its alerts were
            # written. Run it again one request at a time (exact under concurrency, as ever).
            log.info("%s: running the batch again without a unit of work", exc)
            self._one_by_one = True
            try:
                return self._thread.submit(self._guarded, work).result()
            finally:
                self._one_by_one = False

    def _guarded(self, work: Callable[[_Session], T]) -> T:
        session = self._session or self._open()
        if session.pipeline.stale:  # the directory enrichment changed: build the pipeline again
            self._session = None
            session.store.close()
            session = self._open()
        session.driver.units = not self._one_by_one
        try:
            return work(session)
        except UnitConflict:
            self._discard(session)
            raise
        except STORE_ERRORS:
            log.exception("state store failed: this call's writes are rolled back; the host retries")
            self._discard(session)
            raise
        except BaseException:
            # Never keep half a batch, nor in-memory mirrors of it: the next call starts afresh.
            self._discard(session)
            raise

    def _open(self) -> _Session:
        store = self.open_store()  # StoreError when it cannot be opened
        pipeline = Pipeline(
            self.plugins,
            self.config,
            store,
            self.quarantine,
            report=log.warning,
            recheck=self.config.posture.recheck,
        )
        if self.config.report.ledger:
            pipeline.ledger = LedgerWriter(store, self.config.settings)  # the report's (docs/report.md)
        policy = self.config.delivery
        hot = policy.model_copy(update={"retries_in_run": 0})
        grouping = self.config.routing
        deliverer = Deliverer(
            self.config.sinks, store, policy, self.http, archive=self.dead_letters, grouping=grouping
        )
        self._expect(store)
        session = _Session(
            store,
            pipeline,
            Driver(
                pipeline,
                self.ticks,
                deliverer,
                at_once=policy.at_once,
                predict=Predictor(self.plugins, self.config, pipeline) if hasattr(store, "unit") else None,
            ),
            deliverer,
            Deliverer(self.config.sinks, store, hot, self.http, archive=self.dead_letters, grouping=grouping),
        )
        self._session = session
        if not self._warned:
            self._warned = True
            for warning in session.deliverer.warnings():
                log.warning("%s", warning)
        return session

    def _discard(self, session: _Session) -> None:
        """After a failure: the unit of work was rolled back; drop the connection and every mirror."""
        self._session = None
        self._arrival_noted = None
        self.ticks.forget()
        self.quarantine.discard()  # the retried batch quarantines its bad records again
        try:
            session.store.close()
        except Exception:
            log.warning("could not close the state store cleanly", exc_info=True)

    def _handle(
        self,
        s: _Session,
        bodies: Sequence[bytes],
        sources: Sequence[str] | None,
        partition: str | None,
        enqueued: Sequence[datetime | None] | None,
    ) -> Report:
        stats, bad_before = s.pipeline.stats, self.quarantine.count
        read_before = stats.total_records
        started, trips = time.perf_counter(), self._trips(s)
        now = self.clock()
        delivered = Report()  # the sends of this call: at once (delivery.at_once) and at the end
        result = s.driver.batch(
            s.pipeline.messages(bodies, sources),
            now,
            partition=partition,
            enqueued=enqueued or (),
            also=(lambda: self._note_arrival(s)) if bodies else None,
            deliver=lambda: self._deliver(s.hot, delivered, add=True),
        )
        report = _report(result, messages=len(bodies))
        report.records = stats.total_records - read_before
        report.quarantined = self.quarantine.count - bad_before
        report.sent, report.pending, report.dead = delivered.sent, delivered.pending, delivered.dead
        report.seconds = time.perf_counter() - started
        after = self._trips(s)
        report.round_trips = after - trips if after is not None and trips is not None else None
        self.metrics.batch(
            result,
            records=report.records,
            seconds=report.seconds,
            round_trips=report.round_trips,
            partition=partition,
            enqueued=enqueued or (),
            now=now,
        )
        return report

    def _trips(self, s: _Session) -> int | None:
        """Round trips so far: the store's own count where it keeps one (Tables: concurrent requests
        of one wave count once), else the HTTP requests the client hook saw; None: a local store."""
        if self.requests is None:
            return None
        counted = getattr(s.store, "round_trips", None)
        return counted if isinstance(counted, int) else self.requests.count

    def _note_arrival(self, s: _Session) -> None:
        """Records are arriving: once a minute per instance, note it for the ``pipeline.silent``
        heartbeat, and read the privileged principals the other instances have learned."""
        now = self.clock()
        if self._arrival_noted is None or now - self._arrival_noted >= ARRIVAL_EVERY:
            heartbeat.arrived(s.store, now)
            if self._arrival_noted is not None:  # (just read when the session was opened)
                s.pipeline.refresh()
            self._arrival_noted = now

    def _tick(self, s: _Session, now: datetime) -> Report:
        after = timedelta(minutes=self.config.pipeline.silent_minutes)
        result = s.driver.timer(now, also=lambda: heartbeat.check(s.store, now, after))
        report = _report(result)
        report.tick_clock = iso(result.tick_clock) if result.tick_clock else None
        self._deliver(s.deliverer, report)
        self.metrics.alerts(result)
        if self.metrics.enabled:
            self.metrics.outbox(self.config.sinks, _depth(s.store))
        # TTL clean-up (pimwatch/state/retention.py), every 6 h: at the newest event time any instance saw,
        # held back by a partition still behind (its late records must find their windows).
        stored = parse_time(s.store.get(WATERMARK))
        w = max((t for t in (s.pipeline.watermark, stored) if t is not None), default=None)
        at = result.tick_clock
        ledger = timedelta(days=self.config.report.retention_days) if self.config.report.ledger else None
        report.pruned = retention.maybe_prune(
            s.store, min(w, at) if w and at else None, self.horizon, now, ledger=ledger
        )
        if self.config.report.schedule is not None:
            from pimwatch.report.weekly import maybe_send  # pandas: never on the Event Hub path

            report.weekly = maybe_send(s.store, self.config, now, self.http)
        report.watermark = iso(w) if w else None
        return report

    def _health(self, s: _Session) -> dict[str, Any]:
        arrival = heartbeat.last_arrival(s.store)
        return {
            "last_record": s.store.get(WATERMARK),
            "last_arrival": iso(arrival) if arrival else None,
            "tick_clock": _iso(self.ticks.progress.clock(s.store, self.clock())),  # held back by a backlog
            "outbox_pending": len(s.store.deliveries("pending")),
            "dead_letters": len(s.store.deliveries("dead")),
            "quarantined": self.quarantined(),
            "sinks": sorted(self.config.sinks),
        }

    def _test_alert(self, only: str | None, severity: Severity) -> dict[str, str]:
        sinks = self.config.sinks
        if only is not None and only not in sinks:
            raise KeyError(only)
        alert = synthetic_alert(severity, self.clock())
        answers = {}
        for name, sink in sinks.items():
            if only is None or name == only:
                try:
                    answers[name] = sink.send(sink.render([alert]), self.http)
                except SinkError as exc:
                    answers[name] = f"FAILED: {exc}"
        return answers

    def _deliver(self, deliverer: Deliverer, report: Report, *, add: bool = False) -> None:
        """Send what is due; sink failures are kept in the outbox by the deliverer, never raised.
        ``add``: count what was sent on top of the report's (a batch delivers more than once).
        Pending and dead are as the last run left them."""
        if not deliverer.sinks:
            return
        outcome: Outcome = deliverer.run()
        self.metrics.delivered(outcome)
        if add:
            for sink, n in outcome.sent.items():
                report.sent[sink] = report.sent.get(sink, 0) + n
            report.pending, report.dead = outcome.pending, outcome.dead
            return
        report.sent, report.pending, report.dead = outcome.sent, outcome.pending, outcome.dead


def _config_path(path: str | None) -> str | None:
    """A relative ``PIMWATCH_CONFIG`` is found from the working directory, else from the app's root
    (the folder of ``function_app.py``), whichever the host starts the worker in."""
    if path is None or os.path.isabs(path) or os.path.exists(path):
        return path
    beside_app = Path(__file__).resolve().parents[2] / path
    return str(beside_app) if beside_app.exists() else path


def _report(result: BatchResult, messages: int = 0) -> Report:
    return Report(
        messages=messages,
        alerts=result.counts(),
        queued=result.queued,
        watermark=_iso(result.watermark),
    )


def _depth(store: Store) -> dict[tuple[str, str], int]:
    """Deliveries waiting and dead, per (sink, status)."""
    depth: dict[tuple[str, str], int] = {}
    for status in OUTBOX_STATUSES:
        for d in store.deliveries(status):
            depth[(d.sink, status)] = depth.get((d.sink, status), 0) + 1
    return depth


def _iso(at: datetime | None) -> str | None:
    return iso(at) if at is not None else None


def _partitions(setting: str | None) -> list[str]:
    """``PIMWATCH_EVENTHUB_PARTITIONS``: a count (ids 0…n-1, as Event Hubs numbers them) or a comma
    list of ids; unset or empty: none known."""
    text = (setting or "").strip()
    if not text:
        return []
    if text.isdigit():
        count = int(text)
        if not 1 <= count <= 1024:
            raise SetupError(f"{ENV_PARTITIONS}: a partition count from 1 to 1024, not {text!r}")
        return [str(i) for i in range(count)]
    ids = [p.strip() for p in text.split(",")]
    if not all(ids):
        raise SetupError(f"{ENV_PARTITIONS}: a partition count or a comma list of ids, not {text!r}")
    return ids


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The worker's runtime, built on first use (cold start stays small until then); the first
    invocations may arrive on several threads at once, and only one runtime is ever built."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_env()
            settle()  # what start-up made is never scanned again
        return _runtime


def reset_runtime() -> None:
    """Close and forget the worker's runtime (tests; a host that reloads its settings)."""
    global _runtime
    with _runtime_lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()
