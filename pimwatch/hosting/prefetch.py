"""Which state a batch will read, found before it runs, so a remote store fetches it concurrently.

The batch is run once on a scratch store (an in-memory SQLite state, seeded with nothing but the
privileged principals already known): every key, window range, alert and resolve index it reads is
noted (:class:`pimwatch.state.tableunit.Reads`). Nothing of that run is kept — its alerts, its state,
its quarantine. The real run then finds most of its reads already answered; what the scratch run
could not foresee (a read whose key depends on state it did not have) is read when it comes, as
before. So the prediction changes how many round trips a batch waits for, never what it decides.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from pimwatch.config import Config
from pimwatch.detection.alerts import Alert
from pimwatch.detection.contract import MergeResult, Store
from pimwatch.detection.detector import Plugin
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import Item
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tableunit import Reads

log = logging.getLogger("pimwatch.prefetch")


class _Recorder:
    """A scratch store that notes what is read (the rest goes to the in-memory SQLite state)."""

    def __init__(self) -> None:
        self.inner = SqliteStore(":memory:")
        self.reads = Reads()

    def get(self, key: str) -> Any | None:
        self.reads.kv.add(key)
        return self.inner.get(key)

    def members(self, key: str, start: datetime, end: datetime) -> Any:
        self.reads.window(key, start.timestamp(), end.timestamp())
        return self.inner.members(key, start, end)

    def merge_alert(self, alert: Alert) -> MergeResult:
        self.reads.alerts.add(alert.id)
        return self.inner.merge_alert(alert)

    def resolve_alerts(self, detector: str, key: str, at: str) -> list[str]:
        self.reads.index.add((detector, key))
        return self.inner.resolve_alerts(detector, key, at)

    def get_alert(self, alert_id: str) -> Alert | None:
        self.reads.alerts.add(alert_id)
        return self.inner.get_alert(alert_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Predictor:
    """``predictor(items)``: the :class:`Reads` of a batch (see the module docstring)."""

    def __init__(self, plugins: Sequence[Plugin], config: Config, known: Pipeline) -> None:
        self.plugins, self.config, self.known = plugins, config, known

    def __call__(self, items: Sequence[Item]) -> Reads:
        recorder = _Recorder()
        try:
            rejects = Quarantine(os.devnull)
            scratch = Pipeline(
                self.plugins,
                self.config,
                cast(Store, recorder),
                rejects,
                report=lambda _message: None,
            )
            scratch.engine.principals.ids.update(self.known.engine.principals.ids)
            scratch.engine.principals.upns.update(self.known.engine.principals.upns)
            recorder.reads = Reads()  # what the batch reads, not the scratch pipeline's set-up
            scratch.feed(items)
            rejects.discard()
        except Exception:  # only a forecast: the real run reads whatever it was not given
            log.debug("prefetch forecast failed; the batch reads as it goes", exc_info=True)
        finally:
            recorder.inner.close()
        return recorder.reads
