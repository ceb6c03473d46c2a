"""Record builders for a detector's ``CASES``, in the layouts of the real public samples.

Only ``CASES`` and tests use them (also shipped as :mod:`pimwatch.testing`); production code never
does. PIM records follow ``shared/samples/02_...`` (targetResources
Role, Request, User, Directory, Other; additionalDetails keys RoleDefinitionOriginId, TemplateId,
StartTime, ExpirationTime, Justification, RequestId); Core Directory role records follow samples 01
and 10 (role in the principal target's modifiedProperties); sign-ins follow sample 05. Times are
ISO strings; ids are derived from the content so cases stay deterministic.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from pimwatch.detection.activities import PIM_SERVICE, PIM_SERVICE_NAME

TENANT = "7d1c7a44-2b7e-4f0e-9d51-7c2a3d9e8b10"
RESOURCE_ID = f"/tenants/{TENANT}/providers/Microsoft.aadiam"
WORKSPACE = "0f3e7c52-6a4d-4b8e-9c1f-2d7a5b9e4c33"  # a Log Analytics workspace id, never the tenant
PIM_SYSTEM = (PIM_SERVICE, None, PIM_SERVICE_NAME)  # PIM's system identity as a record's actor
User = tuple[str, str | None, str | None]  # (object id, UPN, display name)


def guid(*parts: object) -> str:
    return str(uuid.UUID(hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]))


def user(name: str) -> User:
    """A user identity from a short name: ``user("alice")`` → (guid, alice@contoso.com, Alice)."""
    return (guid("user", name), f"{name}@contoso.com", name.replace(".", " ").title())


def _initiator(actor: User | str) -> dict[str, Any]:
    if isinstance(actor, str):  # an app, e.g. "MS-PIM"
        return {
            "app": {
                "appId": None,
                "displayName": actor,
                "servicePrincipalId": guid("sp", actor),
                "servicePrincipalName": None,
            }
        }
    oid, upn, name = actor
    return {
        "user": {
            "id": oid,
            "displayName": name,
            "userPrincipalName": upn,
            "ipAddress": "20.190.1.10",
            "roles": [],
        }
    }


def _envelope(activity: str, at: str, props: dict[str, Any], actor: User | str) -> dict[str, Any]:
    identity = actor if isinstance(actor, str) else (actor[2] or actor[1] or actor[0])
    return {
        "time": at,
        "resourceId": RESOURCE_ID,
        "operationName": activity,
        "operationVersion": "1.0",
        "category": "AuditLogs",
        "tenantId": TENANT,
        "resultSignature": "None",
        "durationMs": 0,
        "callerIpAddress": "20.190.1.10",
        "correlationId": props["correlationId"],
        "identity": identity,
        "Level": 4,
        "properties": props,
    }


def pim(
    activity: str,
    at: str,
    actor: User | str,
    *,
    principal: User | None = None,
    role: tuple[str, str] = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    result: str = "success",
    reason: str = "",
    justification: str | None = None,
    request_id: str | None = None,
    category: str = "RoleManagement",
    group: tuple[str, str] | None = None,
    record_id: str | None = None,
    extra_details: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A PIM-logged Event Hub AuditLogs record (loggedByService ``PIM``)."""
    rid = record_id or "PIM_" + guid(activity, at, actor, principal, role, result, reason)
    request_id = request_id or guid("request", rid)
    role_name, template = role
    details = [
        {"key": "RoleDefinitionOriginId", "value": template},
        {"key": "RoleDefinitionOriginType", "value": "BuiltInRole"},
        {"key": "TemplateId", "value": template},
        {"key": "StartTime", "value": at},
    ]
    if justification is not None:
        details.append({"key": "Justification", "value": justification})
    details.append({"key": "RequestId", "value": request_id})
    for k, v in (extra_details or {}).items():
        details.append({"key": k, "value": v})
    targets: list[dict[str, Any]] = [
        {
            "administrativeUnits": [],
            "displayName": role_name,
            "id": template,
            "type": "Role",
            "modifiedProperties": [],
        },
        {"administrativeUnits": [], "id": request_id, "type": "Request"},
    ]
    if principal is not None:
        targets.append(
            {
                "administrativeUnits": [],
                "displayName": principal[2],
                "id": principal[0],
                "userPrincipalName": principal[1],
                "type": "User",
            }
        )
    if group is not None:
        targets.append({"administrativeUnits": [], "displayName": group[1], "id": group[0], "type": "Group"})
    else:
        targets.append(
            {"administrativeUnits": [], "displayName": "Contoso", "id": TENANT, "type": "Directory"}
        )
    targets.append({"administrativeUnits": [], "id": guid("other", rid), "type": "Other"})
    props = {
        "id": rid,
        "category": category,
        "correlationId": guid("corr", rid),
        "result": result,
        "resultReason": reason if reason else (justification or ""),
        "activityDisplayName": activity,
        "activityDateTime": at,
        "loggedByService": "PIM",
        "operationType": "Update",
        "initiatedBy": _initiator(actor),
        "targetResources": targets,
        "additionalDetails": details,
    }
    return _envelope(activity, at, props, actor)


