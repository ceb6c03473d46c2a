from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pimwatch.detection.detector import Plugin, discover
from pimwatch.detection.timeutil import iso
from pimwatch.testing.harness import run_records
from tests.streams import CONFIG, mixed_stream

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def plugins() -> list[Plugin]:
    return discover()


# The mixed stream of every detector's cases (tests/streams.py) and what the replay harness makes of it.
@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return mixed_stream()


@pytest.fixture(scope="module")
def replayed(records: list[dict[str, Any]], plugins: list[Plugin]) -> tuple[dict[str, int], str]:
    """Alert id → count, and the watermark, from the same records through the replay harness."""
    alerts, pipeline = run_records(records, plugins, CONFIG)
    assert pipeline.watermark is not None
    return {a.id: a.count for a in alerts}, iso(pipeline.watermark)


@pytest.fixture(scope="module")
def expected(replayed: tuple[dict[str, int], str]) -> dict[str, int]:
    return replayed[0]


# Azurite (tables and blobs on loopback), started once per test session by the first test that asks.
from tests.azurite import azurite_storage, azurite_tables  # noqa: E402, F401

# App settings for the Functions entry points (tests/functions_host.py).
from tests.functions_host import app_env  # noqa: E402, F401
