"""A role was granted outside PIM (detections.md D01; entra-events.md §3.3 "Detecting assigned outside
PIM" and "PIM's own signal", §3.6).

Two records say so, and both are read:

* **The directory write itself** (real time): a Core Directory ``Add member to role``, ``Add eligible
  member to role``, ``Add scoped member to role`` or ``Add member to role scoped over Restricted
  Management Administrative Unit`` (category ``RoleManagement``) whose initiator is not PIM. PIM's own
  writes — the mirror of every activation and PIM assignment — are initiated by the app ``MS-PIM``
  (``MS-PIM-Fairfax`` in US Gov) and are skipped: ``pim_initiators`` lists them (display names,
  service principal ids or app ids; display names count only for apps and identities without a UPN).
  An app can take any display name: to pin PIM to your tenant's MS-PIM service principal, list its
  servicePrincipalId (and ``Azure AD PIM``) instead of the names, and a look-alike named ``MS-PIM``
  alerts.
  Tools that legitimately write role membership (partner/GDAP, Lighthouse, provisioning) go in
  ``allow_initiators``.
* **PIM's reconciliation record** ``Add member to role outside of PIM (permanent)`` (service PIM):
  a PIM alert record, hours after the fact, re-emitted about every 2 h for the same standing
  assignment with a new request id. It names no granter, and catches assignments whose directory
  write was never seen (made before the pipeline ran, or logged elsewhere).

Both are keyed on the principal, the role and the kind of grant (active, eligible, administrative-unit
scoped): the grant, PIM's later reports of it and any repeat fold into one alert per UTC day
(``suppress_minutes: 1440``), titled from the earliest record — the grant, which names the granter.
``context.request_ids`` collects the PIM request ids folded in.

PIM's ``Add member to role in PIM completed ...`` records are assignments *through* PIM and are never
read here. Every role counts (``privileged_only: false``); ``context.privileged_role`` says whether
the role is on the privileged list. Azure RBAC assignments made outside PIM are in the Azure Activity
Log, not in these records (§3.1).
"""

from __future__ import annotations

from typing import Any

from detectors._assignments import (
    AU_SCOPED,
    DIRECTORY_ADDS,
    OUTSIDE_PIM_ALERT,
    RMAU_SCOPED,
    AssignmentParams,
    as_service_principal,
    describe,
    is_guest,
    listed,
    read_assignment,
    role_phrase,
)
from pimwatch.detection import Case, Detector, Event, Hit, Severity, Skip, State, Window, minutes
from pimwatch.detection.records import PIM_SYSTEM, directory, guid, pim, user


class Config(AssignmentParams):
    privileged_only: bool = False
    allow_initiators: list[str] = []  # initiators whose grants are expected (ids, UPNs, app names)


DETECTOR = Detector(
    id="assignment.outside_pim",
    severity=Severity.HIGH,
    summary="A directory role was granted outside Privileged Identity Management (not through PIM).",
    runbook=(
        "Find out who granted the role and why it bypassed PIM. Unless an approved tool made it, remove "
        "the assignment, re-create it in PIM as eligible and time-bound if it is needed, check what the "
        "assignee did with the role, and close the path that allowed the direct grant. Add approved "
        "provisioning tools to allow_initiators."
    ),
    anchors=(
        "Microsoft PIM",
        "Sentinel",
        "Sigma",
        "Microsoft security operations guide",
        "CISA SCuBA",
    ),
    mitre=("T1098.003", "T1078.004"),
    tactics=("Persistence", "PrivilegeEscalation", "DefenseEvasion"),
    kinds=("audit",),
    activities=DIRECTORY_ADDS | {OUTSIDE_PIM_ALERT},
    window=Window(suppress=minutes(1440), accumulate=("request_ids",)),
    params=Config,
)


def _pim_record(event: Event, state: State[Config]) -> Hit | None:
    """PIM's ``Add member to role outside of PIM (permanent)``: one alert per principal+role per day."""
    if event.service != "PIM" or event.failed:
        return None
    who = event.target
    if not (who.id or who.upn):
        raise Skip("outside-PIM record without a principal")
    privileged = state.settings.is_privileged(event.role_name, event.role_id)
    if state.params.privileged_only and not privileged:
        return None
    actor = event.actor
    by = (
        f" by {actor.label()}"
        if (actor.id or actor.upn or actor.name) and not listed(actor, state.params.pim_initiators)
        else " (granter not recorded)"
    )
    title = f"PIM reports {role_phrase(event)} assigned to {describe(who)} outside PIM{by}"
    context: dict[str, Any] = {
        "source": "PIM outside-PIM record",
        "activity": event.activity,
        "role": event.role_name,
        "role_id": event.role_id,
        "privileged_role": privileged,
        "scope_type": event.scope_type,
        "scope": event.scope_name or event.scope_id,
        "assignment": "active",
        "target": who.as_alert() | {"type": who.type},
        "guest": is_guest(who),
        "service_principal": who.type == "ServicePrincipal",
        "audit_type": event.details.get("audittype"),
        "request_ids": [event.request_id] if event.request_id else [],
    }
    return DETECTOR.alert(
        event,
        key=(who.id or who.upn, event.role_id or event.role_name, "active"),
        title=title,
        context=context,
        principal=who,
    )


