#!/usr/bin/env python3
"""The Functions handler's cost per Event Hub batch: SQLite next to the Azure Table store (Azurite).

Both runs in ONE process, on the same generated records (``../shared/bench/gen_events.py``, default
mix, ``--envelope``: Event Hub message bodies of 100 records), fed to ``Runtime.handle`` in batches of
``--messages`` messages (5 = 500 records, the default): what ``entra_events`` does per invocation.
Reported per store: records/s, and for the Table store the HTTP round trips per batch (counted by
the SDK's response hook), next to the batch's records that reach a detector and the alerts it wrote.

Azurite runs on loopback (installed from npm by ``tests/azurite.py``): its round trips cost far
less than Azure's (~5-10 ms each in region), so the round-trip count, not Azurite's records/s, is the
figure to carry over: at 5 ms a round trip, a batch's latency is about ``round trips x 5 ms``.

    .venv/bin/python bench/functions.py                 # 20,000 records, 500 per batch
    .venv/bin/python bench/functions.py --records 50000 --messages 10
"""

from __future__ import annotations

import argparse
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

GEN = REPO.parent / "shared" / "bench" / "gen_events.py"
BREAK_GLASS = ["bg-admin01@contoso.onmicrosoft.com", "bg-admin02@contoso.onmicrosoft.com"]


def bodies(records: int, work: Path) -> list[bytes]:
    out = work / "events.eh.jsonl"
    subprocess.run(
        [sys.executable, str(GEN), "-n", str(records), "--envelope", "--batch", "100", "-o", str(out)],
        check=True,
    )
    return out.read_bytes().splitlines()


def run(
    name: str, open_store: Callable[[], Store], messages: list[bytes], per_batch: int, work: Path
) -> dict[str, Any]:
    plugins = discover()
    config = build({"break_glass": {"accounts": BREAK_GLASS}}, plugins)
    rt = Runtime(config, plugins, open_store, Quarantine(str(work / f"q-{name}.jsonl")))
    trips: list[int] = []
    events: list[int] = []
    alerts: list[int] = []
    try:
        rt.health()  # open the store first: its set-up is not a batch's cost
        store = rt._session.store if rt._session else None
        started = time.perf_counter()
        for i in range(0, len(messages), per_batch):
            before = getattr(store, "round_trips", 0)
            seen = _normalized(rt)
            report = rt.handle(messages[i : i + per_batch])
            trips.append(getattr(store, "round_trips", 0) - before)
            events.append(_normalized(rt) - seen)
            alerts.append(sum(report.alerts.values()))
        elapsed = time.perf_counter() - started
    finally:
        rt.close()
    records = sum(len(orjson.loads(m)["records"]) for m in messages)
    return {
        "store": name,
        "records": records,
        "batches": len(trips),
        "seconds": round(elapsed, 2),
        "records_per_s": round(records / elapsed),
        "round_trips_per_batch_median": statistics.median(trips),
        "round_trips_per_batch_max": max(trips),
        "detector_events_per_batch_median": statistics.median(events),
        "alert_writes_per_batch_median": statistics.median(alerts),
    }


def _normalized(rt: Runtime) -> int:
    """Records that reached the detectors (not screened out before parsing)."""
    stats = rt._session.pipeline.stats if rt._session else None
    return sum(stats.records.values()) - stats.screened if stats else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--messages", type=int, default=5, help="Event Hub messages (100 records each) per batch")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pimwatch-bench-fn-") as tmp:
        work = Path(tmp)
        messages = bodies(a.records, work)
        results = [run("sqlite", lambda: SqliteStore(str(work / "state.db")), messages, a.messages, work)]
        with running_azurite() as conn:
            prefix = f"bench{int(time.time())}"
            results.append(run("table", lambda: TableStore(conn, prefix), messages, a.messages, work))
    cols = list(results[0])
    print(" | ".join(cols))
    for r in results:
        print(" | ".join(str(r[c]) for c in cols))
    ratio = results[1]["records_per_s"] / results[0]["records_per_s"]
    print(f"table/sqlite throughput ratio: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
