"""``pimwatch`` command line: ``replay`` exported logs, list the ``detectors``; the other commands
live in the modules next to this one (``check-config``, ``route``, ``init``, ``completion``, ...).

Exit codes: 0 the run completed (whatever it found), 1 an input path could not be read,
2 usage or config error (reported before any input is read), 3 (``replay --strict`` only) an input
file gave no usable record, mostly bad or skipped ones, or lost fields (``cli/inputs.py``),
141 (any command) stdout was closed before all output was written (``| head``): 128 + SIGPIPE, as a
shell reports for other tools; replay still completes the run (state, ``--send``, the summary).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import orjson

from pimwatch import __version__
from pimwatch.cli import checkconfig, completion, init, route
from pimwatch.cli.archive import add_parser as add_archive_parser
from pimwatch.cli.archive import run as run_archive
from pimwatch.cli.catalogue import render_markdown
from pimwatch.cli.consume import add_parsers as add_consume_parser
from pimwatch.cli.consume import run as run_consume
from pimwatch.cli.delivery import add_parsers, report
from pimwatch.cli.delivery import run as run_delivery
from pimwatch.cli.inputs import Checks, Note
from pimwatch.cli.output import EXIT_PIPE, PipeOut, Writer, oneline, stdout_gone, table, terminal_columns
from pimwatch.cli.posture import add_parser as add_posture_parser
from pimwatch.cli.posture import run as run_posture
from pimwatch.cli.progress import Progress, input_size, wanted
from pimwatch.cli.prune import add_parser as add_prune_parser
from pimwatch.cli.prune import run as run_prune
from pimwatch.cli.pull import add_parser as add_pull_parser
from pimwatch.cli.pull import run as run_pull
from pimwatch.cli.show import add_show_parser, run_show
from pimwatch.cli.stats import add_parser as add_stats_parser
from pimwatch.cli.stats import run as run_stats
from pimwatch.config import ConfigError, load
from pimwatch.delivery import templating
from pimwatch.delivery.deliverer import Deliverer
from pimwatch.delivery.grouping import with_group
from pimwatch.delivery.sink import Http
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.contract import StoreError
from pimwatch.detection.detector import Plugin, discover
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import UNREADABLE, InputError, expand, read_file
from pimwatch.hosting.driver import Driver, WatermarkTick
from pimwatch.hosting.gcfreeze import settle
from pimwatch.report import command as report_command
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore

DEFAULT_QUARANTINE = "pimwatch-quarantine.jsonl"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pimwatch", description="Alerts on Entra PIM and break-glass activity.")
    ap.add_argument("--version", action="version", version=f"pimwatch {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)
    rp = sub.add_parser("replay", help="run the detectors over exported or captured log files")
    rp.add_argument("paths", nargs="+", metavar="PATH", help="file, folder (read recursively) or - for stdin")
    rp.add_argument("--config", help="YAML config file")
    rp.add_argument("--state", help="SQLite state file (default: a temporary database, fresh each run)")
    rp.add_argument("--format", choices=("text", "jsonl"), default="text", help="alert output on stdout")
    rp.add_argument(
        "--quarantine",
        help=f"JSON Lines file for bad records (default: {DEFAULT_QUARANTINE} in the current folder, "
        "created only when there is a bad record)",
    )
    rp.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (drawn on stderr only when it is a terminal)",
    )
    rp.add_argument(
        "--verbose", "-v", action="store_true", help="list every bad record on stderr (default: the first 20)"
    )
    rp.add_argument(
        "--send",
        action="store_true",
        help="deliver the new and resolved alerts to the configured sinks (default: a dry run; they "
        "stay queued in the state for 'pimwatch deliver')",
    )
    rp.add_argument(
        "--strict",
        action="store_true",
        help="exit 3 when an input file gave no usable record, mostly bad or skipped records, or lost "
        "fields (Export-Csv); such files are named on stderr either way",
    )
    add_parsers(sub)
    add_archive_parser(sub)
    add_consume_parser(sub)
    add_prune_parser(sub)
    add_show_parser(sub)
    add_posture_parser(sub)
    add_pull_parser(sub)
    report_command.add_parser(sub)
    checkconfig.add_parser(sub)
    route.add_parser(sub)
    init.add_parser(sub)
    completion.add_parser(sub)
    add_stats_parser(sub)
    dp = sub.add_parser("detectors", help="list the detector catalogue")
    dp.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    dp.add_argument("--config", help="show parameters as configured in this YAML file")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # `pimwatch detectors | head -1`: the reader stopped; no traceback
        stdout_gone()
        return EXIT_PIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "init":
        return init.run(args)
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every request at INFO
    plugins = discover()
    if args.command == "completion":
        return completion.run(args, parser, [p.meta.id for p in plugins])
    if args.command == "check-config":
        return checkconfig.run(args, plugins)
    if args.command == "route":
        return route.run(args, plugins)
    if args.command == "detectors":
        return _detectors(args, plugins)
    if args.command == "archive":
        return run_archive(args)
    if args.command == "consume":
        return run_consume(args, plugins)
    if args.command == "posture":
        return run_posture(args, plugins)
    if args.command == "stats":
        return run_stats(args)
    if args.command == "pull":
        return run_pull(args, plugins)
    if args.command == "prune":
        try:
            return run_prune(args, load(args.config, plugins), plugins)
        except ConfigError as exc:
            return _config_error(exc)
    if args.command == "show":
        return run_show(args, plugins)
    if args.command == "report":
        return report_command.run(args, plugins)
    if args.command != "replay":
        return run_delivery(args, plugins)
    return _replay(args, plugins)


def _detectors(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    try:
        config = load(args.config, plugins)
    except ConfigError as exc:
        return _config_error(exc)
    rows: list[dict[str, Any]] = []
    for p in plugins:
        cfg = config.detectors[p.meta.id]
        rows.append(
            {
                "id": p.meta.id,
                "severity": cfg.severity.value,
                "enabled": cfg.enabled,
                "summary": p.meta.summary,
                "mitre": list(p.meta.mitre),
                "tactics": list(p.meta.tactics),
                "anchors": list(p.meta.anchors),
                "inputs": list(p.meta.kinds),
                "parameters": cfg.values(),
                "defaults": p.meta.defaults(),
                "runbook": p.meta.runbook,
            }
        )
    if args.format == "json":
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    if args.format == "markdown":
        sys.stdout.write(render_markdown(plugins))
        return 0
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["parameters"].items()) or "-"
        state = "" if r["enabled"] else "  [disabled]"
        sys.stdout.write(f"{r['id']:<30} {r['severity']:<9} {params}{state}\n    {r['summary']}\n")
    return 0


def _config_error(exc: ConfigError) -> int:
    sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
    for problem in exc.problems:
        sys.stderr.write(f"  {problem}\n")
    return 2


def _replay(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    logging.basicConfig(level=logging.WARNING, format="pimwatch: %(levelname)s %(message)s")
    try:
        config = load(args.config, plugins)
    except ConfigError as exc:
        return _config_error(exc)
    templating.configure(config.templates)
    skipped: Counter[str] = Counter()
    try:
        files = expand(args.paths, skipped)
    except InputError as exc:
        sys.stderr.write(f"pimwatch: cannot read input: {exc}\n")
        return 1
    if skipped:
        why = ", ".join(f"{n:,} {reason}" for reason, n in sorted(skipped.items()))
        sys.stderr.write(f"pimwatch: in the folders, not read: {why}\n")
    tmpdir = None
    state_path = args.state
    if state_path is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="pimwatch-")
        state_path = os.path.join(tmpdir.name, "state.db")
    try:
        store = SqliteStore(state_path)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    quarantine = Quarantine(args.quarantine or DEFAULT_QUARANTINE)
    pipeline = Pipeline(
        plugins, config, store, quarantine, report=lambda msg: print(f"pimwatch: {msg}", file=sys.stderr)
    )
    pipeline.report_all_bad = args.verbose
    http = Http()
    deliverer = Deliverer(config.sinks, store, config.delivery, http, grouping=config.routing)
    for warning in deliverer.warnings():
        sys.stderr.write(f"pimwatch: warning: {warning}\n")
    driver = Driver(pipeline, WatermarkTick(), deliverer)
    counter = [0]
    unreadable = 0
    checks = Checks(pipeline.stats)
    started = time.perf_counter()
    settle()
    bar = Progress(sys.stderr, counter, input_size(files)) if wanted(sys.stderr, args.no_progress) else None
    try:
        for path in files:
            checks.before()
            try:
                items = read_file(path, counter, pipeline.screen)
                driver.feed(bar.wrap(items) if bar is not None else items)
            except InputError as exc:
                unreadable += 1
                sys.stderr.write(f"pimwatch: cannot read input: {exc}\n")
                checks.unopened(path, str(exc))
                continue
            checks.after(path)
        result = driver.finish()
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: state store failed: {exc}\n")
        return 1
    elapsed = time.perf_counter() - started
    if bar is not None:
        bar.close()
    changed = result.summary()
    # Streamed from the outbox in first-seen order: memory does not grow with the number of alerts.
    alerts = (with_group(a, config.routing) for a in store.alerts() if a.id in changed)
    out = PipeOut(sys.stdout)  # `| head`: the run still completes, quietly (exit 141)
    if args.format == "jsonl":
        by_severity = _jsonl(alerts, out)
    else:
        by_severity = table(alerts, out, terminal_columns(sys.stdout))
    out.flush()
    store.commit()
    _summary(pipeline, by_severity, changed, elapsed, counter[0], quarantine, sys.stderr)
    if config.sinks:
        if args.send:
            report(deliverer.run(), store, sys.stderr)
        else:
            sys.stderr.write(
                "  delivery: dry run (--send delivers; "
                + (
                    "alerts queued in the state for 'pimwatch deliver')\n"
                    if args.state
                    else "no --state, nothing kept)\n"
                )
            )
    _notes(checks.notes, sys.stderr)
    http.close()
    store.close()
    if tmpdir is not None:
        tmpdir.cleanup()
    if unreadable or pipeline.stats.bad.get(UNREADABLE):
        return 1
    if args.strict and checks.notes:
        return 3
    return EXIT_PIPE if out.closed else 0


def _notes(notes: Sequence[Note], err: IO[str], shown: int = 20) -> None:
    """The input files to look at, last on stderr, where a person looks."""
    if not notes:
        return
    err.write(f"pimwatch: {len(notes)} input file note{'s' if len(notes) > 1 else ''} (check these):\n")
    for note in notes[:shown]:
        err.write(f"  {oneline(note.path, 200)}: {oneline(note.reason, 2000)}\n")
    if len(notes) > shown:
        err.write(f"  ... and {len(notes) - shown} more\n")


def _jsonl(alerts: Iterable[Alert], out: Writer) -> Counter[Severity]:
    by_severity: Counter[Severity] = Counter()
    for a in alerts:
        by_severity[a.severity] += 1
        out.write(orjson.dumps(a.to_dict()).decode() + "\n")
    return by_severity


def _summary(
    pipeline: Pipeline,
    by_severity: Counter[Severity],
    changed: Mapping[str, str],
    elapsed: float,
    nbytes: int,
    quarantine: Quarantine,
    err: IO[str],
) -> None:
    st = pipeline.stats
    total = st.total_records
    rate = total / elapsed if elapsed > 0 else 0.0
    err.write(
        f"pimwatch: {total:,} records in {elapsed:.2f} s ({rate:,.0f} records/s, "
        f"{nbytes / 1e6 / max(elapsed, 1e-9):,.1f} MB/s)\n"
    )
    read = ", ".join(f"{c}/{s} {n:,}" for (c, s), n in sorted(st.records.items())) or "none"
    err.write(f"  read: {read}\n")
    if st.screened:
        err.write(f"  of which no enabled detector reads (counted, not normalized): {st.screened:,}\n")
    _counts(err, "skipped (other categories)", st.skipped)
    if st.bad:
        reasons = ", ".join(f"{r} {n:,}" for r, n in st.bad.most_common())
        err.write(f"  bad records: {sum(st.bad.values()):,} ({reasons}), quarantined in {quarantine.path}\n")
    if st.unknown_activities:
        names = ", ".join(f"{a!r} {n}" for a, n in st.unknown_activities.most_common(10))
        err.write(f"  unknown PIM activities (passed through): {names}\n")
    _counts(err, "records a detector skipped (missing fields)", st.detector_skipped)
    _counts(err, "detector errors (isolated, see the log)", st.detector_errors)
    sev = ", ".join(f"{by_severity[s]} {s.value}" for s in reversed(Severity) if by_severity[s]) or "none"
    new = sum(1 for v in changed.values() if v == "new")
    resolved = sum(1 for v in changed.values() if v == "resolved")
    err.write(f"  alerts: {sev} ({new} new, {len(changed) - new - resolved} updated, {resolved} resolved)\n")


def _counts(err: IO[str], label: str, counter: Mapping[str, int]) -> None:
    if counter:
        err.write(f"  {label}: " + ", ".join(f"{k} {n:,}" for k, n in sorted(counter.items())) + "\n")
