"""An approver denied a privileged-role activation request.

detections.md D19 (Sentinel's ``PIMElevationRequestRejected`` and its NRT variant, Sigma's approve/deny
rule, Microsoft's PIM security operations guide): a denial is its own record, ``Add member to role
request denied (PIM activation)`` logged by service ``PIM`` — not a ``result: failure`` on the
completion (entra-events.md §3.1, §3.2). One denial is a weak signal (low): the requester may have
asked for the wrong role, or may be probing with a stolen session; several in a row are
``activation.repeated_failure`` (high). Every denial record is its own alert (``suppress_minutes: 0``);
a record delivered twice folds on its record id.

The principal is the requester — the record's ``User`` target — never the initiator, who is the
approver that denied (§3.3); a denial without a ``User`` target is skipped rather than blamed on the
approver. ``resultReason`` containing one of ``benign_reasons`` (default ``RoleAssignmentExists``:
the role was already active, as the NRT rule excludes) is quiet. The Access Reviews copy of a
decision (``Request denied``, service ``Access Reviews``, category ``UserManagement``, ids
``AADERM_…``) is a different activity and is never read, so one denial gives one alert.
"""

from __future__ import annotations

from typing import Any

from pimwatch.detection import (
    ACTIVATION_DENIED,
    ACTIVATION_REQUESTED,
    Case,
    Detector,
    Event,
    Hit,
    Params,
    Severity,
    Skip,
    State,
    iso,
)
from pimwatch.detection.records import directory, guid, pim, user


class Config(Params):
    benign_reasons: list[str] = ["RoleAssignmentExists"]  # result reasons that are not a failure


DETECTOR = Detector(
    id="activation.denied",
    severity=Severity.LOW,
    summary="An approver denied a request to activate a privileged role.",
    runbook=(
        "Read the approver's reason and ask the requester what they were trying to do. If the requester "
        "does not recognise the request, treat the session as stolen: revoke it and reset credentials. "
        "Several denials in a row raise activation.repeated_failure."
    ),
    anchors=("Sentinel", "Sigma", "Microsoft security operations guide"),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_DENIED}),
    params=Config,
)


def detect(event: Event, state: State[Config]) -> Hit | None:
    if event.activity != ACTIVATION_DENIED or event.service != "PIM":
        return None
    reason = event.result_reason or ""
    benign = state.params.benign_reasons
    if any(b.strip().lower() in reason.lower() for b in benign if b.strip()):
        return None
    requester = event.target
    if requester.type != "User" or not (requester.id or requester.upn):
        raise Skip("denial without a requesting user")
    role = event.role_name or event.role_id or "(unknown role)"
    scope = event.scope_name or event.scope_id
    label = f"{role} ({scope})" if event.scope_type in ("group", "resource") and scope else role
    title = f"{event.actor.label()} denied {requester.label()}'s request to activate {label}"
    context = {
        "role": event.role_name,
        "role_id": event.role_id,
        "scope_type": event.scope_type,
        "scope": scope,
        "requester": requester.as_alert(),
        "denied_by": event.actor.as_alert() | {"ip": event.actor.ip},
        "denied_at": iso(event.time),
        "result": event.result,
        "result_reason": event.result_reason,
        "request_id": event.request_id,
    }
    return DETECTOR.alert(
        event,
        key=(requester.id or requester.upn, event.request_id),
        title=title,
        context=context,
        principal=requester,
    )


ISAAC = user("adm-isaac")
JUDY = user("adm-judy")
KEN = user("adm-ken")
APPROVER = user("approver.grace")
PRA = ("Privileged Role Administrator", "e8611ab8-c189-46e8-94e1-60213ab1f814")


def _denied(
    who: tuple[str, str | None, str | None] | None, at: str, reason: str = "No change ticket", **kw: Any
) -> dict[str, Any]:
    return pim(ACTIVATION_DENIED, at, APPROVER, principal=who, role=PRA, reason=reason, **kw)


def _access_review_copy(
    activity: str, at: str, requester: tuple[str, str | None, str | None]
) -> dict[str, Any]:
    """The Access Reviews record written next to a PIM decision (entra-events.md §3.1)."""
    rec = directory(activity, at, APPROVER, requester, category="UserManagement")
    props = rec["properties"]
    props["id"] = "AADERM_" + guid("aadERM", activity, at, requester)
    props["loggedByService"] = "Access Reviews"
    return rec


CASES = [
    Case(
        "one denial: the requester is the principal, the approver is named",
        [
            pim(ACTIVATION_REQUESTED, "2026-03-10T10:00:00Z", ISAAC, principal=ISAAC, role=PRA),
            _denied(ISAAC, "2026-03-10T10:12:00Z", request_id=guid("request", "isaac-1")),
            _access_review_copy("Request denied", "2026-03-10T10:12:01Z", ISAAC),
        ],
        [
            {
                "severity": "low",
                "count": 1,
                "title": "approver.grace@contoso.com denied adm-isaac@contoso.com's request to activate "
                "Privileged Role Administrator",
                "principal": {"upn": "adm-isaac@contoso.com"},
                "context": {
                    "role_id": PRA[1],
                    "denied_by": {"upn": "approver.grace@contoso.com"},
                    "result_reason": "No change ticket",
                    "request_id": guid("request", "isaac-1"),
                },
            }
        ],
    ),
    Case(
        "a duplicate denial folds; a second denial later is a second alert",
        [
            _denied(JUDY, "2026-03-10T13:00:00Z"),
            _denied(JUDY, "2026-03-10T13:00:00Z"),
            _denied(JUDY, "2026-03-10T15:00:00Z", reason="Not on call"),
        ],
        [
            {"count": 1, "context": {"result_reason": "No change ticket"}},
            {"count": 1, "context": {"result_reason": "Not on call"}},
        ],
    ),
    Case(
        "RoleAssignmentExists is benign (the role was already active)",
        [_denied(KEN, "2026-03-10T16:00:00Z", reason="RoleAssignmentExists")],
        [],
    ),
    Case(
        "benign reasons come from the config",
        [_denied(KEN, "2026-03-11T16:00:00Z", reason="Duplicate request: use the open one")],
        [],
        {
            "detectors": {
                "activation.denied": {"benign_reasons": ["RoleAssignmentExists", "duplicate request"]}
            }
        },
    ),
    Case(
        "the Access Reviews copy alone ('Request denied') never alerts",
        [_access_review_copy("Request denied", "2026-03-10T17:00:00Z", KEN)],
        [],
    ),
    Case(
        "approvals, requests and a denial without a requester are not denials to alert on",
        [
            pim(
                "Add member to role request approved (PIM activation)",
                "2026-03-10T18:00:00Z",
                APPROVER,
                principal=KEN,
                role=PRA,
            ),
            pim(ACTIVATION_REQUESTED, "2026-03-10T17:59:00Z", KEN, principal=KEN, role=PRA),
            _denied(None, "2026-03-10T18:30:00Z"),
        ],
        [],
    ),
]
