"""A Global Administrator elevated to User Access Administrator over every Azure subscription.

"Access management for Azure resources" (the ``elevateAccess`` action) gives the caller the User
Access Administrator role at the root scope ``/``: from there they can grant themselves anything in
any subscription or management group, outside PIM. detections.md D37: Entra audit category
``AzureRBACRoleManagementElevateAccess`` (service "Azure RBAC (Elevated Access)"), activity
``User has elevated their access to User Access Administrator for their Azure Resources``;
Elastic also keys on the ``additionalDetails`` value ``Microsoft.Authorization/elevateAccess/action``,
kept in the context as ``action``.

Every successful record is its own alert (``suppress_minutes: 0``), titled with who elevated and
from where. A failed attempt grants nothing and is not alerted (every anchor requires success). The
removal — ``The role assignment of User Access Administrator has been removed from the user`` — is
the clean-up Microsoft asks for and is not read. The category is not required: Panther's sample
record carries the activity only in ``operationName`` and has no ``properties.category``.

Critical (page now): the elevation is a standing User Access Administrator assignment at the root
scope, outside PIM, until someone removes it; whoever holds it can make themselves Owner of every
subscription within minutes.
"""

from __future__ import annotations

from typing import Any

from pimwatch.detection import Case, Detector, Event, Hit, Severity, Skip, State
from pimwatch.detection.records import directory, guid, user

ELEVATED = "User has elevated their access to User Access Administrator for their Azure Resources"
REMOVED = "The role assignment of User Access Administrator has been removed from the user"
CATEGORY = "AzureRBACRoleManagementElevateAccess"
ACTION = "Microsoft.Authorization/elevateAccess/action"

DETECTOR = Detector(
    id="elevation.root_access",
    severity=Severity.CRITICAL,
    summary=(
        "A Global Administrator elevated their access to User Access Administrator at the Azure root "
        "scope (all subscriptions and management groups)."
    ),
    runbook=(
        "Confirm with the administrator and the change record. Remove the root-scope User Access "
        "Administrator assignment as soon as the task is done (Entra ID > Properties > Access management "
        "for Azure resources = No), and review every Azure role assignment made while it was held."
    ),
    anchors=("Sentinel", "Elastic", "Panther", "Sigma", "Microsoft security operations guide"),
    mitre=("T1098.003", "T1078.004"),
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=frozenset({ELEVATED}),
)


def detect(event: Event, state: State) -> Hit | None:
    if event.activity != ELEVATED or event.failed:
        return None
    who = event.actor
    if not (who.id or who.upn):
        raise Skip("elevate-access record without an initiating user")
    action = next((v for v in event.details.values() if v.lower() == ACTION.lower()), None)
    where = f" from {who.ip}" if who.ip else ""
    title = (
        f"{who.label()} elevated to User Access Administrator at root scope "
        f"(all Azure subscriptions and management groups){where}"
    )
    context = {
        "elevated_by": who.as_alert() | {"ip": who.ip},
        "action": action,
        "scope": event.details.get("scope") or "/",
        "audit_category": event.audit_category,
        "service": event.service,
        "result": event.result,
        "correlation_id": event.correlation_id,
    }
    return DETECTOR.alert(event, key=(who.id or who.upn,), title=title, context=context, principal=who)


# --- cases -----------------------------------------------------------------------------------

GINA = user("adm-gina")


def _elevation(
    at: str, who: Any = GINA, *, activity: str = ELEVATED, result: str = "success", panther: bool = False
) -> dict[str, Any]:
    """The elevate-access record: Azure RBAC service, ``additionalDetails`` Action and Scope.

    ``panther`` gives the layout of Panther's test record: no ``activityDisplayName``, no
    ``category`` and no ``targetResources`` in ``properties``.
    """
    rec = directory(activity, at, who, who, result=result, category=CATEGORY)
    props = rec["properties"]
    props["id"] = "AzureRBAC_" + guid("elevate", activity, at, who, result)
    props["loggedByService"] = "Azure RBAC (Elevated Access)"
    props["operationType"] = "Assign" if activity == ELEVATED else "Unassign"
    props["targetResources"] = [
        {
            "id": who[0],
            "displayName": who[2],
            "type": "User",
            "userPrincipalName": who[1],
            "modifiedProperties": [],
        }
    ]
    props["additionalDetails"] = [
        {
            "key": "Action",
            "value": ACTION if activity == ELEVATED else "Microsoft.Authorization/roleAssignments/delete",
        },
        {"key": "Scope", "value": "/"},
    ]
    if panther:
        for key in ("activityDisplayName", "category", "targetResources"):
            del props[key]
    return rec


CASES = [
    Case(
        "a Global Administrator elevates to User Access Administrator at root",
        [_elevation("2026-03-12T21:14:00Z")],
        [
            {
                "severity": "critical",
                "count": 1,
                "title": "adm-gina@contoso.com elevated to User Access Administrator at root scope "
                "(all Azure subscriptions and management groups) from 20.190.1.10",
                "principal": {"upn": "adm-gina@contoso.com"},
                "context": {"action": ACTION, "scope": "/", "audit_category": CATEGORY},
            }
        ],
    ),
    Case(
        "Panther's layout: activity only in operationName, no category, no targets",
        [_elevation("2026-03-12T21:20:00Z", user("adm-hank"), panther=True)],
        [
            {
                "title_has": "adm-hank@contoso.com elevated",
                "context": {"action": ACTION, "audit_category": None},
            }
        ],
    ),
    Case(
        "two elevations by the same admin are two alerts; a duplicate record is not",
        [
            _elevation("2026-03-12T22:00:00Z", user("adm-ivan")),
            _elevation("2026-03-12T22:00:00Z", user("adm-ivan")),
            _elevation("2026-03-12T22:30:00Z", user("adm-ivan")),
        ],
        [{"count": 1}, {"count": 1}],
    ),
    Case(
        "removing the elevation, and a failed elevation, are quiet",
        [
            _elevation("2026-03-12T21:50:00Z", user("adm-judy"), activity=REMOVED),
            _elevation("2026-03-12T21:55:00Z", user("adm-judy"), result="failure"),
        ],
        [],
    ),
]
