"""A mixed stream of real-shaped records for pipeline-level tests: every detector case plus noise."""

from __future__ import annotations

from typing import Any

from pimwatch.detection.activities import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_COMPLETED,
)
from pimwatch.detection.detector import discover
from pimwatch.testing import directory, pim, signin, user

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


def full_stream() -> list[dict[str, Any]]:
    """:func:`mixed_stream` plus what makes the detectors whose positive cases need a config of their
    own fire under the defaults: an activation two weeks before the others (``activation.first_time``
    has then watched long enough: its later activations are first times), an approval request never
    decided and one approved late (``approval.overdue``: one open alert, one resolved)."""
    ga = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
    ua = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
    frank, peggy = user("adm-frank"), user("adm-peggy")
    never, late = "6a0c1d1e-0000-4000-8000-0000000000f1", "6a0c1d1e-0000-4000-8000-0000000000f2"
    extra = [
        pim(ACTIVATION_COMPLETED, "2026-02-20T09:00:00Z", frank, principal=frank, role=ua),
        pim(
            ACTIVATION_APPROVAL_REQUESTED,
            "2026-03-11T10:00:00Z",
            frank,
            principal=frank,
            role=ga,
            request_id=never,
        ),
        pim(
            ACTIVATION_APPROVAL_REQUESTED,
            "2026-03-11T11:00:00Z",
            frank,
            principal=frank,
            role=ga,
            request_id=late,
        ),
        pim(ACTIVATION_APPROVED, "2026-03-11T11:50:00Z", peggy, principal=frank, role=ga, request_id=late),
    ]
    return mixed_stream() + extra
