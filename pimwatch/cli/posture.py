"""``pimwatch posture``: run every enabled posture check against the tenant now.

Findings are alerts in the state's outbox (``--state``; default a temporary one, so every finding is
new): the same routing and sinks as the detectors' (queued for ``pimwatch deliver``, or sent with
``--send``). Exit codes: 0 every check ran (whatever it found), 1 a check could not run (a missing
permission, Graph unreachable: the reason is printed) or the state file could not be used, 2 a config
or baseline error.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from pimwatch.config import ConfigError, load
from pimwatch.delivery.deliverer import Deliverer
from pimwatch.delivery.sink import Http
from pimwatch.detection.contract import StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.graph.client import GraphError
from pimwatch.graph.posture import Outcome
from pimwatch.graph.run import check_tenant, record
from pimwatch.state.sqlite import SqliteStore


def add_parser(sub: Any) -> None:
    pp = sub.add_parser(
        "posture", help="check the tenant's PIM posture against the baseline (Microsoft Graph)"
    )
    pp.add_argument("--config", help="YAML config file (graph:, posture:, break_glass:, sinks:)")
    pp.add_argument("--state", help="SQLite state file (default: a temporary one, fresh each run)")
    pp.add_argument("--format", choices=("text", "jsonl"), default="text", help="output on stdout")
    pp.add_argument("--baseline", help="baseline YAML (default: posture.baseline, else the guide's tiers)")
    pp.add_argument("--send", action="store_true", help="deliver new and resolved findings to the sinks now")


def run(args: argparse.Namespace, plugins: list[Plugin], now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    try:
        config = load(args.config, plugins)
        if args.baseline:
            config = _with_baseline(config, args.baseline)
        outcome, _ = check_tenant(config, now)
    except ConfigError as exc:
        sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    except GraphError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    tmp = None
    path = args.state
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="pimwatch-")
        path = os.path.join(tmp.name, "state.db")
    try:
        store = SqliteStore(path)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    http = Http()
    deliverer = Deliverer(config.sinks, store, config.delivery, http)
    try:
        changes = dict(record(store, outcome, now, deliverer))
        _write(args.format, outcome, changes, store, sys.stdout)
        if config.sinks and args.send:
            from pimwatch.cli.delivery import report

            report(deliverer.run(), store, sys.stderr)
    finally:
        http.close()
        store.close()
        if tmp is not None:
            tmp.cleanup()
    sys.stderr.write(f"pimwatch: posture: {outcome.requests} Graph requests\n")
    for c in outcome.checks:
        if c.status != "ran":
            sys.stderr.write(f"pimwatch: {c.id} {c.status}: {c.reason}\n")
    return 0 if outcome.complete else 1


def _with_baseline(config: Any, path: str) -> Any:
    from dataclasses import replace

    return replace(config, posture=config.posture.model_copy(update={"baseline": path}))


def _write(fmt: str, outcome: Outcome, changes: Mapping[str, str], store: SqliteStore, out: IO[str]) -> None:
    """Per check its status; per finding its alert (``change``: new, open, or resolved)."""
    resolved = [store.get_alert(aid) for aid, ch in changes.items() if ch == "resolved"]
    for c in outcome.checks:
        if fmt == "jsonl":
            out.write(
                orjson.dumps({"type": "check", "id": c.id, "status": c.status, "reason": c.reason}).decode()
                + "\n"
            )
        else:
            state = (
                f"{len(c.findings)} finding(s)" if c.status == "ran" else f"{c.status.upper()}: {c.reason}"
            )
            out.write(f"{c.id:<32} {state}\n")
    for c in outcome.checks:
        for f in c.findings:
            alert = next((a for a in _open(store, c.id, f.key)), None)
            if alert is None:
                continue
            change = "new" if changes.get(alert.id) == "new" else "open"
            _finding(fmt, change, alert.to_dict(), out)
    for a in resolved:
        if a is not None:
            _finding(fmt, "resolved", a.to_dict(), out)


def _open(store: SqliteStore, check: str, key: str) -> list[Any]:
    from pimwatch.detection.alerts import alert_id
    from pimwatch.graph.posture import OPEN

    episodes = store.get(OPEN + check) or {}
    start = episodes.get(key)
    found = store.get_alert(alert_id(check, key, start)) if start else None
    return [found] if found is not None else []


def _finding(fmt: str, change: str, alert: dict[str, Any], out: IO[str]) -> None:
    if fmt == "jsonl":
        out.write(orjson.dumps({"type": "finding", "change": change, **alert}).decode() + "\n")
    else:
        out.write(f"  {change.upper():<8} [{alert['severity']}] {alert['detector']}: {alert['title']}\n")
