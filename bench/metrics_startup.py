#!/usr/bin/env python3
"""What metrics add to a Functions worker's cold start: ``pimwatch.hosting.metrics.from_env()`` with
and without ``APPLICATIONINSIGHTS_CONNECTION_STRING``, in fresh processes, alternated.

Each process first imports what the Table-store runtime loads anyway (``function_app``, the Table and
Blob SDKs, azure-identity), then times ``from_env()`` alone: CPU time (the shared machine's noise
mostly cancels) and wall time. The connection string points at a closed loopback port, statsbeat is
off and the process ends without flushing, so nothing is sent. With the setting, that cost is paid
once per worker process, on the first invocation (``get_runtime``).

    .venv/bin/python bench/metrics_startup.py            # 7 processes each way
    .venv/bin/python bench/metrics_startup.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHILD = """
import json, os, sys, time
import function_app, azure.data.tables, azure.storage.blob, azure.identity
from pimwatch.hosting import metrics
c, w = time.process_time(), time.perf_counter()
m = metrics.from_env()
c, w = time.process_time() - c, time.perf_counter() - w
print(json.dumps({"enabled": m.enabled, "cpu": c, "wall": w,
                  "otel": any(n.startswith("opentelemetry") for n in sys.modules)}))
sys.stdout.flush()
os._exit(0)
"""
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://127.0.0.1:9/"


def one(enabled: bool) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
    env["APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL"] = "true"
    if enabled:
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = CONNECTION
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    doc: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["enabled"] == enabled and doc["otel"] == enabled, doc
    return doc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.runs):
        for enabled in (False, True):
            runs[enabled].append(one(enabled))
    for enabled, docs in runs.items():
        cpu = statistics.median(d["cpu"] for d in docs)
        wall = statistics.median(d["wall"] for d in docs)
        label = "with APPLICATIONINSIGHTS_CONNECTION_STRING" if enabled else "without (no-op)"
        print(f"from_env() {label:<45} CPU {cpu:.3f} s   wall {wall:.3f} s   (median of {len(docs)})")


if __name__ == "__main__":
    main()
