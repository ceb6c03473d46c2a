"""The path of one record, written once for every host: read → route → normalize → detect → outbox.

:class:`Pipeline` feeds items to the detectors and nothing else: it never ticks the clock-driven
detectors and never commits. Ticking, the unit of work, queueing and finishing are the driver's
(:mod:`pimwatch.hosting.driver`), the same for every host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import orjson

from pimwatch.detection.activities import PIM_ACTIVITIES, canonical
from pimwatch.detection.contract import STORE_ERRORS, Store
from pimwatch.detection.detector import DetectionConfig, Plugin, Settings
from pimwatch.detection.directory import Directory, Enriched, Rechecks, enrich
from pimwatch.detection.engine import Engine
from pimwatch.detection.event import Event
from pimwatch.detection.ledger import LedgerWriter, wants_raw
from pimwatch.detection.normalize import BadRecord, _json_value, audit_event, signin_event
from pimwatch.detection.principals import LEARN_FROM
from pimwatch.detection.reader import Bad, Item, Routed, Screen, Screened, Skipped, _dump, classify
from pimwatch.detection.stats import Stats
from pimwatch.detection.timeutil import parse_time

log = logging.getLogger("pimwatch")
WATERMARK = "pipeline:watermark"
REPORT_BAD = 20  # bad records listed on stderr one by one; all of them go to the quarantine file


class Rejects(Protocol):
    """Where the pipeline keeps bad input whole (:class:`pimwatch.state.quarantine.Quarantine`)."""

    @property
    def path(self) -> str:
        """Where, for messages."""
        ...

    @property
    def count(self) -> int:
        """Bad records put so far."""
        ...

    def put(self, bad: Bad) -> None: ...
    def close(self) -> None: ...


class Pipeline:
    def __init__(
        self,
        plugins: Sequence[Plugin],
        config: DetectionConfig,
        store: Store,
        quarantine: Rejects,
        report: Callable[[str], None] = log.warning,
        *,
        recheck: bool = False,
    ):
        """``recheck``: note the posture re-checks that records ask for (the deployed app, which
        drains them: pimwatch/graph/recheck.py)."""
        self.report = report
        # What Graph says about the directory (break-glass group members): read once, here; a new
        # document makes the pipeline stale and the host builds it again (detection/directory.py).
        self.directory = Directory.read(store)
        self.stale = False
        config = Enriched(enrich(config.settings, self.directory), config.detectors)
        self.stats = Stats()
        self.store = store
        self.quarantine = quarantine
        self.engine = Engine(plugins, config, store, self.stats)
        if recheck:
            self.engine.rechecks = Rechecks(store, config.settings, self.directory)
        # The watermark: the newest event time seen, kept across runs (the driver stores it).
        mark = store.get(WATERMARK)
        self.watermark: datetime | None = parse_time(mark) if mark else None
        self.ticking = bool(self.engine.ticking)
        self.report_all_bad = False
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
        rechecks = self.engine.rechecks
        wanted: set[str] | None = set(LEARN_FROM) | (rechecks.activities if rechecks else set())
        for m in audit:
            if m.break_glass_only:
                continue
            if m.activities is None or wanted is None:
                wanted = None
            else:
                wanted |= m.activities
        self.audit_activities = frozenset(wanted) if wanted is not None else None
        self.audit_break_glass = any(m.break_glass_only for m in audit)
        # The report's ledger (pimwatch.detection.ledger), when the host keeps one: every normalized
        # event is offered to it, and the PIM and role records it keeps are read even if no detector
        # does.
        self.ledger: LedgerWriter | None = None

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
                try:
                    process(event)
                except STORE_ERRORS:
                    raise
                except Exception as exc:
                    # Not expected (detectors are isolated in the engine); if it happens, the record
                    # is kept whole rather than lost or allowed to stop the input.
                    log.exception("unexpected error on record %s line %s", item.source, item.line)
                    self.reject(
                        Bad(item.source, item.line, f"internal error: {type(exc).__name__}", _dump(item.raw))
                    )
                    continue
                if self.ledger is not None:
                    self.ledger(event)
                if self.watermark is None or event.time > self.watermark:
                    self.watermark = event.time
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
        if self.ledger is not None and (wants_raw(props, activity) or mentions(props, self.settings)):
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

    def messages(self, bodies: Sequence[bytes], sources: Sequence[str] | None = None) -> Iterator[Item]:
        """The items of Event Hub message bodies: a body that is not JSON, or that the reader cannot
        take apart, is one bad item kept whole with the reason; ``sources`` name the bodies."""
        for i, body in enumerate(bodies):
            source = sources[i] if sources is not None and i < len(sources) else "eventhub"
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                yield Bad(source, i + 1, f"malformed JSON: {exc}", _text(body))
                continue
            try:
                items = list(classify(doc, source, i + 1))
            except Exception as exc:
                log.exception("unexpected error on message %s", source)
                yield Bad(source, i + 1, f"internal error: {type(exc).__name__}", _text(body))
                continue
            yield from items

    def refresh(self) -> None:
        """Read the privileged principals other instances have learned (the sign-in screen's list),
        and whether the directory enrichment changed since this pipeline was built (:attr:`stale`)."""
        self.engine.principals.refresh()
        if Directory.read(self.store).read_at != self.directory.read_at:
            self.stale = True


def _text(body: bytes) -> str:
    return body.decode("utf-8", errors="replace")


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
