"""An actor assigned a role to itself (detections.md D13: the "four-eyes" bypass, proposed in Sigma
PR #5817 and never merged).

Read: PIM's assignment completions (``Add member to role in PIM completed (permanent|timebound)``,
``Add eligible member to role in PIM completed (permanent|timebound)``) and Core Directory role adds
(``Add member to role``, ``Add eligible member to role``, scoped and Restricted-Management-AU
variants) NOT made by PIM, where the initiator is the target principal — same object id, or same
UPN (case-insensitive) when an id is missing (entra-events.md §3.3). An app initiator is identified
by its service principal id, so a service principal granting itself a role matches too (the
escalation of detections.md D07, without its permission-grant precondition).

Activating an eligible role (``... (PIM activation)``) is self-service by design: the requester is
always the principal, so activation records are never read. The Core Directory mirror of a PIM
action is initiated by ``MS-PIM`` (``pim_initiators``), never by the person, so it cannot match; the
PIM ``completed`` record is the one that alerts, and the ``requested`` record (which may fail) is not
read. Every role counts by default (``privileged_only: false``): granting yourself any role skips the
second pair of eyes. Every record is its own alert (``suppress_minutes: 0``).
"""

from __future__ import annotations

from typing import Any

from detectors._assignments import (
    DIRECTORY_ADDS,
    PIM_ASSIGNED,
    AssignmentParams,
    as_service_principal,
    read_assignment,
    role_phrase,
)
from pimwatch.detection import Case, Detector, Event, Hit, Principal, Severity, Skip, State
from pimwatch.detection.records import directory, guid, pim, user


class Config(AssignmentParams):
    privileged_only: bool = False


DETECTOR = Detector(
    id="assignment.self",
    severity=Severity.HIGH,
    summary="A principal assigned a role to itself (eligible or active), bypassing a second approver.",
    runbook=(
        "Ask the person why they granted themselves the role instead of having someone else assign it. "
        "Check the sign-in that preceded it; remove the assignment unless it was approved, and restrict "
        "who can manage assignments of this role."
    ),
    anchors=("Sigma (proposed, not merged)",),
    mitre=("T1098.003", "T1078.004"),
    tactics=("Persistence", "PrivilegeEscalation"),
    kinds=("audit",),
    activities=PIM_ASSIGNED | DIRECTORY_ADDS,
    params=Config,
)


def same_principal(a: Principal, b: Principal) -> bool:
    """Object id first; UPN (case-insensitive) when either id is missing."""
    if a.id and b.id:
        return a.id.lower() == b.id.lower()
    return bool(a.upn and b.upn and a.upn.lower() == b.upn.lower())


def detect(event: Event, state: State[Config]) -> Hit | None:
    a = read_assignment(event, state.params.pim_initiators)
    if a is None or not same_principal(a.actor, a.principal):
        return None
    privileged = state.settings.is_privileged(event.role_name, event.role_id)
    if state.params.privileged_only and not privileged:
        if event.role_name is None and event.role_id is None:
            raise Skip("role assignment without a role")
        return None
    oneself = "itself" if a.actor.type == "App" or a.principal.type == "ServicePrincipal" else "themselves"
    title = f"{a.actor.label()} assigned {role_phrase(event)} to {oneself} ({a.terms()}) {a.where()}"
    return DETECTOR.alert(
        event, key=(event.id,), title=title, context=a.context(privileged), principal=a.principal
    )


# --- cases ---------------------------------------------------------------------------------------

KIM = user("adm-kim")
LUIS = user("luis.ortiz")
KIM_NO_ID = ("", "ADM-KIM@CONTOSO.COM", "Adm-Kim")  # an initiator record that carries only the UPN
ROGUE_APP = "Rogue Automation"
ROGUE_SP = (guid("sp", ROGUE_APP), None, ROGUE_APP)  # the app's service principal as a target
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
RR = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")


def _self_pim(activity: str, at: str, role: tuple[str, str], **kw: Any) -> dict[str, Any]:
    return pim(activity, at, KIM, principal=KIM, role=role, **kw)


