"""The host-independent runtime: what the Azure Functions triggers (``function_app.py``) call.

One :class:`Runtime` per worker process, built lazily from the environment by :func:`get_runtime`:

* ``PIMWATCH_CONFIG`` — the YAML config (unset: the defaults, which watch no break-glass account);
* ``PIMWATCH_STATE`` — the SQLite state file (the Azure Table store is a later slice);
* ``PIMWATCH_QUARANTINE_DIR`` — where bad input is kept whole, one JSON Lines file per worker
  process (default: ``quarantine/`` beside the state file).

Three entry points, each a few lines in the host:

* :meth:`Runtime.handle` — one Event Hub batch (the message bodies): every body goes through the
  same reader as ``pimwatch replay`` (a body that is not JSON, or a record that cannot be used, is
  quarantined whole with the reason and the rest go on), the pipeline, and one commit that holds the
  batch's state *and* the delivery rows of its new/resolved alerts; then the alerts are delivered. A
  sink failure never raises (the alerts stay pending in the outbox for the timer). A failure of the
  state store raises :class:`pimwatch.store.StoreError` — see :meth:`Runtime.handle` for why.
* :meth:`Runtime.tick` — the timer: clock-driven detectors, then the outbox is drained.
* :meth:`Runtime.health` — the watermark (newest event time seen), outbox depth, dead letters,
  quarantined records.

All work runs on one thread owned by the runtime: the Functions Python worker may run the Event Hub
and timer invocations concurrently on its thread pool, and a SQLite connection belongs to the thread
that opened it; one thread also serializes the pipeline's in-memory state (windows' principals,
watermark) without a lock in the pipeline.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import orjson

from pimwatch import templating
from pimwatch.config import Config, load
from pimwatch.delivery import Deliverer, Outcome
from pimwatch.detector import Plugin, discover
from pimwatch.pipeline import WATERMARK, Pipeline
from pimwatch.quarantine import Quarantine
from pimwatch.reader import Bad, classify
from pimwatch.sink import Http
from pimwatch.store import SqliteStore, StoreError
from pimwatch.timeutil import iso

log = logging.getLogger("pimwatch.runtime")
ENV_CONFIG = "PIMWATCH_CONFIG"
ENV_STATE = "PIMWATCH_STATE"
ENV_QUARANTINE = "PIMWATCH_QUARANTINE_DIR"
T = TypeVar("T")


class SetupError(RuntimeError):
    """A required app setting is missing: raised (never skipped), so no batch is consumed without state."""


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _BatchStore(SqliteStore):
    """SQLite whose commits are held while a batch is fed.

    The pipeline commits every few thousand records (the CLI's memory bound); here one Event Hub batch
    is one transaction, so an alert is never durable without its delivery rows (a crash between the
    two would leave an alert the retried batch sees as "unchanged" and no sink would ever get).
    """

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.held = False

    def commit(self) -> None:
        if not self.held:
            super().commit()

    def abandon(self) -> None:
        """Drop the uncommitted writes and the connection (``close()`` would commit them)."""
        self._kv_cache.clear()
        try:
            self._db.rollback()
        finally:
            self._db.close()


@dataclass
class _Session:
    """What a store failure invalidates: the connection and every in-memory mirror of the state."""

    store: _BatchStore
    pipeline: Pipeline
    deliverer: Deliverer  # the timer's: the configured in-run retries
    hot: Deliverer  # the Event Hub path's: one attempt, retries are the timer's job


class Runtime:
    def __init__(
        self,
        config: Config,
        plugins: Sequence[Plugin],
        state_path: str,
        quarantine_dir: str,
        *,
        http: Http | None = None,
    ) -> None:
        self.config = config
        self.plugins = list(plugins)
        self.state_path = state_path
        self.quarantine_dir = quarantine_dir
        self.http = http or Http()
        name = f"quarantine-{_safe(socket.gethostname())}-{os.getpid()}.jsonl"
        self.quarantine = Quarantine(os.path.join(quarantine_dir, name))
        self._session: _Session | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pimwatch-runtime")
        self._warned = False
        templating.configure(config.templates)

    @classmethod
    def from_env(cls) -> Runtime:
        state = os.environ.get(ENV_STATE)
        if not state:
            raise SetupError(f"app setting {ENV_STATE} (the state file) is not set")
        plugins = discover()
        config = load(os.environ.get(ENV_CONFIG) or None, plugins)
        quarantine = os.environ.get(ENV_QUARANTINE) or os.path.join(
            os.path.dirname(os.path.abspath(state)), "quarantine"
        )
        return cls(config, plugins, state, quarantine)

    # --- the entry points ------------------------------------------------------------------------
    def handle(self, bodies: Sequence[bytes], sources: Sequence[str] | None = None) -> Report:
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

        ``sources`` names each body for the quarantine (e.g. partition and sequence number).
        """
        return self._call(lambda s: self._handle(s, bodies, sources))

    def tick(self, now: datetime) -> Report:
        """The timer: tick the clock-driven detectors at ``now``, queue what they raised or
        resolved, commit, then drain the outbox (new alerts and the retries that are due)."""
        return self._call(lambda s: self._tick(s, now))

    def health(self) -> dict[str, Any]:
        """Watermark (newest event time seen, committed), outbox pending and dead, quarantined records."""
        return self._call(self._health)

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
        return self._thread.submit(self._guarded, work).result()

    def _guarded(self, work: Callable[[_Session], T]) -> T:
        session = self._session or self._open()
        try:
            return work(session)
        except (StoreError, sqlite3.Error):
            log.exception("state store failed: this call's writes are rolled back; the host retries")
            self._discard(session)
            raise
        except BaseException:
            # Never keep half a batch, nor in-memory mirrors of it: the next call starts afresh.
            self._discard(session)
            raise

    def _open(self) -> _Session:
        store = _BatchStore(self.state_path)  # StoreError when it cannot be opened
        pipeline = Pipeline(self.plugins, self.config, store, self.quarantine, report=log.warning)
        policy = self.config.delivery
        hot = policy.model_copy(update={"retries_in_run": 0})
        self._session = _Session(
            store,
            pipeline,
            Deliverer(self.config.sinks, store, policy, self.http),
            Deliverer(self.config.sinks, store, hot, self.http),
        )
        if not self._warned:
            self._warned = True
            for warning in self._session.deliverer.warnings():
                log.warning("%s", warning)
        return self._session

    def _discard(self, session: _Session) -> None:
        self._session = None
        try:
            session.store.abandon()
        except sqlite3.Error:
            log.warning("could not roll back the state store cleanly", exc_info=True)
        session.pipeline.engine.changed.clear()

    def _handle(self, s: _Session, bodies: Sequence[bytes], sources: Sequence[str] | None) -> Report:
        report = Report(messages=len(bodies))
        stats, pipeline = s.pipeline.stats, s.pipeline
        read_before, bad_before = stats.total_records, self.quarantine.count
        s.store.held = True
        try:
            for i, body in enumerate(bodies):
                source = sources[i] if sources is not None and i < len(sources) else "eventhub"
                try:
                    doc = orjson.loads(body)
                except orjson.JSONDecodeError as exc:
                    pipeline.reject(Bad(source, i + 1, f"malformed JSON: {exc}", _text(body)))
                    continue
                try:
                    pipeline.feed(classify(doc, source, i + 1))
                except (StoreError, sqlite3.Error):
                    raise
                except Exception as exc:
                    # Not expected (records are isolated inside the pipeline); if it happens, the
                    # body is kept whole rather than lost or allowed to block the partition.
                    log.exception("unexpected error on message %s", source)
                    pipeline.reject(Bad(source, i + 1, f"internal error: {type(exc).__name__}", _text(body)))
            if pipeline.watermark is not None:
                if pipeline.ticking:
                    pipeline.engine.tick(pipeline.watermark)
                s.store.put(WATERMARK, iso(pipeline.watermark))
            self._enqueue(s, report)
        finally:
            s.store.held = False
        s.store.commit()  # the batch's state and its delivery rows, at once
        self.quarantine.close()  # flushed: the host checkpoints once this returns
        report.records = stats.total_records - read_before
        report.quarantined = self.quarantine.count - bad_before
        report.watermark = iso(pipeline.watermark) if pipeline.watermark else None
        self._deliver(s.hot, report)
        return report

    def _tick(self, s: _Session, now: datetime) -> Report:
        report = Report()
        s.pipeline.engine.tick(now)
        self._enqueue(s, report)
        s.store.commit()
        self._deliver(s.deliverer, report)
        w = s.pipeline.watermark
        report.watermark = iso(w) if w else None
        return report

    def _health(self, s: _Session) -> dict[str, Any]:
        return {
            "last_record": s.store.get(WATERMARK),
            "outbox_pending": len(s.store.deliveries("pending")),
            "dead_letters": len(s.store.deliveries("dead")),
            "quarantined": _count_lines(self.quarantine_dir),
            "sinks": sorted(self.config.sinks),
        }

    @staticmethod
    def _enqueue(s: _Session, report: Report) -> None:
        """Queue this call's new and resolved alerts for the sinks that route them (as ``replay``)."""
        changed = s.pipeline.engine.changed
        for aid, change in changed.items():
            report.alerts[change] = report.alerts.get(change, 0) + 1
            if change in ("new", "resolved"):
                alert = s.store.get_alert(aid)
                if alert is not None:
                    report.queued += s.deliverer.enqueue(alert, change)
        changed.clear()

    @staticmethod
    def _deliver(deliverer: Deliverer, report: Report) -> None:
        """Send what is due; sink failures are kept in the outbox by the deliverer, never raised."""
        if not deliverer.sinks:
            return
        outcome: Outcome = deliverer.run()
        report.sent, report.pending, report.dead = outcome.sent, outcome.pending, outcome.dead


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "host"


def _count_lines(folder: str) -> int:
    """Records in the quarantine: lines of every ``*.jsonl`` file in the folder (all workers')."""
    total = 0
    for f in sorted(Path(folder).glob("*.jsonl")):
        try:
            with f.open("rb") as fh:
                total += sum(1 for _ in fh)
        except OSError:
            continue
    return total


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def get_runtime() -> Runtime:
    """The worker's runtime, built on first use (cold start stays small until then); the first
    invocations may arrive on several threads at once, and only one runtime is ever built."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = Runtime.from_env()
        return _runtime


def reset_runtime() -> None:
    """Close and forget the worker's runtime (tests; a host that reloads its settings)."""
    global _runtime
    with _runtime_lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()
