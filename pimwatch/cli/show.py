"""``pimwatch show ID --state S [--format text|json] [--config C]``: an alert, its group and its
evidence (the raw records kept in the state, :mod:`pimwatch.detection.evidence`).

``ID`` is an alert id, or a group id (what a Teams card, a PagerDuty incident's dedup key or an
Opsgenie alias shows): then every alert of the group is shown. The group comes from the config's
``routing`` (``--config``; the defaults otherwise), computed from the alerts in the state.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import IO, Any

import orjson

from pimwatch.config import ConfigError, load
from pimwatch.delivery.grouping import Grouping, with_group
from pimwatch.delivery.text import clean
from pimwatch.detection import evidence
from pimwatch.detection.contract import StoreError
from pimwatch.detection.detector import Plugin
from pimwatch.state.sqlite import SqliteStore


class _Clean:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write("\n".join(clean(line) for line in text.split("\n")))


RAW_LINES = 60  # lines of one raw record in the text form (the JSON form has it whole)


def add_show_parser(sub: Any) -> None:
    sp = sub.add_parser("show", help="print an alert (or a group), its group and its evidence records")
    sp.add_argument("id", metavar="ID", help="an alert id or a group id")
    sp.add_argument("--state", required=True, help="the SQLite state file (replay --state, deliver)")
    sp.add_argument("--config", help="YAML config file (its routing decides the groups)")
    sp.add_argument("--format", choices=("text", "json"), default="text")


def run_show(args: argparse.Namespace, plugins: Sequence[Plugin]) -> int:
    try:
        grouping = load(args.config, plugins).routing
    except ConfigError as exc:
        sys.stderr.write(f"pimwatch: config error in {exc.source}:\n")
        for problem in exc.problems:
            sys.stderr.write(f"  {problem}\n")
        return 2
    if not os.path.isfile(args.state):
        sys.stderr.write(f"pimwatch: no state file {args.state!r}\n")
        return 1
    try:
        store = SqliteStore(args.state)
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: {exc}\n")
        return 1
    try:
        doc = describe(store, args.id.strip().lower(), grouping)
    finally:
        store.close()
    if doc is None:
        sys.stderr.write(f"pimwatch: no alert or group {args.id!r} in {args.state}\n")
        return 1
    if args.format == "json":
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        _text(doc, sys.stdout)
    return 0


def describe(store: SqliteStore, wanted: str, grouping: Grouping) -> dict[str, Any] | None:
    """``{"group": ..., "alerts": [{"alert", "evidence"}, ...]}`` for an alert id (that alert) or a
    group id (every alert of it, earliest first); None when neither is in the state."""
    everything = [with_group(a, grouping) for a in store.alerts()]
    found = [a for a in everything if a.id == wanted]
    gid = found[0].group if found else wanted
    members = sorted(
        (a for a in everything if a.group == gid), key=lambda a: (a.first_seen, a.detector, a.id)
    )
    if not found and not members:
        return None
    shown = found or members
    return {
        "group": {
            "id": gid,
            "grouped_by": list(grouping.group_by),
            "alerts": [
                {"id": a.id, "detector": a.detector, "severity": a.severity.value, "title": a.title}
                for a in members
            ],
        },
        "alerts": [{"alert": a.to_dict(), "evidence": evidence.records(store, a)} for a in shown],
    }


def _text(doc: dict[str, Any], raw_out: IO[str]) -> None:
    """The text form: audit text is attacker-controlled, so every line is cleaned of control and bidi
    characters before it reaches the terminal."""
    out = _Clean(raw_out)
    group = doc["group"]
    for item in doc["alerts"]:
        a = item["alert"]
        out.write(f"{a['severity'].upper()}  {a['detector']}  {a['id']}\n  {a['title']}\n")
        who = a["principal"].get("upn") or a["principal"].get("name") or a["principal"].get("id")
        out.write(f"  principal: {who}   first seen: {a['first_seen']}   last seen: {a['last_seen']}\n")
        out.write(f"  records: {a['count']}   status: {a['status']}\n")
        for name in ("request_id", "correlation_id"):
            if a["context"].get(name):
                out.write(f"  {name}: {a['context'][name]}\n")
        out.write("\n")
    out.write(f"GROUP {group['id']} (by {', '.join(group['grouped_by']) or 'nothing'}): ")
    out.write(f"{len(group['alerts'])} alert{'s' if len(group['alerts']) != 1 else ''}\n")
    for m in group["alerts"]:
        out.write(f"  {m['severity']:<8} {m['detector']:<32} {m['id']}  {m['title']}\n")
    for item in doc["alerts"]:
        records = item["evidence"]
        out.write(
            f"\nEVIDENCE of {item['alert']['id']}: {len(records)} of {item['alert']['count']} records\n"
        )
        for rec in records:
            out.write(f"--- {rec['time']}  {rec['record_id']}\n")
            if rec["raw"] is None:
                out.write("    (raw record not kept: raised by the clock, or pruned)\n")
                continue
            lines = orjson.dumps(rec["raw"], option=orjson.OPT_INDENT_2).decode().splitlines()
            for line in lines[:RAW_LINES]:
                out.write(f"    {line}\n")
            if len(lines) > RAW_LINES:
                out.write(f"    ... {len(lines) - RAW_LINES} more lines (--format json prints it whole)\n")
