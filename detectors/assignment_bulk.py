"""One actor adds or removes privileged role assignments for many principals within an hour
(detections.md D09; Microsoft's security operations guide: alert on assignment changes above 4 in
60 minutes when no threshold is defined).

Read: PIM's assignment completions (``Add [eligible] member to role in PIM completed
(permanent|timebound)``) and removals (``Remove [eligible] member from role in PIM completed
(permanent|timebound)``), and Core Directory role adds and removes (``Add/Remove member to/from
role``, ``... eligible ...``, scoped and Restricted-Management-AU variants) NOT made by PIM
(entra-events.md §3.1, §3.3). Activations and their expiries are not assignment changes.

Windowed: the key is the actor (the initiator), the distinct value the target principal; the alert
fires when ``threshold`` distinct principals (default 5, i.e. more than 4) are changed by one actor
within ``within_minutes`` (60). Adding and removing the same principal counts it once. One action
counts once: the ``requested`` records (which may fail) are not read, and PIM's own directory
writes — the Core Directory mirror by ``MS-PIM`` and PIM's system identity ``Azure AD PIM`` (e.g.
removing expired assignments) — are not an actor's bulk change (``pim_initiators``). Privileged roles
only (``privileged_only: true``). ``context.principals``, ``roles`` and ``changes`` list everything
in the window; repeats within ``suppress_minutes`` (60) fold into the same alert.
"""

from __future__ import annotations

from typing import Any

from detectors._assignments import (
    DIRECTORY_ADDS,
    DIRECTORY_REMOVES,
    PIM_ASSIGNED,
    PIM_REMOVED,
    AssignmentParams,
    describe,
    listed,
    read_assignment,
    role_phrase,
)
from pimwatch.detection import Case, Detector, Event, Hit, Severity, Skip, State, Window, minutes
from pimwatch.detection.records import PIM_SYSTEM, directory, pim, user


class Config(AssignmentParams):
    privileged_only: bool = True


DETECTOR = Detector(
    id="assignment.bulk",
    severity=Severity.HIGH,
    summary="One actor changed privileged role assignments of many principals within an hour.",
    runbook=(
        "Ask the actor what the change was for (a planned migration or access review?). If unplanned, "
        "treat the actor's account as compromised: bulk grants build persistence, bulk removals lock "
        "the organisation out. Restore removed assignments and revert unapproved grants."
    ),
    anchors=("Sentinel", "Sigma", "Microsoft security operations guide"),
    mitre=("T1098.003", "T1531"),
    tactics=("Persistence", "PrivilegeEscalation", "Impact"),
    kinds=("audit",),
    activities=PIM_ASSIGNED | PIM_REMOVED | DIRECTORY_ADDS | DIRECTORY_REMOVES,
    window=Window(
        threshold=5,
        within=minutes(60),
        suppress=minutes(60),
        distinct="principals",
        accumulate=("principals", "roles", "changes"),
    ),
    params=Config,
)


def detect(event: Event, state: State[Config]) -> Hit | None:
    pim_initiators = state.params.pim_initiators
    a = read_assignment(event, pim_initiators, removals=True)
    if a is None:
        return None
    actor = a.actor
    if listed(actor, pim_initiators):
        return None  # PIM itself (e.g. the system identity removing expired assignments)
    if not (actor.id or actor.upn):
        raise Skip("assignment change without an identifiable actor")
    privileged = state.settings.is_privileged(event.role_name, event.role_id)
    if state.params.privileged_only and not privileged:
        if event.role_name is None and event.role_id is None:
            raise Skip("role assignment change without a role")
        return None
    who = a.principal
    threshold, within = state.window.threshold, state.window.within_minutes
    which = "privileged role assignments" if state.params.privileged_only else "role assignments"
    title = f"{actor.label()} changed {which} of {threshold} or more principals within {within} minutes"
    verb = "added" if a.added else "removed"
    role = role_phrase(event)
    context: dict[str, Any] = {
        "actor": actor.as_alert() | {"type": actor.type, "ip": actor.ip},
        "principals": [who.label()],
        "roles": [role],
        "changes": [f"{verb} {role} ({a.kind}) {'to' if a.added else 'from'} {describe(who)} {a.where()}"],
    }
    return DETECTOR.alert(
        event,
        key=(actor.id or actor.upn,),
        title=title,
        context=context,
        principal=actor,
        distinct=(who.id or who.upn or "").lower(),
    )


# --- cases ---------------------------------------------------------------------------------------

User = tuple[str, str | None, str | None]
ZED = user("adm-zed")
PEOPLE = [user(f"staff{i:02d}") for i in range(1, 8)]
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
SA = ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
RR = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
ADD_ELIGIBLE = "Add eligible member to role in PIM completed (timebound)"
REMOVE_ELIGIBLE = "Remove eligible member from role in PIM completed (permanent)"
REMOVE_ACTIVE = "Remove member from role in PIM completed (timebound)"


