"""``pimwatch stats --state S``: the numbers the metrics report (docs/metrics.md), read from a SQLite
state file: alerts by severity, deliveries per sink (sent, failed and waiting for a retry, dead), the
outbox's depth, each Event Hub partition's lag when it was last noted, the watermark.

Rates and durations (records/s, batch duration, round trips per batch) are not kept in the state:
they are a run's counters, in the line the Functions app and ``pimwatch consume`` log per batch
(``seconds``, ``round_trips``, ``records``) and in Application Insights.

Exit codes: 0 done, 1 the state file could not be used.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from pimwatch.cli.prune import open_existing
from pimwatch.detection.alerts import Severity
from pimwatch.detection.contract import Store, StoreError
from pimwatch.detection.pipeline import WATERMARK
from pimwatch.detection.timeutil import iso
from pimwatch.hosting.heartbeat import last_arrival
from pimwatch.state.progress import noted

DELIVERY_COUNTS = ("sent", "failed", "pending", "dead")


def add_parser(sub: Any) -> None:
    sp = sub.add_parser("stats", help="alerts, deliveries, outbox depth and partition lag from a state file")
    sp.add_argument("--state", required=True, help="SQLite state file")
    sp.add_argument("--format", choices=("text", "json"), default="text")


def collect(store: Store, now: datetime) -> dict[str, Any]:
    """The state's numbers at ``now`` (see the module docstring); every key always present."""
    alerts = {s.value: {"open": 0, "resolved": 0} for s in sorted(Severity, key=lambda s: -s.rank)}
    for alert in store.alerts():
        alerts[alert.severity.value]["resolved" if alert.status == "resolved" else "open"] += 1
    deliveries: dict[str, dict[str, int]] = {}
    for d in store.deliveries():
        row = deliveries.setdefault(d.sink, dict.fromkeys(DELIVERY_COUNTS, 0))
        row[d.status] = row.get(d.status, 0) + 1
        if d.status == "pending" and d.attempts > 0:
            row["failed"] += 1  # failed at least once, waiting for its retry
    partitions = {
        p: {
            "enqueued": iso(enqueued),
            "noted": iso(at),
            "lag_seconds": round((at - enqueued).total_seconds(), 3),
            "noted_seconds_ago": round((now - at).total_seconds(), 3),
        }
        for p, (enqueued, at) in sorted(noted(store).items())
    }
    arrival = last_arrival(store)
    return {
        "at": iso(now),
        "watermark": store.get(WATERMARK),
        "last_arrival": iso(arrival) if arrival else None,
        "alerts": alerts,
        "deliveries": dict(sorted(deliveries.items())),
        "outbox": {
            "pending": sum(r["pending"] for r in deliveries.values()),
            "dead": sum(r["dead"] for r in deliveries.values()),
        },
        "partitions": partitions,
    }


def render(doc: dict[str, Any]) -> str:
    """The text form of :func:`collect`'s document."""
    lines = [
        f"at {doc['at']}   watermark {doc['watermark'] or '-'}   last arrival {doc['last_arrival'] or '-'}"
    ]
    lines.append("alerts      severity   open  resolved")
    for severity, n in doc["alerts"].items():
        lines.append(f"            {severity:<9} {n['open']:>5} {n['resolved']:>9}")
    lines.append(f"outbox      pending {doc['outbox']['pending']}   dead {doc['outbox']['dead']}")
    if doc["deliveries"]:
        lines.append("deliveries  sink" + " " * 17 + "".join(f"{c:>9}" for c in DELIVERY_COUNTS))
        for sink, row in doc["deliveries"].items():
            lines.append(f"            {sink:<20} " + "".join(f"{row[c]:>9}" for c in DELIVERY_COUNTS))
    if doc["partitions"]:
        lines.append("partitions  id        lag (s)  newest enqueued       noted")
        for p, row in doc["partitions"].items():
            lines.append(f"            {p:<8} {row['lag_seconds']:>8g}  {row['enqueued']}  {row['noted']}")
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace) -> int:
    store = open_existing(args.state)
    if store is None:
        return 1
    try:
        doc = collect(store, datetime.now(UTC))
    except StoreError as exc:
        sys.stderr.write(f"pimwatch: state store failed: {exc}\n")
        return 1
    finally:
        store.close()
    if args.format == "json":
        sys.stdout.write(
            orjson.dumps({"state": args.state, **doc}, option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    else:
        sys.stdout.write(f"{args.state}\n{render(doc)}")
    return 0
