"""The path of one record, written once for every host: read → route → normalize → detect → outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime

from pimwatch.activities import PIM_ACTIVITIES
from pimwatch.config import Config
from pimwatch.detector import Plugin
from pimwatch.engine import Engine
from pimwatch.event import Event
from pimwatch.normalize import BadRecord, audit_event, signin_event
from pimwatch.quarantine import Quarantine
from pimwatch.reader import Bad, Item, Routed, Skipped, _dump
from pimwatch.stats import Stats
from pimwatch.store import Store
from pimwatch.timeutil import iso

log = logging.getLogger("pimwatch")
COMMIT_EVERY = 5000


class Pipeline:
    def __init__(self, plugins: Sequence[Plugin], config: Config, store: Store, quarantine: Quarantine):
        self.stats = Stats()
        self.store = store
        self.quarantine = quarantine
        self.engine = Engine(plugins, config, store, self.stats)
        self.watermark: datetime | None = None
        self._since_commit = 0

    def feed(self, items: Iterable[Item]) -> None:
        stats = self.stats
        process = self.engine.process
        for item in items:
            if type(item) is Routed:
                try:
                    event = self.normalize(item)
                except (BadRecord, ValueError, TypeError, AttributeError) as exc:
                    self.reject(Bad(item.source, item.line, f"unusable {item.category} record: {exc}", _dump(item.raw)))
                    continue
                stats.records[(item.category, item.shape)] += 1
                if self.watermark is None or event.time > self.watermark:
                    self.watermark = event.time
                process(event)
                self._since_commit += 1
                if self._since_commit >= COMMIT_EVERY:
                    self.store.commit()
                    self._since_commit = 0
            elif type(item) is Skipped:
                stats.skipped[item.category] += 1
            elif type(item) is Bad:
                self.reject(item)

    def normalize(self, item: Routed) -> Event:
        if item.route == "signin":
            return signin_event(item.props, item.top, item.shape, item.category, item.raw)
        event = audit_event(item.props, item.top, item.shape, item.category, item.raw)
        if event.service == "PIM" and event.activity not in PIM_ACTIVITIES:
            self.stats.unknown_activities[event.activity] += 1
        return event

    def reject(self, bad: Bad) -> None:
        self.stats.bad[bad.reason.split(":", 1)[0].split(" (", 1)[0]] += 1
        log.warning("bad record at %s:%d: %s", bad.source, bad.line, bad.reason)
        self.quarantine.put(bad)

    def finish(self) -> None:
        if self.watermark is not None:
            previous = self.store.get("pipeline:watermark")
            mark = iso(self.watermark)
            if previous is None or mark > previous:
                self.store.put("pipeline:watermark", mark)
        self.store.commit()
        self.quarantine.close()
