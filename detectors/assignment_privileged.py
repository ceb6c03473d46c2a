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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pimwatch.alerts import Severity
from pimwatch.detector import Case, Detector, Hit, Skip, State
from pimwatch.event import Event, Principal
from pimwatch.testing import directory, guid, pim, user
from pimwatch.timeutil import iso

# --- the assignment family's shared reading ------------------------------------------------------
# Used by assignment.outside_pim, .permanent, .bulk and .self too, so that all five read the same
# records the same way (which activities, which service, which initiator is PIM itself).

PIM_ASSIGNED: frozenset[str] = frozenset(
    {
        "Add member to role in PIM completed (permanent)",
        "Add member to role in PIM completed (timebound)",
        "Add eligible member to role in PIM completed (permanent)",
        "Add eligible member to role in PIM completed (timebound)",
    }
)
PIM_REMOVED: frozenset[str] = frozenset(
    {
        "Remove member from role in PIM completed (permanent)",
        "Remove member from role in PIM completed (timebound)",
        "Remove eligible member from role in PIM completed (permanent)",
        "Remove eligible member from role in PIM completed (timebound)",
    }
)
AU_SCOPED = "Add scoped member to role"
RMAU_SCOPED = "Add member to role scoped over Restricted Management Administrative Unit"
DIRECTORY_ADDS: frozenset[str] = frozenset(
    {"Add member to role", "Add eligible member to role", AU_SCOPED, RMAU_SCOPED}
)
DIRECTORY_REMOVES: frozenset[str] = frozenset(
    {
        "Remove member from role",
        "Remove eligible member from role",
        "Remove scoped member from role",
        "Remove member from role scoped over Restricted Management Administrative Unit",
    }
)
OUTSIDE_PIM_ALERT = "Add member to role outside of PIM (permanent)"
# Who carries out PIM's own directory writes: the app MS-PIM (MS-PIM-Fairfax in US Gov) and the
# system identity "Azure AD PIM" (a user object without a UPN, entra-events.md §3.3).
PIM_INITIATORS: list[str] = ["MS-PIM", "MS-PIM-Fairfax", "Azure AD PIM"]


def listed(p: Principal, values: Iterable[str]) -> bool:
    """Whether ``p`` is in ``values`` (case-insensitive): its object / service principal id or UPN, and
    the display name only for app initiators and UPN-less system identities (``Azure AD PIM``, or the
    record's ``identity`` when ``initiatedBy`` is empty) — a user's, group's or target service
    principal's display name proves nothing."""
    wanted = {v.strip().lower() for v in values if v and v.strip()}
    if not wanted:
        return False
    names = [p.id, p.upn]
    if p.type == "App" or (p.upn is None and p.type in (None, "User")):
        names.append(p.name)
    return any(n is not None and n.lower() in wanted for n in names)


def str_list(state: State, name: str) -> list[str]:
    value = state.params[name]
    assert isinstance(value, list)
    return value


def is_guest(p: Principal) -> bool:
    return p.upn is not None and "#ext#" in p.upn.lower()


def describe(p: Principal) -> str:
    """A principal for a title: guests, groups and service principals say what they are."""
    if p.type == "ServicePrincipal":
        return f"service principal {p.label()}"
    if p.type == "Group":
        return f"group {p.label()}"
    if is_guest(p):
        return f"guest {p.label()}"
    return p.label()


def role_phrase(event: Event) -> str:
    """The role and where it applies, for a title."""
    role = event.role_name or event.role_id or "(unknown role)"
    if event.scope_type == "group":
        return f"{role} of group {event.scope_name or event.scope_id}"
    if event.scope_type == "resource":
        return f"{role} on {event.scope_name or event.scope_id}"
    if event.activity == AU_SCOPED:
        return f"{role} (administrative-unit scope)"
    if event.activity == RMAU_SCOPED:
        return f"{role} (restricted-management administrative-unit scope)"
    return role


