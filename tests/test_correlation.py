"""Whole PIM flows, every record one action writes (PIM's, the Core Directory mirror by MS-PIM, the
Access Reviews copies), through all detectors: one action never raises the same alert twice, and a
routine flow raises nothing."""

from __future__ import annotations

from typing import Any

from pimwatch.detection.activities import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_COMPLETED,
    ACTIVATION_ENDED,
    ACTIVATION_REQUESTED,
)
from pimwatch.detection.detector import discover
from pimwatch.testing import PIM_SYSTEM, directory, pim, signin, user
from pimwatch.testing.harness import run_records

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


def _status(records: list[dict[str, Any]], detector: str) -> list[tuple[str, str | None]]:
    alerts, pipeline = run_records(records, PLUGINS, {})
    assert not pipeline.stats.bad and not pipeline.stats.detector_errors
    return [(a.status, a.resolved_at) for a in alerts if a.detector == detector]


def _activation(who: Any, role: tuple[str, str], at: str, request: str) -> list[dict[str, Any]]:
    """Request, MS-PIM directory write and completion of a self-activation (no approval), ``at`` hh:mm."""
    kw: dict[str, Any] = {"principal": who, "role": role, "request_id": request}
    return [
        pim(ACTIVATION_REQUESTED, f"2026-03-10T{at}:00Z", who, **kw),
        directory("Add member to role", f"2026-03-10T{at}:30Z", "MS-PIM", who, role=role),
        pim(ACTIVATION_COMPLETED, f"2026-03-10T{at}:31Z", who, **kw),
    ]


def _expiry(who: Any, role: tuple[str, str], at: str, request: str) -> list[dict[str, Any]]:
    """The expiry pair: MS-PIM's directory removal, then PIM's record six seconds later."""
    return [
        directory("Remove member from role", f"2026-03-10T{at}:40Z", "MS-PIM", who, role=role),
        pim(
            ACTIVATION_ENDED, f"2026-03-10T{at}:46Z", PIM_SYSTEM, principal=who, role=role, request_id=request
        ),
    ]


def test_simultaneous_activations_are_resolved_when_the_last_of_them_expires() -> None:
    roles = [UA, GA, ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de")]
    requests = [f"9b1c0c55-0000-4000-8000-00000000010{i}" for i in range(3)]
    burst = [r for i in range(3) for r in _activation(MALLORY, roles[i], f"14:0{2 * i}", requests[i])]
    ends = [_expiry(MALLORY, roles[i], f"16:0{2 * i}", requests[i]) for i in range(3)]
    # The directory removal of the last role alone is not its end: PIM's record is.
    two_ended = burst + ends[0] + ends[1] + ends[2][:1]
    assert _status(two_ended, "activation.simultaneous") == [("open", None)]
    everything = two_ended + ends[2][1:]
    resolved = [("resolved", "2026-03-10T16:04:46.000000Z")]
    assert _status(everything, "activation.simultaneous") == resolved
    assert _status(everything + everything, "activation.simultaneous") == resolved
    # Entra delivers the ends first: the alert is created resolved.
    assert _status([r for e in ends for r in e] + burst, "activation.simultaneous") == resolved


def test_a_risky_session_alert_is_resolved_when_the_activation_is_deactivated() -> None:
    """A known admin signs in with high risk, requests Global Administrator, gets it approved, and
    deactivates it early: asking to deactivate is not the end, PIM's completed deactivation is."""
    kw: dict[str, Any] = {"principal": ALICE, "role": GA, "request_id": REQUEST}
    flow = [
        pim(ACTIVATION_COMPLETED, "2026-03-09T09:00:00Z", ALICE, principal=ALICE, role=UA),
        signin(ALICE, "2026-03-10T14:00:00Z", risk="high", ip="203.0.113.50", country="NL"),
        pim(ACTIVATION_REQUESTED, "2026-03-10T14:20:00Z", ALICE, **kw),
        pim(ACTIVATION_APPROVAL_REQUESTED, "2026-03-10T14:20:05Z", ALICE, **kw),
        pim(ACTIVATION_APPROVED, "2026-03-10T14:26:00Z", DAN, **kw),
        directory("Add member to role", "2026-03-10T14:26:40Z", "MS-PIM", ALICE, role=GA),
        pim(ACTIVATION_COMPLETED, "2026-03-10T14:26:41Z", ALICE, **kw),
        pim("Remove member from role requested (PIM deactivate)", "2026-03-10T15:00:00Z", ALICE, **kw),
    ]
    assert _status(flow, "activation.risky_session") == [("open", None)]
    done = [
        *flow,
        directory("Remove member from role", "2026-03-10T15:00:20Z", "MS-PIM", ALICE, role=GA),
        pim("Remove member from role completed (PIM deactivate)", "2026-03-10T15:00:21Z", ALICE, **kw),
    ]
    assert _status(done, "activation.risky_session") == [("resolved", "2026-03-10T15:00:21.000000Z")]
    assert _status(done + done, "activation.risky_session") == [("resolved", "2026-03-10T15:00:21.000000Z")]


def test_overlapping_bursts_are_one_episode_resolved_at_its_last_end() -> None:
    """A second burst starts while the first still holds roles: the alerts (one per hour bucket) stay
    open until every activation of both has ended, then close at that last end — in time order."""
    exo = ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de")
    sec = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
    pra = ("Privileged Role Administrator", "e8611ab8-c189-46e8-94e1-60213ab1f814")
    first = [(UA, "09:00"), (GA, "09:02"), (exo, "09:04")]
    second = [(sec, "10:00"), (pra, "10:02"), (UA, "10:04")]  # UA again, after its early deactivation
    records = [r for i, (role, at) in enumerate(first) for r in _activation(MALLORY, role, at, f"r1{i}")]
    records += [
        pim(
            "Remove member from role completed (PIM deactivate)",
            "2026-03-10T09:30:00Z",
            MALLORY,
            principal=MALLORY,
            role=UA,
        )
    ]
    records += [r for i, (role, at) in enumerate(second) for r in _activation(MALLORY, role, at, f"r2{i}")]
    records += _expiry(MALLORY, GA, "11:02", "r11") + _expiry(MALLORY, exo, "11:04", "r12")
    assert _status(records, "activation.simultaneous") == [("open", None), ("open", None)]
    ends = [
        r for i, (role, at) in enumerate(second) for r in _expiry(MALLORY, role, f"12:0{2 * i}", f"r2{i}")
    ]
    last = "2026-03-10T12:04:46.000000Z"
    assert _status(records + ends, "activation.simultaneous") == [("resolved", last), ("resolved", last)]
