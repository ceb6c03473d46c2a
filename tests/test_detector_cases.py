"""Every detector's CASES, run through the real reader, normalizer, engine and SQLite store."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pimwatch.detection.detector import Case, discover
from pimwatch.testing.harness import matches, run_records

PLUGINS = discover()
CASES = [(p.meta.id, c) for p in PLUGINS for c in p.cases]


def _check(det_id: str, case: Case, records: list[Any]) -> list[dict[str, Any]]:
    alerts, pipeline = run_records(records, PLUGINS, case.config)
    assert not pipeline.stats.bad, pipeline.stats.bad
    assert not pipeline.stats.detector_errors, pipeline.stats.detector_errors
    mine = [a.to_dict() for a in alerts if a.detector == det_id]
    assert len(mine) == len(case.expect), [a["title"] for a in mine]
    for got, want in zip(mine, case.expect, strict=True):
        assert not matches(got, want), (matches(got, want), got)
    return mine


@pytest.mark.parametrize(("det_id", "case"), CASES, ids=[f"{d}: {c.name}" for d, c in CASES])
def test_case(det_id: str, case: Case) -> None:
    _check(det_id, case, case.records)


@pytest.mark.parametrize(("det_id", "case"), CASES, ids=[f"{d}: {c.name}" for d, c in CASES])
def test_case_is_order_and_duplicate_proof(det_id: str, case: Case) -> None:
    """The same case shuffled, with every record delivered twice, gives the same alerts."""
    baseline = _check(det_id, case, case.records)
    shuffled = case.records * 2
    random.Random(det_id + case.name).shuffle(shuffled)
    again = _check(det_id, case, shuffled)
    assert [a["id"] for a in again] == [a["id"] for a in baseline]
    assert again == baseline


def test_every_detector_has_positive_and_negative_cases() -> None:
    for p in PLUGINS:
        assert any(c.expect for c in p.cases), f"{p.meta.id} has no positive case"
        assert any(not c.expect for c in p.cases), f"{p.meta.id} has no negative case"


def test_module_names_follow_ids() -> None:
    for p in PLUGINS:
        assert p.module.__name__ == "detectors." + p.meta.id.replace(".", "_")
        assert p.meta.summary and p.meta.runbook and p.meta.mitre
