"""A permanent (no end date) active or eligible assignment of a privileged role (detections.md D28).

Read: PIM's ``Add member to role in PIM completed (permanent)`` and ``Add eligible member to role in
PIM completed (permanent)``, and Core Directory role adds (``Add member to role``, ``Add eligible
member to role`` and the scoped / Restricted-Management-AU variants) NOT initiated by PIM — a direct
write has no end date, so it is permanent by nature (entra-events.md §3.3, §3.6). Time-bound
completions and activations are not permanent and are not read.

One alert per real action: only the ``completed`` record alerts — the ``requested (permanent)``
record comes first and fails when the role policy forbids permanent assignments (§3.2) — and the
Core Directory mirror of a PIM assignment, initiated by ``MS-PIM``, is skipped (``pim_initiators``).
A direct write that is also reported by PIM's ``Add member to role outside of PIM (permanent)`` is
read here only as the write (the PIM record belongs to assignment.outside_pim).

Permanent assignments are legitimate for emergency (break-glass) accounts, which are permanently
active Global Administrators by design (§3.6, detections.md §3): they are allowed by default
(``allow_break_glass: true``, the accounts from ``break_glass.accounts``). Other principals that may
hold standing roles (e.g. a synchronisation service account) go in ``allow`` (object ids or UPNs,
case-insensitive), like SCuBA's ``RoleExclusions``. Privileged roles only (``privileged_only:
true``). Every record is its own alert (``suppress_minutes: 0``).
"""

from __future__ import annotations

from typing import Any

from detectors._assignments import (
    DIRECTORY_ADDS,
    AssignmentParams,
    as_service_principal,
    describe,
    listed,
    read_assignment,
    role_phrase,
)
from pimwatch.detection import Case, Detector, Event, Hit, Severity, Skip, State
from pimwatch.detection.records import directory, pim, user

PIM_PERMANENT: frozenset[str] = frozenset(
    {
        "Add member to role in PIM completed (permanent)",
        "Add eligible member to role in PIM completed (permanent)",
    }
)


class Config(AssignmentParams):
    privileged_only: bool = True
    allow: list[str] = []  # principals allowed a permanent assignment (ids or UPNs)
    allow_break_glass: bool = True


DETECTOR = Detector(
    id="assignment.permanent",
    severity=Severity.HIGH,
    summary="A privileged role was assigned permanently (no end date), as active or eligible.",
    runbook=(
        "Ask the person who made the assignment why it has no end date. Unless the principal is an "
        "approved standing account (then add it to the allow-list), replace it with an eligible, "
        "time-bound assignment and tighten the role setting that allows permanent assignments."
    ),
    anchors=("CISA SCuBA", "Microsoft PIM (Azure resources: too many permanent owners)", "CIPP"),
    mitre=("T1098.003", "T1078.004"),
    tactics=("Persistence", "PrivilegeEscalation"),
    kinds=("audit",),
    activities=PIM_PERMANENT | DIRECTORY_ADDS,
    params=Config,
)


def detect(event: Event, state: State[Config]) -> Hit | None:
    a = read_assignment(event, state.params.pim_initiators)
    if a is None or not a.permanent:
        return None
    privileged = state.settings.is_privileged(event.role_name, event.role_id)
    if state.params.privileged_only and not privileged:
        if event.role_name is None and event.role_id is None:
            raise Skip("role assignment without a role")
        return None
    who = a.principal
    if listed(who, state.params.allow):
        return None
    if state.params.allow_break_glass and state.settings.is_break_glass(who):
        return None
    title = (
        f"Permanent {a.kind} assignment of {role_phrase(event)} to {describe(who)} by {a.actor.label()} "
        f"{a.where()}"
    )
    return DETECTOR.alert(event, key=(event.id,), title=title, context=a.context(privileged), principal=who)


# --- cases ---------------------------------------------------------------------------------------

ADMIN = user("adm-olga")
DAVE = user("dave.lee")
SYNC = user("svc-hr-sync")
BG = ("c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com", "Emergency Admin 01")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
SA = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
RR = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
ACTIVE = "Add member to role in PIM completed (permanent)"
ELIGIBLE = "Add eligible member to role in PIM completed (permanent)"
BREAK_GLASS = {"break_glass": {"accounts": [BG[0]]}}


def _pim(activity: str, at: str, principal: Any, role: tuple[str, str], **kw: Any) -> dict[str, Any]:
    return pim(activity, at, ADMIN, principal=principal, role=role, justification="standing access", **kw)


