"""Run records through the real pipeline in memory: used by detector cases, tests and ``render``."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pimwatch.config import build
from pimwatch.detection.alerts import Alert
from pimwatch.detection.detector import Plugin
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import classify
from pimwatch.hosting.driver import BatchResult, Driver, WatermarkTick
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore


def run_records(
    records: Iterable[Any], plugins: Sequence[Plugin], config: Mapping[str, Any] | None = None
) -> tuple[list[Alert], Pipeline]:
    """Feed ``records`` (any input shape) through a fresh pipeline with SQLite ``:memory:``."""
    alerts, pipeline, _ = drive_records(records, plugins, config)
    return alerts, pipeline


def drive_records(
    records: Iterable[Any], plugins: Sequence[Plugin], config: Mapping[str, Any] | None = None
) -> tuple[list[Alert], Pipeline, BatchResult]:
    """:func:`run_records`, with what the driver returned (the alerts changed, in order). Ticks as
    replay does: once, at the end, at the watermark."""
    cfg = build(dict(config or {}), plugins, "case config")
    store = SqliteStore(":memory:")
    with tempfile.TemporaryDirectory() as tmp:
        pipeline = Pipeline(plugins, cfg, store, Quarantine(str(Path(tmp) / "quarantine.jsonl")))
        driver = Driver(pipeline, WatermarkTick())
        driver.feed(item for i, rec in enumerate(records, 1) for item in classify(rec, "case", i))
        result = driver.finish()
    return list(store.alerts()), pipeline, result


def matches(alert: Mapping[str, Any], expect: Mapping[str, Any]) -> list[str]:
    """Differences between an alert dict and a partial expectation (empty list = match)."""
    problems: list[str] = []
    for key, want in expect.items():
        if key == "title_has":
            if want not in alert["title"]:
                problems.append(f"title {alert['title']!r} lacks {want!r}")
            continue
        have = alert.get(key)
        if isinstance(want, Mapping) and isinstance(have, Mapping):
            problems += [f"{key}.{p}" for p in matches(have, want)]
        elif have != want:
            problems.append(f"{key}: expected {want!r}, got {have!r}")
    return problems
