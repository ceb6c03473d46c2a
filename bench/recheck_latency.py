"""From an ``Update role setting in PIM`` record to the drift finding in the outbox, against the local
Graph on loopback (pimwatch/graph/fake.py), through the real runtime (SQLite state).

    .venv/bin/python bench/recheck_latency.py [runs]

Per run: a fresh state; the record goes through ``Runtime.handle`` (the Event Hub batch: it only
queues the re-check), then the ``recheck`` timer's work (``pimwatch.graph.recheck.timer``: drain,
targeted Graph reads, findings applied and committed) runs at once. Printed: the median and worst
wall and CPU time of that path, and the Graph requests it made. In Azure the timer fires every
10 seconds, so the time to the finding is this plus up to 10 s of waiting for the next tick
(plus the Event Hub delivery delay, which is Entra's). The first run (imports, the Graph client's
first build) is reported apart. The enrichment is read before the record (a running worker
has it; its TTL is an hour), so the reads are the re-check's only.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from pimwatch.config import build
from pimwatch.detection.activities import ROLE_SETTING_UPDATED
from pimwatch.detection.detector import Plugin, discover
from pimwatch.detection.records import pim, user
from pimwatch.detection.timeutil import iso
from pimwatch.graph import recheck
from pimwatch.graph.fake import serve
from pimwatch.graph.tenants import BREAK_GLASS, GA, violating
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def one(url: str, plugins: list[Plugin], folder: Path, n: int) -> tuple[float, float, int]:
    config = build(
        {"graph": {"endpoint": url, "credential": "none"}, "break_glass": {"accounts": list(BREAK_GLASS)}},
        plugins,
        "bench",
    )
    db = str(folder / f"state{n}.db")
    runtime = Runtime(config, plugins, lambda: SqliteStore(db), Quarantine(str(folder / f"q{n}.jsonl")))
    at = NOW + timedelta(minutes=n)
    body = orjson.dumps(
        {"records": [pim(ROLE_SETTING_UPDATED, iso(at), user("changer"), role=("Global Administrator", GA))]}
    )
    try:
        recheck.timer(runtime, at - timedelta(minutes=1))  # a running worker: enrichment read, store open
        wall, cpu = time.perf_counter(), time.process_time()
        runtime.handle([body])
        report = recheck.timer(runtime, at + timedelta(seconds=1))
        found = runtime.work(lambda s: [a for a in s.alerts() if a.detector == "posture.policy_drift"])
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        runtime.close()
    assert len(found) == 1, found
    return wall, cpu, int(report["requests"])


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    plugins = discover()
    with serve(violating(NOW).copy()) as g, tempfile.TemporaryDirectory() as tmp:
        first = one(g.url, plugins, Path(tmp), 0)
        got = [one(g.url, plugins, Path(tmp), n) for n in range(1, runs + 1)]
    walls, cpus = [w for w, _, _ in got], [c for _, c, _ in got]
    print(f"first run (imports, first client): wall {first[0] * 1000:.0f} ms, CPU {first[1] * 1000:.0f} ms")
    median = statistics.median(walls) * 1000
    print(
        f"record -> drift finding in the outbox, {runs} runs: wall median {median:.0f} ms"
        f" (max {max(walls) * 1000:.0f}), CPU median {statistics.median(cpus) * 1000:.0f} ms;"
        f" Graph requests {sorted({r for _, _, r in got})}"
    )


if __name__ == "__main__":
    main()
