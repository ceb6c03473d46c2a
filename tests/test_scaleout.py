"""Scale-out: several worker processes, one per simulated partition, share the Azure Table state.

Entra does not partition by user, so one principal's records land on every partition and every
instance: windows, dedup and alert ids must come out the same as one process replaying everything.

What this simulates: the Event Hub's partitions (the stream, in event-time order, dealt round-robin,
so each principal's records are spread over all of them; each message enqueued at its oldest record's
time, so a partition's position bounds what is still unread in it, as on a hub whose messages span
less than the detectors' allowed lateness) and the Functions instances (worker processes, each with
its own runtime built from the app settings, which name the hub's three partitions, started
together). The workers work through a backlog, so the clock-driven detectors may not tick past any
partition's position (pimwatch/state/progress.py): whichever worker runs ahead, and whatever the machine's
load, none may page for a decision another partition has not read yet. Then the partitions catch up
and the timer runs, as in production. The state is real (Azure Tables on Azurite). The Functions host
and a real Event Hub do not run here.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pimwatch.detection.detector import Plugin
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.state.tables import TableStore
from pimwatch.testing.harness import run_records
from tests.streams import BREAK_GLASS

PARTITIONS = 3
PER_MESSAGE = 10
PER_BATCH = 2  # messages per invocation


def _partition_worker(
    env: dict[str, str], messages: list[tuple[bytes, str]], partition: int, barrier: Any, out: Any
) -> None:
    os.environ.update(env)
    from pimwatch.hosting.runtime import Runtime

    rt = Runtime.from_env()
    try:
        barrier.wait()
        for i in range(0, len(messages), PER_BATCH):
            chunk = messages[i : i + PER_BATCH]
            sources = [f"eventhub:{partition}/{i + j}" for j in range(len(chunk))]
            enqueued = [parse_time(at) for _, at in chunk]  # a backlog: long before now
            rt.handle([b for b, _ in chunk], sources, partition=str(partition), enqueued=enqueued)
        out.put((partition, "ok"))
    except BaseException as exc:  # reported to the test, which fails with it
        out.put((partition, f"{type(exc).__name__}: {exc}"))
    finally:
        rt.close()


@pytest.mark.parametrize("workers", [PARTITIONS])
def test_partitions_on_several_processes_raise_what_one_replay_raises(
    workers: int,
    azurite_storage: str,
    tmp_path: Any,
    records: list[dict[str, Any]],
    plugins: list[Plugin],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"so{int(time.time() * 1000) % 10**9}"
    config = tmp_path / "pimwatch.yaml"
    config.write_text("break_glass:\n  accounts:\n" + "".join(f"    - {a}\n" for a in BREAK_GLASS))
    env = {
        "PIMWATCH_STORAGE": azurite_storage,
        "PIMWATCH_TABLE_PREFIX": prefix,
        "PIMWATCH_QUARANTINE_CONTAINER": f"q-{prefix}",
        "PIMWATCH_CONFIG": str(config),
        "PIMWATCH_EVENTHUB_PARTITIONS": str(PARTITIONS),
    }
    records = sorted(records, key=lambda r: (str(r["time"]), str(r["properties"]["id"])))
    alerts, _ = run_records(records, plugins, {"break_glass": {"accounts": list(BREAK_GLASS)}})
    expected = {a.id: (a.detector, a.count, a.status) for a in alerts}
    # Requests decided later, records the decisions of which a worker running ahead could miss.
    assert any("approval requested" in str(r.get("operationName")) for r in records)
    assert any(st == "resolved" for _, _, st in expected.values())
    # Deal the records round-robin: every principal's records end up on every partition.
    dealt = [records[p::PARTITIONS] for p in range(PARTITIONS)]
    principals = Counter(
        (r.get("properties", {}).get("initiatedBy") or {}).get("user", {}).get("id")
        for r in records
        if isinstance(r.get("properties", {}).get("initiatedBy"), dict)
    )
    busiest = next(pid for pid, _ in principals.most_common() if pid)
    assert all(
        any(
            (r.get("properties", {}).get("initiatedBy") or {}).get("user", {}).get("id") == busiest
            for r in part
        )
        for part in dealt
    )
    partitions = [
        [
            (orjson.dumps({"records": part[i : i + PER_MESSAGE]}), str(part[i]["time"]))
            for i in range(0, len(part), PER_MESSAGE)
        ]
        for part in dealt
    ]
    TableStore(azurite_storage, prefix).close()  # the tables exist before the race
    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    procs = [
        ctx.Process(target=_partition_worker, args=(env, partitions[p], p, barrier, out))
        for p in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        results = dict(out.get(timeout=300) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert results == {p: "ok" for p in range(workers)}

    # The backlog is read: every partition catches up (a message enqueued just now), the timer runs.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    from pimwatch.hosting.runtime import Runtime

    rt = Runtime.from_env()
    try:
        now = datetime.now(UTC)
        for p in range(PARTITIONS):
            rt.handle([], [], partition=str(p), enqueued=[now - timedelta(seconds=5)])
        assert rt.tick(now).tick_clock == iso(now)  # nothing behind any more: the wall clock
    finally:
        rt.close()

    store = TableStore(azurite_storage, prefix)
    got = {a.id: (a.detector, a.count, a.status) for a in store.alerts()}
    assert got == expected  # exactly: no alert more, none less, the same counts and statuses
    # Every alert queued once: no sink configured, so no delivery rows, and nothing left "new".
    assert store.deliveries() == []
    assert all(e.get("tq") is True for e in store._t["outbox"].query_entities("RowKey eq 'a'"))
    store.close()
