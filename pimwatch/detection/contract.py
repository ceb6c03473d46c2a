"""The state store contract: what detection (and delivery) write through, and what a backend
implements (:mod:`pimwatch.state.sqlite`: SQLite; :mod:`pimwatch.state.tables`: Azure Tables).

It lives on the detection side so detection never imports a backend: the engine, detectors and the
pipeline see only these role protocols and rows.

The contract is small on purpose, so an Azure Table store can implement it:

* ``get`` / ``put`` — a key/value with a time to live;
* ``add`` — idempotent windowed membership: record ``member`` under ``key`` at event time ``at``
  (with a ``value`` to count distinct and an optional payload); adding the same member twice is a
  no-op and returns False; ``members`` reads a key's members in an event-time range;
* ``remove`` — forget one window member;
* ``claim`` — insert-if-absent, True exactly once per key;
* ``merge_alert`` — the outbox: insert an alert, or fold it into the stored one with the same id
  (atomically: read, :func:`pimwatch.detection.alerts.fold`, write). The incoming alert's ``events`` are its
  contributing records and its accumulated context lists their values; the store keeps, per alert,
  an insert-if-absent membership of the records and values it has counted, so a record delivered
  twice counts once and the fold only adds what is new: O(1) whatever the alert's count;
* ``resolve_alerts`` — mark the open alerts of a detector and key resolved (at an event time);
* ``mark_queued`` — the caller has queued the alert's deliveries (see below);
* ``prune`` — forget window members older than an event time and expired keys (the TTL clean-up,
  :mod:`pimwatch.state.retention`);
* ``commit`` — make everything above durable;
* ``transaction()`` — the unit of work, a context manager (:mod:`pimwatch.hosting.driver` runs every batch in
  one): SQLite commits at its end and rolls back if it raises (``commit`` inside it is held), or rolls
  back in any case with ``rollback=True`` (``pimwatch prune --dry-run``); on Azure Tables every write is
  durable per call, so it only scopes them (see below for why nothing is lost all the same).

The contract is split by role (:class:`KV`, :class:`Windows`, :class:`Outbox`, :class:`Deliveries`,
:class:`Ledger`, :class:`Maintenance`); a backend implements all of them as one class (:class:`Store`).

**Queueing an alert for its sinks is never lost between two writes.** SQLite is transactional: the
alert and its delivery rows are committed together, and ``mark_queued`` has nothing to do. A store
whose writes are durable one call at a time (Azure Tables) cannot do that, so it keeps, with each
alert, whether its trigger (and its resolve) have been queued: until ``mark_queued``, ``merge_alert``
keeps answering "new" for it and ``resolve_alerts`` keeps returning it once resolved. A process that
dies between the alert write and the queueing leaves the alert "new": the retried batch (or any later
record of the alert) queues it then, and queueing is idempotent per (alert, sink, kind).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from pimwatch.detection.alerts import Alert

MergeResult = Literal["new", "updated", "unchanged"]


class StoreError(RuntimeError):
    """The state store itself failed (not a bad record): the caller must stop, not skip."""


# What a failure of the state store raises (SQLite's own errors may escape a read).
STORE_ERRORS: tuple[type[BaseException], ...] = (StoreError, sqlite3.Error)


@dataclass(frozen=True, slots=True)
class Member:
    member: str
    at: float  # event time, epoch seconds
    value: str
    payload: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One alert's delivery to one sink: ``kind`` is "trigger" (new) or "resolve"."""

    alert_id: str
    sink: str
    kind: str
    status: str  # "pending", "sent", "dead"
    attempts: int
    next_at: float
    first_at: float
    last_error: str
    answer: str
    # The claim (lease) of the deliverer sending it now: its holder token and the epoch second the
    # lease expires; "" and 0 when unclaimed. Another deliverer takes it over only after expiry.
    holder: str = ""
    lease_until: float = 0.0


class KV(Protocol):
    """Key/value with a time to live, and insert-if-absent claims."""

    def get(self, key: str) -> Any | None: ...
    def put(self, key: str, value: Any, *, ttl: timedelta | None = None) -> None: ...
    def claim(self, key: str) -> bool: ...


class Windows(Protocol):
    """Idempotent windowed membership, read by event-time range."""

    def add(
        self, key: str, member: str, at: datetime, value: str = "", payload: dict[str, Any] | None = None
    ) -> bool: ...
    def members(self, key: str, start: datetime, end: datetime) -> list[Member]: ...
    def remove(self, key: str, member: str) -> None: ...


class Outbox(Protocol):
    """The alerts: folded by id, resolved by (detector, key), and whether their deliveries are queued."""

    def merge_alert(self, alert: Alert) -> MergeResult: ...
    def resolve_alerts(self, detector: str, key: str, at: str) -> list[str]: ...
    def mark_queued(self, alert_id: str, kind: str) -> None: ...
    def get_alert(self, alert_id: str) -> Alert | None: ...
    def alerts(self) -> Iterator[Alert]: ...


class Deliveries(Protocol):
    """Per (alert, sink, kind): the delivery state the deliverer works through."""

    def enqueue(self, alert_id: str, sink: str, kind: str, now: float, due: float | None = None) -> bool: ...
    def due(self, sink: str, now: float, limit: int = 500) -> list[Delivery]: ...
    def lease(
        self,
        alert_id: str,
        sink: str,
        kind: str,
        *,
        holder: str,
        now: float,
        until: float,
        takeover: str = "",
    ) -> bool: ...
    def mark_sent(
        self, alert_id: str, sink: str, kind: str, answer: str, now: float, *, holder: str = ""
    ) -> bool: ...
    def mark_failed(
        self,
        alert_id: str,
        sink: str,
        kind: str,
        *,
        dead: bool,
        next_at: float,
        error: str,
        now: float,
        holder: str = "",
    ) -> bool: ...
    def deliveries(self, status: str | None = None) -> list[Delivery]: ...
    def requeue(self, status: str = "dead", sink: str | None = None, now: float = 0.0) -> int: ...
    def purge(self, status: str, before: float) -> int: ...


class Ledger(Protocol):
    """The report's ledger (:mod:`pimwatch.detection.ledger`): compact rows of PIM, role and
    break-glass records, one per record id, partitioned by the event's UTC ``day`` (YYYY-MM-DD).

    ``ledger_add`` writes one row (in the unit of work); a record id already there keeps the row whose
    ``order`` is least, so what stays does not depend on arrival (SQLite; Azure Tables keeps the
    last written: duplicates of one record id carry the same content). ``ledger_rows`` reads the
    rows of the days ``[first, last]``; ``ledger_prune`` forgets the days before ``day``."""

    def ledger_add(self, day: str, record_id: str, order: str, row: dict[str, Any]) -> None: ...
    def ledger_rows(self, first: str, last: str) -> list[dict[str, Any]]: ...
    def ledger_prune(self, day: str, *, limit: int | None = None) -> int: ...


class Maintenance(Protocol):
    """The unit of work, the TTL clean-up, and the connection."""

    def transaction(self, *, rollback: bool = False) -> AbstractContextManager[None]: ...
    def prune(self, before: datetime, *, limit: int | None = None, keep: Collection[str] = ()) -> int: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class Store(KV, Windows, Outbox, Deliveries, Ledger, Maintenance, Protocol):
    """The whole contract: what a backend implements (one class each). Consumers are typed against
    the roles they use where that is simple."""