def directory(
    activity: str,
    at: str,
    actor: User | str,
    target: User,
    *,
    role: tuple[str, str] | None = None,
    category: str = "RoleManagement",
    record_id: str | None = None,
    result: str = "success",
) -> dict[str, Any]:
    """A Core Directory Event Hub AuditLogs record (role, if any, in the target's modifiedProperties)."""
    rid = record_id or "Directory_" + guid(activity, at, actor, target, role)
    modified: list[dict[str, Any]] = []
    if role is not None:
        side = "oldValue" if activity.startswith("Remove") else "newValue"
        for name, value in (
            ("Role.ObjectID", guid("roleobj", role[1])),
            ("Role.DisplayName", role[0]),
            ("Role.TemplateId", role[1]),
        ):
            mp = {"displayName": name, "oldValue": None, "newValue": None}
            mp[side] = f'"{value}"'
            modified.append(mp)
    props = {
        "id": rid,
        "category": category,
        "correlationId": guid("corr", rid),
        "result": result,
        "resultReason": "",
        "activityDisplayName": activity,
        "activityDateTime": at,
        "loggedByService": "Core Directory",
        "operationType": "Assign" if activity.startswith("Add") else "Update",
        "initiatedBy": _initiator(actor),
        "targetResources": [
            {
                "id": target[0],
                "displayName": target[2],
                "type": "User",
                "userPrincipalName": target[1],
                "modifiedProperties": modified,
                "administrativeUnits": [],
            }
        ],
        "additionalDetails": [],
    }
    return _envelope(activity, at, props, actor)


def signin(
    who: User,
    at: str,
    *,
    category: str = "SignInLogs",
    error: int = 0,
    ca: str = "success",
    requirement: str = "multiFactorAuthentication",
    methods: tuple[str, ...] = ("FIDO2 security key",),
    ip: str = "20.190.1.10",
    country: str = "US",
    city: str = "Seattle",
    app: str = "Azure Portal",
    risk: str = "none",
    record_id: str | None = None,
) -> dict[str, Any]:
    """An Event Hub sign-in record in the layout of ``shared/samples/05_...``."""
    oid, upn, name = who
    rid = record_id or guid("signin", who, at, category, error, ip)
    return {
        "time": at,
        "resourceId": RESOURCE_ID,
        "operationName": "Sign-in activity",
        "operationVersion": "1.0",
        "category": category,
        "tenantId": TENANT,
        "resultType": str(error),
        "resultSignature": "None",
        "resultDescription": "" if error == 0 else "Invalid username or password.",
        "durationMs": 0,
        "callerIpAddress": ip,
        "correlationId": guid("corr", rid),
        "identity": name,
        "Level": 4,
        "location": country,
        "properties": {
            "id": rid,
            "createdDateTime": at,
            "userDisplayName": name,
            "userPrincipalName": upn,
            "userId": oid,
            "appId": guid("app", app),
            "appDisplayName": app,
            "ipAddress": ip,
            "status": {"errorCode": error}
            if error == 0
            else {"errorCode": error, "failureReason": "Invalid password"},
            "clientAppUsed": "Browser",
            "deviceDetail": {"deviceId": "", "operatingSystem": "Windows10", "browser": "Edge 125.0.0"},
            "location": {"city": city, "state": "", "countryOrRegion": country},
            "mfaDetail": {},
            "correlationId": guid("corr", rid),
            "conditionalAccessStatus": ca,
            "appliedConditionalAccessPolicies": [],
            "authenticationRequirement": requirement,
            "authenticationDetails": [
                {"authenticationMethod": m, "succeeded": error == 0, "authenticationStepDateTime": at}
                for m in methods
            ],
            "isInteractive": category == "SignInLogs",
            "riskLevelDuringSignIn": risk,
            "riskLevelAggregated": risk,
            "riskState": "none",
        },
    }


def pim_alert(
    activity: str,
    at: str,
    actor: Any,
    alert: str,
    *,
    definition: str,
    on: str = "Role",
    result: str = "success",
    reason: str = "",
    category: str = "RoleManagement",
) -> dict[str, Any]:
    """A PIM alert record: the alert as the first target (``on`` = its type), then the tenant."""
    rec = pim(activity, at, actor, result=result, reason=reason, category=category)
    props = rec["properties"]
    props["targetResources"] = [
        {
            "administrativeUnits": [],
            "displayName": alert,
            "id": f"DirectoryRole_{TENANT}_{definition}",
            "type": on,
            "modifiedProperties": [],
        },
        {"administrativeUnits": [], "displayName": "Contoso", "id": TENANT, "type": "Directory"},
    ]
    props["additionalDetails"] = [
        d for d in props["additionalDetails"] if not d["key"].startswith(("RoleDefinition", "TemplateId"))
    ]
    return rec


