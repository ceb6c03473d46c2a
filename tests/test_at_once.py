"""``delivery.at_once``: a high or critical alert is committed and handed to its sinks as soon as its
record is processed, not at the end of the Event Hub batch (pimwatch/hosting/driver.py).

Real parts: the runtime (``Runtime.handle``, what ``entra_events`` calls) on SQLite and on Azure
Tables (Azurite), a real webhook sink on a loopback HTTP server. Each request the sink receives is
stamped with how many records of the batch the pipeline had processed when it was sent (the
runtime's thread is inside the send then), so "before the batch's end" is asserted by position in the
batch, never by timing.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pimwatch.config import build
from pimwatch.detection.contract import Store
from pimwatch.detection.detector import Plugin
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tables import TableStore
from tests.functions_host import messages
from tests.loopback import Answer, Request, serve
from tests.streams import CONFIG

_PREFIXES = (f"ao{int(time.time() * 1000) % 10**9}x{i}" for i in itertools.count())


class _Positions(list[Request]):
    """The server's requests, each noted with the records processed so far when it arrived."""

    def __init__(self, processed: Callable[[], int]) -> None:
        super().__init__()
        self.processed = processed
        self.positions: list[int] = []

    def append(self, request: Request, /) -> None:
        self.positions.append(self.processed())
        super().append(request)


def _run(
    records: list[dict[str, Any]],
    plugins: list[Plugin],
    open_store: Callable[[], Store],
    tmp_path: Path,
    at_once: bool,
) -> tuple[dict[str, int], list[str], list[int], int]:
    """One batch of every record through the runtime: (outbox, webhook ids sent, the position of
    each send in the batch, records in the batch)."""
    with serve(Answer(202)) as hook:
        doc = {
            **CONFIG,
            "sinks": {"soar": {"type": "webhook", "url": hook.url + "/h", "min_severity": "high"}},
            "delivery": {"at_once": "high"} if at_once else {},
        }
        rt = Runtime(
            build(doc, plugins), plugins, open_store, Quarantine(str(tmp_path / f"q{at_once}.jsonl"))
        )
        try:
            rt.health()  # the session (store, pipeline) exists before the batch
            session = rt._session
            assert session is not None
            stats = session.pipeline.stats
            before = stats.total_records
            positions = _Positions(lambda: stats.total_records - before)
            hook.requests = positions
            report = rt.handle(messages(records))
        finally:
            rt.close()
    sent = [r.headers["webhook-id"] for r in positions]
    assert report.sent.get("soar", 0) == len(sent)
    store = open_store()
    try:
        outbox = {a.id: a.count for a in store.alerts()}
    finally:
        store.close()
    return outbox, sent, positions.positions, report.records


@pytest.mark.parametrize("backend", ["sqlite", "tables"])
def test_an_urgent_alert_reaches_its_sink_before_the_batch_ends_and_the_alerts_are_the_same(
    backend: str,
    records: list[dict[str, Any]],
    plugins: list[Plugin],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    def opener(name: str) -> Callable[[], Store]:
        if backend == "sqlite":
            return lambda: SqliteStore(str(tmp_path / f"{name}.db"))
        conn = request.getfixturevalue("azurite_storage")
        prefix = next(_PREFIXES)
        return lambda: TableStore(conn, prefix)

    at_end = _run(records, plugins, opener("end"), tmp_path, at_once=False)
    early = _run(records, plugins, opener("early"), tmp_path, at_once=True)
    outbox, sent, positions, total = early
    assert total == len(records)
    # At the end of the batch without at_once: every send after the last record.
    assert at_end[2] and set(at_end[2]) == {total}
    # With it: the first high alert is sent while the batch is still being read ...
    assert positions and positions[0] < total
    assert sum(p < total for p in positions) >= 1
    # ... and the alerts, their counts and what reaches the sink are the same, each sent once.
    assert outbox == at_end[0]
    assert sorted(sent) == sorted(at_end[1]) and len(set(sent)) == len(sent)
