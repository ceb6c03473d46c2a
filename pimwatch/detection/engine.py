"""Run the detectors on an event; turn hits into deduplicated, deterministic alerts in the outbox.

Every hit is first recorded as a window member keyed by the record id, so a record delivered
twice counts once. Alerts are grouped in fixed event-time buckets of the detector's suppression
period: the alert id is ``hash(detector, key, bucket)``, so any order, batching or replay of the
same records gives the same ids. A windowed detector raises an alert for every event whose
trailing window (``within_minutes``) holds at least ``threshold`` distinct values; a late record
re-evaluates the events after it, so out-of-order input converges on the same alerts.
"""

from __future__ import annotations

import logging
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pimwatch.detection import entities as _entities
from pimwatch.detection import evidence
from pimwatch.detection.activities import register
from pimwatch.detection.alerts import Alert, Severity, alert_id, sample
from pimwatch.detection.contract import Member, MergeResult, Store
from pimwatch.detection.detector import DetectionConfig, DetectorConfig, Hit, Plugin, Resolve, Skip, State
from pimwatch.detection.directory import Rechecks
from pimwatch.detection.event import Event
from pimwatch.detection.principals import Principals
from pimwatch.detection.stats import Stats
from pimwatch.detection.timeutil import iso

log = logging.getLogger("pimwatch.engine")
ChangeResult = MergeResult | Literal["resolved"]


@dataclass(frozen=True)
class Active:
    plugin: Plugin
    config: DetectorConfig
    state: State
    threshold: int
    within: timedelta
    suppress: timedelta


def bucket_of(ts: float, suppress: timedelta) -> str:
    size = int(suppress.total_seconds())
    if size <= 0:
        return ""
    start = int(ts) // size * size
    bucket = _BUCKETS.get(start)
    if bucket is None:  # a burst (a spray) falls in few buckets: formatted once each
        if len(_BUCKETS) >= 4096:
            _BUCKETS.clear()
        bucket = _BUCKETS[start] = iso(datetime.fromtimestamp(start, UTC))
    return bucket


_BUCKETS: dict[int, str] = {}  # bucket start (epoch seconds) -> its ISO name


