#!/usr/bin/env python3
"""CPU of a ``pimwatch consume`` process that owns no partition: before and after the waiting processor.

The hub is unreachable on purpose — ``sb://127.0.0.1/`` with nothing listening on 5671 (checked) —
the one way to have a process own no partition on a machine without an Event Hub; the checkpoints,
the ownership blobs and the state are on Azurite (started here, from ``tests/azurite.py``). Two child
processes, one after the other, each left ``--seconds`` seconds after a ``--settle`` period (imports,
Azurite tables), then stopped with SIGTERM:

- ``before``: :func:`pimwatch.hosting.consume.serve` over the SDK's own
  ``EventHubConsumerClient.receive_batch``
  (the stock ``EventProcessor``) — what ``pimwatch consume`` ran before;
- ``after``: the ``pimwatch consume`` command (``WaitingEventProcessor``,
  ``pimwatch/hosting/eventhub_processor.py``).

Reported per child: CPU seconds (user + system, ``/proc/<pid>/stat``) over the measured window, and the
whole child's CPU from ``resource.getrusage(RUSAGE_CHILDREN)`` after it exited, with its exit code.

    .venv/bin/python bench/consume_idle.py                 # 10 s windows
    .venv/bin/python bench/consume_idle.py --seconds 30
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.azurite import running_azurite  # noqa: E402

UNREACHABLE_HUB = "Endpoint=sb://127.0.0.1/;SharedAccessKeyName=listen;SharedAccessKey=bm90LWEta2V5"
BEFORE = """
import sys
from datetime import UTC, datetime
from pimwatch.hosting import consume, consume_settings as cs
from pimwatch.hosting.runtime import Runtime
import os, logging
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
settings = cs.checkpoint_settings(os.environ)
cs.ensure_container(settings)
stock = cs.open_client(cs.hub_settings(os.environ), cs.open_checkpoint_store(settings)).client
sys.exit(consume.serve(Runtime.from_env(), stock, consume.Options(start="@latest")))
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(args: list[str], env: dict[str, str], settle: float, seconds: float, log: Path) -> str:
    used_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with log.open("wb") as out:
        child = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(settle)
        if child.poll() is not None:
            raise SystemExit(f"{args[1:3]} exited early ({child.returncode}); see {log}")
        start = cpu_seconds(child.pid)
        time.sleep(seconds)
        window = cpu_seconds(child.pid) - start
        child.send_signal(signal.SIGTERM)
        code = child.wait(60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = (used.ru_utime - used_before.ru_utime) + (used.ru_stime - used_before.ru_stime)
    return f"{window:5.2f} CPU-s in {seconds:g} s (whole process: {total:.2f} CPU-s, exit {code})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="measured window (default 10)")
    ap.add_argument("--settle", type=float, default=3.0, help="start-up left out (default 3)")
    args = ap.parse_args()
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", 5671)) == 0:
            raise SystemExit("something listens on 127.0.0.1:5671: the hub would not be unreachable")
    with running_azurite() as storage, tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIMWATCH_")}
        env.update(
            PYTHONPATH=str(REPO),
            PIMWATCH_EVENTHUB=UNREACHABLE_HUB,
            PIMWATCH_EVENTHUB_NAME="entra-logs",
            PIMWATCH_CONSUMER_GROUP="pimwatch-consume",
            PIMWATCH_STORAGE=storage,
            PIMWATCH_CHECKPOINT_CONTAINER=f"cp-{uuid.uuid4().hex[:12]}",
            PIMWATCH_CONFIG=str(REPO / "samples" / "demo" / "pimwatch.yaml"),
        )
        runs = {
            "before (stock EventProcessor)": [sys.executable, "-c", BEFORE],
            "after (pimwatch consume)": [sys.executable, "-m", "pimwatch", "consume"],
        }
        for name, argv in runs.items():
            env["PIMWATCH_TABLE_PREFIX"] = f"pw{uuid.uuid4().hex[:8]}"
            log = Path(tmp) / f"{name.split()[0]}.log"
            print(f"{name:32} {measure(argv, env, args.settle, args.seconds, log)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
