"""Operational metrics through OpenTelemetry, to Application Insights in Azure (``docs/metrics.md``).

Recorded in one place: :class:`pimwatch.hosting.runtime.Runtime` hands each Event Hub batch's
:class:`~pimwatch.hosting.driver.BatchResult` (with the records read, the time taken, the store's
requests and the partition's enqueued times) to :meth:`Metrics.batch`, each delivery run's
:class:`~pimwatch.delivery.deliverer.Outcome` to :meth:`Metrics.delivered`, and the outbox's depth,
counted by the timer once a minute, to :meth:`Metrics.outbox`. Nothing else in pimwatch knows about
metrics.

**Off unless configured.** :func:`from_env` configures the Azure Monitor distro
(``azure-monitor-opentelemetry``, the ``telemetry`` extra, in ``requirements.txt`` for the Functions
app) only when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, and imports it only then; otherwise
:class:`Metrics` is a no-op that imports nothing. ``pimwatch replay`` never builds one. Only the
metrics pipeline is configured: no traces, no log export (the Functions host already sends the logs),
no auto-instrumentation, no live metrics or performance counters. A failure to configure is logged
(never the connection string) and leaves metrics off: telemetry never stops the pipeline.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pimwatch.delivery.deliverer import Outcome
from pimwatch.hosting.driver import BatchResult

log = logging.getLogger("pimwatch.metrics")
ENV_CONNECTION = "APPLICATIONINSIGHTS_CONNECTION_STRING"
METER = "pimwatch"
ENV_DETECTORS = "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS"
# The distro's auto-instrumentations, all off: pimwatch's own metrics are what is asked for, and
# a span per Table request would cost more than the batch's work.
_INSTRUMENTATIONS = (
    "azure_sdk",
    "django",
    "fastapi",
    "flask",
    "httpx",
    "httpx2",
    "psycopg2",
    "requests",
    "urllib",
    "urllib3",
)
OUTBOX_STATUSES = ("pending", "dead")


class RequestCounter:
    """Counts the HTTP requests an Azure SDK client sends, every try of every call (a retried request
    counts again; an entity-group transaction counts once): given to the client as its
    ``raw_request_hook`` (azure-core's ``CustomHookPolicy``, which runs inside the retry policy), so
    it needs nothing of the store built on the client. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def __call__(self, request: Any) -> None:
        with self._lock:
            self._count += 1

    @property
    def count(self) -> int:
        with self._lock:
            return self._count

    def client_options(self) -> dict[str, Any]:
        """The keyword argument that hooks this counter into an Azure SDK client."""
        return {"raw_request_hook": self}


class Metrics:
    """pimwatch's instruments on an OpenTelemetry ``Meter``; with ``meter=None``, a no-op."""

    def __init__(self, meter: Any | None = None) -> None:
        self.enabled = meter is not None
        if meter is None:
            return
        self._records = meter.create_counter(
            "pimwatch.records", unit="{record}", description="records read from Event Hub batches"
        )
        self._duration = meter.create_histogram(
            "pimwatch.batch.duration",
            unit="s",
            description="time to read, detect, commit and deliver one Event Hub batch",
        )
        self._round_trips = meter.create_histogram(
            "pimwatch.batch.round_trips",
            unit="{request}",
            description="HTTP requests to the state store (Azure Tables) for one batch",
        )
        # Lag and depth are histograms, not gauges: one measurement per batch or timer call, sent
        # for the interval it was made in. A synchronous gauge would repeat its last value every
        # interval: a partition that moved to another instance, or the timer that did, would go on
        # reporting a stale lag or depth from this one.
        self._lag = meter.create_histogram(
            "pimwatch.partition.lag",
            unit="s",
            description="now minus the enqueued time of the newest message of a partition's batch",
        )
        self._outbox = meter.create_histogram(
            "pimwatch.outbox.depth",
            unit="{delivery}",
            description="deliveries waiting (pending) or dead, counted by the timer",
        )
        self._deliveries = meter.create_counter(
            "pimwatch.deliveries", unit="{delivery}", description="delivery results per sink"
        )
        self._alerts = meter.create_counter(
            "pimwatch.alerts", unit="{alert}", description="alerts raised and resolved"
        )

    def batch(
        self,
        result: BatchResult,
        *,
        records: int,
        seconds: float,
        round_trips: int | None,
        partition: str | None,
        enqueued: Sequence[datetime | None],
        now: datetime,
    ) -> None:
        """One Event Hub batch: its records, duration, store requests (None: not a remote store),
        the partition's lag and the alerts it raised or resolved."""
        if not self.enabled:
            return
        where = {"partition": partition or "?"}
        self._records.add(records, where)
        self._duration.record(seconds, where)
        if round_trips is not None:
            self._round_trips.record(round_trips, where)
        newest = max((_aware(t) for t in enqueued if t is not None), default=None)
        if newest is not None:
            self._lag.record(max(0.0, (now - newest).total_seconds()), where)
        self.alerts(result)

    def alerts(self, result: BatchResult) -> None:
        """The alerts a driver call raised (``new``) or resolved, by severity."""
        if not self.enabled:
            return
        for (change, severity), n in sorted(result.severities.items()):
            self._alerts.add(n, {"change": change, "severity": severity})

    def delivered(self, outcome: Outcome) -> None:
        """One delivery run: per sink, sent, failed (kept for a retry) and dead."""
        if not self.enabled:
            return
        for result, bucket in (("sent", outcome.sent), ("failed", outcome.pending), ("dead", outcome.dead)):
            for sink, n in sorted(bucket.items()):
                self._deliveries.add(n, {"sink": sink, "result": result})

    def outbox(self, sinks: Iterable[str], depth: Mapping[tuple[str, str], int]) -> None:
        """The outbox's depth per (sink, status); every configured sink is recorded, 0 included, so a
        drained outbox shows as 0 rather than as nothing."""
        if not self.enabled:
            return
        names = sorted({*sinks, *(s for s, _ in depth)})
        for sink in names:
            for status in OUTBOX_STATUSES:
                self._outbox.record(depth.get((sink, status), 0), {"sink": sink, "status": status})


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def from_env(environ: Mapping[str, str] | None = None) -> Metrics:
    """Metrics to Application Insights when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, else
    (or when the distro is missing or refuses the settings) the no-op."""
    env = os.environ if environ is None else environ
    connection = (env.get(ENV_CONNECTION) or "").strip()
    if not connection:
        return Metrics()
    try:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import metrics
    except ImportError:
        log.warning(
            "%s is set but azure-monitor-opentelemetry is not installed (pip install 'pimwatch[telemetry]'): "
            "metrics are off",
            ENV_CONNECTION,
        )
        return Metrics()
    # The distro's default detectors include azure_vm, which asks the VM metadata endpoint over HTTP
    # (seconds of cold start where there is none); the Functions app is on App Service, whose
    # detector reads only environment variables. An operator's own choice is kept.
    os.environ.setdefault(ENV_DETECTORS, "azure_app_service")
    # Metrics only. This distro version decides traces and logs from these variables alone (its
    # disable_tracing / disable_logging arguments are overwritten by their defaults), so both are set.
    os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
    os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")
    try:
        configure_azure_monitor(
            connection_string=connection,
            disable_tracing=True,
            disable_logging=True,
            enable_live_metrics=False,
            enable_performance_counters=False,
            instrumentation_options={name: {"enabled": False} for name in _INSTRUMENTATIONS},
        )
    except Exception as exc:  # never the connection string: it names the resource and its key
        log.error("could not configure Azure Monitor (%s): metrics are off", type(exc).__name__)
        return Metrics()
    return Metrics(metrics.get_meter(METER))
