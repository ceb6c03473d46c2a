"""What a posture run read from Graph, and the questions every check asks of it (written once).

The fields are the Graph JSON as returned (``$expand=principal`` on the role schedules). A field a run
did not read stays empty; the checks only run when every source they declare was read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pimwatch.detection.detector import Settings
from pimwatch.graph.baseline import Baseline

GLOBAL_ADMIN = "62e90394-69f5-4237-9190-012177145e10"
# CISA's eight highly privileged roles (ScubaGear, Maester): the anchors' P2 ratio is over these.
CISA_PRIVILEGED = {
    "62e90394-69f5-4237-9190-012177145e10": "Global Administrator",
    "e8611ab8-c189-46e8-94e1-60213ab1f814": "Privileged Role Administrator",
    "fe930be7-5e62-47db-91af-98c3a49a38b1": "User Administrator",
    "f28a1f50-f6e7-4571-818b-6a12f2af6b6c": "SharePoint Administrator",
    "29232cdf-9323-42fd-ade2-1d097af3e4de": "Exchange Administrator",
    "8ac3fc64-6eca-42ea-9e69-59f4c7b60eb2": "Hybrid Identity Administrator",
    "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3": "Application Administrator",
    "158c047a-c907-4556-b7ef-446551a6b5f7": "Cloud Application Administrator",
}

Json = dict[str, Any]


def kind(obj: Json | None) -> str:
    """``user``, ``group``, ``servicePrincipal`` (from ``@odata.type``), or ``unknown``."""
    t = str((obj or {}).get("@odata.type") or "")
    return t.rsplit(".", 1)[-1] if t else "unknown"


@dataclass(frozen=True)
class Holder:
    """One principal holding a role: how (eligible / active), and through which group if any."""

    role_id: str
    principal: Json
    how: str  # "eligible" or "active"
    via_group: str | None = None

    @property
    def id(self) -> str:
        return str(self.principal.get("id") or "")


@dataclass
class Snapshot:
    settings: Settings
    baseline: Baseline
    now: datetime
    role_definitions: list[Json] = field(default_factory=list)
    role_policies: list[Json] = field(default_factory=list)
    assignment_schedules: list[Json] = field(default_factory=list)
    assignment_instances: list[Json] = field(default_factory=list)
    eligibility_instances: list[Json] = field(default_factory=list)
    group_members: dict[str, list[Json]] = field(default_factory=dict)
    group_eligibility: dict[str, list[Json]] = field(default_factory=dict)
    group_policies: dict[str, list[Json]] = field(default_factory=dict)
    users: dict[str, Json] = field(default_factory=dict)  # by object id (lower-case)
    service_principals: dict[str, Json] = field(default_factory=dict)
    subscribed_skus: list[Json] = field(default_factory=list)
    activations: list[Json] = field(default_factory=list)
    pim_alerts: list[Json] = field(default_factory=list)
    pim_alert_configs: list[Json] = field(default_factory=list)
    ca_policies: list[Json] = field(default_factory=list)
    auth_methods: dict[str, list[Json]] = field(default_factory=dict)
    signins: dict[str, list[Json]] = field(default_factory=dict)
    break_glass: dict[str, Json] = field(default_factory=dict)  # configured account -> user (or {})

    # --- names -----------------------------------------------------------------------------------
    def role_name(self, role_id: str) -> str:
        for d in self.role_definitions:
            if str(d.get("id", "")).lower() == role_id.lower() or str(d.get("templateId", "")).lower() == (
                role_id.lower()
            ):
                return str(d.get("displayName") or role_id)
        return CISA_PRIVILEGED.get(role_id.lower(), role_id)

    def is_privileged(self, role_id: str) -> bool:
        return self.settings.is_privileged(self.role_name(role_id), role_id)

    def is_break_glass(self, obj: Json) -> bool:
        oid, upn = str(obj.get("id") or "").lower(), str(obj.get("userPrincipalName") or "").lower()
        s = self.settings
        return bool(oid and oid in s.break_glass_ids) or bool(upn and upn in s.break_glass_upns)

    # --- who holds what --------------------------------------------------------------------------
    def holders(self, role_id: str | None = None) -> list[Holder]:
        """Every principal holding ``role_id`` (all roles: None): eligible and active schedule
        instances, and the members (direct, transitive, PIM-eligible) of a group that holds it."""
        out: list[Holder] = []
        for how, rows in (("eligible", self.eligibility_instances), ("active", self.assignment_instances)):
            for row in rows:
                rid = str(row.get("roleDefinitionId") or "")
                if role_id is not None and rid.lower() != role_id.lower():
                    continue
                p = row.get("principal") or {"id": row.get("principalId")}
                out.append(Holder(rid, p, how))
                if kind(p) == "group":
                    gid = str(p.get("id") or "").lower()
                    for m in self.group_members.get(gid, []):
                        out.append(Holder(rid, m, how, gid))
                    for e in self.group_eligibility.get(gid, []):
                        if str(e.get("accessId") or "member") == "member":
                            member = e.get("principal") or {"id": e.get("principalId")}
                            out.append(Holder(rid, member, "eligible", gid))
        return out

    def users_holding(self, role_ids: set[str]) -> dict[str, Json]:
        """Distinct users (by id) holding any of ``role_ids`` in any way."""
        wanted = {r.lower() for r in role_ids}
        found: dict[str, Json] = {}
        for h in self.holders():
            if h.role_id.lower() in wanted and kind(h.principal) in ("user", "unknown") and h.id:
                found.setdefault(h.id.lower(), h.principal)
        return found

    def role_groups(self) -> set[str]:
        """Groups (ids, lower-case) that hold a role, eligible or active."""
        out = set()
        for row in (*self.eligibility_instances, *self.assignment_instances):
            p = row.get("principal") or {}
            if kind(p) == "group" and p.get("id"):
                out.add(str(p["id"]).lower())
        return out

    def privileged_roles_held(self) -> dict[str, set[str]]:
        """Principal id (lower-case) -> the names of the privileged roles it holds, in any way."""
        roles: dict[str, set[str]] = {}
        for h in self.holders():
            if h.id and self.is_privileged(h.role_id):
                roles.setdefault(h.id.lower(), set()).add(self.role_name(h.role_id))
        return roles

    def principal_ids(self) -> tuple[set[str], set[str]]:
        """(user ids, service principal ids) holding a privileged role, lower-case."""
        users, sps = set(), set()
        for h in self.holders():
            if not h.id or not self.is_privileged(h.role_id):
                continue
            k = kind(h.principal)
            if k == "servicePrincipal":
                sps.add(h.id.lower())
            elif k in ("user", "unknown"):
                users.add(h.id.lower())
        return users, sps


def who(obj: Json) -> dict[str, str | None]:
    """An alert's ``principal`` from a Graph directory object."""
    upn = obj.get("userPrincipalName")
    name = obj.get("displayName")
    return {
        "id": str(obj["id"]) if obj.get("id") else None,
        "upn": str(upn) if upn else None,
        "name": str(name) if name else None,
    }


def label(obj: Json) -> str:
    return str(obj.get("userPrincipalName") or obj.get("displayName") or obj.get("id") or "?")
