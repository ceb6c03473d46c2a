"""The one driver of the pipeline, for every host: feeding, ticking, the unit of work, queueing, finish.

``pimwatch replay`` (:mod:`pimwatch.cli`), the Functions runtime and ``pimwatch consume``
(:mod:`pimwatch.hosting.runtime`) and the test harness (:mod:`pimwatch.testing.harness`) are thin callers of
:class:`Driver`; none of them touches the engine. What the driver does, in one place:

* **feeding**: items go to :meth:`Pipeline.feed <pimwatch.detection.pipeline.Pipeline.feed>`, which never
  ticks
  and never commits;
* **the unit of work** is one ``store.transaction()``: an Event Hub batch (:meth:`Driver.batch`), a
  timer call (:meth:`Driver.timer`), or, in replay, every :data:`COMMIT_EVERY` items
  (:meth:`Driver.feed`: nothing is held in memory per record, so memory stays flat however long
  the input) and the end (:meth:`Driver.finish`);
* **queueing** new and resolved alerts for the sinks, one mechanism for every host, inside the unit of
  work: :meth:`Deliverer.enqueue <pimwatch.delivery.deliverer.Deliverer.enqueue>`, then ``store.mark_queued``
  (on SQLite the alert and its delivery rows commit together; on Azure Tables the alert stays "new"
  until marked, see :mod:`pimwatch.state.sqlite`);
* **ticking** the clock-driven detectors, only here, at the clock of the host's :class:`TickPolicy`
  (:class:`WatermarkTick` for replay and the harness, :class:`ProgressTick` for the Event Hub hosts);
* **releasing** the groups whose ``group_wait`` is over at the tick clock (all of them at finish) to
  the notification sinks (:meth:`Deliverer.release <pimwatch.delivery.deliverer.Deliverer.release>`);
* **finish**: the watermark is stored, the unit committed, the quarantine flushed;
* **alerts that do not wait for the batch** (``at_once``, the config's ``delivery.at_once``): when a
  record raises a new alert of that severity or higher, the batch so far is committed as its own unit
  of work, the alert queued and handed to ``deliver`` (the sinks), and the batch goes on in a new
  unit. The alerts are the same whatever the batching (a unit is a unit); only when they reach the
  sinks changes;
* **a remote store's unit of work**: a store with ``unit()`` (Azure Tables) gets one around the whole
  batch, with the reads ``predict`` foresees fetched first (:mod:`pimwatch.hosting.prefetch`), its writes
  buffered and committed at the end of each unit (:mod:`pimwatch.state.tableunit`).

Every call returns a :class:`BatchResult`: the alerts it changed, in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, islice
from typing import Any, Protocol

from pimwatch.delivery.deliverer import Deliverer
from pimwatch.detection.alerts import Severity
from pimwatch.detection.contract import STORE_ERRORS
from pimwatch.detection.engine import ChangeResult
from pimwatch.detection.pipeline import WATERMARK, Pipeline
from pimwatch.detection.reader import Item
from pimwatch.detection.stats import Stats
from pimwatch.detection.timeutil import iso
from pimwatch.state.progress import Progress, ProgressStore, expect

COMMIT_EVERY = 5000  # items per unit of work in replay: bounds the transaction, not the result
Change = tuple[str, ChangeResult]


@dataclass
class BatchResult:
    """What one call of the driver did."""

    # (alert id, "new" | "updated" | "resolved"), in order; each pair once (an alert may be raised
    # and resolved by the same batch).
    changes: list[Change] = field(default_factory=list)
    queued: int = 0  # deliveries queued for the sinks
    tick_clock: datetime | None = None  # where the clock-driven detectors ticked (None: not ticked)
    watermark: datetime | None = None  # the newest event time seen
    # (change, severity) -> alerts raised ("new") or resolved, for the metrics; "unknown" when the
    # alert was not read (no sinks to queue it for)
    severities: dict[tuple[str, str], int] = field(default_factory=dict)

    def summary(self) -> dict[str, ChangeResult]:
        """Per alert, what this call did to it: "new" if it was raised here, else its last change."""
        out: dict[str, ChangeResult] = {}
        for aid, change in self.changes:
            if out.get(aid) != "new":
                out[aid] = change
        return out

    def counts(self) -> dict[str, int]:
        """How many alerts were new, updated and resolved (by :meth:`summary`)."""
        counts: dict[str, int] = {}
        for change in self.summary().values():
            counts[change] = counts.get(change, 0) + 1
        return counts


class TickPolicy(Protocol):
    """Where the clock-driven detectors tick; chosen by the host. Ticks never pass the tick clock."""

    def note(
        self, store: ProgressStore, partition: str | None, enqueued: Sequence[datetime | None], now: datetime
    ) -> None:
        """A batch of ``partition`` with these enqueued times has been fed."""

    def at_batch(self, store: ProgressStore, watermark: datetime | None, now: datetime) -> datetime | None:
        """The clock at the end of a unit of work that fed records (None: no tick)."""

    def at_timer(self, store: ProgressStore, watermark: datetime | None, now: datetime) -> datetime | None:
        """The clock of a timer call (None: no tick)."""


class WatermarkTick:
    """Replay and the harness: tick **only** at finish, at the watermark (the newest event time read).

    Replay has all of its input. Ticking part-way, at the watermark so far, would let an absence
    detector (``approval.overdue``, ``activation.first_time``) decide that something is absent before
    a later file — read after, but no later in event time — brings it: the alerts would depend on the
    order of the files. At finish nothing is left to read, so "absent" is true.
    """

    def note(
        self, store: ProgressStore, partition: str | None, enqueued: Sequence[datetime | None], now: datetime
    ) -> None:
        pass

    def at_batch(self, store: ProgressStore, watermark: datetime | None, now: datetime) -> datetime | None:
        return watermark

    def at_timer(self, store: ProgressStore, watermark: datetime | None, now: datetime) -> datetime | None:
        return watermark


class ProgressTick:
    """The Event Hub hosts: the partition-aware clock of :mod:`pimwatch.state.progress`, for every tick.

    A batch ticks at its own watermark held back by that clock, the timer at the clock. ``partitions``
    are the hub's partition ids when the host knows them (consume: the client; Functions: an app
    setting): they are recorded as expected, and a partition that has never reported holds the clock
    (bounded by :data:`pimwatch.state.progress.FORGET`). Empty: only partitions seen so far count.
    """

    def __init__(self, partitions: Sequence[str] = (), progress: Progress | None = None) -> None:
        self.partitions = tuple(partitions)
        self.progress = progress or Progress()

    def expect(self, store: ProgressStore, now: datetime) -> None:
        if self.partitions:
            expect(store, self.partitions, now)

    def forget(self) -> None:
        """After a store failure: note every partition again."""
        self.progress.forget()

    def note(
        self, store: ProgressStore, partition: str | None, enqueued: Sequence[datetime | None], now: datetime
    ) -> None:
        if partition is not None and enqueued:
            self.progress.note(store, partition, enqueued, now)

    def at_batch(self, store: ProgressStore, watermark: datetime | None, now: datetime) -> datetime | None:
        if watermark is None:
            return None
        held = self.progress.clock(store, now, cached=True)
        return None if held is None else min(watermark, held)

    def at_timer(self, store: ProgressStore, watermark: datetime | None, now: datetime) -> datetime | None:
        return self.progress.clock(store, now)


class Driver:
    """Drives one :class:`Pipeline` (see the module docstring). ``deliverer``: queue new and resolved
    alerts for its sinks (None: no sinks; alerts are still marked queued). ``at_once``: new alerts
    of this severity or higher commit the batch so far and go to ``deliver`` at once (batches only).
    ``predict``: the reads a batch will make (for a store with a unit of work)."""

    def __init__(
        self,
        pipeline: Pipeline,
        tick: TickPolicy | None = None,
        deliverer: Deliverer | None = None,
        *,
        commit_every: int = COMMIT_EVERY,
        at_once: Severity | None = None,
        predict: Callable[[Sequence[Item]], Any] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.policy: TickPolicy = tick or WatermarkTick()
        self.deliverer = deliverer
        self.commit_every = commit_every
        self.at_once = at_once
        self._urgent: list[str] = []  # alert ids that ended a unit early (at_once)
        self.predict = predict
        self.units = True  # use the store's unit of work (the runtime turns it off for a retry)
        self._taken: list[Change] = []  # changes taken from the engine, not queued yet
        self._changes: dict[Change, None] = {}
        self._queued = 0
        self._ticked: datetime | None = None
        self._severities: dict[tuple[str, str], int] = {}

    @property
    def stats(self) -> Stats:
        return self.pipeline.stats

    @property
    def watermark(self) -> datetime | None:
        return self.pipeline.watermark

    # --- the calls of the hosts ------------------------------------------------------------------
    def feed(self, items: Iterable[Item]) -> None:
        """Replay: feed ``items``, one unit of work per :attr:`commit_every` items, each queueing its
        changes before it commits. No tick (that is :meth:`finish`'s). An input error part-way (a
        file that cannot be read further) keeps what was fed before it, then is raised."""
        it = iter(items)
        for first in it:
            failed: Exception | None = None
            with self.store.transaction():
                try:
                    self.pipeline.feed(chain((first,), islice(it, self.commit_every - 1)))
                except STORE_ERRORS:
                    raise
                except Exception as exc:
                    failed = exc
                self._queue()
            if failed is not None:
                raise failed

    def finish(self, now: datetime | None = None) -> BatchResult:
        """The end of the input: tick at the policy's clock, queue, store the watermark, commit,
        flush the quarantine."""
        with self.store.transaction():
            self._end(now, final=True)
        self.pipeline.quarantine.close()
        return self._take()

    def batch(
        self,
        items: Iterable[Item],
        now: datetime,
        *,
        partition: str | None = None,
        enqueued: Sequence[datetime | None] = (),
        also: Callable[[], None] | None = None,
        deliver: Callable[[], None] | None = None,
    ) -> BatchResult:
        """One Event Hub batch as one unit of work: feed, note the partition's progress, tick, queue,
        store the watermark, commit; then flush the quarantine (raises if it cannot: the host must
        not checkpoint) and call ``deliver`` (the sinks: what is due). ``also`` runs inside the unit
        (the runtime's arrival note). With :attr:`at_once` and ``deliver``, an urgent alert ends a
        unit early and is delivered at once. A remote store's unit of work spans the deliveries
        too: the alerts it wrote are not read again to be sent."""
        unit: Callable[[], AbstractContextManager[None]] | None = getattr(self.store, "unit", None)
        outer = unit() if unit is not None and self.units else nullcontext()
        with outer:
            if unit is not None and self.units and self.predict is not None:
                items = list(items)
                self.store.prefetch(self.predict(items))  # type: ignore[attr-defined]
            rest = iter(items)
            urgent = self.at_once is not None and deliver is not None
            while True:
                with self.store.transaction():
                    stopped = urgent and self._feed_until_urgent(rest)
                    if not urgent:
                        self.pipeline.feed(rest)
                    if stopped:
                        self._queue()  # the batch so far, committed now; then to the sinks
                        self._release_urgent()
                    else:
                        self.policy.note(self.store, partition, enqueued, now)
                        if also is not None:
                            also()
                        self._end(now)
                if not stopped:
                    break
                assert deliver is not None
                deliver()
            self.pipeline.quarantine.close()
            if deliver is not None:
                deliver()
        return self._take()

    def _feed_until_urgent(self, items: Iterator[Item]) -> bool:
        """Feed items until one raises a new alert of :attr:`at_once` or higher (True), or to the end."""
        assert self.at_once is not None
        rank = self.at_once.rank
        changes = self.pipeline.engine.changes
        for item in items:
            self.pipeline.feed((item,))
            taken = changes.take()
            self._taken += taken
            for aid, change in taken:
                if change == "new":
                    alert = self.store.get_alert(aid)
                    if alert is not None and alert.severity.rank >= rank:
                        self._urgent.append(aid)
                        return True
        return False

    def timer(self, now: datetime, also: Callable[[], Iterable[Change]] | None = None) -> BatchResult:
        """A timer call: tick at the policy's timer clock; ``also`` (the heartbeat) may change alerts
        too; queue; commit."""
        with self.store.transaction():
            at = self.policy.at_timer(self.store, self.pipeline.watermark, now)
            self._tick(at)
            for aid, change in also() if also is not None else ():
                self.pipeline.engine.changes.note(aid, change)
            self._queue()
            self._release(at)
        return self._take()

    # --- inside a unit of work -------------------------------------------------------------------
    def _end(self, now: datetime | None, *, final: bool = False) -> None:
        watermark = self.pipeline.watermark
        at = self.policy.at_batch(self.store, watermark, now or datetime.now(UTC))
        self._tick(at)
        self._queue()
        if final:
            self._release(None, final=True)
        else:
            self._release(at)
        if watermark is not None:
            self.store.put(WATERMARK, iso(watermark))

    def _tick(self, at: datetime | None) -> None:
        """The only place the clock-driven detectors are ticked."""
        if at is None:
            return
        self._ticked = at
        if self.pipeline.ticking:
            self.pipeline.engine.tick(at)

    def _queue(self) -> None:
        """Queue the new and resolved alerts for the sinks that route them, then mark them queued."""
        sinks = self.deliverer is not None and bool(self.deliverer.sinks)
        taken, self._taken = self._taken + self.pipeline.engine.changes.take(), []
        if sinks and taken:
            self.store.commit()  # the alerts are written before they are queued (a remote store)
        for aid, change in taken:
            if (aid, change) in self._changes:
                continue
            self._changes[(aid, change)] = None
            if change not in ("new", "resolved"):
                continue
            alert = None
            if sinks:
                assert self.deliverer is not None
                alert = self.store.get_alert(aid)
                if alert is not None:
                    self._queued += self.deliverer.enqueue(alert, change)
            seen = (change, alert.severity.value if alert is not None else "unknown")
            self._severities[seen] = self._severities.get(seen, 0) + 1
            self.store.mark_queued(aid, "resolve" if change == "resolved" else "trigger")

    def _release(self, at: datetime | None, *, final: bool = False) -> None:
        """Queue the groups whose ``group_wait`` is over at the tick clock ``at`` (grouping holds the
        notification sinks: pimwatch/delivery/grouping.py); at the end of the input (``final``),
        every group. No tick, no release: the wait is in event time, never the wall clock."""
        if self.deliverer is None or not self.deliverer.sinks or (at is None and not final):
            return
        self._queued += self.deliverer.release(at)

    def _release_urgent(self) -> None:
        """An urgent alert's group goes to the notification sinks now, without its ``group_wait``
        (its later alerts follow as updates)."""
        urgent, self._urgent = self._urgent, []
        if self.deliverer is not None and self.deliverer.sinks and urgent:
            self._queued += self.deliverer.release(None, urgent=urgent)

    def _take(self) -> BatchResult:
        result = BatchResult(list(self._changes), self._queued, self._ticked, self.pipeline.watermark)
        result.severities, self._severities = self._severities, {}
        self._changes, self._queued, self._ticked = {}, 0, None
        return result
