"""The approver of a PIM activation request is the person who made the request.

PIM does not let approvers approve their own requests (detections.md §2.5), so an approval whose
approver is the requester means that control failed or was bypassed: critical. Approvals are the
attack timeline of D20 (Microsoft's security operations guides, Sigma's approve/deny rule); none of the
anchors compares approver and requester (§4.3).

The approval is ``Add member to role request approved (PIM activation)`` (service ``PIM``), whose
initiator is the approver (entra-events.md §3.1, §3.3). The requester is the approval record's
``User`` target when it has one — then that record decides alone. When it has none, the PIM request
id (``RoleAssignmentRequestId`` / ``RequestId``, the only link from request to approval to activation,
§3.3) joins it to the requester remembered in scoped state from the ``Add member to role requested``,
``... approval requested`` or ``... completed (PIM activation)`` record of the same request (the
``User`` target; for ``requested`` also the initiator). Records arrive in any order, so approvals
without a ``User`` target are remembered too, and a request record that arrives after one raises the
alert on the approval's behalf (``Hit.record``): both paths count the same record — the approval —
under the same key (the request id) with the same title and context, built from the approval alone,
so the alert is identical whichever came first. State lives ``remember_hours`` (approvers have 24 h).

One alert per request (``suppress_minutes: 1440`` buckets; a multi-stage self-approval folds). Only
the PIM approval record counts: the Access Reviews copy (``Request approved``, service ``Access
Reviews``) and the MS-PIM Core Directory mirror are other activities and are never read.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pimwatch.detection import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_COMPLETED,
    ACTIVATION_REQUESTED,
    PIM_SERVICE,
    Case,
    Count,
    Detector,
    Event,
    Hit,
    Params,
    Principal,
    Severity,
    Skip,
    State,
    Window,
    entities_of,
    iso,
    minutes,
    parse_time,
)
from pimwatch.detection.records import directory, guid, pim, user

REQUEST_SIDE = frozenset({ACTIVATION_REQUESTED, ACTIVATION_APPROVAL_REQUESTED, ACTIVATION_COMPLETED})
ACTIVITIES = REQUEST_SIDE | {ACTIVATION_APPROVED}


class Config(Params):
    remember_hours: Count = 48  # the TTL of a request's or approval's memo (not a look-back)


DETECTOR = Detector(
    id="approval.self_approved",
    severity=Severity.CRITICAL,
    summary="A PIM activation request was approved by the person who requested it.",
    runbook=(
        "PIM should never let a requester approve their own activation. Find out how it happened (an "
        "approver list that includes the requester through a group, a compromised second account, a "
        "tampered policy); deactivate the role, review what was done with it, and fix the approver list."
    ),
    anchors=("Microsoft security operations guide (approvals)", "Sigma (approvals)"),
    mitre=("T1078.004", "T1548"),
    tactics=("PrivilegeEscalation", "DefenseEvasion"),
    kinds=("audit",),
    activities=ACTIVITIES,
    window=Window(suppress=minutes(1440)),
    params=Config,
)


def _ident(p: Principal) -> dict[str, str | None]:
    return {"id": p.id, "upn": p.upn}


def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """One person: object ids compared when both are known, else UPNs (case-insensitive)."""
    if a.get("id") and b.get("id"):
        return str(a["id"]).lower() == str(b["id"]).lower()
    if a.get("upn") and b.get("upn"):
        return str(a["upn"]).lower() == str(b["upn"]).lower()
    return False


def _approval(event: Event, requester_from: str) -> dict[str, Any]:
    """Everything the alert says, from the approval record alone (stored as JSON, so plain values)."""
    role = event.role_name or event.role_id or "(unknown role)"
    scope = event.scope_name or event.scope_id
    return {
        "record": event.id,
        "at": iso(event.time),
        "approver": {
            "id": event.actor.id,
            "upn": event.actor.upn,
            "name": event.actor.name,
            "ip": event.actor.ip,
        },
        "label": f"{role} ({scope})" if event.scope_type in ("group", "resource") and scope else role,
        "role": event.role_name,
        "role_id": event.role_id,
        "scope_type": event.scope_type,
        "scope": scope,
        "request_id": event.request_id,
        "result_reason": event.result_reason,
        "justification": event.justification,
        "requester_from": requester_from,
        "entities": entities_of(event),
    }


def _hit(event: Event, info: dict[str, Any], *, on_behalf: bool) -> Hit:
    """The alert for the approval ``info`` describes; ``on_behalf``: raised from another record."""
    a = info["approver"]
    who = Principal(id=a["id"], upn=a["upn"], name=a["name"], type="User")
    title = f"{who.label()} approved their own request to activate {info['label']}"
    context = {k: info[k] for k in ("role", "role_id", "scope_type", "scope", "request_id")} | {
        "approver": dict(a),
        "approved_at": info["at"],
        "approval_reason": info["result_reason"],
        "justification": info["justification"],
        "requester_from": info["requester_from"],
    }
    at = parse_time(info["at"])
    record = (at, str(info["record"])) if on_behalf and at is not None else None
    return DETECTOR.alert(
        event,
        key=(info["request_id"],),
        title=title,
        context=context,
        principal=who,
        record=record,
        entities=info.get("entities", ()),  # the approval's, whichever record raises
    )


def detect(event: Event, state: State[Config]) -> Hit | None:
    if event.service != "PIM" or event.activity not in ACTIVITIES or event.failed:
        return None
    rid = event.request_id
    if not rid:
        raise Skip("activation record without a request id")
    ttl = timedelta(hours=state.params.remember_hours)
    target = event.target if event.target.type == "User" and (event.target.id or event.target.upn) else None

    if event.activity == ACTIVATION_APPROVED:
        approver = event.actor
        if not (approver.id or approver.upn):
            raise Skip("approval without an approver")
        if target is not None:  # the record names the requester: it decides alone
            if not same(_ident(target), _ident(approver)):
                return None
            return _hit(event, _approval(event, "the approval record's User target"), on_behalf=False)
        info = _approval(event, "the request records (by request id)")
        pending: dict[str, Any] = state.get(f"appr:{rid}") or {}
        if event.id not in pending:
            pending[event.id] = info
            state.put(f"appr:{rid}", pending, ttl=ttl)
        requester = state.get(f"req:{rid}")
        if requester is not None and same(requester, _ident(approver)):
            return _hit(event, info, on_behalf=False)
        return None

    # A request-side record: remember who asked, and raise for an approval that came first.
    if target is None and event.activity == ACTIVATION_REQUESTED and event.actor.id != PIM_SERVICE:
        target = event.actor if (event.actor.id or event.actor.upn) and event.actor.type == "User" else None
    if target is None:
        raise Skip("request record without a requester")
    requester = _ident(target)
    if state.get(f"req:{rid}") != requester:
        state.put(f"req:{rid}", requester, ttl=ttl)
    pending = state.get(f"appr:{rid}") or {}
    matches = [info for info in pending.values() if same(requester, info["approver"])]
    if not matches:
        return None
    return _hit(event, min(matches, key=lambda i: (i["at"], i["record"])), on_behalf=True)


QUINN = user("adm-quinn")
RITA = user("adm-rita")
SAM = user("adm-sam")
TOM = user("approver.tom")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
SECURITY = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
User = tuple[str, str | None, str | None]


def _cycle(
    requester: User,
    approver: User,
    rid: str,
    day: str,
    *,
    target_on_approval: bool,
    role: tuple[str, str] = GA,
    request_records: bool = True,
    completed: bool = True,
) -> list[dict[str, Any]]:
    """One PIM activation with approval, as PIM, Core Directory and Access Reviews log it."""
    recs: list[dict[str, Any]] = []
    if request_records:
        recs += [
            pim(
                ACTIVATION_REQUESTED,
                f"{day}T09:00:00Z",
                requester,
                principal=requester,
                role=role,
                justification="CHG0815 firewall change",
                request_id=rid,
            ),
            pim(
                ACTIVATION_APPROVAL_REQUESTED,
                f"{day}T09:00:01Z",
                requester,
                principal=requester,
                role=role,
                request_id=rid,
            ),
        ]
    recs.append(
        pim(
            ACTIVATION_APPROVED,
            f"{day}T09:07:00Z",
            approver,
            principal=requester if target_on_approval else None,
            role=role,
            reason="ok",
            request_id=rid,
        )
    )
    recs.append(_access_review_copy("Request approved", f"{day}T09:07:01Z", approver, requester))
    if completed:
        recs += [
            pim(
                ACTIVATION_COMPLETED,
                f"{day}T09:07:05Z",
                requester,
                principal=requester,
                role=role,
                request_id=rid,
            ),
            directory("Add member to role", f"{day}T09:07:09Z", "MS-PIM", requester, role=role),
        ]
    return recs


def _access_review_copy(activity: str, at: str, approver: User, requester: User) -> dict[str, Any]:
    """The Access Reviews record written next to a PIM decision (entra-events.md §3.1)."""
    rec = directory(activity, at, approver, requester, category="UserManagement")
    props = rec["properties"]
    props["id"] = "AADERM_" + guid("aadERM", activity, at, approver, requester)
    props["loggedByService"] = "Access Reviews"
    return rec


def _approval_first(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["properties"]["activityDisplayName"] != ACTIVATION_APPROVED)


R1, R2, R3, R4, R5, R6 = (guid("request", "self-approval", i) for i in range(6))

CASES = [
    Case(
        "the approval record names the requester, who is the approver: one alert on the approval",
        _cycle(QUINN, QUINN, R1, "2026-03-10", target_on_approval=True),
        [
            {
                "severity": "critical",
                "count": 1,
                "title": "adm-quinn@contoso.com approved their own request to activate Global Administrator",
                "principal": {"upn": "adm-quinn@contoso.com"},
                "first_seen": "2026-03-10T09:07:00.000000Z",
                "context": {
                    "request_id": R1,
                    "role_id": GA[1],
                    "approver": {"upn": "adm-quinn@contoso.com", "ip": "20.190.1.10"},
                    "requester_from": "the approval record's User target",
                },
            }
        ],
    ),
    Case(
        "no User target on the approval: the request id joins it to the requester (request first)",
        _cycle(RITA, RITA, R2, "2026-03-11", target_on_approval=False),
        [
            {
                "count": 1,
                "title": "adm-rita@contoso.com approved their own request to activate Global Administrator",
                "first_seen": "2026-03-11T09:07:00.000000Z",
                "context": {"request_id": R2, "requester_from": "the request records (by request id)"},
            }
        ],
    ),
    Case(
        "no User target, the approval arrives before the request: the request raises the same alert",
        _approval_first(_cycle(RITA, RITA, R3, "2026-03-12", target_on_approval=False)),
        [
            {
                "count": 1,
                "title": "adm-rita@contoso.com approved their own request to activate Global Administrator",
                "first_seen": "2026-03-12T09:07:00.000000Z",
                "context": {"request_id": R3, "approved_at": "2026-03-12T09:07:00.000000Z"},
            }
        ],
    ),
    Case(
        "no User target and no request record: the completion names the requester",
        _approval_first(
            _cycle(SAM, SAM, R4, "2026-03-12", target_on_approval=False, role=SECURITY, request_records=False)
        ),
        [{"count": 1, "title_has": "adm-sam@contoso.com approved their own request to activate Security"}],
    ),
    Case(
        "someone else approves (with and without the User target): quiet",
        _cycle(QUINN, TOM, R5, "2026-03-13", target_on_approval=True)
        + _approval_first(_cycle(SAM, TOM, R6, "2026-03-13", target_on_approval=False, role=SECURITY)),
        [],
    ),
    Case(
        "an approver who made another request is not self-approving (different request ids)",
        [
            pim(
                ACTIVATION_REQUESTED, "2026-03-16T10:00:00Z", TOM, principal=TOM, request_id=guid("r", "tom")
            ),
            pim(
                ACTIVATION_REQUESTED,
                "2026-03-16T10:01:00Z",
                QUINN,
                principal=QUINN,
                request_id=guid("r", "q"),
            ),
            pim(ACTIVATION_APPROVED, "2026-03-16T10:05:00Z", TOM, request_id=guid("r", "q")),
        ],
        [],
    ),
    Case(
        "an Access Reviews 'Request approved' by the requester (a self-review) never alerts",
        [
            pim(ACTIVATION_REQUESTED, "2026-03-16T11:00:00Z", SAM, principal=SAM, request_id=guid("r", "s")),
            _access_review_copy("Request approved", "2026-03-16T11:05:00Z", SAM, SAM),
        ],
        [],
    ),
    Case(
        "an approval without a User target whose request was never seen cannot be compared: quiet",
        [pim(ACTIVATION_APPROVED, "2026-03-16T12:00:00Z", QUINN, request_id=guid("r", "lost"))],
        [],
    ),
]
