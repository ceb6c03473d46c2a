"""TTL clean-up: how long state must be kept, and forgetting what is older (``Store.prune``).

Without it the state grows for ever: every windowed hit, every activation of ``activation.first_time``,
every risky sign-in stays a window member.

**The horizon** (:func:`horizon`) is how far back, in *event* time, the detectors read window members.
It is the largest of:

* what each *enabled* detector needs (:func:`needs`), as it declares it: its window's ``within``
  (``within_minutes`` as configured) and every :class:`~pimwatch.detection.detector.Params` field marked
  :class:`~pimwatch.detection.detector.History` (``activation.first_time``'s ``lookback_days``,
  ``approval.overdue``'s ``sla_minutes``), plus the fields marked as lateness (``lateness_minutes``),
  plus :data:`SLACK` — a record that arrives late (behind the watermark, or on a partition that
  lags) must still find its whole window. Durations that are not look-backs stay unmarked: the
  alert buckets of ``suppress_minutes`` live in the outbox, which is never pruned; a TTL
  (``remember_hours``) or a key without TTL (``learning_hours``) is not window members. A detector
  that reads activation ends (:mod:`pimwatch.detection.lifecycle` memos, looked up up to
  :data:`pimwatch.detection.lifecycle.LONGEST_ACTIVATION` after an activation) needs that too;
* :data:`FLOOR`, 7 days: activations last up to a day and Entra delivers late;
* ``pipeline.retention_days`` when the operator sets it: it may only raise the horizon — a value
  under what the detectors need is a config error naming the parameter that needs more
  (:func:`too_short`, called by :func:`pimwatch.config.build`).

**What is pruned** (:func:`prune`):

* window members older than ``watermark - horizon`` — event time, not the wall clock, so a replay of
  old logs keeps its windows; the watermark is capped at ``now`` (one record stamped in the future
  must not wipe the state). Never the window keys in :data:`KEEP_WINDOWS` (the partition registry of
  :mod:`pimwatch.state.progress` and the learned privileged principals of
  :mod:`pimwatch.detection.principals`,
  whose members are stamped at the epoch);
* key/value entries whose TTL has expired (``approval.self_approved``'s ``remember_hours``). Keys
  without a TTL are never pruned: the watermark, the heartbeat, ``activation.first_time``'s
  ``watching-since``;
* deliveries ``sent`` more than :data:`SENT_KEPT` (30 days, wall clock) ago. ``dead`` ones stay
  (operators need them: ``pimwatch outbox list|retry``) and so do the alerts of the outbox (a handful a
  day: they are the alert history and what deduplicates a record seen again).

**How often** (:func:`maybe_prune`, from the timer): at most every ``every`` (6 h, wall clock). The
next due time is a key in the store, written before the work starts, so other instances and the
next timer call see it; two instances that read it at the same moment both prune, which is harmless
(the deletes are ETag-conditional). **The cap:** one call forgets at most :data:`LIMIT` (500) window
members and as many expired keys, so a timer invocation stays a few seconds long: it runs on the
runtime's one thread and holds up its instance's Event Hub batches meanwhile. The Table store deletes
a query page at a time in entity-group transactions (up to 100 entities of one partition per round
trip), but window keys hold few members each, so the worst case — one member per key — is one round
trip per entity: 2,000 took 10 s on Azurite (20 per key: 1.4 s, 103 round trips); in Azure count
10-30 ms a round trip, so 500 is 5-15 s at worst. A call that reached the cap makes the next call
(the next minute's timer) due at once, until the backlog is gone: 500 a minute is 720,000 a day.

**The report's ledger** (:mod:`pimwatch.detection.ledger`) is kept for ``report.retention_days``
(default 400) before the watermark, by whole UTC days, with the same cap.

**Not pruned, and growing:** claims (no detector uses them yet).
``approval.overdue``'s ``decided:<request>`` keys expire after a week (their own TTL).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pimwatch.detection import principals
from pimwatch.detection.activities import ACTIVATION_END
from pimwatch.detection.contract import Store
from pimwatch.detection.detector import DetectorConfig, History, Plugin
from pimwatch.detection.lifecycle import LONGEST_ACTIVATION
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.state.progress import EXPECTED, REGISTRY

FLOOR = timedelta(days=7)
SLACK = timedelta(days=1)
SENT_KEPT = timedelta(days=30)
EVERY = timedelta(hours=6)
LIMIT = 500  # window members (and as many expired keys) per call: see the module docstring
DUE = "retention:due"  # the wall-clock time the next prune is due (ISO)
KEEP_WINDOWS: tuple[str, ...] = (REGISTRY, EXPECTED, principals.IDS, principals.UPNS)


@dataclass(frozen=True)
class Need:
    """How far back (event time) one enabled detector reads its window members, and why."""

    what: str  # the config path(s) that ask for it, e.g. "detectors.activation.first_time.lookback_days"
    span: timedelta


@dataclass(frozen=True)
class Pruned:
    before: datetime  # members older than this (event time) went
    members: int  # window members forgotten
    deliveries: int  # sent deliveries purged
    more: bool  # the cap was reached: more is due at the next call
    ledger: int = 0  # ledger rows forgotten (report.retention_days)

    @property
    def total(self) -> int:
        return self.members + self.deliveries + self.ledger


def needs(detectors: Mapping[str, DetectorConfig], plugins: Sequence[Plugin]) -> list[Need]:
    """What every enabled detector needs kept (see the module docstring), largest first."""
    out: list[Need] = []
    for plugin in plugins:
        det_id = plugin.meta.id
        cfg = detectors.get(det_id)
        if cfg is None or not cfg.enabled:
            continue
        spans: dict[str, timedelta] = {}
        late: dict[str, timedelta] = {}
        if cfg.window.within > timedelta(0):
            spans["within_minutes"] = cfg.window.within
        for name, info in type(cfg.params).model_fields.items():
            for mark in info.metadata:
                if isinstance(mark, History):
                    (late if mark.lateness else spans)[name] = mark.unit * getattr(cfg.params, name)
        extra = sum(late.values(), timedelta())
        plus = "".join(f" + {n}" for n in sorted(late))
        for name, span in spans.items():
            out.append(Need(f"detectors.{det_id}.{name}{plus}", span + extra))
        if late and not spans:
            out.append(Need(f"detectors.{det_id}.{' + '.join(sorted(late))}", extra))
        if plugin.meta.activities is not None and plugin.meta.activities & ACTIVATION_END:
            out.append(Need(f"detectors.{det_id} (activation ends, pimwatch.lifecycle)", LONGEST_ACTIVATION))
    return sorted(out, key=lambda n: (-n.span, n.what))


def _computed(detectors: Mapping[str, DetectorConfig], plugins: Sequence[Plugin]) -> tuple[timedelta, str]:
    """The horizon the detectors ask for (without ``retention_days``), and what sets it."""
    found = needs(detectors, plugins)
    if found and found[0].span + SLACK > FLOOR:
        top = found[0]
        why = f"{top.what}: {_days(top.span)}, plus {_days(SLACK)} for records that arrive late"
        return top.span + SLACK, f"the {_days(top.span + SLACK)} the detectors need ({why})"
    return FLOOR, f"pimwatch's floor of {_days(FLOOR)} (activations last up to a day; Entra delivers late)"


class _Kept(Protocol):
    @property
    def retention_days(self) -> float | None: ...


class Retained(Protocol):
    """What the horizon reads of the config (:class:`pimwatch.config.Config` has it): the detector
    configs and ``pipeline.retention_days``."""

    @property
    def detectors(self) -> Mapping[str, DetectorConfig]: ...

    @property
    def pipeline(self) -> _Kept: ...


def horizon(config: Retained, plugins: Sequence[Plugin]) -> timedelta:
    """How far back (event time) state must be kept (see the module docstring)."""
    span, _ = _computed(config.detectors, plugins)
    days = config.pipeline.retention_days
    return max(span, timedelta(days=days)) if days is not None else span


def too_short(
    retention_days: float, detectors: Mapping[str, DetectorConfig], plugins: Sequence[Plugin]
) -> list[str]:
    """The config problem when ``pipeline.retention_days`` is under what the detectors need."""
    span, why = _computed(detectors, plugins)
    if timedelta(days=retention_days) >= span:
        return []
    return [
        f"pipeline.retention_days: {retention_days:g} days is less than {why};"
        " raise it, or leave it out to keep what the detectors need"
    ]


def _days(span: timedelta) -> str:
    days = span / timedelta(days=1)
    return f"{days:.4g} day" + ("" if days == 1 else "s")


def prune(
    store: Store,
    watermark: datetime,
    horizon: timedelta,
    now: datetime,
    *,
    limit: int | None = None,
    ledger: timedelta | None = None,
) -> Pruned:
    """Forget what is older than ``horizon`` before ``watermark`` (event time; capped at ``now``), the
    expired keys, and the sent deliveries older than :data:`SENT_KEPT`; at most ``limit`` members
    (None: all). ``ledger``: also the report's ledger days older than that before the watermark
    (``report.retention_days``; whole UTC days, at most ``limit`` rows). Not committed: the caller
    commits (or, for a dry run, rolls back)."""
    before = min(watermark, now) - horizon
    members = store.prune(before, limit=limit, keep=KEEP_WINDOWS)
    deliveries = store.purge("sent", (now - SENT_KEPT).timestamp())
    rows = 0
    if ledger is not None:
        rows = store.ledger_prune(f"{min(watermark, now) - ledger:%Y-%m-%d}", limit=limit)
    more = limit is not None and (members >= limit or rows >= limit)
    return Pruned(before, members, deliveries, more, rows)


def maybe_prune(
    store: Store,
    watermark: datetime | None,
    horizon: timedelta,
    now: datetime,
    every: timedelta = EVERY,
    *,
    limit: int = LIMIT,
    ledger: timedelta | None = None,
) -> int | None:
    """:func:`prune`, when due: at most every ``every`` (wall clock ``now``), remembered in the store;
    at once again after a call that reached the cap. How many entities went (members and sent
    deliveries); None when not due, or with no watermark (nothing processed yet)."""
    if watermark is None:
        return None
    due = parse_time(store.get(DUE))
    if due is not None and now < due:
        return None
    store.put(DUE, iso(now + every))
    store.commit()  # before the work: whoever looks next sees the period taken
    done = prune(store, watermark, horizon, now, limit=limit, ledger=ledger)
    if done.more:
        store.put(DUE, iso(now))
    store.commit()
    return done.total
