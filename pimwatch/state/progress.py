"""How far each Event Hub partition has got: the clock clock-driven detectors tick at.

``approval.overdue`` fires on the *absence* of a decision, so it must not tick past records that are
still waiting in a partition's backlog (after a stall, a first deployment that starts an hour back,
or an instance that is slow): the decision would be "missing" only because it has not been read
yet — a page, then its resolve.

Every instance notes, per partition it reads, the newest *enqueued* time it has processed and when
(wall clock) it noted it — in the shared store, so instances see each other's partitions
(:func:`note`). A partition is **behind** when, at that moment, its newest processed message had been
enqueued more than :data:`CAUGHT_UP` earlier; otherwise it had read everything there was. The tick
clock (:func:`clock`) is the wall clock, held back to the enqueued time of the slowest partition
that is behind; a partition not noted for :data:`FORGET` no longer holds it back (a stall is the
``pipeline.silent`` heartbeat's and the health endpoint's to report, not a reason to stop ticking).

**A partition not seen yet.** The hosts learn the hub's partition ids (``pimwatch consume``: the
consumer client's ``get_partition_ids()``; the Functions app: the ``PIMWATCH_EVENTHUB_PARTITIONS``
app setting, which ``infra/main.bicep`` sets from the hub's partition count) and record them as
*expected* (:func:`expect`, insert-if-absent: the first instance's wall clock is kept). While an
expected partition has never reported progress, nobody knows how far back its backlog reaches, so
there is **no** tick clock (:func:`clock` returns None): clock-driven detectors wait. That must not
last for ever — an idle partition of a quiet tenant gets no batch — so an expected partition that has
not reported within :data:`FORGET` of being first expected no longer holds the clock (the same bound,
and the same reasoning, as a partition that stopped being noted). With no partition list (a local
``func start``), only the partitions that have reported count, as before.

Cost: one write per partition per minute per instance (and at once when it falls behind or catches
up), and one read per partition when the clock is read (the timer, once a minute; a batch, at most
once a minute per instance).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from pimwatch.detection.contract import KV, Windows
from pimwatch.detection.timeutil import iso, parse_time

REGISTRY = "pipeline:partitions"  # window members: one per partition ever noted
EXPECTED = "pipeline:expected"  # window members: one per partition a host said the hub has, at first said
CAUGHT_UP = timedelta(minutes=2)  # enqueued this recently when read: the partition had no backlog
FORGET = timedelta(hours=2)
NOTE_EVERY = timedelta(seconds=60)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _key(partition: str) -> str:
    return f"pipeline:partition:{partition}"


class ProgressStore(KV, Windows, Protocol):
    """What progress needs of the store: key/values and window members."""


@dataclass
class _Noted:
    at: datetime
    behind: bool


class Progress:
    """One instance's notes (throttled) and its cached reading of the shared clock."""

    def __init__(self) -> None:
        self._noted: dict[str, _Noted] = {}
        self._clock: tuple[datetime, datetime | None] | None = None  # (read at, the clock then)

    def note(
        self, store: ProgressStore, partition: str, enqueued: Sequence[datetime | None], now: datetime
    ) -> None:
        """A batch of ``partition`` with these enqueued times has been processed at ``now``."""
        times = [t for t in enqueued if t is not None]
        if not times:
            return
        newest = max(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
        behind = now - newest > CAUGHT_UP
        last = self._noted.get(partition)
        if last is not None and last.behind == behind and now - last.at < NOTE_EVERY:
            return
        if last is None:
            store.add(REGISTRY, partition, _EPOCH, partition)  # insert-if-absent: once per process
        store.put(_key(partition), {"enqueued": iso(newest), "noted": iso(now)})
        self._noted[partition] = _Noted(now, behind)
        if behind:
            self._clock = None  # read again: this instance just learned it is behind

    def clock(self, store: ProgressStore, now: datetime, *, cached: bool = False) -> datetime | None:
        """The tick clock at ``now`` (see the module docstring). ``cached``: reuse a reading up to a
        minute old (a batch's tick): the wall clock if nothing held it then, else the same held
        value (never moved forward by the time since: the partition holding it may not have moved)."""
        if cached and self._clock is not None and now - self._clock[0] < NOTE_EVERY:
            read, at = self._clock
            return now if at == read else at
        at = clock(store, now)
        self._clock = (now, at)
        return at

    def forget(self) -> None:
        """After a store failure: note every partition again on its next batch."""
        self._noted.clear()
        self._clock = None


def noted(store: ProgressStore) -> dict[str, tuple[datetime, datetime]]:
    """Every partition's last note: its newest processed enqueued time, and when that was noted."""
    out: dict[str, tuple[datetime, datetime]] = {}
    for m in store.members(REGISTRY, _EPOCH, _EPOCH):
        doc = store.get(_key(m.member))
        if isinstance(doc, dict):
            enqueued, at = parse_time(doc.get("enqueued")), parse_time(doc.get("noted"))
            if enqueued is not None and at is not None:
                out[m.member] = (enqueued, at)
    return out


def expect(store: ProgressStore, partitions: Iterable[str], now: datetime) -> None:
    """The hub has these partitions: until each has reported progress (or :data:`FORGET` has passed
    since it was first expected) there is no tick clock. Insert-if-absent: repeating it is free."""
    for partition in partitions:
        store.add(EXPECTED, str(partition), now, str(partition))


def clock(store: ProgressStore, now: datetime) -> datetime | None:
    """``now``, held back to the newest enqueued time of the slowest partition that is behind; None
    while an expected partition has not reported yet (see the module docstring)."""
    at: datetime | None = now
    for m in store.members(REGISTRY, _EPOCH, _EPOCH):
        doc = store.get(_key(m.member))
        if not isinstance(doc, dict):
            continue
        enqueued, noted = parse_time(doc.get("enqueued")), parse_time(doc.get("noted"))
        if enqueued is None or noted is None:
            continue
        if now - noted > FORGET or noted - enqueued <= CAUGHT_UP:
            continue
        at = min(at, enqueued) if at is not None else None
    for m in store.members(EXPECTED, now - FORGET, now + FORGET):  # first expected within FORGET
        if not isinstance(store.get(_key(m.member)), dict):
            return None  # never reported: its backlog may reach back any distance
    return at