def _pim(activity: str, at: str, who: User, role: tuple[str, str] = UA, actor: Any = ZED) -> dict[str, Any]:
    return pim(activity, at, actor, principal=who, role=role)


CASES = [
    Case(
        "five principals changed in 40 minutes: adds, removals, PIM and direct",
        [
            _pim(ADD_ELIGIBLE, "2026-03-10T09:05:00Z", PEOPLE[0], GA),
            _pim(REMOVE_ELIGIBLE, "2026-03-10T09:15:00Z", PEOPLE[1], SA),
            directory("Remove member from role", "2026-03-10T09:25:00Z", ZED, PEOPLE[2], role=GA),
            directory("Add member to role", "2026-03-10T09:35:00Z", ZED, PEOPLE[3], role=UA),
            _pim(REMOVE_ACTIVE, "2026-03-10T09:45:00Z", PEOPLE[4], UA),
        ],
        [
            {
                "severity": "high",
                "count": 5,
                "title": "adm-zed@contoso.com changed privileged role assignments of 5 or more principals "
                "within 60 minutes",
                "principal": {"upn": "adm-zed@contoso.com"},
                "context": {
                    "principals": [f"staff0{i}@contoso.com" for i in range(1, 6)],
                    "roles": ["Global Administrator", "Security Administrator", "User Administrator"],
                    "changes": [
                        "added Global Administrator (eligible) to staff01@contoso.com via PIM",
                        "added User Administrator (active) to staff04@contoso.com outside PIM",
                        "removed Global Administrator (active) from staff03@contoso.com outside PIM",
                        "removed Security Administrator (eligible) from staff02@contoso.com via PIM",
                        "removed User Administrator (active) from staff05@contoso.com via PIM",
                    ],
                },
            }
        ],
    ),
    Case(
        "four principals is not more than four",
        [_pim(ADD_ELIGIBLE, f"2026-03-11T10:{i * 10:02d}:00Z", PEOPLE[i]) for i in range(4)],
        [],
    ),
    Case(
        "churn on one principal counts it once",
        [
            _pim(ADD_ELIGIBLE if i % 2 == 0 else REMOVE_ELIGIBLE, f"2026-03-12T11:{i * 5:02d}:00Z", PEOPLE[0])
            for i in range(8)
        ],
        [],
    ),
    Case(
        "six changes spread over three hours stay quiet",
        [_pim(ADD_ELIGIBLE, f"2026-03-13T{12 + i // 2}:{(i % 2) * 40:02d}:00Z", PEOPLE[i]) for i in range(6)],
        [],
    ),
    Case(
        "PIM's own writes are not an actor's bulk change: MS-PIM mirrors and the Azure AD PIM identity",
        [
            *[
                directory("Add member to role", f"2026-03-10T15:0{i}:00Z", "MS-PIM", PEOPLE[i], role=GA)
                for i in range(6)
            ],
            *[_pim(REMOVE_ACTIVE, f"2026-03-10T15:1{i}:00Z", PEOPLE[i], GA, PIM_SYSTEM) for i in range(6)],
        ],
        [],
    ),
    Case(
        "non-privileged roles and failed requests do not count",
        [
            *[_pim(ADD_ELIGIBLE, f"2026-03-14T16:0{i}:00Z", PEOPLE[i], RR) for i in range(6)],
            *[_pim(ADD_ELIGIBLE, f"2026-03-14T16:1{i}:00Z", PEOPLE[i], GA) for i in range(3)],
            *[
                pim(
                    "Add eligible member to role in PIM requested (permanent)",
                    f"2026-03-14T16:2{i}:00Z",
                    ZED,
                    principal=PEOPLE[i],
                    role=GA,
                    result="failure",
                    reason="ExpirationRule",
                )
                for i in range(3, 7)
            ],
        ],
        [],
    ),
    Case(
        "duplicated records count once; six principals in one hour fold into one alert",
        [
            *[_pim(ADD_ELIGIBLE, f"2026-03-15T17:{i * 8:02d}:00Z", PEOPLE[i], SA) for i in range(6)],
            _pim(ADD_ELIGIBLE, "2026-03-15T17:00:00Z", PEOPLE[0], SA),
        ],
        [
            {
                "count": 6,
                "first_seen": "2026-03-15T17:00:00.000000Z",
                "last_seen": "2026-03-15T17:40:00.000000Z",
            }
        ],
    ),
    Case(
        "threshold and privileged_only come from the config",
        [_pim(ADD_ELIGIBLE, f"2026-03-16T18:{i * 10:02d}:00Z", PEOPLE[i], RR) for i in range(3)],
        [
            {
                "count": 3,
                "title": "adm-zed@contoso.com changed role assignments of 3 or more principals within "
                "60 minutes",
            }
        ],
        {"detectors": {"assignment.bulk": {"threshold": 3, "privileged_only": False}}},
    ),
]
