from __future__ import annotations

from pathlib import Path

import pytest

from pimwatch.detector import Plugin, discover

REPO = Path(__file__).resolve().parent.parent
SHARED_SAMPLES = REPO.parent / "shared" / "samples"


@pytest.fixture(scope="session")
def plugins() -> list[Plugin]:
    return discover()
