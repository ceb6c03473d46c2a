"""The ``report`` sub-command: its arguments and its run. Imports pandas and matplotlib only when it
runs (they are the optional extra ``pimwatch[report]``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from datetime import datetime
from typing import Any

from pimwatch.config import ConfigError, load
from pimwatch.delivery.sink import SinkError
from pimwatch.detection.contract import StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.detection.reader import InputError, expand
from pimwatch.detection.timeutil import parse_time


def add_parser(sub: Any) -> None:
    rp = sub.add_parser(
        "report",
        help="write the PIM report (report.html and CSV files) for a period of exported or captured logs",
    )
    rp.add_argument("paths", nargs="*", metavar="PATH", help="file, folder (read recursively) or - for stdin")
    rp.add_argument("--config", help="YAML config file (break-glass accounts, business hours, detectors)")
    rp.add_argument(
        "--state",
        help="SQLite state file the detectors run on (default: a temporary database, fresh each run)",
    )
    rp.add_argument(
        "--from",
        dest="start",
        metavar="T",
        help="period start, UTC ISO 8601 (default: the first record's day)",
    )
    rp.add_argument(
        "--to",
        dest="end",
        metavar="T",
        help="period end, exclusive (default: the day after the last record's)",
    )
    rp.add_argument(
        "--mail",
        metavar="SINK",
        help="also send the summary, with report.html and the CSVs attached, through this email sink "
        "of the config",
    )
    rp.add_argument(
        "--out", default="pimwatch-report", metavar="DIR", help="output folder (default: pimwatch-report)"
    )


def _time(value: str | None, flag: str) -> datetime | None:
    if value is None:
        return None
    t = parse_time(value.strip())
    if t is None:
        raise ValueError(
            f"{flag}: not a date or time: {value!r} (expected e.g. 2026-03-16 or 2026-03-16T08:00Z)"
        )
    return t


def run(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    """Exit codes as ``replay``: 0 written, 1 input or state unreadable, 2 usage or config error."""
    try:
        from pimwatch.report.collect import collect
        from pimwatch.report.frames import build, default_period
        from pimwatch.report.render import write
    except ImportError as exc:
        sys.stderr.write(
            "pimwatch: report needs the optional extra: pip install 'pimwatch[report]' "
            f"({exc.name} missing)\n"
        )
        return 2
    try:
        start, end = _time(args.start, "--from"), _time(args.end, "--to")
    except ValueError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 2
    if not args.paths:
        sys.stderr.write("pimwatch: report: give the input files or folders (PATH)\n")
        return 2
    try:
        config = load(args.config, plugins)
    except ConfigError as exc:
        sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    sink = None
    if args.mail is not None:
        sink = config.sinks.get(args.mail)
        if sink is None or sink.config.type != "email":
            sys.stderr.write(f"pimwatch: --mail {args.mail}: the config has no email sink of that name\n")
            return 2
    skipped: Counter[str] = Counter()
    try:
        files = expand(args.paths, skipped)
    except InputError as exc:
        sys.stderr.write(f"pimwatch: cannot read input: {exc}\n")
        return 1
    try:
        os.makedirs(args.out, exist_ok=True)
    except OSError as exc:
        sys.stderr.write(f"pimwatch: cannot create the output folder {args.out}: {exc.strerror or exc}\n")
        return 1
    try:
        collected = collect(files, plugins, config, args.state, args.out)
    except (InputError, StoreError) as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    try:
        period = default_period(collected, start, end)
    except ValueError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 2
    report = build(collected, config, period)
    try:
        written = write(report, args.out, files)
    except OSError as exc:
        sys.stderr.write(f"pimwatch: cannot write the report into {args.out}: {exc.strerror or exc}\n")
        return 1
    s = report.summary
    sys.stderr.write(
        f"pimwatch: report for {s['period']}: {s['activations']} activations, {s['alerts']} alerts, "
        f"{len(report.gaps)} coverage gaps\n"
    )
    if collected.quarantined:
        sys.stderr.write(
            f"  bad records: {collected.quarantined}, quarantined in {collected.quarantine_path}\n"
        )
    for path in written:
        sys.stdout.write(path + "\n")
    if sink is not None:
        from pimwatch.report.mail import send

        try:
            answer = send(report, sink, written)
        except (SinkError, OSError) as exc:
            sys.stderr.write(f"pimwatch: the report was written but not sent: {exc}\n")
            return 1
        sys.stderr.write(f"  sent through {sink.label}: {answer}\n")
    return 0
