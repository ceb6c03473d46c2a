"""The collector is settled after start-up only by a process's entry point: the ``pimwatch``
command (pimwatch.entry) freezes what start-up made and raises the young threshold before the first
record; the CLI run in-process (a library caller, these tests) leaves the collector as it was."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import orjson
import pytest

from pimwatch import entry
from pimwatch.cli import main
from pimwatch.hosting import gcfreeze
from pimwatch.testing import signin, user


@pytest.fixture
def collector() -> Iterator[None]:
    """Put the test process's collector back as it was, whatever the test did to it."""
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.fixture
def records(tmp_path: Path) -> Path:
    path = tmp_path / "signins.jsonl"
    path.write_bytes(orjson.dumps(signin(user("erin"), "2026-03-10T02:31:00Z")) + b"\n")
    return path


def _replay(run: Callable[[Sequence[str] | None], int], records: Path, tmp_path: Path) -> int:
    args = ["replay", "--format", "jsonl", "--state", str(tmp_path / "s.db"), "--quarantine"]
    return run([*args, str(tmp_path / "q.jsonl"), str(records)])


def test_the_command_settles_the_collector_after_start_up(
    collector: None, records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcfreeze, "_armed", False)
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "")  # (the command sets it only when unset)
    gc.unfreeze()
    assert _replay(entry.main, records, tmp_path) == 0
    assert gc.get_threshold()[0] == gcfreeze.YOUNG
    assert gc.get_freeze_count() > 0


def test_the_cli_run_in_process_leaves_the_collector_alone(
    collector: None, records: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gcfreeze, "_armed", False)
    gc.unfreeze()
    before = gc.get_threshold()
    assert _replay(main, records, tmp_path) == 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