class Changes:
    """The alerts changed since the last :meth:`take`, in order: each (alert id, change) once, so it
    grows with the alerts changed, not with the records that folded into them."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, ChangeResult], None] = {}

    def note(self, aid: str, result: ChangeResult) -> None:
        if result != "unchanged":
            self._seen.setdefault((aid, result), None)

    def take(self) -> list[tuple[str, ChangeResult]]:
        taken = list(self._seen)
        self._seen.clear()
        return taken


class Engine:
    def __init__(self, plugins: Sequence[Plugin], config: DetectionConfig, store: Store, stats: Stats):
        self.store = store
        self._raw: tuple[str, Any] | None = None  # (record id, raw record) of the event in process
        self.stats = stats
        # What the alerts did, in order, until the driver (pimwatch/hosting/driver.py) takes them.
        self.changes = Changes()
        self.by_kind: dict[str, list[Active]] = defaultdict(list)
        self.ticking: list[Active] = []
        # Audit detectors see only the activities they declare (None: every activity).
        self.by_activity: dict[str, list[Active]] = defaultdict(list)
        self.any_activity: list[Active] = []
        self.principals = Principals(store, config.settings)
        self.rechecks: Rechecks | None = None  # set by the pipeline of the deployed app
        for plugin in plugins:
            cfg = config.detectors[plugin.meta.id]
            if not cfg.enabled:
                continue
            window = cfg.window  # the declared window with the config's overrides
            active = Active(
                plugin=plugin,
                config=cfg,
                state=State(plugin.meta.id, cfg.params, config.settings, store, self.principals, window),
                threshold=window.threshold,
                within=window.within,
                suppress=window.suppress,
            )
            for kind in plugin.meta.kinds:
                self.by_kind[kind].append(active)
                if kind == "audit":
                    if plugin.meta.activities is None:
                        self.any_activity.append(active)
                    else:
                        register(plugin.meta.activities)
                        for name in plugin.meta.activities:
                            self.by_activity[name].append(active)
            if plugin.tick is not None:
                self.ticking.append(active)

    def process(self, event: Event) -> None:
        if event.kind == "audit":
            self.principals.learn(event)
            if self.rechecks is not None and event.activity in self.rechecks.activities:
                self.rechecks.note(event)
            actives: Sequence[Active] = [*self.any_activity, *self.by_activity.get(event.activity, ())]
        else:
            actives = self.by_kind.get(event.kind, ())
        for active in actives:
            det_id = active.plugin.meta.id
            try:
                result = active.plugin.detect(event, active.state)
            except Skip:
                self.stats.detector_skipped[det_id] += 1
                continue
            except Exception:
                self.stats.detector_errors[det_id] += 1
                log.exception("detector %s failed on record %s", det_id, event.id)
                continue
            if result is None:
                continue
            self._raw = (event.id, event.raw)
            try:
                for one in result if isinstance(result, (list, tuple)) else (result,):
                    self._outcome(active, one, (event.time, event.id))
            finally:
                self._raw = None

    def tick(self, now: datetime) -> None:
        """Let clock-driven detectors raise what is due at ``now`` (the watermark in replay)."""
        for active in self.ticking:
            det_id = active.plugin.meta.id
            try:
                results = active.plugin.tick(now, active.state)  # type: ignore[misc]
            except Exception:
                self.stats.detector_errors[det_id] += 1
                log.exception("detector %s failed on tick at %s", det_id, iso(now))
                continue
            for result in results:
                if isinstance(result, Hit) and result.record is None:
                    self.stats.detector_errors[det_id] += 1
                    log.error("detector %s: a hit from tick must name its record", det_id)
                    continue
                self._outcome(active, result, (now, ""))

    def _outcome(self, active: Active, result: Hit | Resolve, record: tuple[datetime, str]) -> None:
        if isinstance(result, Resolve):
            key = "|".join(result.key)
            for aid in self.store.resolve_alerts(active.plugin.meta.id, key, iso(result.at or record[0])):
                self._note("resolved", aid)
            return
        self._apply(active, result.record or record, result)

    def _raw_of(self, record_id: str) -> Any | None:
        """The raw record being processed, when the hit is about it (a join may name another)."""
        if self._raw is not None and self._raw[0] == record_id and record_id:
            return self._raw[1]
        return None

    def _note(self, result: ChangeResult, aid: str) -> None:
        self.changes.note(aid, result)

    def _apply(self, active: Active, record: tuple[datetime, str], hit: Hit) -> None:
        meta = active.plugin.meta
        at, record_id = record
        severity = hit.severity or active.config.severity
        key = "|".join(hit.key)
        if active.suppress.total_seconds() <= 0:
            key = f"{key}|{record_id}"
        wkey = f"\x1dalert\x1f{meta.id}\x1f{key}"  # apart from detectors' scoped state
        when = iso(at)
        # the hit's entities and its principal's, as they come: the fold sorts, dedups and bounds them
        entities = [*_entities.of_principal(hit.principal, with_ip=False), *map(dict, hit.entities)]
        if active.threshold <= 1:
            # No window: the store's per-alert membership of record ids is the dedup (a record
            # delivered twice leaves the alert unchanged), so no window member is needed.
            bucket = bucket_of(at.timestamp(), active.suppress)
            alert = self._alert(
                active, key, bucket, severity, hit.title, hit.context, hit.principal.as_alert()
            )
            alert.events, alert.count, alert.entities = [(when, record_id)], 1, entities
            self._note(self.store.merge_alert(alert), alert.id)
            raw = self._raw_of(record_id)
            if raw is not None:
                evidence.keep(self.store, alert.id, [(at, record_id, raw)])
            return
        payload = {
            "t": when,
            "title": hit.title,
            "context": hit.context,
            "principal": hit.principal.as_alert(),
            "severity": severity.value,
            "entities": entities,
        }
        raw = self._raw_of(record_id)
        if raw is not None:
            payload["raw"] = evidence.bounded_raw(raw)
        distinct = hit.distinct if hit.distinct is not None else record_id
        # A record seen before is evaluated again, in full (folding makes that a no-op): a store
        # whose writes are not one transaction may have kept the member and lost the alert.
        fresh = self.store.add(wkey, record_id, at, distinct, payload)
        rows = self.store.members(wkey, at - active.within, at + active.within)
        for bucket, members in sorted(_joins(rows, record_id, active, fresh).items()):
            ordered = sorted(members.values(), key=lambda m: ((m.payload or {}).get("t", ""), m.member))
            first = ordered[0].payload or {}
            context = dict(first.get("context", {}))
            for name in meta.accumulate:
                values: dict[str, Any] = {}
                for m in ordered:
                    for v in (m.payload or {}).get("context", {}).get(name, []):
                        values.setdefault(repr(v), v)
                context[name] = [values[r] for r in sorted(values)]
            alert = self._alert(
                active,
                key,
                bucket,
                Severity(first.get("severity", severity.value)),
                str(first.get("title", hit.title)),
                context,
                dict(first.get("principal", hit.principal.as_alert())),
            )
            # unbounded: the store bounds them as it counts the distinct ones (entities_omitted)
            alert.entities = _entities.merge(
                *((m.payload or {}).get("entities", ()) for m in ordered), limit=None
            )
            alert.events = sorted(((m.payload or {}).get("t", ""), m.member) for m in ordered)
            alert.count = len(alert.events)
            merged = self.store.merge_alert(alert)
            self._note(merged, alert.id)
            # The evidence: every sampled member when the alert is new, else the record just read.
            chosen = set(sample(alert.events)) if merged == "new" else {(when, record_id)}
            evidence.keep(
                self.store,
                alert.id,
                [
                    (datetime.fromtimestamp(m.at, UTC), m.member, (m.payload or {})["raw"])
                    for m in ordered
                    if ((m.payload or {}).get("t", ""), m.member) in chosen and "raw" in (m.payload or {})
                ],
            )

    def _alert(
        self,
        active: Active,
        key: str,
        bucket: str,
        severity: Severity,
        title: str,
        context: dict[str, Any],
        principal: dict[str, str | None],
    ) -> Alert:
        meta = active.plugin.meta
        return Alert(
            id=alert_id(meta.id, key, bucket),
            detector=meta.id,
            severity=severity,
            title=title,
            summary=meta.summary,
            runbook=meta.runbook,
            mitre=list(meta.mitre),
            tactics=list(meta.tactics),
            principal=principal,
            context=context,
            key=key,
            bucket=bucket,
            accumulate=meta.accumulate,
        )


def _joins(
    rows: Sequence[Member], new: str, active: Active, fresh: bool = True
) -> dict[str, dict[str, Member]]:
    """Per alert bucket, the members that the arrival of member ``new`` makes join an alert: the
    incremental form of :meth:`pimwatch.detection.detector.Window.reached`, the one window rule (tests hold
    the two equal in any order).

    ``rows``: the key's members within ``within`` either side of ``new`` (``new`` included), in
    (time, member) order. An alert of bucket B holds every member of every qualifying window (at
    least ``threshold`` distinct values in ``[r - within, r]``) whose end ``r`` falls in B. Before
    ``new`` arrived that held for the others (the invariant), so only the windows that contain
    ``new`` change: a window that qualified without it gains ``new`` alone; one that qualifies only
    with it joins whole, once; ``new``'s own window joins whole unless the window just before it
    already holds the rest. In any arrival order this converges on the same alerts, and a window
    that already qualified costs one fold, not a re-fold of all its members.

    A member seen before (``fresh`` false: a retry, perhaps after a crash that kept the member and
    lost its folds) re-folds every qualifying window that contains it, whole: the invariant may not
    hold for them.
    """
    me = next((r for r in rows if r.member == new), None)
    if me is None:
        return {}
    width = active.within.total_seconds()
    need = active.threshold
    ats = [r.at for r in rows]
    joins: dict[str, dict[str, Member]] = defaultdict(dict)

    def window(end: float) -> list[Member]:
        return list(rows[bisect_left(ats, end - width) : bisect_right(ats, end)])

    def without(members: Sequence[Member]) -> int:
        return len({m.value for m in members if m.member != new})

    counts: Counter[str] = Counter()
    lo = hi = 0
    mine = rows.index(me)
    for i in range(mine, len(rows)):
        r = rows[i]
        while hi < len(rows) and ats[hi] <= r.at:
            counts[rows[hi].value] += 1
            hi += 1
        while ats[lo] < r.at - width:
            counts[rows[lo].value] -= 1
            if not counts[rows[lo].value]:
                del counts[rows[lo].value]
            lo += 1
        if len(counts) < need:
            continue  # not qualifying even with ``new``
        bucket = bucket_of(r.at, active.suppress)
        before = len(counts) - (counts[me.value] == 1)  # distinct values without ``new``
        if i == mine:
            prev = rows[i - 1] if i > 0 else None
            covered = (
                fresh
                and prev is not None
                and bucket_of(prev.at, active.suppress) == bucket
                and (prev.at == r.at or hi == i + 1)  # nothing but ``new`` after prev up to r
                and without(window(prev.at)) >= need
            )
            joins[bucket].update({me.member: me} if covered else {m.member: m for m in rows[lo:hi]})
        elif before >= need and fresh:
            joins[bucket][me.member] = me
        else:
            joins[bucket].update({m.member: m for m in rows[lo:hi]})
    return joins
