"""The delivery commands: ``deliver``, ``outbox list|retry|purge``, ``test-alert``, ``render``.

Exit codes: 0 done (for ``deliver``: nothing failed in this run), 1 a state file or a sink could not
be used, 2 usage or config error, 4 ``deliver`` left deliveries pending or dead.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

from pimwatch.cli.output import oneline
from pimwatch.config import Config, ConfigError, load
from pimwatch.delivery import templating
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Outcome
from pimwatch.delivery.sink import Http, SinkError, preview
from pimwatch.detection.alerts import Severity, synthetic_alert
from pimwatch.detection.contract import Delivery, StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.detection.timeutil import iso
from pimwatch.state.sqlite import SqliteStore


def add_parsers(sub: Any) -> None:
    dl = sub.add_parser("deliver", help="send what the outbox still owes the sinks (retries included)")
    dl.add_argument("--config", required=True, help="YAML config file (its sinks)")
    dl.add_argument("--state", required=True, help="SQLite state file")
    dl.add_argument("--sink", help="only this sink")
    ob = sub.add_parser("outbox", help="list, re-send or purge deliveries")
    ob.add_argument("action", choices=("list", "retry", "purge"))
    ob.add_argument("--state", required=True, help="SQLite state file")
    ob.add_argument("--status", choices=("pending", "sent", "dead"), help="list: only these; purge: which")
    ob.add_argument("--sink", help="retry: only this sink's dead letters")
    ob.add_argument("--older-than-days", type=float, default=30.0, help="purge: age (default 30)")
    ta = sub.add_parser("test-alert", help="send a synthetic alert to a sink and show what it answered")
    ta.add_argument("--config", required=True)
    ta.add_argument("--sink", required=True)
    ta.add_argument("--severity", choices=[s.value for s in Severity], default="info")
    rn = sub.add_parser("render", help="print a sink's payload for a detector's first case (templates)")
    rn.add_argument("--config", required=True)
    rn.add_argument("--sink", required=True)
    rn.add_argument("--detector", required=True)


def run(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    if args.command == "outbox":
        return _outbox(args)
    try:
        config = load(args.config, plugins)
    except ConfigError as exc:
        sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    templating.configure(config.templates)
    if args.command == "deliver":
        return _deliver(args, config)
    sink = config.sinks.get(args.sink)
    if sink is None:
        known = ", ".join(sorted(config.sinks)) or "none configured"
        sys.stderr.write(f"pimwatch: no sink named {args.sink!r} in {args.config} (sinks: {known})\n")
        return 2
    if args.command == "test-alert":
        return _test_alert(sink, Severity(args.severity))
    return _render(args, sink, plugins, config)


def report(outcome: Outcome, store: SqliteStore, err: IO[str]) -> None:
    """The delivery part of a run's summary; dead letters are always counted, never hidden."""
    for name in sorted(set(outcome.sent) | set(outcome.pending) | set(outcome.dead) | set(outcome.lost)):
        lost = outcome.lost.get(name, 0)
        err.write(
            f"  sink {name}: {outcome.sent.get(name, 0)} sent, {outcome.pending.get(name, 0)} to retry, "
            f"{outcome.dead.get(name, 0)} dead"
            + (f", {lost} taken over by another run after their lease expired" if lost else "")
            + f" — {outcome.answers.get(name, '')}\n"
        )
    dead = len(store.deliveries("dead"))
    pending = len(store.deliveries("pending"))
    err.write(f"  outbox: {pending} pending, {dead} dead letters (pimwatch outbox list --status dead)\n")


def _deliver(args: argparse.Namespace, config: Config) -> int:
    try:
        store = SqliteStore(args.state)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    http = Http()
    deliverer = Deliverer(config.sinks, store, config.delivery, http, grouping=config.routing)
    for warning in deliverer.warnings():
        sys.stderr.write(f"pimwatch: warning: {warning}\n")
    try:
        outcome = deliverer.run(only=args.sink)
    finally:
        http.close()
    report(outcome, store, sys.stderr)
    store.close()
    return 4 if outcome.pending or outcome.dead else 0


def _outbox(args: argparse.Namespace) -> int:
    try:
        store = SqliteStore(args.state)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    try:
        if args.action == "retry":
            n = store.requeue("dead", args.sink, now=time.time())
            sys.stdout.write(f"{n} dead letter(s) queued again; run pimwatch deliver to send them\n")
        elif args.action == "purge":
            status = args.status or "sent"
            n = store.purge(status, time.time() - args.older_than_days * 86400)
            sys.stdout.write(f"{n} {status} deliveries older than {args.older_than_days:g} days purged\n")
        else:
            rows = store.deliveries(args.status)
            if not rows:
                sys.stdout.write("No deliveries.\n")
            now = time.time()
            for d in rows:
                alert = store.get_alert(d.alert_id)
                title = alert.title if alert else "(alert no longer in the outbox)"
                sys.stdout.write(
                    f"{_shown_status(d, now):<8} {d.sink:<14} {d.kind:<8} attempts={d.attempts:<3} "
                    f"{d.alert_id}  {oneline(title, 100)}"
                    + (f"\n         last error: {oneline(d.last_error, 2000)}" if d.last_error else "")
                    + _lease_line(d, now)
                    + "\n"
                )
    finally:
        store.close()
    return 0


def _shown_status(d: Delivery, now: float) -> str:
    """ "claimed" for a pending delivery a deliverer is sending now (under a live lease)."""
    return "claimed" if d.status == "pending" and d.holder and d.lease_until > now else d.status


def _lease_line(d: Delivery, now: float) -> str:
    if d.status != "pending" or not d.holder:
        return ""
    until = iso(datetime.fromtimestamp(d.lease_until, UTC))
    if d.lease_until > now:
        return f"\n         claimed by {d.holder} until {until} (another run takes it over after that)"
    return f"\n         lease of {d.holder} expired at {until}: the next run takes it over"


def _test_alert(sink: LoadedSink, severity: Severity) -> int:
    alert = synthetic_alert(severity)
    if not sink.config.routes(alert):
        sys.stdout.write(f"{sink.name}: routing drops a {severity.value} alert (min_severity, detectors)\n")
    http = Http()
    try:
        answer = sink.send(sink.render([alert]), http)
    except SinkError as exc:
        sys.stdout.write(f"{sink.name}: FAILED: {exc}\n")
        return 1
    finally:
        http.close()
    sys.stdout.write(f"{sink.name}: {answer}\n")
    return 0


def _render(args: argparse.Namespace, sink: LoadedSink, plugins: list[Plugin], config: Config) -> int:
    plugin = next((p for p in plugins if p.meta.id == args.detector), None)
    if plugin is None:
        sys.stderr.write(f"pimwatch: unknown detector {args.detector!r}\n")
        return 2
    case = next((c for c in plugin.cases if c.expect), None)
    if case is None:
        sys.stderr.write(f"pimwatch: {args.detector} has no positive case to render\n")
        return 1
    from pimwatch.testing.harness import run_records  # not on replay's start-up path

    alerts, _ = run_records(case.records, plugins, case.config)
    mine = [a for a in alerts if a.detector == args.detector][:1]
    sys.stdout.write(preview(sink.render(mine)))  # what the target receives, as text
    return 0