# --- the same record in the other input shapes (entra-events.md §2) ---------------------------


def as_graph(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A Graph directoryAudit / signIn object: the Event Hub ``properties``, without the EH-only keys."""
    obj = copy.deepcopy(dict(rec["properties"]))
    user_ = (obj.get("initiatedBy") or {}).get("user")
    if isinstance(user_, dict):
        user_.pop("roles", None)
    for t in obj.get("targetResources") or []:
        t.pop("administrativeUnits", None)
    return obj


LA_TABLE = {
    "SignInLogs": "SigninLogs",
    "NonInteractiveUserSignInLogs": "AADNonInteractiveUserSignInLogs",
}


# Log Analytics column → Event Hub ``properties`` key: scalars, then dynamic columns (JSON text).
_LA_AUDIT = {
    "ActivityDateTime": "activityDateTime",
    "ActivityDisplayName": "activityDisplayName",
    "LoggedByService": "loggedByService",
    "Result": "result",
    "ResultReason": "resultReason",
    "AADOperationType": "operationType",
}
_LA_AUDIT_JSON = {
    "InitiatedBy": "initiatedBy",
    "TargetResources": "targetResources",
    "AdditionalDetails": "additionalDetails",
}
_LA_SIGNIN = {
    "CreatedDateTime": "createdDateTime",
    "UserId": "userId",
    "UserPrincipalName": "userPrincipalName",
    "UserDisplayName": "userDisplayName",
    "AppId": "appId",
    "AppDisplayName": "appDisplayName",
    "IPAddress": "ipAddress",
    "ClientAppUsed": "clientAppUsed",
    "ConditionalAccessStatus": "conditionalAccessStatus",
    "AuthenticationRequirement": "authenticationRequirement",
    "RiskLevelDuringSignIn": "riskLevelDuringSignIn",
    "RiskLevelAggregated": "riskLevelAggregated",
    "RiskState": "riskState",
    "IsInteractive": "isInteractive",
}
_LA_SIGNIN_JSON = {
    "LocationDetails": "location",
    "Status": "status",
    "DeviceDetail": "deviceDetail",
    "MfaDetail": "mfaDetail",
    "ConditionalAccessPolicies": "appliedConditionalAccessPolicies",
    "AuthenticationDetails": "authenticationDetails",
}


def as_log_analytics(rec: Mapping[str, Any]) -> dict[str, Any]:
    """A Log Analytics row (entra-events.md §2.3): PascalCase, dynamic columns as JSON strings."""
    p = rec["properties"]
    row: dict[str, Any] = {
        "TenantId": WORKSPACE,
        "SourceSystem": "Azure AD",
        "TimeGenerated": rec["time"],
        "ResourceId": rec["resourceId"],
        "OperationName": rec["operationName"],
        "OperationVersion": rec["operationVersion"],
        "ResultType": rec.get("resultType", ""),
        "ResultSignature": rec["resultSignature"],
        "ResultDescription": rec.get("resultDescription", ""),
        "DurationMs": rec["durationMs"],
        "CorrelationId": rec["correlationId"],
        "Identity": rec.get("identity", ""),
        "Level": str(rec["Level"]),
        "Location": rec.get("location", ""),
        "AADTenantId": rec["tenantId"],
        "Id": p["id"],
    }
    audit = rec["category"] == "AuditLogs"
    row["Type"] = "AuditLogs" if audit else LA_TABLE[rec["category"]]
    row["Category"] = p["category"] if audit else rec["category"]
    row |= {column: p[key] for column, key in (_LA_AUDIT if audit else _LA_SIGNIN).items()}
    row |= {
        column: json.dumps(p[key]) for column, key in (_LA_AUDIT_JSON if audit else _LA_SIGNIN_JSON).items()
    }
    return row


def csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    """Log Analytics rows as an exported CSV file."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def as_csv_rows(records: Iterable[Mapping[str, Any]]) -> list[dict[str, str | None]]:
    """Event Hub records as the rows ``pimwatch replay`` reads from a Log Analytics CSV export of them:
    every value text, JSON columns as JSON text, empty cells ``None``."""
    text = io.StringIO(csv_bytes([as_log_analytics(r) for r in records]).decode(), newline="")
    return [{k: (v if v != "" else None) for k, v in row.items()} for row in csv.DictReader(text)]


def in_every_shape(*records: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Event Hub records as each input shape gives them: Event Hub, Graph, Log Analytics JSON and
    Log Analytics CSV (the rows as the CSV reader yields them)."""
    return {
        "Event Hub": [dict(r) for r in records],
        "Graph": [as_graph(r) for r in records],
        "Log Analytics JSON": [as_log_analytics(r) for r in records],
        "Log Analytics CSV": as_csv_rows(records),
    }
