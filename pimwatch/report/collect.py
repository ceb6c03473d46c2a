"""Read the input once through the real pipeline: the detectors run, and the report keeps the
normalized events they saw.

:class:`ReportPipeline` is the detectors' :class:`Pipeline` with two changes: every
audit record is normalized (the report needs all of them: the audit export, what was done while
elevated), and each normalized event is also kept as a compact :class:`Rec`. Sign-ins go through the
pipeline's own screen, so the report sees the break-glass sign-ins the detectors see. The items are
tapped on their way in to note, per log category and UTC hour, that records were present (the
coverage statement). Nothing here imports pandas: frames are built from the :class:`Rec` list later.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from pimwatch.config import Config
from pimwatch.detection.alerts import Alert
from pimwatch.detection.contract import Ledger, Outbox
from pimwatch.detection.detector import Plugin
from pimwatch.detection.event import Event
from pimwatch.detection.ledger import Rec as Rec  # re-exported: the frames' input
from pimwatch.detection.ledger import read, to_rec
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import Item, Routed, _dump, read_file
from pimwatch.detection.stats import Stats
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.hosting.driver import Driver, WatermarkTick
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore


@dataclass
class Collected:
    """Everything read: the events (deduplicated by record id, sorted), the alerts, the counts."""

    recs: list[Rec]
    alerts: list[Alert]
    stats: Stats
    hours: Counter[tuple[str, str]]  # (log category, UTC hour "YYYY-MM-DDTHH") → records read
    files: list[str]
    quarantined: int = 0
    quarantine_path: str | None = None
    break_glass: list[str] = field(default_factory=list)


class ReportPipeline(Pipeline):
    """The detectors' pipeline, keeping a :class:`Rec` of every event it normalizes."""

    def __init__(self, plugins: list[Plugin], config: Config, store: SqliteStore, quarantine: Quarantine):
        super().__init__(plugins, config, store, quarantine, report=lambda _msg: None)
        self.config = config
        self.recs: dict[str, Rec] = {}

    def _wanted_audit(self, item: Routed) -> bool:
        super()._wanted_audit(item)  # counts unknown PIM activities
        return True  # the report reads every audit record; detectors only get those they route

    def normalize(self, item: Routed) -> Event:
        event = super().normalize(item)
        if event.kind == "audit" or self._wanted_signin(event):
            rec = to_rec(event, self.config.settings)
            old = self.recs.get(rec.id)
            if old is None or rec.order() < old.order():
                self.recs[rec.id] = rec
        return event

    def _wanted_signin(self, event: Event) -> bool:
        s = self.settings
        return s.is_break_glass(event.actor)


def _hour(item: Routed) -> str | None:
    props, top = item.props, item.top
    value = props.get("activityDateTime") or props.get("createdDateTime") or top.get("time")
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value.endswith("Z"):
        return value[:13]  # the common ISO UTC form, without parsing
    when = parse_time(value)
    return iso(when)[:13] if when is not None else None


def _tap(
    items: Iterable[Item], hours: Counter[tuple[str, str]], seen: set[tuple[str, int]]
) -> Iterator[Item]:
    """Count each record once per (category, hour): a duplicate (same record id) is not counted again."""
    for item in items:
        if type(item) is Routed:
            hour = _hour(item)
            rid = item.props.get("id") or item.top.get("correlationId")
            key = (item.category, hash(rid) if isinstance(rid, str) else hash(_dump(item.raw)))
            if hour is not None and key not in seen:
                seen.add(key)
                hours[(item.category, hour)] += 1
        yield item


def collect(
    paths: list[str], plugins: list[Plugin], config: Config, state: str | None, out_dir: str
) -> Collected:
    """Run the detectors over ``paths`` with the report's pipeline; ``state`` is the SQLite state
    (None: a temporary one). Bad records go to ``quarantine.jsonl`` in ``out_dir`` (only if any)."""
    tmp = None
    if state is None:
        tmp = tempfile.TemporaryDirectory(prefix="pimwatch-report-")
        state = os.path.join(tmp.name, "state.db")
    store = SqliteStore(state)
    qpath = os.path.join(out_dir, "quarantine.jsonl")
    quarantine = Quarantine(qpath)
    pipeline = ReportPipeline(plugins, config, store, quarantine)
    driver = Driver(pipeline, WatermarkTick())
    hours: Counter[tuple[str, str]] = Counter()
    seen: set[tuple[str, int]] = set()  # hashes of record ids: membership only, never ordered
    counter = [0]
    try:
        for path in paths:
            driver.feed(_tap(read_file(path, counter, None), hours, seen))
        driver.finish()
        alerts = list(store.alerts())
        store.commit()
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()
    recs = sorted(pipeline.recs.values(), key=Rec.order)
    bg = sorted(config.settings.break_glass_ids | config.settings.break_glass_upns)
    return Collected(
        recs=recs,
        alerts=alerts,
        stats=pipeline.stats,
        hours=hours,
        files=list(paths),
        quarantined=quarantine.count,
        quarantine_path=qpath if quarantine.count else None,
        break_glass=bg,
    )


class LedgerState(Ledger, Outbox, Protocol):
    """What the report reads of a deployment's state: its ledger and its alerts."""


def from_ledger(store: LedgerState, config: Config, first: str = "0000", last: str = "9999") -> Collected:
    """The report's input from the state's ledger (:mod:`pimwatch.detection.ledger`), days
    ``[first, last]`` (YYYY-MM-DD), and the state's alerts. What differs from a report of the files
    themselves is in docs/report.md (the ledger keeps PIM, role and break-glass records only)."""
    recs, marks = read(store.ledger_rows(first, last))
    hours: Counter[tuple[str, str]] = Counter((r.category, iso(r.time)[:13]) for r in recs)
    for mark in marks:
        hours[mark] += 0  # present, with no record kept
    bg = sorted(config.settings.break_glass_ids | config.settings.break_glass_upns)
    return Collected(
        recs=recs, alerts=list(store.alerts()), stats=Stats(), hours=hours, files=[], break_glass=bg
    )
