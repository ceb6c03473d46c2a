"""The garbage collector after start-up.

A replay or an Event Hub batch makes many short-lived containers (decoded records, their dicts and
lists), none of them in a reference cycle that outlives it. With the default thresholds every 700
allocations start a young collection that also walks the objects start-up made (modules, detector
catalogue, pydantic models, config), again and again. :func:`settle` moves what start-up made to
the permanent generation (never scanned again; it lives as long as the process anyway) and lets a
young collection wait for more allocations. Cycles are still collected; memory stays bounded.
"""

from __future__ import annotations

import gc

YOUNG = 50_000
"""Allocations (net) before a young collection (CPython's default: 700)."""


def settle() -> None:
    """Call once start-up is done, before the first record is read. (No full collection first: it
    costs ~15 ms, and start-up leaves next to no garbage in cycles.)"""
    gc.freeze()
    gc.set_threshold(YOUNG, 20, 100)
