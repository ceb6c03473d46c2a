"""``pimwatch route --config C --detector ID [--severity S]``: which sinks an alert goes to, and when
(after Alertmanager's ``amtool config routes test``).

The answer comes from the same ``SinkConfig.routes`` the deliverer calls, one row per sink: routed or
why not (``min_severity``, no ``detectors`` glob, an ``exclude`` glob), and when it goes out
(at once, or with the sink's digest). A row is a mapping of named fields so that new routing steps
(grouping: ``group_by``, ``group_wait``) add fields, shown as they come, without changing the others;
``--format json`` prints the rows.

Exit codes: 0 answered (whether or not any sink gets the alert), 2 usage or config error (an unknown
detector id among them).
"""

from __future__ import annotations

import argparse
import difflib
import fnmatch
import re
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from pimwatch.cli.checkconfig import config_path, known_ids, probe
from pimwatch.config import Config, ConfigError, build, load
from pimwatch.delivery.deliverer import LoadedSink, sink_module
from pimwatch.delivery.sink import SinkConfig
from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Plugin

GROUPING_KEYS = ("group_by", "group_wait_seconds", "group_wait")  # shown when a sink's config has them


def add_parser(sub: Any) -> None:
    rt = sub.add_parser("route", help="which sinks get an alert of a detector (and when)")
    rt.add_argument("--config", help="YAML config file (default: as check-config)")
    rt.add_argument("--detector", required=True, help="detector id (pimwatch detectors lists them)")
    rt.add_argument(
        "--severity",
        choices=[s.value for s in Severity],
        help="the alert's severity (default: the detector's configured severity)",
    )
    rt.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    path = config_path(args.config)
    try:
        config = _load(path, plugins)
    except ConfigError as exc:
        sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
        sys.stderr.writelines(f"  {p}\n" for p in exc.problems)
        return 2
    ids = known_ids(plugins)
    if args.detector not in ids:
        close = difflib.get_close_matches(args.detector, ids, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (pimwatch detectors lists them)"
        sys.stderr.write(f"pimwatch: unknown detector {args.detector!r}{hint}\n")
        return 2
    configured = config.detectors.get(args.detector)
    if args.severity:
        severity, source = Severity(args.severity), "given"
    elif configured is not None:
        severity, source = configured.severity, "configured"
    else:
        severity, source = Severity.HIGH, "pimwatch's own alert: see --severity"
    rows = routes(config, args.detector, severity)
    head: dict[str, Any] = {
        "config": path or "defaults",
        "detector": args.detector,
        "severity": severity.value,
        "severity_source": source,
        "enabled": configured.enabled if configured is not None else True,
    }
    if args.format == "json":
        sys.stdout.write(orjson.dumps({**head, "sinks": rows}, option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    sys.stdout.write(
        f"{args.detector} at severity {severity.value} ({source})"
        + ("" if head["enabled"] else " — the detector is disabled in this config: it raises nothing")
        + "\n"
    )
    if not rows:
        sys.stdout.write("  no sinks configured: the alert stays in the outbox (and on replay's stdout)\n")
    width = max((len(r["sink"]) + len(r["type"]) + 3 for r in rows), default=0)
    for r in rows:
        name = f"{r['sink']} ({r['type']})"
        extra = [f"{k}: {r[k]}" for k in r if k not in ("sink", "type", "routed", "reason", "when")]
        verdict = f"yes, {r['when']}" if r["routed"] else f"no: {r['reason']}"
        sys.stdout.write(f"  {name:<{width}}  {verdict}" + "".join(f"; {e}" for e in extra) + "\n")
    return 0


_UNSET = re.compile(r"^sinks\.[^:]*: environment variable \w+ is not set$")
ROUTING_KEYS = frozenset(SinkConfig.model_fields) - {"tls_ca_file", "tls_ca_pem"}


def _load(path: str | None, plugins: list[Plugin]) -> Config:
    """The config; when only sinks' ``${ENV}`` variables are missing (a workstation without the
    secrets), the sinks' routing keys alone (the rest is check-config's), with a note on stderr."""
    try:
        return load(path, plugins)
    except ConfigError as exc:
        if path is None or not all(_UNSET.match(p) for p in exc.problems):
            raise
        unset = len(exc.problems)
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    sinks = data.pop("sinks", None) or {}
    config = build(data, plugins, path)
    loaded: dict[str, LoadedSink] = {}
    problems = []
    for name, spec in sinks.items():
        module = sink_module(str(spec.get("type")))
        try:
            cfg = SinkConfig.model_validate({k: v for k, v in spec.items() if k in ROUTING_KEYS})
        except ValidationError as err:
            problems += [f"sinks.{name}.{'.'.join(map(str, d['loc']))}: {d['msg']}" for d in err.errors()]
            continue
        if module is not None:
            loaded[name] = LoadedSink(name, cfg, module)
    if problems:
        raise ConfigError(path, problems)
    sys.stderr.write(
        f"pimwatch: note: {unset} environment variable reference(s) of the sinks are not set; routing "
        "is read from the sinks' routing keys (pimwatch check-config checks the rest)\n"
    )
    return replace(config, sinks=loaded)


def routes(config: Config, detector: str, severity: Severity) -> list[dict[str, Any]]:
    """One row per sink, in the config's order."""
    alert = probe(detector, severity)
    rows = []
    for name, sink in config.sinks.items():
        row: dict[str, Any] = {"sink": name, "type": sink.config.type, "routed": sink.config.routes(alert)}
        if row["routed"]:
            row["when"] = _when(sink, severity)
        else:
            row["reason"] = _why_not(sink, detector, severity)
        for key in GROUPING_KEYS:
            value = getattr(sink.config, key, None)
            if value:
                row[key] = value
        if row["routed"] and sink.groups and config.routing.group_by:  # docs/sinks.md, grouping
            row["group"] = (
                f"one notification per group ({', '.join(config.routing.group_by)}), after "
                f"group_wait {config.routing.group_wait:g} s of event time"
            )
        rows.append(row)
    return rows


def _when(sink: LoadedSink, severity: Severity) -> str:
    cfg = sink.config
    if cfg.digest_minutes > 0 and severity.rank <= cfg.digest_severity.rank:
        return (
            f"in the digest at the end of each {cfg.digest_minutes}-minute interval "
            f"(digest_severity {cfg.digest_severity.value})"
        )
    return "at once"


def _why_not(sink: LoadedSink, detector: str, severity: Severity) -> str:
    cfg = sink.config
    if severity.rank < cfg.min_severity.rank:
        return f"below min_severity {cfg.min_severity.value}"
    if not any(fnmatch.fnmatchcase(detector, g) for g in cfg.detectors):
        return f"no detectors glob matches ({', '.join(cfg.detectors)})"
    glob = next(g for g in cfg.exclude if fnmatch.fnmatchcase(detector, g))
    return f"excluded by {glob!r}"