def when(dt: datetime) -> str:
    return f"{dt:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class Assignment:
    """One role-assignment change, read from a PIM ``completed`` record or a non-PIM directory write."""

    event: Event
    via_pim: bool  # a PIM record (True) or a Core Directory write not made by PIM (False)
    added: bool
    eligible: bool
    permanent: bool

    @property
    def principal(self) -> Principal:
        return self.event.target

    @property
    def actor(self) -> Principal:
        return self.event.actor

    @property
    def kind(self) -> str:
        return "eligible" if self.eligible else "active"

    def terms(self) -> str:
        """``eligible, permanent`` / ``active, until 2026-03-17 09:00 UTC``."""
        if self.permanent:
            return f"{self.kind}, permanent"
        end = self.event.end
        return f"{self.kind}, until {when(end)}" if end else f"{self.kind}, time-bound"

    def where(self) -> str:
        return "via PIM" if self.via_pim else "outside PIM"

    def context(self, privileged: bool) -> dict[str, Any]:
        e = self.event
        p = self.principal
        return {
            "activity": e.activity,
            "service": e.service,
            "via_pim": self.via_pim,
            "change": "added" if self.added else "removed",
            "assignment": self.kind,
            "permanent": self.permanent,
            "start": iso(e.start) if e.start else None,
            "end": iso(e.end) if e.end else None,
            "role": e.role_name,
            "role_id": e.role_id,
            "privileged_role": privileged,
            "scope_type": e.scope_type,
            "scope": e.scope_name or e.scope_id,
            "initiated_by": e.actor.as_alert() | {"type": e.actor.type, "ip": e.actor.ip},
            "target": p.as_alert() | {"type": p.type},
            "guest": is_guest(p),
            "service_principal": p.type == "ServicePrincipal",
            "justification": e.justification,
            "ticket": e.ticket,
            "request_id": e.request_id,
            "correlation_id": e.correlation_id,
        }


def read_assignment(
    event: Event, pim_initiators: Iterable[str], *, removals: bool = False
) -> Assignment | None:
    """The assignment change ``event`` records, or None when it is not one the family reads.

    None for failed records, for records of the wrong service or category, and for Core Directory
    writes made by PIM itself (the mirror of a PIM record that is read instead). Raises Skip when the
    record names no principal.
    """
    if event.failed:
        return None
    activity = event.activity
    if activity in PIM_ASSIGNED or (removals and activity in PIM_REMOVED):
        if event.service != "PIM":
            return None
        via_pim = True
        added = activity in PIM_ASSIGNED
        permanent = activity.endswith("(permanent)")
    elif activity in DIRECTORY_ADDS or (removals and activity in DIRECTORY_REMOVES):
        if event.service != "Core Directory" or event.audit_category != "RoleManagement":
            return None
        if listed(event.actor, pim_initiators):
            return None  # PIM's own directory write: the PIM record is the one that counts
        via_pim = False
        added = activity in DIRECTORY_ADDS
        permanent = True  # a direct write has no end date
    else:
        return None
    if not (event.target.id or event.target.upn):
        raise Skip("role assignment without a principal")
    return Assignment(event, via_pim, added, "eligible" in activity, permanent)


# --- the detector --------------------------------------------------------------------------------

DETECTOR = Detector(
    id="assignment.privileged",
    severity=Severity.HIGH,
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
    kinds=("audit",),
    activities=PIM_ASSIGNED | DIRECTORY_ADDS,
    params={"suppress_minutes": 0, "pim_initiators": list(PIM_INITIATORS)},
)


def detect(event: Event, state: State) -> Hit | None:
    a = read_assignment(event, str_list(state, "pim_initiators"))
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


def as_service_principal(rec: dict[str, Any], name: str) -> dict[str, Any]:
    """The record with its User target turned into a service principal (sample 01's layout)."""
    for t in rec["properties"]["targetResources"]:
        if t.get("type") == "User":
            t["type"] = "ServicePrincipal"
            t["displayName"] = name
            t.pop("userPrincipalName", None)
    return rec


def access_reviews_copy(activity: str, at: str, actor: User, target: User) -> dict[str, Any]:
    """The Access Reviews record written next to a PIM approval (service ``Access Reviews``)."""
    rec = directory(activity, at, actor, target, category="UserManagement")
    rec["properties"]["loggedByService"] = "Access Reviews"
    rec["properties"]["id"] = "AADERM_" + guid(activity, at, target)
    return rec


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
                "severity": "high",
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