def detect(event: Event, state: State[Config]) -> Hit | None:
    if event.activity == OUTSIDE_PIM_ALERT:
        return _pim_record(event, state)
    a = read_assignment(event, state.params.pim_initiators)
    if a is None or a.via_pim:
        return None
    if listed(a.actor, state.params.allow_initiators):
        return None
    privileged = state.settings.is_privileged(event.role_name, event.role_id)
    if state.params.privileged_only and not privileged:
        return None
    kind = " (eligible)" if a.eligible else ""
    title = (
        f"{a.actor.label()} assigned {role_phrase(event)}{kind} to {describe(a.principal)} outside PIM "
        f"(Core Directory '{event.activity}')"
    )
    context = {"source": "Core Directory"} | a.context(privileged) | {"request_ids": []}
    # The same key as PIM's own record for this standing assignment: the grant and PIM's later
    # reports of it fold into one alert per principal, role and kind per UTC day, titled from the
    # grant. Scoped (administrative-unit) and eligible grants are other assignments, other keys.
    who = a.principal
    kind = {AU_SCOPED: "au", RMAU_SCOPED: "rmau"}.get(event.activity, "eligible" if a.eligible else "active")
    return DETECTOR.alert(
        event,
        key=(who.id or who.upn, event.role_id or event.role_name, kind),
        title=title,
        context=context,
        principal=who,
    )


# --- cases ---------------------------------------------------------------------------------------

MALLORY = user("adm-mallory")
BOB = user("bob.smith")
CAROL = user("carol.white")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
SA = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
RR = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
PILOT_GROUP = (guid("group", "PIM-UserAdmin-Pilot"), "PIM-UserAdmin-Pilot")
PARTNER_TOOL = "Contoso-GDAP-Sync"


def _outside(at: str, *, principal: tuple[str, str | None, str | None] | None = None) -> dict[str, Any]:
    """PIM's re-emitted record, as in the lab capture: a new request id each time, StartTime = time."""
    return pim(
        OUTSIDE_PIM_ALERT,
        at,
        PIM_SYSTEM,
        principal=principal,
        role=UA,
        group=None if principal else PILOT_GROUP,
        extra_details={"AuditType": "RoleElevatedOutsidePimAlert"},
    )


