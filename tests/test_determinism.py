"""The same set of records gives the same alerts, with the same ids, whatever the order, the batching
(bare records or Event Hub envelopes of any size) or the number of deliveries."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pimwatch.detection.detector import discover
from pimwatch.testing.harness import run_records
from tests.streams import CONFIG, full_stream

PLUGINS = discover()
STREAM = full_stream()


def _alerts(records: list[Any]) -> list[dict[str, Any]]:
    alerts, pipeline = run_records(records, PLUGINS, CONFIG)
    assert not pipeline.stats.bad and not pipeline.stats.detector_errors
    return sorted((a.to_dict() for a in alerts), key=lambda a: a["id"])


BASELINE = _alerts(STREAM)


def test_baseline_has_alerts_of_every_detector() -> None:
    assert {a["detector"] for a in BASELINE} == {p.meta.id for p in PLUGINS}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(STREAM))),
    dupes=st.lists(st.integers(0, len(STREAM) - 1), max_size=30),
    batch=st.integers(0, 25),
)
def test_order_batching_and_duplicates_do_not_change_alerts(
    order: list[int], dupes: list[int], batch: int
) -> None:
    records = [STREAM[i] for i in order] + [STREAM[i] for i in dupes]
    if batch:  # wrap into Event Hub messages {"records": [...]}
        records = [{"records": records[i : i + batch]} for i in range(0, len(records), batch)]
    assert _alerts(records) == BASELINE
