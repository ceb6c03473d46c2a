"""The ``pipeline.silent`` heartbeat: no records for a while is an alert, not a quiet tenant.

A broken diagnostic setting, a deleted consumer group, a stalled partition or expired credentials all
look the same from here: nothing arrives. Every instance notes, at most once a minute, that records
are arriving (:func:`arrived`, wall clock, in the shared store); the timer (:func:`check`) raises a
``pipeline.silent`` alert once nothing has arrived for ``pipeline.silent_minutes`` (default 30), and
resolves it when records arrive again. A fresh install that never receives anything raises it too:
the first tick starts the clock.

The alert's id and its one event are derived from the last arrival, so every tick of the same silence
folds into the same alert (no repeated pages), and a later silence is a new alert.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from pimwatch.detection.alerts import Alert, Severity, alert_id
from pimwatch.detection.contract import KV, Outbox
from pimwatch.detection.engine import ChangeResult
from pimwatch.detection.timeutil import iso, parse_time

ARRIVAL = "pipeline:arrival"
SILENT = "pipeline.silent"


class HeartbeatStore(KV, Outbox, Protocol):
    """What the heartbeat needs of the store: its arrival key and the silence alert."""


def arrived(store: HeartbeatStore, now: datetime) -> None:
    store.put(ARRIVAL, iso(now))


def last_arrival(store: HeartbeatStore) -> datetime | None:
    value = store.get(ARRIVAL)
    return parse_time(value) if isinstance(value, str) else None


def check(store: HeartbeatStore, now: datetime, after: timedelta) -> list[tuple[str, ChangeResult]]:
    """Raise or resolve the silence alert at ``now``; the (alert id, change) pairs to queue."""
    if after <= timedelta(0):
        return []  # disabled (silent_minutes: 0)
    last = last_arrival(store)
    if last is None:
        arrived(store, now)  # nothing has ever arrived: the silence is counted from the first tick
        return []
    if now - last < after:
        return [(aid, "resolved") for aid in store.resolve_alerts(SILENT, "", iso(now))]
    alert = silent_alert(last, after)
    result = store.merge_alert(alert)
    return [(alert.id, "new")] if result == "new" else []


def silent_alert(last: datetime, after: timedelta) -> Alert:
    minutes = round(after.total_seconds() / 60)
    crossed = iso(last + after)
    return Alert(
        id=alert_id(SILENT, "", iso(last)),
        detector=SILENT,
        severity=Severity.HIGH,
        title=f"No Entra log records have arrived for {minutes} minutes: pimwatch is not watching",
        summary="The pipeline received no audit or sign-in records for longer than its heartbeat allows.",
        runbook=(
            "Check, in order: the Entra diagnostic setting (AuditLogs, SignInLogs, "
            "NonInteractiveUserSignInLogs to the Event Hub), the hub's incoming messages, the consumer "
            "group, the Function App (its health endpoint's last_record; errors in Application Insights) "
            "and the state store. A tenant is never silent for this long."
        ),
        mitre=["T1562.008"],
        principal={"id": None, "upn": None, "name": "pimwatch"},
        context={"last_arrival": iso(last), "silent_minutes": minutes},
        events=[(crossed, f"silent-since:{iso(last)}")],
    )