CASES = [
    Case(
        "an admin makes themselves eligible Global Administrator through PIM",
        [
            _self_pim(
                "Add eligible member to role in PIM completed (timebound)",
                "2026-03-10T09:00:00Z",
                GA,
                extra_details={"ExpirationTime": "2026-09-10T09:00:00Z"},
            )
        ],
        [
            {
                "severity": "high",
                "count": 1,
                "title": "adm-kim@contoso.com assigned Global Administrator to themselves (eligible, until "
                "2026-09-10 09:00 UTC) via PIM",
                "principal": {"upn": "adm-kim@contoso.com"},
                "context": {"role_id": GA[1], "privileged_role": True, "via_pim": True},
            }
        ],
    ),
    Case(
        "a direct Core Directory self-grant (outside PIM)",
        [directory("Add member to role", "2026-03-10T09:30:00Z", KIM, KIM, role=UA)],
        [
            {
                "title": "adm-kim@contoso.com assigned User Administrator to themselves (active, permanent) "
                "outside PIM",
                "context": {"via_pim": False, "service": "Core Directory"},
            }
        ],
    ),
    Case(
        "a non-privileged role granted to oneself still alerts",
        [_self_pim("Add member to role in PIM completed (permanent)", "2026-03-10T10:00:00Z", RR)],
        [{"title_has": "assigned Reports Reader to themselves", "context": {"privileged_role": False}}],
    ),
    Case(
        "matched on the UPN, case-insensitively, when the initiator carries no object id",
        [directory("Add eligible member to role", "2026-03-10T10:30:00Z", KIM_NO_ID, KIM, role=GA)],
        [{"title_has": "ADM-KIM@CONTOSO.COM assigned Global Administrator to themselves (eligible"}],
    ),
    Case(
        "a service principal grants itself a role (its servicePrincipalId is the target's id)",
        [
            as_service_principal(
                directory("Add member to role", "2026-03-10T10:45:00Z", ROGUE_APP, ROGUE_SP, role=GA),
                ROGUE_APP,
            )
        ],
        [
            {
                "title": "Rogue Automation assigned Global Administrator to itself (active, permanent) "
                "outside PIM",
                "context": {"service_principal": True, "initiated_by": {"type": "App"}},
            }
        ],
    ),
    Case(
        "self-activation is self-service by design; its MS-PIM mirror is not the person",
        [
            pim("Add member to role requested (PIM activation)", "2026-03-10T11:00:00Z", KIM, principal=KIM),
            pim("Add member to role completed (PIM activation)", "2026-03-10T11:00:05Z", KIM, principal=KIM),
            directory("Add member to role", "2026-03-10T11:00:06Z", "MS-PIM", KIM, role=UA),
        ],
        [],
    ),
    Case(
        "assigning someone else, a failed self-request and a failed completion are quiet",
        [
            pim(
                "Add member to role in PIM completed (permanent)",
                "2026-03-10T12:00:00Z",
                KIM,
                principal=LUIS,
                role=GA,
            ),
            directory("Add member to role", "2026-03-10T12:01:00Z", KIM, LUIS, role=GA),
            pim(
                "Add member to role in PIM requested (permanent)",
                "2026-03-10T12:02:00Z",
                KIM,
                principal=KIM,
                role=GA,
                result="failure",
                reason="RoleAssignmentExists",
            ),
            _self_pim(
                "Add member to role in PIM completed (timebound)",
                "2026-03-10T12:03:00Z",
                GA,
                result="failure",
            ),
        ],
        [],
    ),
    Case(
        "one self-assignment through PIM is one alert: duplicate record and MS-PIM mirror fold away",
        [
            _self_pim("Add member to role in PIM completed (timebound)", "2026-03-10T13:00:00Z", UA),
            _self_pim("Add member to role in PIM completed (timebound)", "2026-03-10T13:00:00Z", UA),
            directory("Add member to role", "2026-03-10T13:00:02Z", "MS-PIM", KIM, role=UA),
        ],
        [{"count": 1, "title_has": "User Administrator to themselves (active, time-bound) via PIM"}],
    ),
    Case(
        "privileged_only narrows it to the privileged list",
        [_self_pim("Add member to role in PIM completed (permanent)", "2026-03-10T14:00:00Z", RR)],
        [],
        {"detectors": {"assignment.self": {"privileged_only": True}}},
    ),
]
