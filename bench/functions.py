#!/usr/bin/env python3
"""The Functions handler's cost per Event Hub batch: SQLite next to the Azure Table store (Azurite).

Both runs in ONE process, on the same generated records (``../shared/bench/gen_events.py``, default
mix, ``--envelope``: Event Hub message bodies of 100 records), fed to ``Runtime.handle`` in batches of
``--messages`` messages (5 = 500 records, the default): what ``entra_events`` does per invocation.
Reported per store: records/s, and for the Table store per batch the HTTP requests and the round
trips the batch waits for (requests made concurrently count once: their longest chain), both counted
by the SDK's response hook, next to the batch's records that reach a detector and the alerts it wrote.

Then the same with a webhook sink on loopback (``min_severity: high``, ``delivery.at_once: high``)
and, for comparison, without ``at_once``: the **first-alert latency** of a batch is the time from the
start of ``handle`` to the sink's first request, and the round trips waited for before it.

Azurite runs on loopback (installed from npm by ``tests/azurite.py``): its round trips cost far
less than Azure's (~5-10 ms each in region), so the round-trip count, not Azurite's records/s, is the
figure to carry over: at 5 ms a round trip, a batch's latency is about ``round trips x 5 ms`` plus
the client's CPU time.

    .venv/bin/python bench/functions.py                 # 20,000 records, 500 per batch
    .venv/bin/python bench/functions.py --records 50000 --messages 10 --no-sink
"""

from __future__ import annotations

import argparse
import functools
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pimwatch.config import build  # noqa: E402
from pimwatch.detection.contract import Store  # noqa: E402
from pimwatch.detection.detector import discover  # noqa: E402
from pimwatch.hosting.runtime import Runtime  # noqa: E402
from pimwatch.state.quarantine import Quarantine  # noqa: E402
from pimwatch.state.sqlite import SqliteStore  # noqa: E402
from pimwatch.state.tables import TableStore  # noqa: E402
from tests.azurite import running_azurite  # noqa: E402
from tests.loopback import Answer, Request, serve  # noqa: E402

GEN = REPO.parent / "shared" / "bench" / "gen_events.py"
BREAK_GLASS = ["bg-admin01@contoso.onmicrosoft.com", "bg-admin02@contoso.onmicrosoft.com"]


def bodies(records: int, work: Path) -> list[bytes]:
    out = work / "events.eh.jsonl"
    subprocess.run(
        [sys.executable, str(GEN), "-n", str(records), "--envelope", "--batch", "100", "-o", str(out)],
        check=True,
    )
    return out.read_bytes().splitlines()


class _Stamped(list[Request]):
    """The loopback server's requests, each stamped on arrival (perf_counter, round trips so far)."""

    def __init__(self, trips: Callable[[], int]) -> None:
        super().__init__()
        self.trips = trips
        self.stamps: list[tuple[float, int]] = []

    def append(self, request: Request, /) -> None:
        self.stamps.append((time.perf_counter(), self.trips()))
        super().append(request)


def run(
    name: str,
    open_store: Callable[[], Store],
    messages: list[bytes],
    per_batch: int,
    work: Path,
    sink: str | None = None,
) -> dict[str, Any]:
    """``sink``: None (no sink), "at_once" or "at_end" (a loopback webhook for high alerts)."""
    plugins = discover()
    doc: dict[str, Any] = {"break_glass": {"accounts": BREAK_GLASS}}
    with serve(Answer(202)) as hook:
        if sink is not None:
            doc["sinks"] = {"soar": {"type": "webhook", "url": hook.url + "/h", "min_severity": "high"}}
            doc["delivery"] = {"at_once": "high"} if sink == "at_once" else {}
        config = build(doc, plugins)
        rt = Runtime(config, plugins, open_store, Quarantine(str(work / f"q-{name}-{sink}.jsonl")))
        requests: list[int] = []
        trips: list[int] = []
        events: list[int] = []
        alerts: list[int] = []
        first: list[tuple[float, int]] = []  # per batch with a sink call: (seconds, round trips) before it
        try:
            rt.health()  # open the store first: its set-up is not a batch's cost
            store = rt._session.store if rt._session else None
            stamped = _Stamped(lambda: getattr(store, "round_trips", 0))
            hook.requests = stamped
            started = time.perf_counter()
            for i in range(0, len(messages), per_batch):
                before = getattr(store, "round_trips", 0)
                asked = getattr(store, "requests", 0)
                seen = _normalized(rt)
                sent = len(stamped.stamps)
                t0 = time.perf_counter()
                report = rt.handle(messages[i : i + per_batch])
                trips.append(getattr(store, "round_trips", 0) - before)
                requests.append(getattr(store, "requests", 0) - asked)
                events.append(_normalized(rt) - seen)
                alerts.append(sum(report.alerts.values()))
                if len(stamped.stamps) > sent:
                    at, trips_then = stamped.stamps[sent]
                    first.append((at - t0, trips_then - before))
            elapsed = time.perf_counter() - started
        finally:
            rt.close()
    records = sum(len(orjson.loads(m)["records"]) for m in messages)
    out = {
        "store": name,
        "sink": sink or "-",
        "records": records,
        "batches": len(trips),
        "seconds": round(elapsed, 2),
        "records_per_s": round(records / elapsed),
        "requests_per_batch_median": statistics.median(requests),
        "round_trips_per_batch_median": statistics.median(trips),
        "round_trips_per_batch_p90": _p90(trips),
        "round_trips_per_batch_max": max(trips),
        "detector_events_per_batch_median": statistics.median(events),
        "alert_writes_per_batch_median": statistics.median(alerts),
        "first_alert_ms_median": "-",
        "first_alert_ms_max": "-",
        "round_trips_before_first_alert_median": "-",
    }
    if first:
        out["first_alert_ms_median"] = round(statistics.median(s for s, _ in first) * 1000, 1)
        out["first_alert_ms_max"] = round(max(s for s, _ in first) * 1000, 1)
        out["round_trips_before_first_alert_median"] = statistics.median(n for _, n in first)
    return out


def _p90(values: list[int]) -> float:
    return sorted(values)[min(len(values) - 1, int(0.9 * len(values)))]


def _normalized(rt: Runtime) -> int:
    """Records that reached the detectors (not screened out before parsing)."""
    stats = rt._session.pipeline.stats if rt._session else None
    return sum(stats.records.values()) - stats.screened if stats else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--messages", type=int, default=5, help="Event Hub messages (100 records each) per batch")
    ap.add_argument("--no-sink", action="store_true", help="only the runs without a sink")
    a = ap.parse_args()
    sinks: list[str | None] = [None] if a.no_sink else [None, "at_once", "at_end"]
    results = []
    with tempfile.TemporaryDirectory(prefix="pimwatch-bench-fn-") as tmp:
        work = Path(tmp)
        messages = bodies(a.records, work)
        with running_azurite() as conn:
            for n, sink in enumerate(sinks):
                sqlite = functools.partial(SqliteStore, str(work / f"state-{n}.db"))
                results.append(run("sqlite", sqlite, messages, a.messages, work, sink))
                tables = functools.partial(TableStore, conn, f"bench{int(time.time())}n{n}")
                results.append(run("table", tables, messages, a.messages, work, sink))
    cols = list(results[0])
    for r in results:  # one block per run: the columns are many
        print(" | ".join(f"{c}={r[c]}" for c in cols))
    ratio = results[1]["records_per_s"] / results[0]["records_per_s"]
    print(f"table/sqlite throughput ratio (no sink): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
