"""``pimwatch pull``: read the audit and sign-in records from Microsoft Graph into the pipeline, for
tenants without Event Hub (pimwatch/graph/pull.py, docs/graph.md "Pull").

``--once`` pulls once and exits (cron); without it, it pulls every ``graph.pull.interval_seconds``
(``--interval``) until interrupted. Alerts go to the state's outbox (``--state``, required: it holds
the cursor) with the same routing and sinks as ``replay`` (queued for ``pimwatch deliver``, or sent
with ``--send``). Exit codes: 0 every endpoint was read, 1 one could not be (a missing permission,
Graph unreachable: the reason is printed; its cursor is kept) or the state could not be used, 2 a
config error or a bad ``--since``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from pimwatch.cli.output import oneline
from pimwatch.config import ConfigError, load
from pimwatch.delivery import templating
from pimwatch.delivery.deliverer import Deliverer
from pimwatch.delivery.sink import Http
from pimwatch.detection.contract import StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.timeutil import iso
from pimwatch.graph.client import GraphClient, Sleep
from pimwatch.graph.pull import DriverHost, PullResult, pull, since_time
from pimwatch.hosting.driver import Driver, ProgressTick
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore


def add_parser(sub: Any) -> None:
    pp = sub.add_parser(
        "pull",
        help="pull audit and sign-in records from Microsoft Graph into the pipeline (no Event Hub)",
    )
    pp.add_argument("--config", help="YAML config file (graph:, break_glass:, sinks:)")
    pp.add_argument("--state", required=True, help="SQLite state file (holds the cursor between runs)")
    pp.add_argument("--once", action="store_true", help="pull once and exit (for cron)")
    pp.add_argument(
        "--since", help="start here this time instead of at the cursor: an ISO-8601 time or 6h, 7d"
    )
    pp.add_argument(
        "--interval", type=float, help="seconds between pulls (default graph.pull.interval_seconds)"
    )
    pp.add_argument("--format", choices=("text", "jsonl"), default="text", help="output on stdout")
    pp.add_argument(
        "--quarantine", help="JSON Lines file for bad records (default: quarantine.jsonl beside the state)"
    )
    pp.add_argument("--send", action="store_true", help="deliver new and resolved alerts to the sinks now")


def run(
    args: argparse.Namespace,
    plugins: list[Plugin],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Sleep | None = None,
    wait: Callable[[float], None] = time.sleep,
) -> int:
    """``clock``, ``sleep`` (Graph's Retry-After waits) and ``wait`` (between pulls): for tests."""
    logging.basicConfig(level=logging.WARNING, format="pimwatch: %(levelname)s %(message)s")
    try:
        config = load(args.config, plugins)
        since = since_time(args.since, clock()) if args.since else None
    except ConfigError as exc:
        sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    except ValueError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 2
    templating.configure(config.templates)
    try:
        store = SqliteStore(args.state)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    folder = os.path.dirname(os.path.abspath(args.state))
    quarantine = Quarantine(args.quarantine or os.path.join(folder, "quarantine.jsonl"))
    pipeline = Pipeline(
        plugins, config, store, quarantine, report=lambda m: print(f"pimwatch: {m}", file=sys.stderr)
    )
    http = Http()
    deliverer = Deliverer(config.sinks, store, config.delivery, http)
    driver = Driver(pipeline, ProgressTick(), deliverer)
    interval = args.interval if args.interval is not None else config.graph.pull.interval_seconds
    code = 0
    try:
        while True:
            host = DriverHost(driver)
            now = clock()
            client = GraphClient(config.graph, sleep=sleep) if sleep is not None else None
            result = pull(config, host, now, since=since, client=client)
            since = None  # --since is for the first pull only
            _write(args.format, result, host, store, sys.stdout)
            if config.sinks and args.send:
                from pimwatch.cli.delivery import report

                report(deliverer.run(), store, sys.stderr)
            sys.stderr.write(f"pimwatch: pull: {result.requests} Graph requests\n")
            for r in result.endpoints:
                if r.error is not None:
                    sys.stderr.write(f"pimwatch: {r.endpoint}: {r.error}\n")
            code = 0 if result.complete else 1
            if args.once:
                break
            wait(interval)
    except KeyboardInterrupt:
        pass
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        code = 1
    finally:
        http.close()
        store.close()
    return code


def _write(fmt: str, result: PullResult, host: DriverHost, store: SqliteStore, out: IO[str]) -> None:
    """Per endpoint what was read; per alert this pull changed, the change and the alert."""
    for r in result.endpoints:
        if fmt == "jsonl":
            out.write(orjson.dumps(r.to_dict()).decode() + "\n")
        else:
            cursor = iso(r.cursor) if r.cursor else "-"
            state = f"ERROR: {oneline(r.error)}" if r.error else f"cursor {cursor}"
            out.write(
                f"{r.endpoint:<16} from {iso(r.start)}: {r.queries} queries, {r.pages} pages, "
                f"{r.records} records; {state}\n"
            )
    for aid, change in host.changes.items():
        alert = store.get_alert(aid)
        if alert is None:
            continue
        doc = alert.to_dict()
        if fmt == "jsonl":
            out.write(orjson.dumps({"type": "alert", "change": change, **doc}).decode() + "\n")
        else:
            out.write(
                f"  {change.upper():<8} [{doc['severity']}] {doc['detector']}: {oneline(doc['title'])}\n"
            )
    out.flush()
