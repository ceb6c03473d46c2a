"""A new eligible or active assignment of a privileged role (detections.md D02, D04–D06, D08).

Read: PIM's ``Add member to role in PIM completed (permanent|timebound)`` and ``Add eligible member
to role in PIM completed (permanent|timebound)`` (Entra roles, PIM for Groups, Azure resources), and
the Core Directory role writes ``Add member to role``, ``Add eligible member to role`` and their
scoped / Restricted-Management-AU variants that were NOT initiated by PIM (entra-events.md §3.1,
§3.3, §3.6). Activations (``... (PIM activation)``) are not assignments and are not read.

One alert per real action: a PIM assignment writes PIM's ``requested`` record, PIM's ``completed``
record and a Core Directory mirror initiated by the app ``MS-PIM``. Only the ``completed`` record
alerts — ``requested`` comes first and may fail (§3.6), and the mirror is skipped by its initiator
(``pim_initiators``, matched on display name, service principal id or app id). A direct Core
Directory write has no PIM record, so it alerts itself. PIM's ``Add member to role outside of PIM
(permanent)`` is a PIM alert record, not an assignment (assignment.outside_pim reads it).

Guests (``#EXT#`` in the UPN), groups and service principals are named as such in the title and
flagged in the context (``guest``, ``service_principal``). Every record is its own alert
(``suppress_minutes: 0``); a record delivered twice counts once.

Severity medium (review it against the change record): most new assignments are routine admin
work through PIM, and the ones that need action today — made outside PIM, permanent, self-assigned,
in bulk — raise their own high alerts (``assignment.outside_pim``, ``.permanent``, ``.self``,
``.bulk``) on the same record.
"""

from __future__ import annotations

from typing import Any

from detectors._assignments import (
    DIRECTORY_ADDS,
    OUTSIDE_PIM_ALERT,
    PIM_ASSIGNED,
    AssignmentParams,
    access_reviews_copy,
    as_service_principal,
    describe,
    read_assignment,
    role_phrase,
)
from pimwatch.detection import Case, Detector, Event, Hit, Severity, Skip, State
from pimwatch.detection.records import directory, guid, pim, user

Config = AssignmentParams


DETECTOR = Detector(
    id="assignment.privileged",
    severity=Severity.MEDIUM,
    summary="A privileged role was newly assigned (eligible or active, permanent or time-bound).",
    runbook=(
        "Confirm the assignment with the person who made it and the change record. Check that the "
        "assignee needs this role, that it is eligible and time-bound rather than active or permanent, "
        "and treat guests and service principals with privileged roles as suspect until explained. "
        "Remove the assignment if it is not approved and review what the assignee did since."
    ),
    anchors=(
        "Sentinel",
        "Sigma",
        "Elastic (Global Administrator)",
        "Splunk",
        "Panther",
        "Microsoft security operations guide",
        "CISA SCuBA",
    ),
    mitre=("T1098.003", "T1078.004"),
    tactics=("Persistence", "PrivilegeEscalation"),
    kinds=("audit",),
    activities=PIM_ASSIGNED | DIRECTORY_ADDS,
    params=Config,
)


def detect(event: Event, state: State[Config]) -> Hit | None:
    a = read_assignment(event, state.params.pim_initiators)
    if a is None:
        return None
    if event.role_name is None and event.role_id is None:
        raise Skip("role assignment without a role")
    if not state.settings.is_privileged(event.role_name, event.role_id):
        return None
    title = (
        f"{a.actor.label()} assigned {role_phrase(event)} ({a.terms()}) to {describe(a.principal)} "
        f"{a.where()}"
    )
    return DETECTOR.alert(
        event,
        key=(event.id,),
        title=title,
        context=a.context(privileged=True),
        principal=a.principal,
    )


# --- cases ---------------------------------------------------------------------------------------

User = tuple[str, str | None, str | None]
ADMIN = user("adm-ivan")
BOB = user("bob.jones")
GUEST: User = (
    guid("user", "partner"),
    "lee_fabrikam.com#EXT#@contoso.onmicrosoft.com",
    "Lee (Fabrikam)",
)
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
SA = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
RR = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
ELIGIBLE_TIMEBOUND = "Add eligible member to role in PIM completed (timebound)"
ACTIVE_PERMANENT = "Add member to role in PIM completed (permanent)"


def _pim(activity: str, at: str, principal: User, role: tuple[str, str], **kw: Any) -> dict[str, Any]:
    return pim(activity, at, ADMIN, principal=principal, role=role, justification="CHG0042 on-call", **kw)


