"""Order independence, for every detector: the same records give the same alerts (ids, counts,
statuses, resolutions, every field) whatever the order, the batching, the duplicates and the dealing
to Event Hub partitions — through the harness (the replay pipeline) and through the Functions
runtime path (``Runtime.handle`` per partition with enqueued times, on SQLite, ticked at the end).

The reference is the stream replayed once in event-time order (ties by record id). The stream
(:func:`tests.streams.full_stream`) must raise an alert of every discovered detector, the ones that
join both ways and the ones that decide on an absence in their tick included.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimwatch.cli import main
from pimwatch.config import build
from pimwatch.detection.detector import discover
from pimwatch.detection.timeutil import parse_time
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing.harness import run_records
from tests.streams import BREAK_GLASS, CONFIG, full_stream

PLUGINS = discover()
IDS = {p.meta.id for p in PLUGINS}
STREAM = full_stream()


def _time(record: dict[str, Any]) -> datetime:
    t = parse_time(record["time"])
    assert t is not None
    return t


def _record_id(record: dict[str, Any]) -> str:
    return str(record["properties"]["id"])


IN_ORDER = sorted(STREAM, key=lambda r: (_time(r), _record_id(r)))
LAST = max(_time(r) for r in STREAM)
# The runtime's wall clock: before every event time, so a batch's own tick judges nothing; the one
# tick at the end (at the newest event time, as replay's finish does) judges everything.
BEFORE = min(_time(r) for r in STREAM) - timedelta(days=1)


def _dicts(alerts: Any) -> list[dict[str, Any]]:
    return sorted((a.to_dict() for a in alerts if a.detector in IDS), key=lambda a: a["id"])


def _replayed(records: list[Any]) -> list[dict[str, Any]]:
    alerts, pipeline = run_records(records, PLUGINS, CONFIG)
    assert not pipeline.stats.bad and not pipeline.stats.detector_errors
    return _dicts(alerts)


REFERENCE = _replayed(IN_ORDER)


def test_the_stream_raises_every_detector_and_resolves_some() -> None:
    assert {a["detector"] for a in REFERENCE} == IDS
    statuses = {a["status"] for a in REFERENCE}
    assert statuses == {"open", "resolved"}


def _runtime_alerts(
    tmp: Path, partitions: list[list[dict[str, Any]]], per_message: int, per_batch: int, turns: list[int]
) -> list[dict[str, Any]]:
    """Each partition's records in messages of ``per_message`` and batches of ``per_batch``; the
    partitions take turns in the order ``turns`` names (then round robin for what is left)."""
    db = str(tmp / "state.db")
    runtime = Runtime(
        build(dict(CONFIG), PLUGINS, "test config"),
        PLUGINS,
        lambda: SqliteStore(db),
        Quarantine(str(tmp / "quarantine.jsonl")),
        clock=lambda: BEFORE,
    )
    batches: list[list[list[bytes]]] = []
    for records in partitions:
        bodies = [
            orjson.dumps({"records": records[i : i + per_message]})
            for i in range(0, len(records), per_message)
        ]
        batches.append([bodies[i : i + per_batch] for i in range(0, len(bodies), per_batch)])
    order = [t % len(batches) for t in turns] + [
        p for _ in range(max(map(len, batches), default=0)) for p in range(len(batches))
    ]
    try:
        for p in order:
            if batches[p]:
                chunk = batches[p].pop(0)
                report = runtime.handle(chunk, partition=str(p), enqueued=[BEFORE] * len(chunk))
                assert report.quarantined == 0
        runtime.tick(LAST)
    finally:
        runtime.close()
    return _dicts(SqliteStore(db).alerts())


@settings(
    max_examples=12,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    order=st.permutations(range(len(STREAM))),
    dupes=st.lists(st.integers(0, len(STREAM) - 1), max_size=40),
    deal=st.lists(st.integers(0, 3), min_size=len(STREAM) + 40, max_size=len(STREAM) + 40),
    per_message=st.integers(1, 40),
    per_batch=st.integers(1, 4),
    turns=st.lists(st.integers(0, 3), max_size=30),
)
def test_any_order_batching_duplicates_and_partitions_give_the_reference_alerts(
    tmp_path_factory: pytest.TempPathFactory,
    order: list[int],
    dupes: list[int],
    deal: list[int],
    per_message: int,
    per_batch: int,
    turns: list[int],
) -> None:
    records = [STREAM[i] for i in order] + [STREAM[i] for i in dupes]
    # The replay pipeline, bare records and Event Hub envelopes.
    assert _replayed(records) == REFERENCE
    envelopes = [{"records": records[i : i + per_message]} for i in range(0, len(records), per_message)]
    assert _replayed(envelopes) == REFERENCE
    # The Functions runtime: dealt to partitions, each partition in its own order.
    partitions: list[list[dict[str, Any]]] = [[], [], [], []]
    for rec, p in zip(records, deal, strict=False):
        partitions[p].append(rec)
    tmp = tmp_path_factory.mktemp("runtime")
    assert _runtime_alerts(tmp, partitions, per_message, per_batch, turns) == REFERENCE


def test_a_risky_sign_in_read_last_raises_what_it_raises_read_first() -> None:
    """The sign-in screen lets a risky sign-in through before anything shows its user privileged
    (it screens on the record, not on what was learned so far)."""
    risky = [a for a in REFERENCE if a["detector"] == "activation.risky_session"]
    signins = [r for r in STREAM if r["category"] in ("SignInLogs", "NonInteractiveUserSignInLogs")]
    audits = [r for r in STREAM if r not in signins]
    got = [a for a in _replayed(audits + signins) if a["detector"] == "activation.risky_session"]
    assert risky and got == risky


@pytest.mark.parametrize("files", [3, 5])
def test_replay_of_a_folder_gives_the_same_jsonl_for_any_file_order(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, files: int
) -> None:
    """The same records split into files whose names sort in different orders: byte-identical jsonl."""
    config = tmp_path / "pimwatch.yaml"
    config.write_text("break_glass:\n  accounts:\n" + "".join(f"    - {a}\n" for a in BREAK_GLASS))
    chunks = [IN_ORDER[i::files] for i in range(files)]
    outputs = []
    for shift in range(files):
        folder = tmp_path / f"order{shift}"
        folder.mkdir()
        for i, chunk in enumerate(reversed(chunks) if shift % 2 else chunks):
            name = f"{(i + shift) % files:02d}.jsonl"
            (folder / name).write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in chunk))
        assert main(["replay", "--config", str(config), "--format", "jsonl", str(folder)]) == 0
        outputs.append(capsys.readouterr().out)
    assert outputs[0].count("\n") == len(REFERENCE)
    assert all(out == outputs[0] for out in outputs)
