"""The ``pimwatch`` command's entry point (``python -m pimwatch`` and the console script).

pydantic looks for plugins by scanning every installed distribution's entry points when the first
model is built (~20-50 ms of each start-up). pimwatch uses none, so the command turns the scan off
unless ``PYDANTIC_DISABLE_PLUGINS`` is set already (set it to an empty value to load plugins).
This must happen before :mod:`pimwatch.cli` is imported: its modules build their models then.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from pimwatch.cli import main as cli_main
    from pimwatch.hosting import gcfreeze

    gcfreeze.arm()  # this process is the command: the collector is settled after start-up

    return cli_main(argv)