CASES = [
    Case(
        "the grant and PIM's later reports of the same standing assignment are one alert",
        [
            directory("Add member to role", "2026-03-10T09:00:00Z", MALLORY, BOB, role=UA),
            _outside("2026-03-10T11:00:00Z", principal=BOB),
            _outside("2026-03-10T13:00:00Z", principal=BOB),
        ],
        [
            {
                "count": 3,
                "title": "adm-mallory@contoso.com assigned User Administrator to bob.smith@contoso.com "
                "outside PIM (Core Directory 'Add member to role')",
            }
        ],
    ),
    Case(
        "a user grants Global Administrator directly (Core Directory)",
        [directory("Add member to role", "2026-03-10T09:00:00Z", MALLORY, BOB, role=GA)],
        [
            {
                "severity": "high",
                "count": 1,
                "title": "adm-mallory@contoso.com assigned Global Administrator to bob.smith@contoso.com "
                "outside PIM (Core Directory 'Add member to role')",
                "principal": {"upn": "bob.smith@contoso.com"},
                "context": {
                    "source": "Core Directory",
                    "role": "Global Administrator",
                    "role_id": GA[1],
                    "privileged_role": True,
                    "assignment": "active",
                    "initiated_by": {"upn": "adm-mallory@contoso.com", "type": "User"},
                },
            }
        ],
    ),
    Case(
        "eligible, scoped and restricted-management-AU writes each alert",
        [
            directory("Add eligible member to role", "2026-03-10T09:10:00Z", MALLORY, CAROL, role=SA),
            directory("Add scoped member to role", "2026-03-10T09:11:00Z", MALLORY, CAROL, role=UA),
            directory(RMAU_SCOPED, "2026-03-10T09:12:00Z", MALLORY, CAROL, role=UA),
        ],
        [
            {"title_has": "assigned Security Administrator (eligible) to carol.white@contoso.com"},
            {"title_has": "assigned User Administrator (administrative-unit scope) to carol.white"},
            {"title_has": "User Administrator (restricted-management administrative-unit scope) to carol"},
        ],
    ),
    Case(
        "a service principal granted a role by an app that is not PIM",
        [
            as_service_principal(
                directory("Add member to role", "2026-03-10T09:20:00Z", PARTNER_TOOL, user("sp-x"), role=SA),
                "Test Service Principal",
            )
        ],
        [
            {
                "title": "Contoso-GDAP-Sync assigned Security Administrator to service principal "
                "Test Service Principal outside PIM (Core Directory 'Add member to role')",
                "context": {"service_principal": True, "initiated_by": {"type": "App"}},
            }
        ],
    ),
    Case(
        "an allow-listed tool is quiet (by display name or by service principal id)",
        [
            directory("Add member to role", "2026-03-10T09:20:00Z", PARTNER_TOOL, BOB, role=SA),
            directory("Add member to role", "2026-03-10T09:21:00Z", "Lighthouse-Onboard", BOB, role=UA),
        ],
        [],
        {
            "detectors": {
                "assignment.outside_pim": {
                    "allow_initiators": ["contoso-gdap-sync", guid("sp", "Lighthouse-Onboard")]
                }
            }
        },
    ),
    Case(
        "PIM's own writes (MS-PIM, MS-PIM-Fairfax) and PIM assignments are not outside PIM",
        [
            directory("Add member to role", "2026-03-10T10:00:00Z", "MS-PIM", BOB, role=GA),
            directory("Add eligible member to role", "2026-03-10T10:00:00Z", "MS-PIM-Fairfax", BOB, role=GA),
            pim(
                "Add member to role in PIM completed (permanent)",
                "2026-03-10T10:00:00Z",
                MALLORY,
                principal=BOB,
            ),
            pim(
                "Add member to role in PIM requested (permanent)",
                "2026-03-10T10:05:00Z",
                MALLORY,
                principal=BOB,
                result="failure",
                reason="RoleAssignmentExists",
            ),
        ],
        [],
    ),
    Case(
        "PIM's outside-PIM record re-emitted three times over 6 h is one alert",
        [
            _outside("2026-03-11T08:00:00Z"),
            _outside("2026-03-11T11:00:00Z"),
            _outside("2026-03-11T14:00:00Z"),
        ],
        [
            {
                "severity": "high",
                "count": 3,
                "first_seen": "2026-03-11T08:00:00.000000Z",
                "last_seen": "2026-03-11T14:00:00.000000Z",
                "title": "PIM reports User Administrator assigned to group PIM-UserAdmin-Pilot outside PIM "
                "(granter not recorded)",
                "principal": {"id": PILOT_GROUP[0], "name": "PIM-UserAdmin-Pilot"},
                "context": {"source": "PIM outside-PIM record", "audit_type": "RoleElevatedOutsidePimAlert"},
            }
        ],
    ),
    Case(
        "the record keeps coming the next day: one alert per day; another principal is its own alert",
        [
            _outside("2026-03-12T20:00:00Z"),
            _outside("2026-03-12T22:00:00Z"),
            _outside("2026-03-13T00:00:00Z"),
            _outside("2026-03-12T21:00:00Z", principal=CAROL),
        ],
        [
            {"count": 2, "title_has": "to group PIM-UserAdmin-Pilot"},
            {"count": 1, "title_has": "to carol.white@contoso.com"},
            {"count": 1, "first_seen": "2026-03-13T00:00:00.000000Z"},
        ],
    ),
    Case(
        "a record delivered twice is one alert; a failed write is none",
        [
            directory("Add member to role", "2026-03-10T11:00:00Z", MALLORY, CAROL, role=UA),
            directory("Add member to role", "2026-03-10T11:00:00Z", MALLORY, CAROL, role=UA),
            directory("Add member to role", "2026-03-10T11:05:00Z", MALLORY, BOB, role=GA, result="failure"),
        ],
        [{"count": 1, "title_has": "User Administrator to carol.white@contoso.com"}],
    ),
    Case(
        "a non-privileged role granted outside PIM still alerts, flagged as not privileged",
        [directory("Add member to role", "2026-03-10T12:00:00Z", MALLORY, CAROL, role=RR)],
        [{"title_has": "assigned Reports Reader to carol", "context": {"privileged_role": False}}],
    ),
    Case(
        "privileged_only silences non-privileged roles",
        [directory("Add member to role", "2026-03-10T12:00:00Z", MALLORY, CAROL, role=RR)],
        [],
        {"detectors": {"assignment.outside_pim": {"privileged_only": True}}},
    ),
]
