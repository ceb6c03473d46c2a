"""The path of one record, written once for every host: read → route → normalize → detect → outbox."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pimwatch.activities import PIM_ACTIVITIES, canonical
from pimwatch.config import Config
from pimwatch.detector import Plugin, Settings
from pimwatch.engine import Engine
from pimwatch.event import Event
from pimwatch.normalize import BadRecord, _json_value, audit_event, signin_event
from pimwatch.principals import LEARN_FROM
from pimwatch.quarantine import Quarantine
from pimwatch.reader import Bad, Item, Routed, Screen, Screened, Skipped, _dump
from pimwatch.stats import Stats
from pimwatch.store import Store
from pimwatch.timeutil import iso, parse_time

log = logging.getLogger("pimwatch")
COMMIT_EVERY = 5000
TICK_EVERY = timedelta(minutes=1)
WATERMARK = "pipeline:watermark"
REPORT_BAD = 20  # bad records listed on stderr one by one; all of them go to the quarantine file


class Pipeline:
    def __init__(
        self,
        plugins: Sequence[Plugin],
        config: Config,
        store: Store,
        quarantine: Quarantine,
        report: Callable[[str], None] = log.warning,
    ):
        self.report = report
        self.stats = Stats()
        self.store = store
        self.quarantine = quarantine
        self.engine = Engine(plugins, config, store, self.stats)
        # The watermark (newest event time seen, kept across runs) drives the clock-driven
        # detectors in replay: they are ticked as it advances, and once more at the end.
        mark = store.get(WATERMARK)
        self.watermark: datetime | None = parse_time(mark) if mark else None
        self._ticked = self.watermark or datetime.min.replace(tzinfo=UTC)
        self.ticking = bool(self.engine.ticking)
        self.report_all_bad = False
        self._since_commit = 0
        # Sign-ins are ~90% of the volume. When every enabled sign-in detector only wants those of
        # break-glass accounts and those with given property values (a risk level, ...), the
        # others are counted without being normalized (or, line by line, even parsed). Both are
        # properties of the record itself: what is screened out does not depend on input order.
        signin = [a.plugin.meta for a in self.engine.by_kind.get("signin", [])]
        self.settings = s = config.settings
        self.screen: Screen | None = None
        if all(m.break_glass_only or m.signin_values for m in signin):
            values: dict[str, set[str]] = {}
            for m in signin:
                for name, listed in m.signin_values.items():
                    values.setdefault(name, set()).update(v.lower() for v in listed)
            self.screen = Screen(
                ((s.break_glass_ids, s.break_glass_upns),),
                tuple((name, frozenset(values[name])) for name in sorted(values)),
            )
        # Audit records: the activities some detector reads (None = all), and whether a record that
        # involves a break-glass account must be read whatever its activity. The records privileged
        # principals are learned from are always read.
        audit = [a.plugin.meta for a in self.engine.by_kind.get("audit", [])]
        wanted: set[str] | None = set(LEARN_FROM)
        for m in audit:
            if m.break_glass_only:
                continue
            if m.activities is None or wanted is None:
                wanted = None
            else:
                wanted |= m.activities
        self.audit_activities = frozenset(wanted) if wanted is not None else None
        self.audit_break_glass = any(m.break_glass_only for m in audit)

    def feed(self, items: Iterable[Item]) -> None:
        stats = self.stats
        process = self.engine.process
        for item in items:
            if type(item) is Screened:
                stats.records[(item.category, "eventhub")] += item.count
                stats.screened += item.count
                continue
            if type(item) is Routed:
                if item.route == "signin":
                    if self.screen is not None and not self.screen.wants(item.props):
                        stats.records[(item.category, item.shape)] += 1
                        stats.screened += 1
                        continue
                elif not self._wanted_audit(item):
                    stats.records[(item.category, item.shape)] += 1
                    stats.screened += 1
                    continue
                try:
                    event = self.normalize(item)
                except (BadRecord, ValueError, TypeError, AttributeError) as exc:
                    self.reject(
                        Bad(
                            item.source, item.line, f"unusable {item.category} record: {exc}", _dump(item.raw)
                        )
                    )
                    continue
                stats.records[(item.category, item.shape)] += 1
                process(event)
                if self.watermark is None or event.time > self.watermark:
                    self.watermark = event.time
                self._since_commit += 1
                if self._since_commit >= COMMIT_EVERY:
                    self.store.commit()
                    self._since_commit = 0
            elif type(item) is Skipped:
                stats.skipped[item.category] += 1
            elif type(item) is Bad:
                self.reject(item)

    def _wanted_audit(self, item: Routed) -> bool:
        """Count unknown PIM activities; say whether any detector reads this audit record."""
        props = item.props
        name = props.get("activityDisplayName") or item.top.get("operationName")
        if not isinstance(name, str):
            return True  # let normalization report what is wrong with it
        activity = canonical(name)
        if props.get("loggedByService") == "PIM" and activity not in PIM_ACTIVITIES:
            self.stats.unknown_activities[activity] += 1
        if self.audit_activities is None or activity in self.audit_activities:
            return True
        return self.audit_break_glass and mentions(props, self.settings)

    def normalize(self, item: Routed) -> Event:
        if item.route == "signin":
            return signin_event(item.props, item.top, item.shape, item.category, item.raw)
        return audit_event(item.props, item.top, item.shape, item.category, item.raw)

    def reject(self, bad: Bad) -> None:
        self.stats.bad[bad.reason.split(":", 1)[0].split(" (", 1)[0]] += 1
        self.quarantine.put(bad)
        shown = self.quarantine.count
        if shown <= REPORT_BAD or self.report_all_bad:
            self.report(f"bad record at {bad.source} line {bad.line}: {bad.reason}")
        elif shown == REPORT_BAD + 1:
            self.report(f"more bad records: not listed here, all are in {self.quarantine.path}")

    def finish(self) -> None:
        if self.watermark is not None:
            if self.ticking:
                self.engine.tick(self.watermark)
            self.store.put(WATERMARK, iso(self.watermark))
        self.store.commit()
        self.quarantine.close()


def mentions(props: Mapping[str, Any], settings: Settings) -> bool:
    """Whether an audit record's initiator or any target is a break-glass account (id or UPN)."""
    ids, upns = settings.break_glass_ids, settings.break_glass_upns
    if not ids and not upns:
        return False
    initiated = _json_value(props.get("initiatedBy"))
    user = _json_value(initiated.get("user")) if isinstance(initiated, Mapping) else None
    targets = _json_value(props.get("targetResources"))
    for c in (user, *(targets if isinstance(targets, list) else ())):
        if isinstance(c, Mapping):
            oid, upn = c.get("id"), c.get("userPrincipalName")
            if (isinstance(oid, str) and oid.lower() in ids) or (
                isinstance(upn, str) and upn.lower() in upns
            ):
                return True
    return False
