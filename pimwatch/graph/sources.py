"""The Graph reads posture checks declare, each with its least-privileged application permission.

A source fills one field of :class:`~pimwatch.graph.snapshot.Snapshot`. Some depend on others (the
groups that hold a role are found in the role schedules; the users to read are the role holders):
:func:`fetch_sources` reads the dependencies first and a source whose dependency failed fails with
the same error. Permissions: graph-and-report.md §1.3 and §2.1 (Graph docs' permission tables).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote

from pimwatch.detection.timeutil import iso
from pimwatch.graph.client import GraphClient, GraphError
from pimwatch.graph.snapshot import Json, Snapshot

Failure = tuple[str, GraphError]  # (the source whose read failed, its error)
Fetch = Callable[[GraphClient, Snapshot], Awaitable[None]]

# Service plans that carry PIM (Entra ID P2; Entra ID Governance includes it).
P2_PLANS = frozenset({"AAD_PREMIUM_P2", "ENTRA_IDENTITY_GOVERNANCE", "IDENTITY_GOVERNANCE"})
USER_FIELDS = (
    "id,displayName,userPrincipalName,userType,accountEnabled,onPremisesSyncEnabled,onPremisesImmutableId"
)
POLICY_EXPAND = "policy($expand=rules)"


@dataclass(frozen=True)
class Source:
    name: str
    what: str  # the request, for messages
    permission: str
    fetch: Fetch
    after: tuple[str, ...] = ()


async def _role_definitions(c: GraphClient, s: Snapshot) -> None:
    s.role_definitions = await c.get_all(
        "roleManagement/directory/roleDefinitions", {"$select": "id,displayName,templateId,isBuiltIn"}
    )


async def _role_policies(c: GraphClient, s: Snapshot) -> None:
    flt = "scopeId eq '/' and scopeType eq 'DirectoryRole'"
    s.role_policies = await c.get_all(
        "policies/roleManagementPolicyAssignments", {"$filter": flt, "$expand": POLICY_EXPAND}
    )


async def _assignment_schedules(c: GraphClient, s: Snapshot) -> None:
    s.assignment_schedules = await c.get_all(
        "roleManagement/directory/roleAssignmentSchedules", {"$expand": "principal"}
    )


async def _assignment_instances(c: GraphClient, s: Snapshot) -> None:
    s.assignment_instances = await c.get_all(
        "roleManagement/directory/roleAssignmentScheduleInstances", {"$expand": "principal"}
    )


async def _eligibility_instances(c: GraphClient, s: Snapshot) -> None:
    s.eligibility_instances = await c.get_all(
        "roleManagement/directory/roleEligibilityScheduleInstances", {"$expand": "principal"}
    )


def _groups(s: Snapshot) -> list[str]:
    return sorted(s.role_groups() | set(_baseline_groups(s)))


def _baseline_groups(s: Snapshot) -> list[str]:
    return [g for t in s.baseline.tiers for g in t.groups]


async def _group_members(c: GraphClient, s: Snapshot) -> None:
    for gid in _groups(s):
        s.group_members[gid] = await c.get_all(
            f"groups/{gid}/transitiveMembers", {"$select": "id,displayName,userPrincipalName,userType"}
        )


async def _group_eligibility(c: GraphClient, s: Snapshot) -> None:
    for gid in _groups(s):
        s.group_eligibility[gid] = await c.get_all(
            "identityGovernance/privilegedAccess/group/eligibilityScheduleInstances",
            {"$filter": f"groupId eq '{gid}'", "$expand": "principal"},
        )


async def _group_policies(c: GraphClient, s: Snapshot) -> None:
    for gid in _groups(s):
        s.group_policies[gid] = await c.get_all(
            "policies/roleManagementPolicyAssignments",
            {"$filter": f"scopeId eq '{gid}' and scopeType eq 'Group'", "$expand": POLICY_EXPAND},
        )


async def _users(c: GraphClient, s: Snapshot) -> None:
    users, _ = s.principal_ids()
    for uid in sorted(users):
        got = await _user(c, uid)
        if got is not None:
            s.users[uid] = got


async def _user(c: GraphClient, who: str) -> Json | None:
    try:
        body = await c.get(f"users/{quote(who, safe='@')}", {"$select": USER_FIELDS})
    except GraphError as exc:
        if exc.status == 404:
            return None  # deleted since the schedule was read (Request_ResourceNotFound)
        raise
    return body if isinstance(body, dict) else None


async def _service_principals(c: GraphClient, s: Snapshot) -> None:
    _, sps = s.principal_ids()
    for sid in sorted(sps):
        body = await c.get(
            f"servicePrincipals/{sid}", {"$select": "id,displayName,appId,passwordCredentials"}
        )
        if isinstance(body, dict):
            s.service_principals[sid] = body


async def _skus(c: GraphClient, s: Snapshot) -> None:
    s.subscribed_skus = await c.get_all("subscribedSkus")


async def _activations(c: GraphClient, s: Snapshot) -> None:
    s.activations = await c.get_all(
        "roleManagement/directory/roleAssignmentScheduleRequests", {"$filter": "action eq 'selfActivate'"}
    )


async def _pim_alerts(c: GraphClient, s: Snapshot) -> None:
    flt = {"$filter": "scopeId eq '/' and scopeType eq 'DirectoryRole'"}
    s.pim_alerts = await c.get_all("identityGovernance/roleManagementAlerts/alerts", flt, version="beta")
    s.pim_alert_configs = await c.get_all(
        "identityGovernance/roleManagementAlerts/alertConfigurations", flt, version="beta"
    )


async def _ca_policies(c: GraphClient, s: Snapshot) -> None:
    s.ca_policies = await c.get_all("identity/conditionalAccess/policies")


async def _break_glass(c: GraphClient, s: Snapshot) -> None:
    accounts = sorted(s.settings.break_glass_ids | s.settings.break_glass_upns)
    for a in accounts:
        s.break_glass[a] = await _user(c, a) or {}


async def _auth_methods(c: GraphClient, s: Snapshot) -> None:
    for user in s.break_glass.values():
        if user.get("id"):
            uid = str(user["id"]).lower()
            s.auth_methods[uid] = await c.get_all(f"users/{uid}/authentication/methods")


async def _signins(c: GraphClient, s: Snapshot) -> None:
    since = iso(s.now - timedelta(days=400))
    for user in s.break_glass.values():
        if user.get("id"):
            uid = str(user["id"]).lower()
            # newest first; one page of one row is the last sign-in
            body = await c.get(
                "auditLogs/signIns",
                {"$filter": f"userId eq '{uid}' and createdDateTime ge {since}", "$top": "1"},
            )
            rows = body.get("value") if isinstance(body, dict) else None
            s.signins[uid] = [r for r in rows or [] if isinstance(r, dict)]


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("subscribed_skus", "GET /subscribedSkus", "Organization.Read.All", _skus),
        Source(
            "role_definitions",
            "GET /roleManagement/directory/roleDefinitions",
            "RoleManagement.Read.Directory",
            _role_definitions,
        ),
        Source(
            "role_policies",
            "GET /policies/roleManagementPolicyAssignments (DirectoryRole)",
            "RoleManagementPolicy.Read.Directory",
            _role_policies,
        ),
        Source(
            "assignment_schedules",
            "GET /roleManagement/directory/roleAssignmentSchedules",
            "RoleAssignmentSchedule.Read.Directory",
            _assignment_schedules,
        ),
        Source(
            "assignment_instances",
            "GET /roleManagement/directory/roleAssignmentScheduleInstances",
            "RoleAssignmentSchedule.Read.Directory",
            _assignment_instances,
        ),
        Source(
            "eligibility_instances",
            "GET /roleManagement/directory/roleEligibilityScheduleInstances",
            "RoleEligibilitySchedule.Read.Directory",
            _eligibility_instances,
        ),
        Source(
            "group_members",
            "GET /groups/{id}/transitiveMembers",
            "GroupMember.Read.All",
            _group_members,
            ("assignment_instances", "eligibility_instances"),
        ),
        Source(
            "group_eligibility",
            "GET /identityGovernance/privilegedAccess/group/eligibilityScheduleInstances",
            "PrivilegedEligibilitySchedule.Read.AzureADGroup",
            _group_eligibility,
            ("assignment_instances", "eligibility_instances"),
        ),
        Source(
            "group_policies",
            "GET /policies/roleManagementPolicyAssignments (Group)",
            "RoleManagementPolicy.Read.AzureADGroup",
            _group_policies,
            ("assignment_instances", "eligibility_instances"),
        ),
        Source(
            "users",
            "GET /users/{id}",
            "User.Read.All",
            _users,
            (
                "role_definitions",
                "assignment_instances",
                "eligibility_instances",
                "group_members",
                "group_eligibility",
            ),
        ),
        Source(
            "service_principals",
            "GET /servicePrincipals/{id}",
            "Application.Read.All",
            _service_principals,
            (
                "role_definitions",
                "assignment_instances",
                "eligibility_instances",
                "group_members",
                "group_eligibility",
            ),
        ),
        Source(
            "activations",
            "GET /roleManagement/directory/roleAssignmentScheduleRequests",
            "RoleAssignmentSchedule.Read.Directory",
            _activations,
        ),
        Source(
            "pim_alerts",
            "GET /beta/identityGovernance/roleManagementAlerts",
            "RoleManagementAlert.Read.Directory",
            _pim_alerts,
        ),
        Source(
            "ca_policies",
            "GET /identity/conditionalAccess/policies",
            "Policy.Read.All",
            _ca_policies,
        ),
        Source("break_glass", "GET /users/{break-glass account}", "User.Read.All", _break_glass),
        Source(
            "auth_methods",
            "GET /users/{id}/authentication/methods",
            "UserAuthenticationMethod.Read.All",
            _auth_methods,
            ("break_glass",),
        ),
        Source(
            "signins",
            "GET /auditLogs/signIns",
            "AuditLog.Read.All (and Directory.Read.All, per the page's known issue)",
            _signins,
            ("break_glass",),
        ),
    )
}


def _closure(names: Sequence[str]) -> list[str]:
    """``names`` with their dependencies, dependencies first (in :data:`SOURCES` order)."""
    want: set[str] = set()
    todo = list(names)
    while todo:
        n = todo.pop()
        if n not in want:
            want.add(n)
            todo += SOURCES[n].after
    return [n for n in SOURCES if n in want]


async def fetch_sources(client: GraphClient, snap: Snapshot, names: Sequence[str]) -> dict[str, Failure]:
    """Read ``names`` (and what they depend on) into ``snap``; the sources that failed, by name,
    each with the source whose read failed (itself, or a dependency) and its error."""
    failed: dict[str, Failure] = {}
    for name in _closure(names):
        src = SOURCES[name]
        dep = next((d for d in src.after if d in failed), None)
        if dep is not None:
            failed[name] = failed[dep]
            continue
        try:
            await src.fetch(client, snap)
        except GraphError as exc:
            failed[name] = (name, exc)
    return failed


def has_p2(skus: Sequence[Json]) -> bool:
    """Whether an enabled subscription carries Entra ID P2 (or ID Governance)."""
    for sku in skus:
        if str(sku.get("capabilityStatus") or "Enabled") not in ("Enabled", "Warning"):
            continue
        names = {str(sku.get("skuPartNumber") or "").upper()}
        names |= {str(p.get("servicePlanName") or "").upper() for p in _plans(sku)}
        if names & P2_PLANS:
            return True
    return False


def _plans(sku: Json) -> list[Any]:
    plans = sku.get("servicePlans")
    return [p for p in plans if isinstance(p, dict)] if isinstance(plans, list) else []