CASES = [
    Case(
        "a time-bound eligible Global Administrator assignment through PIM",
        [
            _pim(
                ELIGIBLE_TIMEBOUND,
                "2026-03-10T09:00:00Z",
                BOB,
                GA,
                extra_details={"ExpirationTime": "2026-06-10T09:00:00Z"},
            )
        ],
        [
            {
                "severity": "medium",
                "count": 1,
                "title": "adm-ivan@contoso.com assigned Global Administrator (eligible, until "
                "2026-06-10 09:00 UTC) to bob.jones@contoso.com via PIM",
                "principal": {"upn": "bob.jones@contoso.com"},
                "context": {
                    "role_id": GA[1],
                    "assignment": "eligible",
                    "permanent": False,
                    "end": "2026-06-10T09:00:00.000000Z",
                    "via_pim": True,
                    "guest": False,
                    "justification": "CHG0042 on-call",
                },
            }
        ],
    ),
    Case(
        "a guest made a permanent active Security Administrator is called out",
        [_pim(ACTIVE_PERMANENT, "2026-03-10T10:00:00Z", GUEST, SA)],
        [
            {
                "title": "adm-ivan@contoso.com assigned Security Administrator (active, permanent) to guest "
                "lee_fabrikam.com#EXT#@contoso.onmicrosoft.com via PIM",
                "context": {"guest": True, "service_principal": False, "assignment": "active"},
            }
        ],
    ),
    Case(
        "a direct Core Directory grant to a service principal (sample 01's shape) is outside PIM",
        [
            as_service_principal(
                directory("Add member to role", "2026-03-10T11:00:00Z", ADMIN, user("sp-backup"), role=UA),
                "Backup Automation",
            )
        ],
        [
            {
                "title": "adm-ivan@contoso.com assigned User Administrator (active, permanent) to service "
                "principal Backup Automation outside PIM",
                "principal": {"name": "Backup Automation", "upn": None},
                "context": {"service_principal": True, "via_pim": False, "service": "Core Directory"},
            }
        ],
    ),
    Case(
        "one PIM assignment, one alert: the MS-PIM Core Directory mirror does not alert again",
        [
            _pim(ACTIVE_PERMANENT, "2026-03-10T12:00:00Z", BOB, UA),
            directory("Add member to role", "2026-03-10T12:00:02Z", "MS-PIM", BOB, role=UA),
            directory("Add eligible member to role", "2026-03-10T12:05:02Z", "MS-PIM-Fairfax", BOB, role=GA),
        ],
        [{"count": 1, "title_has": "assigned User Administrator (active, permanent)"}],
    ),
    Case(
        "a failed requested record never alerts; the completed one does",
        [
            pim(
                "Add eligible member to role in PIM requested (permanent)",
                "2026-03-10T13:00:00Z",
                ADMIN,
                principal=BOB,
                role=GA,
                result="failure",
                reason="ExpirationRule",
            ),
            pim(
                "Add member to role in PIM requested (timebound)",
                "2026-03-10T13:01:00Z",
                ADMIN,
                principal=BOB,
            ),
            _pim("Add member to role in PIM completed (timebound)", "2026-03-10T13:01:05Z", BOB, UA),
        ],
        [{"count": 1, "title_has": "User Administrator (active, time-bound) to bob.jones@contoso.com"}],
    ),
    Case(
        "a record delivered twice is one alert",
        [_pim(ELIGIBLE_TIMEBOUND, "2026-03-10T14:00:00Z", BOB, SA)] * 2,
        [{"count": 1, "title_has": "Security Administrator (eligible, time-bound)"}],
    ),
    Case(
        "a non-privileged role is quiet, through PIM or directly",
        [
            _pim(ACTIVE_PERMANENT, "2026-03-10T15:00:00Z", BOB, RR),
            directory("Add member to role", "2026-03-10T15:01:00Z", ADMIN, BOB, role=RR),
        ],
        [],
    ),
    Case(
        "activations, PIM's outside-PIM records, Access Reviews copies and failed completions are quiet",
        [
            pim("Add member to role completed (PIM activation)", "2026-03-10T16:00:00Z", BOB, principal=BOB),
            directory("Add member to role", "2026-03-10T16:00:01Z", "MS-PIM", BOB, role=UA),
            *[
                pim(OUTSIDE_PIM_ALERT, f"2026-03-10T{h:02d}:30:00Z", "MS-PIM", principal=BOB, role=GA)
                for h in (8, 10, 12)
            ],
            _pim(ACTIVE_PERMANENT, "2026-03-10T17:00:00Z", BOB, GA, result="failure"),
            access_reviews_copy("Request approved", "2026-03-10T17:05:00Z", ADMIN, BOB),
        ],
        [],
    ),
    Case(
        "the privileged-role list comes from the config",
        [_pim(ACTIVE_PERMANENT, "2026-03-10T15:00:00Z", BOB, RR)],
        [{"title_has": "assigned Reports Reader (active, permanent)", "context": {"privileged_role": True}}],
        {"privileged_roles": ["Reports Reader"]},
    ),
]
