"""The per-batch unit of work of the Azure Table store (:class:`pimwatch.state.tables.TableStore`).

Inside :meth:`TableStore.unit() <pimwatch.state.tables.TableStore.unit>` (the driver opens one per Event
Hub batch) the store answers reads from what this unit already read or wrote, buffers its writes and
flushes them at :meth:`commit` in a few *waves* of concurrent requests:

1. window members, key/values, the alerts' ``outboxkeys`` index rows (entity-group transactions per
   partition, up to 100 operations each);
2. a re-read of every window this unit both read and added to: a member that another instance added
   meanwhile means this batch decided without it, so the unit raises :class:`UnitConflict` before any
   alert is written (the runtime then runs the batch again, one request at a time, as before);
3. the alerts (each one entity-group transaction in its own partition: its new membership rows and
   the alert, inserted or replaced under the ETag it was read with) and the deliveries (one
   transaction per sink);
4. the ``tq``/``rq`` queueing marks and the clean-up of resolved alerts' index rows.

A transaction that fails (another writer folded the alert first, a membership row exists) is replayed
with the one-request-at-a-time path, which is exact under concurrency. Reads the batch will make can be
fetched before it runs, concurrently (:class:`Reads`, predicted by :mod:`pimwatch.hosting.prefetch`).

Why the order is safe: a crash between waves leaves at most window members, key/values and index
rows without their alert (the retried batch finds its members and re-folds, as after a crash today),
never an alert without its index rows, never a ``tq`` mark without its delivery rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pimwatch.detection.contract import Member, StoreError

T = TypeVar("T")
Entity = dict[str, Any]


class UnitConflict(StoreError):
    """Another instance changed a window this batch read and wrote: run the batch again."""


@dataclass
class AlertState:
    """One alert (outbox partition) in the unit: as read, and what the unit will write."""

    stored: Entity | None  # as read from the service (None: absent)
    etag: str | None  # the ETag it was read (or last written) with
    entity: Entity | None = None  # to write at commit (None: nothing to write)
    rows: list[str] = field(default_factory=list)  # membership rows to insert with it
    ops: list[tuple[Any, ...]] = field(default_factory=list)  # to replay one by one if it conflicts

    @property
    def current(self) -> Entity | None:
        return self.entity if self.entity is not None else self.stored


@dataclass
class Window:
    """A window key's members as read from the service, and the event-time ranges read."""

    rows: dict[str, Member] = field(default_factory=dict)
    covered: list[tuple[float, float]] = field(default_factory=list)

    def covers(self, start: float, end: float) -> bool:
        return any(a <= start and end <= b for a, b in self.covered)


@dataclass
class Reads:
    """What a batch is expected to read (fetched up front, concurrently)."""

    kv: set[str] = field(default_factory=set)  # keys
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # key → (start, end) epoch s
    alerts: set[str] = field(default_factory=set)  # alert ids
    index: set[tuple[str, str]] = field(default_factory=set)  # (detector, key) of resolve_alerts

    def window(self, key: str, start: float, end: float) -> None:
        old = self.windows.get(key)
        self.windows[key] = (start, end) if old is None else (min(old[0], start), max(old[1], end))

    def __bool__(self) -> bool:
        return bool(self.kv or self.windows or self.alerts or self.index)


@dataclass
class Unit:
    """Reads and buffered writes of one unit of work (all keyed by table keys)."""

    kv: dict[str, Entity | None] = field(default_factory=dict)
    kv_put: dict[str, Entity] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)  # by window key (not encoded)
    adds: dict[str, dict[str, Entity]] = field(default_factory=dict)  # window key → member → row
    assumed: dict[str, set[str]] = field(default_factory=dict)  # added unread: answered as new
    alerts: dict[str, AlertState] = field(default_factory=dict)  # by outbox partition key
    index_read: dict[str, dict[str, str]] = field(default_factory=dict)  # index pk → row key → id
    index_put: dict[tuple[str, str], Entity] = field(default_factory=dict)
    index_delete: set[tuple[str, str]] = field(default_factory=set)
    deliveries: dict[tuple[str, str], Entity] = field(default_factory=dict)
    marks: dict[str, Entity] = field(default_factory=dict)  # outbox pk → blind merge (tq/rq)
    read_windows: set[str] = field(default_factory=set)  # window keys read from the service

    def dirty(self) -> bool:
        return bool(
            self.kv_put
            or self.adds
            or self.index_put
            or self.index_delete
            or self.deliveries
            or self.marks
            or any(s.entity is not None for s in self.alerts.values())
        )


class Waves:
    """Counts requests and *round trips*: requests issued one after another each count; a group
    issued concurrently counts as its longest chain (what the caller waits for)."""

    def __init__(self, workers: int = 10) -> None:  # the HTTP connection pool holds 10
        self.requests = 0
        self.round_trips = 0
        self._local = threading.local()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._workers = workers

    def answered(self) -> None:
        """One HTTP response (the SDK's response hook, on whichever thread issued it)."""
        with self._lock:
            self.requests += 1
        chain = getattr(self._local, "chain", None)
        if chain is None:
            self.round_trips += 1
        else:
            self._local.chain = chain + 1

    def run(self, calls: Sequence[Callable[[], T]]) -> list[T]:
        """Run ``calls`` concurrently (one wave); the first error is raised after all have ended."""
        if not calls:
            return []
        if len(calls) == 1:
            return [calls[0]()]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="pimwatch-tables")

        def chained(call: Callable[[], T]) -> tuple[int, T | None, BaseException | None]:
            self._local.chain = 0
            try:
                value = call()
                return self._local.chain, value, None
            except BaseException as exc:  # re-raised below, once every call has ended
                return self._local.chain, None, exc
            finally:
                self._local.chain = None

        done = list(self._pool.map(chained, calls))
        self.round_trips += max(n for n, _, _ in done)
        for _, _, exc in done:
            if exc is not None:
                raise exc
        return [value for _, value, _ in done]  # type: ignore[misc]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def chunks(items: Iterable[T], size: int) -> list[list[T]]:
    out: list[list[T]] = []
    for item in items:
        if not out or len(out[-1]) >= size:
            out.append([])
        out[-1].append(item)
    return out
