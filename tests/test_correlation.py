"""Whole PIM flows, every record one action writes (PIM's, the Core Directory mirror by MS-PIM, the
Access Reviews copies), through all detectors: one action never raises the same alert twice, and a
routine flow raises nothing."""

from __future__ import annotations

from typing import Any

from pimwatch.activities import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_COMPLETED,
    ACTIVATION_ENDED,
    ACTIVATION_REQUESTED,
)
from pimwatch.detector import discover
from pimwatch.harness import run_records
from pimwatch.testing import PIM_SYSTEM, directory, pim, user

PLUGINS = discover()
ALICE, DAN, MALLORY = user("adm-alice"), user("approver.dan"), user("adm-mallory")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
REQUEST = "9b1c0c55-0000-4000-8000-0000000000aa"


def _access_reviews(activity: str, at: str, actor: Any, category: str) -> dict[str, Any]:
    rec = directory(activity, at, actor, ALICE, category=category)
    rec["properties"]["loggedByService"] = "Access Reviews"
    rec["properties"]["id"] = "AADERM_" + rec["properties"]["id"]
    return rec


def _alerts(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    alerts, pipeline = run_records(records, PLUGINS, {})
    assert not pipeline.stats.bad and not pipeline.stats.detector_errors
    return sorted((a.detector, a.principal["upn"] or "") for a in alerts)


def test_a_routine_approved_activation_raises_nothing() -> None:
    """Tuesday 10:00 UTC: request, approval (with its Access Reviews copies), activation with its
    MS-PIM directory write, and the expiry pair two hours later."""
    pim_kw: dict[str, Any] = {"principal": ALICE, "role": UA, "request_id": REQUEST, "justification": "CHG-7"}
    flow = [
        pim(ACTIVATION_REQUESTED, "2026-03-10T10:00:00Z", ALICE, **pim_kw),
        pim(ACTIVATION_APPROVAL_REQUESTED, "2026-03-10T10:00:05Z", ALICE, **pim_kw),
        _access_reviews("Create request", "2026-03-10T10:00:06Z", ALICE, "Policy"),
        pim(ACTIVATION_APPROVED, "2026-03-10T10:06:00Z", DAN, **pim_kw),
        _access_reviews("Request approved", "2026-03-10T10:06:01Z", DAN, "UserManagement"),
        directory("Add member to role", "2026-03-10T10:06:40Z", "MS-PIM", ALICE, role=UA),
        pim(ACTIVATION_COMPLETED, "2026-03-10T10:06:41Z", ALICE, **pim_kw),
        directory("Remove member from role", "2026-03-10T12:06:40Z", "MS-PIM", ALICE, role=UA),
        pim(ACTIVATION_ENDED, "2026-03-10T12:06:46Z", PIM_SYSTEM, **pim_kw),
    ]
    assert _alerts(flow) == []
    assert _alerts(flow + flow) == []  # every record delivered twice


def test_a_permanent_assignment_through_pim_is_one_alert_per_concern() -> None:
    """Requested and completed PIM records plus the MS-PIM directory write: one 'privileged' and one
    'permanent' alert (two concerns), nothing from the requested record or the mirror, and not
    'outside PIM'."""
    kw: dict[str, Any] = {"principal": ALICE, "role": GA, "request_id": REQUEST}
    flow = [
        pim("Add member to role in PIM requested (permanent)", "2026-03-10T10:00:00Z", MALLORY, **kw),
        directory("Add member to role", "2026-03-10T10:00:30Z", "MS-PIM", ALICE, role=GA),
        pim("Add member to role in PIM completed (permanent)", "2026-03-10T10:00:31Z", MALLORY, **kw),
    ]
    want = [
        ("assignment.permanent", "adm-alice@contoso.com"),
        ("assignment.privileged", "adm-alice@contoso.com"),
    ]
    assert _alerts(flow) == want
    assert _alerts(flow + flow) == want


def test_a_direct_grant_and_pims_reports_of_it_are_one_outside_pim_alert() -> None:
    grant = directory("Add member to role", "2026-03-10T09:00:00Z", MALLORY, ALICE, role=GA)
    reports = [
        pim(
            "Add member to role outside of PIM (permanent)",
            f"2026-03-10T{h}:00:00Z",
            PIM_SYSTEM,
            principal=ALICE,
            role=GA,
        )
        for h in ("11", "13", "15")
    ]
    alerts, _ = run_records([grant, *reports], PLUGINS, {})
    outside = [a for a in alerts if a.detector == "assignment.outside_pim"]
    assert len(outside) == 1 and outside[0].count == 4
    assert outside[0].title.startswith("adm-mallory@contoso.com assigned Global Administrator")
    assert {a.detector for a in alerts} == {
        "assignment.outside_pim",
        "assignment.privileged",
        "assignment.permanent",
    }
