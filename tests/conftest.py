from __future__ import annotations

from pathlib import Path

import pytest

from pimwatch.detector import Plugin, discover

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def plugins() -> list[Plugin]:
    return discover()


# Azurite (tables and blobs on loopback), started once per test session by the first test that asks.
from tests.azurite import azurite_storage, azurite_tables  # noqa: E402, F401
