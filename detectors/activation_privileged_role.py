"""Every activation of a role on a watch list (default Global Administrator and Privileged Role
Administrator), with who justified, approved and for how long.

CISA's SCuBA baseline MS.AAD.7.8 says activation of Global Administrator SHALL trigger an alert
(7.9: other highly privileged roles SHOULD); Microsoft's security operations guide logs every
elevation (detections.md D15). PIM's own notification e-mail is off when its recipients are empty
(D31). The activation is ``Add member to role completed (PIM activation)`` with a successful result
(the moment the role took effect); the request, the approval and the MS-PIM Core Directory mirror
are other records, so one activation gives one alert (``suppress_minutes: 0``; a record delivered
twice folds on its record id).

``roles`` lists role names or template ids (a listed built-in name also matches its template id, so
a renamed or localized display name still counts); for PIM for Groups also a group's name or id.

The context holds the justification, the ticket, the activation's start, expiry and duration
(``StartTime`` / ``ExpirationTime``), the PIM request id (``RequestId``, the link between request,
approval and activation, entra-events.md §3.3) and the record's correlation id, so the alerts of one
activation can be grouped. **The approver** is on another record, ``Add member to role request
approved (PIM activation)`` (its initiator), joined on the request id both ways: an approval
remembers itself and re-raises a completion already seen; a completion lists the approvals already
seen. ``approvers`` is an accumulated list, so the alert converges on every approver of the request
whichever record came first. The alert resolves when the activation ends (expired or deactivated).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from pimwatch.detection import (
    ACTIVATION_APPROVED,
    ACTIVATION_COMPLETED,
    ACTIVATION_END,
    DEFAULT_PRIVILEGED_ROLES,
    Case,
    Count,
    Detector,
    Event,
    History,
    Hit,
    Params,
    Principal,
    Resolve,
    Severity,
    Skip,
    State,
    Window,
    activation_key,
    ended,
    entities_of,
    entity,
    iso,
    parse_time,
    with_end,
)
from pimwatch.detection.records import PIM_SYSTEM, directory, guid, in_every_shape, pim, user


class Config(Params):
    # role names or template ids; for PIM for Groups also group names or ids
    roles: list[str] = ["Global Administrator", "Privileged Role Administrator"]
    # how far apart an approval and its activation may be (approvers have 24 h, records arrive late)
    match_hours: Annotated[Count, History(timedelta(hours=1))] = 48


DETECTOR = Detector(
    id="activation.privileged_role",
    severity=Severity.MEDIUM,
    summary="A role on the watch list (default Global Administrator, Privileged Role Administrator) "
    "was activated.",
    runbook=(
        "Check the activation against its justification and ticket and the change calendar; confirm "
        "with the person (and the approver) that they activated it. An activation nobody expected, or "
        "with a justification that names no change, is a stolen session until shown otherwise: "
        "deactivate the role, revoke the sessions and review what was done with it."
    ),
    anchors=("SCuBA MS.AAD.7.8", "Microsoft security operations guide", "Splunk"),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_COMPLETED, ACTIVATION_APPROVED}) | ACTIVATION_END,
    window=Window(accumulate=("approvers",)),
    params=Config,
)


def watched(event: Event, roles: list[str]) -> bool:
    """Whether the record's role (or, for PIM for Groups, its group) is on the list."""
    wanted = {r.strip().lower() for r in roles if r.strip()}
    wanted |= {i for n, i in DEFAULT_PRIVILEGED_ROLES.items() if n.lower() in wanted}
    group = (event.scope_name, event.scope_id) if event.scope_type == "group" else ()
    return any(c is not None and c.lower() in wanted for c in (event.role_name, event.role_id, *group))


