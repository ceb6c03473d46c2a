"""The assignment family's shared reading, used by the five ``assignment.*`` detectors so that all
of them read the same records the same way: which activities, which service, which initiator is PIM
itself. A private module (leading underscore): discovery skips it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pimwatch.detection import PIM_SERVICE_NAME, Event, Params, Principal, Skip, iso
from pimwatch.detection.records import User, directory, guid

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
PIM_INITIATORS: list[str] = ["MS-PIM", "MS-PIM-Fairfax", PIM_SERVICE_NAME]


class AssignmentParams(Params):
    """The parameters every ``assignment.*`` detector has."""

    pim_initiators: list[str] = list(PIM_INITIATORS)  # whose directory writes are PIM's own


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


# --- record builders for the family's cases ----------------------------------------------------


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
