"""A mixed stream of real-shaped records for pipeline-level tests: every detector case plus noise."""

from __future__ import annotations

from typing import Any

from pimwatch.detector import discover
from pimwatch.testing import directory, signin, user

BREAK_GLASS = ["c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com"]
CONFIG: dict[str, Any] = {"break_glass": {"accounts": BREAK_GLASS}}


def mixed_stream() -> list[dict[str, Any]]:
    """Records of every case that needs no config of its own (deduplicated by record id), plus noise."""
    seen: dict[str, dict[str, Any]] = {}
    for plugin in discover():
        for case in plugin.cases:
            if set(case.config) - {"break_glass"}:
                continue
            for rec in case.records:
                if "properties" in rec:  # Event Hub; cases of other shapes repeat an Event Hub record
                    seen.setdefault(rec["properties"]["id"], rec)
    noise = [signin(user(f"user{i}"), f"2026-03-10T{i % 24:02d}:{i % 60:02d}:00Z") for i in range(40)]
    noise += [
        directory(
            "Update user",
            f"2026-03-10T{i % 24:02d}:30:00Z",
            user("helpdesk"),
            user(f"user{i}"),
            category="UserManagement",
        )
        for i in range(10)
    ]
    return list(seen.values()) + noise
