"""The garbage collector after start-up.

A replay or an Event Hub batch makes many short-lived containers (decoded records, their dicts and
lists), none of them in a reference cycle that outlives it. With the default thresholds every 700
allocations start a young collection that also walks the objects start-up made (modules, detector
catalogue, pydantic models, config), again and again. :func:`settle` moves what start-up made to
the permanent generation (never scanned again; it lives as long as the process anyway) and lets a
young collection wait for more allocations. Cycles are still collected; memory stays bounded.

Only a process's entry point (the ``pimwatch`` command, the Functions app) calls :func:`arm`: a
library caller or a test that runs the CLI in-process keeps its collector as it was.
"""

from __future__ import annotations

import gc

YOUNG = 50_000
"""Allocations (net) before a young collection (CPython's default: 700)."""

_armed = False


def arm() -> None:
    """Let :func:`settle` act in this process (its entry point owns the collector)."""
    global _armed
    _armed = True


def settle() -> None:
    """Call once start-up is done, before the first record is read. (No full collection first: it
    costs ~15 ms, and start-up leaves next to no garbage in cycles.)"""
    if not _armed:
        return
    gc.freeze()
    gc.set_threshold(YOUNG, 20, 100)
