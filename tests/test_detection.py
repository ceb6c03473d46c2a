"""The detector facade (pimwatch.detection): what a detector author imports, the declared window,
typed parameters, and that adding a detector touches one file."""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pimwatch.cli.catalogue import render_markdown
from pimwatch.config import ConfigError, build
from pimwatch.detection import Event, Principal, Window, minutes
from pimwatch.detection.contract import Member
from pimwatch.detection.detector import Plugin, discover
from pimwatch.state import retention
from pimwatch.testing.harness import matches, run_records
from tests.conftest import REPO

ALLOWED = {"pimwatch.detection", "pimwatch.detection.records", "detectors._assignments"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)


def test_detectors_import_pimwatch_only_through_the_facade() -> None:
    found = [
        f"{path.name}:{line}: {module}"
        for path in sorted((REPO / "detectors").glob("*.py"))
        for line, module in _imports(path)
        if module.split(".")[0] in ("pimwatch", "detectors") and module not in ALLOWED
    ]
    assert not found, found


def test_detect_and_tick_use_no_record_builder() -> None:
    """The record builders (pimwatch.testing) are for CASES: production code never reads them."""
    for path in sorted((REPO / "detectors").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        builders = {
            alias.asname or alias.name
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module == "pimwatch.detection.records"
            for alias in node.names
        }
        for fn in tree.body:
            if isinstance(fn, ast.FunctionDef) and fn.name in ("detect", "tick"):
                used = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} & builders
                assert not used, (path.name, fn.name, used)


def test_the_subject_is_the_target_else_the_actor() -> None:
    at = datetime(2026, 3, 10, tzinfo=UTC)
    actor, target = Principal(id="a", upn="a@x"), Principal(upn="t@x")
    assert Event("audit", "1", at, "AuditLogs", "graph", actor=actor, target=target).subject == target
    assert Event("audit", "1", at, "AuditLogs", "graph", actor=actor).subject == actor


def _m(member: str, minute: float, value: str) -> Member:
    return Member(member, minute * 60, value, None)


def test_the_window_counts_distinct_values_in_a_trailing_window() -> None:
    window = Window(threshold=2, within=minutes(10))
    rows = [_m("r1", 0, "a"), _m("r2", 5, "a"), _m("r3", 9, "b"), _m("r4", 30, "c"), _m("r5", 45, "c")]
    # r3 closes a window with two distinct values (a, b): r1, r2, r3 are counted; r4 and r5 share a value.
    assert sorted(m.member for m in window.counted(rows)) == ["r1", "r2", "r3"]
    assert [(last.member, [m.member for m in w]) for last, w in window.reached(rows, since=9 * 60)] == [
        ("r3", ["r1", "r2", "r3"])
    ]
    assert window.keys() == {"threshold": 2, "within_minutes": 10, "suppress_minutes": 0}
    assert window.override({"within_minutes": 90}).within == timedelta(minutes=90)


# Adding a detector: one new module, nothing else (the catalogue is generated from it).
THROWAWAY = '''
"""Activations of a role while it is watched: a detector written for the test, in its own package."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pimwatch.detection import (
    ACTIVATION_COMPLETED, Case, Count, Detector, Event, History, Hit, Params, Severity, State, Window,
    minutes,
)
from pimwatch.detection.records import pim, user


class Config(Params):
    watch_hours: Annotated[Count, History(timedelta(hours=1))] = 400  # how far back it reads
    quiet_hours: Count = 9000  # a duration that is not a look-back


DETECTOR = Detector(
    id="watch.activation",
    severity=Severity.LOW,
    summary="A role was activated.",
    runbook="Nothing to do: a test.",
    mitre=("T1078.004",),
    activities=frozenset({ACTIVATION_COMPLETED}),
    window=Window(suppress=minutes(60)),
    params=Config,
)


def detect(event: Event, state: State[Config]) -> Hit | None:
    title = f"{event.subject.label()} activated a role, watched {state.params.watch_hours} hours"
    return DETECTOR.alert(event, key=(event.subject.id,), title=title)


ALICE = user("alice")
CASES = [
    Case(
        "an activation",
        [pim(ACTIVATION_COMPLETED, "2026-03-10T10:00:00Z", ALICE, principal=ALICE)],
        [{"title": "alice@contoso.com activated a role, watched 400 hours"}],
    )
]
'''


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Plugin]]:
    package = tmp_path / "extra_detectors"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "watch_activation.py").write_text(textwrap.dedent(THROWAWAY))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield [*discover(), *discover("extra_detectors")]
    for name in [n for n in sys.modules if n.startswith("extra_detectors")]:
        del sys.modules[name]


def test_a_new_detector_module_is_configured_retained_and_catalogued(throwaway: list[Plugin]) -> None:
    new = next(p for p in throwaway if p.meta.id == "watch.activation")
    # config: its parameters and window keys, typed, errors naming the key path
    cfg = build({"detectors": {"watch.activation": {"watch_hours": 500, "suppress_minutes": 5}}}, throwaway)
    mine = cfg.detectors["watch.activation"]
    assert mine.values() == {"suppress_minutes": 5, "watch_hours": 500, "quiet_hours": 9000}
    with pytest.raises(ConfigError) as exc:
        build({"detectors": {"watch.activation": {"watch_hours": "long"}}}, throwaway)
    assert exc.value.problems == ["detectors.watch.activation.watch_hours: expected an integer, got 'long'"]
    # retention: the declared look-back, and not the unmarked duration
    needs = {n.what: n.span for n in retention.needs(cfg.detectors, throwaway)}
    assert needs["detectors.watch.activation.watch_hours"] == timedelta(hours=500)
    assert not [w for w in needs if "quiet_hours" in w]
    assert retention.horizon(cfg, throwaway) == timedelta(hours=500) + retention.SLACK
    # catalogue: its section and parameters
    text = render_markdown(throwaway)
    assert "\n## watch.activation\n" in text
    assert "| `watch_hours` | `400` |" in text and "| `suppress_minutes` | `60` |" in text
    # its case, through the real pipeline
    case = new.cases[0]
    alerts, _ = run_records(case.records, throwaway, case.config)
    got = [a.to_dict() for a in alerts if a.detector == "watch.activation"]
    assert len(got) == 1 and not matches(got[0], case.expect[0]), got


def test_a_module_level_validate_hook_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old hook would be silently ignored now: discovery says where the check belongs instead."""
    package = tmp_path / "old_detectors"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = textwrap.dedent(THROWAWAY) + "\n\ndef validate(params: object) -> list[str]:\n    return []\n"
    (package / "watch_activation.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    try:
        with pytest.raises(
            RuntimeError, match=r"old_detectors.watch_activation: a module-level validate\(\)"
        ):
            discover("old_detectors")
    finally:
        for name in [n for n in sys.modules if n.startswith("old_detectors")]:
            del sys.modules[name]