def _duration(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None or end < start:
        return None
    return int((end - start).total_seconds() // 60)


def _spoken(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"{rest} min"
    return f"{hours} h" + (f" {rest} min" if rest else "")


def _activation(event: Event) -> dict[str, Any]:
    """What the alert says about the activation, from its record alone (stored as JSON)."""
    role = event.role_name or event.role_id or "(unknown role)"
    scope = event.scope_name or event.scope_id
    label = f"{role} ({scope})" if event.scope_type in ("group", "resource") and scope else role
    start = event.start or event.time
    minutes = _duration(start, event.end)
    who = event.subject
    title = f"{who.label()} activated {label}" + (f" for {_spoken(minutes)}" if minutes is not None else "")
    return {
        "record": event.id,
        "t": iso(event.time),
        "key": list(activation_key(event)),
        "title": title,
        "principal": {"id": who.id, "upn": who.upn, "name": who.name, "type": who.type},
        "entities": entities_of(event),
        "context": {
            "role": event.role_name,
            "role_id": event.role_id,
            "scope_type": event.scope_type,
            "scope": scope,
            "activated_at": iso(start),
            "expires_at": iso(event.end) if event.end else None,
            "duration_minutes": minutes,
            "justification": event.justification,
            "ticket": event.ticket,
            "request_id": event.request_id,
            "correlation_id": event.correlation_id,
            "initiated_by": event.actor.as_alert() | {"ip": event.actor.ip},
            "baseline": "SCuBA MS.AAD.7.8",
        },
    }


def _approver(event: Event) -> dict[str, Any]:
    a = event.actor
    return {"id": a.id, "upn": a.upn, "name": a.name, "approved_at": iso(event.time)}


def _hit(event: Event, info: dict[str, Any], approvers: list[dict[str, Any]], *, on_behalf: bool) -> Hit:
    """The alert for the activation ``info`` describes, with the approvals seen so far."""
    ordered = sorted(approvers, key=lambda a: (a["approved_at"], a.get("id") or "", a.get("upn") or ""))
    at = parse_time(info["t"])
    record = (at, str(info["record"])) if on_behalf and at is not None else None
    extra = [
        entity("account", aadUserId=a.get("id"), upn=a.get("upn"), displayName=a.get("name")) for a in ordered
    ]
    return DETECTOR.alert(
        event,
        key=tuple(info["key"]),
        title=info["title"],
        context=info["context"] | {"approvers": ordered},
        principal=Principal(**info["principal"]),
        record=record,
        entities=[*info["entities"], *(e for e in extra if e is not None)],
    )


def detect(event: Event, state: State[Config]) -> Hit | Resolve | list[Hit | Resolve] | None:
    if event.activity in ACTIVATION_END:
        return ended(event, state, DETECTOR)
    if event.service != "PIM" or event.failed or not watched(event, state.params.roles):
        return None
    rid = (event.request_id or "").lower()
    match = timedelta(hours=state.params.match_hours)
    if event.activity == ACTIVATION_APPROVED:
        if not rid or not (event.actor.id or event.actor.upn):
            return None  # nothing to join, or no approver to name
        state.add(f"approval:{rid}", event.id, event.time, payload=_approver(event))
        done = state.members(f"done:{rid}", event.time - match, event.time + match)
        seen = _approvals(state, rid, event.time, match)
        return [_hit(event, m.payload, seen, on_behalf=True) for m in done if m.payload] or None
    if event.activity != ACTIVATION_COMPLETED:
        return None
    who = event.subject
    if not (who.id or who.upn):
        raise Skip("activation without a principal")
    info = _activation(event)
    approvals: list[dict[str, Any]] = []
    if rid:
        state.add(f"done:{rid}", event.id, event.time, payload=info)
        approvals = _approvals(state, rid, event.time, match)
    return with_end(_hit(event, info, approvals, on_behalf=False), event, state, DETECTOR)


def _approvals(state: State[Config], rid: str, at: datetime, match: timedelta) -> list[dict[str, Any]]:
    return [m.payload for m in state.members(f"approval:{rid}", at - match, at + match) if m.payload]


PEGGY = user("adm-peggy")
VICTOR = user("adm-victor")
SYBIL = user("adm-sybil")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
PRA = ("Privileged Role Administrator", "e8611ab8-c189-46e8-94e1-60213ab1f814")
SECURITY = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
RID = guid("request", "peggy-ga")
EXPIRES = {"ExpirationTime": "2026-03-10T17:25:08Z", "TicketNumber": "CHG595557"}


def _completed(
    who: tuple[str, str | None, str | None], at: str, role: tuple[str, str] = GA, **kw: Any
) -> dict[str, Any]:
    return pim(ACTIVATION_COMPLETED, at, who, principal=who, role=role, **kw)


GA_COMPLETED = _completed(
    PEGGY,
    "2026-03-10T09:25:08Z",
    justification="CHG595557 approved change window",
    request_id=RID,
    extra_details=EXPIRES,
)
GA_APPROVED = pim(
    ACTIVATION_APPROVED, "2026-03-10T09:24:38Z", VICTOR, principal=PEGGY, role=GA, request_id=RID
)
PEGGY_GA = {
    "severity": "medium",
    "count": 1,
    "title": "adm-peggy@contoso.com activated Global Administrator for 8 h",
    "principal": {"upn": "adm-peggy@contoso.com"},
    "context": {
        "role": "Global Administrator",
        "justification": "CHG595557 approved change window",
        "ticket": "CHG595557",
        "duration_minutes": 480,
        "expires_at": "2026-03-10T17:25:08.000000Z",
        "request_id": RID,
        "approvers": [
            {
                "id": VICTOR[0],
                "upn": VICTOR[1],
                "name": VICTOR[2],
                "approved_at": "2026-03-10T09:24:38.000000Z",
            }
        ],
    },
}

CASES = [
    Case(
        "a Global Administrator activation with its approval: justification, ticket, duration, approver",
        [
            pim(
                "Add member to role requested (PIM activation)",
                "2026-03-10T09:17:40Z",
                PEGGY,
                principal=PEGGY,
                role=GA,
                request_id=RID,
            ),
            GA_APPROVED,
            GA_COMPLETED,
            directory("Add member to role", "2026-03-10T09:25:12Z", "MS-PIM", PEGGY, role=GA),
        ],
        [PEGGY_GA],
    ),
    *(
        Case(f"the activation read from {shape}", records, [PEGGY_GA])
        for shape, records in in_every_shape(GA_APPROVED, GA_COMPLETED).items()
    ),
    Case(
        "Privileged Role Administrator without approval: an alert with no approver",
        [_completed(SYBIL, "2026-03-10T17:40:00Z", role=PRA)],
        [
            {
                "severity": "medium",
                "title": "adm-sybil@contoso.com activated Privileged Role Administrator",
                "context": {"approvers": [], "role_id": PRA[1], "justification": None},
            }
        ],
    ),
    Case(
        "a role off the list (Security Administrator) and a failed completion are quiet",
        [
            _completed(SYBIL, "2026-03-10T12:00:00Z", role=SECURITY),
            _completed(SYBIL, "2026-03-10T12:05:00Z", result="failure"),
        ],
        [],
    ),
    Case(
        "an approval whose activation never completed is quiet",
        [GA_APPROVED],
        [],
    ),
    Case(
        "the list comes from the config: Security Administrator watched, Global Administrator not",
        [
            _completed(SYBIL, "2026-03-10T12:00:00Z", role=SECURITY),
            _completed(SYBIL, "2026-03-10T12:05:00Z"),
        ],
        [{"title": "adm-sybil@contoso.com activated Security Administrator"}],
        {"detectors": {"activation.privileged_role": {"roles": ["Security Administrator"]}}},
    ),
    Case(
        "a listed name matches its template id under another display name (a localized tenant)",
        [_completed(SYBIL, "2026-03-10T12:00:00Z", role=("Globaler Administrator", GA[1]))],
        [{"title": "adm-sybil@contoso.com activated Globaler Administrator", "context": {"role_id": GA[1]}}],
    ),
    Case(
        "the alert resolves when the activation expires",
        [
            _completed(SYBIL, "2026-03-10T12:00:00Z", role=PRA),
            pim(
                "Remove member from role (PIM activation expired)",
                "2026-03-10T14:00:00Z",
                PIM_SYSTEM,
                principal=SYBIL,
                role=PRA,
            ),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-10T14:00:00.000000Z"}],
    ),
]
