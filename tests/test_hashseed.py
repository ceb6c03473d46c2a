"""Output does not depend on ``PYTHONHASHSEED``: no set or frozenset order reaches an alert.

The seed is fixed when the interpreter starts, so each run is its own process. Seeds 0 and 1 gave
two different outputs before ``activities.register`` stopped depending on the order of the
frozenset it is given ("Update conditional access policy" / "Update Conditional Access policy").
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO

SEEDS = ("0", "1")
DEMO = REPO / "samples" / "demo"

# Every detector's cases, run through the harness; their alerts as sorted-key JSON, in run order.
CASES_SCRIPT = """
import sys
import orjson
from pimwatch.detection.detector import discover
from pimwatch.testing.harness import run_records
plugins = discover()
for plugin in plugins:
    for case in plugin.cases:
        for alert in run_records(case.records, plugins, case.config)[0]:
            sys.stdout.buffer.write(orjson.dumps(alert.to_dict(), option=orjson.OPT_SORT_KEYS) + b"\\n")
"""


def _run(args: list[str], seed: str) -> bytes:
    env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout, done.stderr.decode()
    return done.stdout


def test_the_demo_day_gives_byte_identical_jsonl_under_two_hash_seeds() -> None:
    args = [
        *(sys.executable, "-m", "pimwatch", "replay", "--format", "jsonl"),
        *("--config", str(DEMO / "pimwatch.yaml"), str(DEMO / "day.eventhub.jsonl.gz")),
    ]
    first, second = (_run(args, seed) for seed in SEEDS)
    assert b"conditional_access.weakened" in first
    assert first == second


def test_every_detector_case_gives_identical_alerts_under_two_hash_seeds() -> None:
    args = [sys.executable, "-c", CASES_SCRIPT]
    first, second = (_run(args, seed) for seed in SEEDS)
    # Both spellings are read, and each record keeps its own.
    assert b'"activity":"Update Conditional Access policy"' in first
    assert b'"activity":"Update conditional access policy"' in first
    assert first == second