CASES = [
    Case(
        "a permanent active Global Administrator through PIM",
        [_pim(ACTIVE, "2026-03-10T09:00:00Z", DAVE, GA)],
        [
            {
                "severity": "high",
                "count": 1,
                "title": "Permanent active assignment of Global Administrator to dave.lee@contoso.com by "
                "adm-olga@contoso.com via PIM",
                "principal": {"upn": "dave.lee@contoso.com"},
                "context": {
                    "role_id": GA[1],
                    "permanent": True,
                    "assignment": "active",
                    "end": None,
                    "justification": "standing access",
                    "initiated_by": {"upn": "adm-olga@contoso.com"},
                },
            }
        ],
    ),
    Case(
        "a permanent eligible assignment alerts too",
        [_pim(ELIGIBLE, "2026-03-10T09:30:00Z", DAVE, UA)],
        [{"title_has": "Permanent eligible assignment of User Administrator to dave.lee@contoso.com"}],
    ),
    Case(
        "a direct Core Directory grant is permanent by nature",
        [
            as_service_principal(
                directory("Add member to role", "2026-03-10T10:00:00Z", ADMIN, user("sp-y"), role=SA),
                "Deploy Pipeline",
            )
        ],
        [
            {
                "title": "Permanent active assignment of Security Administrator to service principal "
                "Deploy Pipeline by adm-olga@contoso.com outside PIM",
                "context": {"via_pim": False, "service_principal": True},
            }
        ],
    ),
    Case(
        "one PIM assignment, one alert: the MS-PIM mirror is skipped; a failed request never alerts",
        [
            pim(
                "Add member to role in PIM requested (permanent)",
                "2026-03-10T10:59:00Z",
                ADMIN,
                principal=DAVE,
                role=GA,
                result="failure",
                reason="ExpirationRule",
            ),
            pim(
                "Add member to role in PIM requested (permanent)",
                "2026-03-10T11:00:00Z",
                ADMIN,
                principal=DAVE,
            ),
            _pim(ACTIVE, "2026-03-10T11:00:05Z", DAVE, UA),
            directory("Add member to role", "2026-03-10T11:00:06Z", "MS-PIM", DAVE, role=UA),
        ],
        [{"count": 1, "title_has": "of User Administrator to dave.lee@contoso.com by adm-olga"}],
    ),
    Case(
        "a failed requested record alone is quiet",
        [
            pim(
                "Add eligible member to role in PIM requested (permanent)",
                "2026-03-10T12:00:00Z",
                ADMIN,
                principal=DAVE,
                role=GA,
                result="failure",
                reason="ExpirationRule",
            )
        ],
        [],
    ),
    Case(
        "time-bound assignments, activations and non-privileged roles are quiet",
        [
            _pim("Add member to role in PIM completed (timebound)", "2026-03-10T13:00:00Z", DAVE, GA),
            _pim(
                "Add eligible member to role in PIM completed (timebound)", "2026-03-10T13:01:00Z", DAVE, GA
            ),
            pim(
                "Add member to role completed (PIM activation)", "2026-03-10T13:02:00Z", DAVE, principal=DAVE
            ),
            _pim(ACTIVE, "2026-03-10T13:03:00Z", DAVE, RR),
            directory("Add member to role", "2026-03-10T13:04:00Z", ADMIN, DAVE, role=RR),
        ],
        [],
    ),
    Case(
        "PIM's re-emitted outside-PIM records are not assignments (assignment.outside_pim reads them)",
        [
            pim(
                "Add member to role outside of PIM (permanent)",
                f"2026-03-10T{h:02d}:00:00Z",
                "MS-PIM",
                principal=DAVE,
                role=GA,
            )
            for h in (14, 16, 18)
        ],
        [],
    ),
    Case(
        "the break-glass account made permanent Global Administrator is allowed by default",
        [
            _pim(ACTIVE, "2026-03-10T15:00:00Z", BG, GA),
            directory("Add member to role", "2026-03-10T15:01:00Z", ADMIN, BG, role=GA),
        ],
        [],
        BREAK_GLASS,
    ),
    Case(
        "allow_break_glass: false alerts on the break-glass account too",
        [_pim(ACTIVE, "2026-03-10T15:00:00Z", BG, GA)],
        [{"title_has": "Global Administrator to bg-admin01@contoso.onmicrosoft.com"}],
        {**BREAK_GLASS, "detectors": {"assignment.permanent": {"allow_break_glass": False}}},
    ),
    Case(
        "an allow-listed service account (UPN, any case) is quiet; others are not",
        [
            _pim(ACTIVE, "2026-03-10T16:00:00Z", SYNC, UA),
            _pim(ACTIVE, "2026-03-10T16:05:00Z", DAVE, UA),
        ],
        [{"count": 1, "title_has": "to dave.lee@contoso.com"}],
        {"detectors": {"assignment.permanent": {"allow": ["SVC-HR-Sync@Contoso.com"]}}},
    ),
    Case(
        "a record delivered twice is one alert",
        [_pim(ELIGIBLE, "2026-03-10T17:00:00Z", DAVE, SA)] * 2,
        [{"count": 1, "title_has": "Permanent eligible assignment of Security Administrator"}],
    ),
]
