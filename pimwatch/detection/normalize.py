"""Record dicts (any shape) → :class:`Event`.

Graph objects and Event Hub ``properties`` share their keys (entra-events.md §2.1), so both go
through the same code; Log Analytics rows are first renamed to the same camelCase keys and their
JSON-as-string columns decoded. Targets are looked up by ``type`` and details by lower-cased
``key``, never by position (§0). ``Event.targets`` / ``Event.modified`` (the old and new values of
``modifiedProperties``) are decoded here, once and the same way for every shape, on first use:
detectors never re-read ``event.raw``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pimwatch.detection.activities import ROLE_SETTING_UPDATED, canonical
from pimwatch.detection.event import NOBODY, Event, Modified, Principal, SignIn, Target
from pimwatch.detection.timeutil import parse_time


class BadRecord(ValueError):
    """A record that cannot become an event; the reason is shown and quarantined with it."""


_TENANT_IN_RESOURCE = re.compile(r"/tenants/([0-9a-fA-F-]{36})", re.IGNORECASE)
_PRINCIPAL_TYPES = ("User", "ServicePrincipal", "Group")
_NOT_SCOPE_TYPES = frozenset({"Role", "Request", "User", "ServicePrincipal", "Group", "Other", "Directory"})
_RESULT_CODES = {0: "success", 1: "failure", 2: "timeout", 3: "unknownFutureValue"}


def record_id(props: Mapping[str, Any], raw: Mapping[str, Any]) -> str:
    """``properties.id`` (Entra's unique record id), else a content hash so duplicates still fold."""
    rid = props.get("id")
    if isinstance(rid, str) and rid:
        return rid
    digest = hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return "sha256:" + digest[:32]


def _json_value(value: Any) -> Any:
    """Decode a JSON-encoded string (Log Analytics columns, modifiedProperties values)."""
    if isinstance(value, str):
        s = value.strip()
        if s[:1] in ("{", "[", '"'):
            try:
                return orjson.loads(s)
            except orjson.JSONDecodeError:
                return value
    return value


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return value if value and value != "<null>" else None


def _tenant(top: Mapping[str, Any], props: Mapping[str, Any]) -> str | None:
    tid = top.get("tenantId") or props.get("tenantId") or top.get("AADTenantId")
    if tid:
        return str(tid)
    rid = top.get("resourceId") or top.get("ResourceId")
    if isinstance(rid, str):
        m = _TENANT_IN_RESOURCE.search(rid)
        if m:
            return m.group(1).lower()
    return None


def _details(items: Any) -> dict[str, str]:
    items = _json_value(items)
    out: dict[str, str] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping):
                key = item.get("key")
                if isinstance(key, str) and key:
                    k = key.lower()
                    if k not in out:
                        value = item.get("value")
                        out[k] = "" if value is None else str(value)
    return out


def _initiator(value: Any, top: Mapping[str, Any]) -> Principal:
    value = _json_value(value)
    ip_top = _text(top.get("callerIpAddress"))
    if isinstance(value, Mapping):
        user = _json_value(value.get("user"))
        if isinstance(user, Mapping) and (user.get("id") or user.get("userPrincipalName")):
            return Principal(
                id=_text(user.get("id")),
                upn=_text(user.get("userPrincipalName")),
                name=_text(user.get("displayName")),
                type="User",
                ip=_text(user.get("ipAddress")) or ip_top,
            )
        if isinstance(user, Mapping) and user.get("displayName"):
            return Principal(name=_text(user.get("displayName")), type="User")
        app = _json_value(value.get("app"))
        if isinstance(app, Mapping) and any(
            app.get(k) for k in ("displayName", "appId", "servicePrincipalId")
        ):
            return Principal(
                id=_text(app.get("servicePrincipalId")) or _text(app.get("appId")),
                upn=_text(app.get("servicePrincipalName")),
                name=_text(app.get("displayName")),
                type="App",
                ip=ip_top,
            )
    identity = _text(top.get("identity")) or _text(top.get("Identity"))
    if identity:
        return Principal(name=identity, ip=ip_top)
    return NOBODY


def _decoded(value: Any, depth: int = 3) -> Any:
    """A modifiedProperty value as what it encodes: JSON text decoded (policies are seen as text of
    text, and as lists of JSON text), other text as written, ``None`` for an empty side."""
    for _ in range(3):
        decoded = _json_value(value)
        if decoded is value:
            break
        value = decoded
    if isinstance(value, list) and depth > 0:
        return [_decoded(v, depth - 1) for v in value]
    return None if value == "" else value


def _name(value: Any) -> str | None:
    text = _text(value)
    return text.strip() or None if text else None


def _targets(found: Sequence[Any]) -> tuple[Target, ...]:
    """``targetResources`` (already a list, whatever the input shape) as :class:`Target` objects."""
    out: list[Target] = []
    for t in found:
        if not isinstance(t, Mapping):
            continue
        props = _json_value(t.get("modifiedProperties"))
        modified = tuple(
            Modified(
                str(mp.get("displayName") or ""), _decoded(mp.get("oldValue")), _decoded(mp.get("newValue"))
            )
            for mp in (props if isinstance(props, list) else ())
            if isinstance(mp, Mapping)
        )
        out.append(
            Target(
                type=_text(t.get("type")),
                id=_text(t.get("id")),
                name=_name(t.get("displayName")),
                upn=_text(t.get("userPrincipalName")),
                modified=modified,
            )
        )
    return tuple(out)


def _modified(target: Mapping[str, Any], name: str) -> str | None:
    """newValue (on add) or oldValue (on remove) of a modifiedProperty, JSON-decoded."""
    props = target.get("modifiedProperties")
    if not isinstance(props, list):
        return None
    for mp in props:
        if isinstance(mp, Mapping) and mp.get("displayName") == name:
            for side in ("newValue", "oldValue"):
                v = _decoded(mp.get(side))
                if isinstance(v, list):
                    v = v[0] if v else None
                if v not in (None, ""):
                    return str(v)
    return None


def audit_event(
    props: Mapping[str, Any], top: Mapping[str, Any], shape: str, category: str, raw: Mapping[str, Any]
) -> Event:
    """An ``AuditLogs`` record (Event Hub ``properties`` or a Graph ``directoryAudit``)."""
    when = parse_time(props.get("activityDateTime")) or parse_time(top.get("time"))
    if when is None:
        raise BadRecord("audit record has no readable activityDateTime or time")
    activity_raw = props.get("activityDisplayName") or top.get("operationName") or ""
    if not isinstance(activity_raw, str):
        raise BadRecord("activityDisplayName is not a string")
    activity = canonical(activity_raw)
    details = _details(props.get("additionalDetails"))
    result = props.get("result")
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        result = _RESULT_CODES.get(int(result), str(result))
    result_text = _text(result)
    result = result_text.lower() if result_text else None
    reason = _text(props.get("resultReason"))
    service = _text(props.get("loggedByService"))
    audit_category = _text(props.get("category"))

    targets = _json_value(props.get("targetResources"))
    if not isinstance(targets, list):
        targets = []
    by_type: dict[str, Mapping[str, Any]] = {}
    for t in targets:
        if isinstance(t, Mapping):
            ttype = t.get("type")
            if isinstance(ttype, str) and ttype not in by_type:
                by_type[ttype] = t

    target = NOBODY
    principal_types = _PRINCIPAL_TYPES if audit_category != "GroupManagement" else _PRINCIPAL_TYPES[:2]
    for ptype in principal_types:
        t = by_type.get(ptype)
        if t is not None:
            target = Principal(
                id=_text(t.get("id")),
                upn=_text(t.get("userPrincipalName")),
                name=_text(t.get("displayName")),
                type=ptype,
            )
            break

    role_name = role_id = None
    role = by_type.get("Role")
    if role is not None:
        role_name = _text(role.get("displayName"))
        role_id = _text(role.get("id"))
    template = details.get("templateid") or details.get("roledefinitionoriginid")
    if template:
        role_id = template
    principal_target = by_type.get(target.type or "") if target is not NOBODY else None
    if principal_target is not None and not template:
        # Core Directory role records keep the role on the principal target (entra-events.md §3.3);
        # the template id there wins over the Role target's id, which is the role's object id.
        role_name = role_name or _modified(principal_target, "Role.DisplayName")
        role_id = _modified(principal_target, "Role.TemplateId") or role_id

    scope_type = scope_id = scope_name = None
    if audit_category == "GroupManagement" and "Group" in by_type:
        g = by_type["Group"]
        scope_type, scope_id, scope_name = "group", _text(g.get("id")), _text(g.get("displayName"))
    elif audit_category == "ResourceManagement":
        for t in targets:
            if isinstance(t, Mapping) and t.get("type") not in _NOT_SCOPE_TYPES:
                scope_type, scope_id, scope_name = "resource", _text(t.get("id")), _text(t.get("displayName"))
                break
    if scope_type is None and "Directory" in by_type:
        d = by_type["Directory"]
        scope_type, scope_id, scope_name = "directory", _text(d.get("id")), _text(d.get("displayName"))

    justification = details.get("justification") or None
    if (
        justification is None
        and reason
        and service == "PIM"
        and result != "failure"
        and activity != ROLE_SETTING_UPDATED
    ):
        justification = reason
    ticket = None
    for key, value in details.items():
        if "ticket" in key and "system" not in key and value:
            ticket = value
            break
    request = by_type.get("Request")
    request_id = (
        details.get("roleassignmentrequestid")
        or details.get("requestid")
        or (_text(request.get("id")) if request is not None else None)
    )
    actor = _initiator(props.get("initiatedBy"), top)
    if actor.ip is None and details.get("ipaddr"):
        actor = Principal(actor.id, actor.upn, actor.name, actor.type, details["ipaddr"])
    return Event(
        kind="audit",
        id=record_id(props, raw),
        time=when,
        category=category,
        shape=shape,
        activity=activity,
        audit_category=audit_category,
        service=service,
        operation_type=_text(props.get("operationType")),
        result=result,
        result_reason=reason,
        correlation_id=_text(props.get("correlationId")) or _text(top.get("correlationId")),
        request_id=request_id,
        tenant_id=_tenant(top, props),
        actor=actor,
        target=target,
        role_name=role_name,
        role_id=role_id,
        scope_type=scope_type,
        scope_id=scope_id,
        scope_name=scope_name,
        justification=justification,
        ticket=ticket,
        start=parse_time(details.get("starttime")),
        end=parse_time(details.get("expirationtime")),
        details=details,
        raw=raw,
        targets_source=lambda: _targets(targets),
    )


def _auth_methods(props: Mapping[str, Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    steps = _json_value(props.get("authenticationDetails"))
    if isinstance(steps, list):
        for step in steps:
            if isinstance(step, Mapping):
                m = step.get("authenticationMethod")
                if isinstance(m, str) and m:
                    seen[m] = None
    used = _json_value(props.get("authenticationMethodsUsed"))
    if isinstance(used, list):
        for m in used:
            if isinstance(m, str) and m:
                seen[m] = None
    return tuple(seen)


_INT64 = range(-(2**63), 2**63)


def _int(value: Any) -> int | None:
    """An error or result code; None for anything else, including integers no store can hold
    (beyond 64 bits: orjson, SQLite and Azure Tables refuse them)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in _INT64 else None
    if isinstance(value, str) and value.isascii() and value.strip().lstrip("-").isdigit() and len(value) < 40:
        n = int(value)
        return n if n in _INT64 else None
    return None


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def signin_event(
    props: Mapping[str, Any], top: Mapping[str, Any], shape: str, category: str, raw: Mapping[str, Any]
) -> Event:
    """A user sign-in (interactive or non-interactive), Event Hub ``properties`` or Graph ``signIn``.

    Only what every sign-in needs is read here; :func:`signin_details` runs when a detector asks.
    """
    when = parse_time(props.get("createdDateTime")) or parse_time(top.get("time"))
    if when is None:
        raise BadRecord("sign-in record has no readable createdDateTime or time")
    rid = props.get("id")
    upn = props.get("userPrincipalName")
    name = props.get("userDisplayName")
    uid = props.get("userId")
    return Event(
        kind="signin",
        id=rid if isinstance(rid, str) and rid else record_id(props, raw),
        time=when,
        category=category,
        shape=shape,
        activity="Sign-in activity",
        actor=Principal(
            id=uid if isinstance(uid, str) and uid else None,
            upn=upn if isinstance(upn, str) and upn else None,
            name=name if isinstance(name, str) and name else None,
            type="User",
        ),
        raw=raw,
        signin_source=lambda: signin_details(props, top),
    )


def signin_details(props: Mapping[str, Any], top: Mapping[str, Any]) -> SignIn:
    status = _json_value(props.get("status"))
    if not isinstance(status, Mapping):
        status = {}
    location = _json_value(props.get("location"))
    if not isinstance(location, Mapping):
        location = {}
    error = _int(status.get("errorCode"))
    if error is None:
        error = _int(top.get("resultType"))
    return SignIn(
        app=_text(props.get("appDisplayName")),
        app_id=_text(props.get("appId")),
        resource=_text(props.get("resourceDisplayName")),
        ip=_text(props.get("ipAddress")) or _text(top.get("callerIpAddress")),
        country=_text(location.get("countryOrRegion")) or _text(top.get("location")),
        city=_text(location.get("city")),
        error_code=error,
        failure_reason=_text(status.get("failureReason")) or _text(top.get("resultDescription")),
        ca_status=_text(props.get("conditionalAccessStatus")),
        auth_requirement=_text(props.get("authenticationRequirement")),
        auth_methods=_auth_methods(props),
        risk_during=_text(props.get("riskLevelDuringSignIn")),
        risk_aggregated=_text(props.get("riskLevelAggregated")),
        risk_state=_text(props.get("riskState")),
        interactive=_bool(props.get("isInteractive")),
        client_app=_text(props.get("clientAppUsed")),
        user_agent=_text(props.get("userAgent")),
        correlation_id=_text(props.get("correlationId")) or _text(top.get("correlationId")),
        tenant_id=_tenant(top, props),
    )


# --- Log Analytics rows -------------------------------------------------------------------------

_LA_RENAME = {
    "Id": "id",
    "IPAddress": "ipAddress",
    "LocationDetails": "location",
    "ConditionalAccessPolicies": "appliedConditionalAccessPolicies",
    "AADOperationType": "operationType",
    "OperationName": "activityDisplayName",
    "AADTenantId": "tenantId",
    "ResultType": "resultType",
    "ResultDescription": "resultDescription",
    "Location": "countryCode",
}
_LA_SKIP = frozenset({"TenantId", "Type", "SourceSystem", "TimeGenerated", "Identity"})


def la_to_camel(row: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Log Analytics row → (properties, top) in Event Hub/Graph key names.

    ``TenantId`` in Log Analytics is the workspace, so the tenant comes from ``AADTenantId``.
    """
    props: dict[str, Any] = {}
    for key, value in row.items():
        if key in _LA_SKIP or value is None or value == "":
            continue
        name = _LA_RENAME.get(key) or (key[0].lower() + key[1:])
        if key == "OperationName" and row.get("ActivityDisplayName"):
            continue  # ActivityDisplayName wins when both are present
        props[name] = _json_value(value) if isinstance(value, str) else value
    top: dict[str, Any] = {
        "time": row.get("TimeGenerated"),
        "identity": row.get("Identity"),
        "tenantId": row.get("AADTenantId"),
        "location": row.get("Location"),
        "resultType": row.get("ResultType"),
        "resultDescription": row.get("ResultDescription"),
        "resourceId": row.get("ResourceId"),
    }
    return props, {k: v for k, v in top.items() if v not in (None, "")}


# --- Graph PowerShell objects (export-shapes.md (c), (d), (e)) ----------------------------------

# PascalCase property → Graph key where lower-casing the first letter is not enough.
_PS_RENAME = {"IPAddress": "ipAddress", "RiskEventTypesV2": "riskEventTypes_v2"}
# Windows PowerShell 5.1 writes a DateTime as "\/Date(ms since the epoch, UTC)\/" (read: "/Date(...)/").
_PS_DATE = re.compile(r"/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/")
# Properties the SDK declares as objects or lists: Export-Csv (always) and ConvertTo-Json (below its
# -Depth) write them as what .NET's ToString() gives, the class name
# (Microsoft.Graph.PowerShell.Models.MicrosoftGraphAuditActivityInitiator1, ...IMicrosoftGraphKeyValue[],
# System.Collections.Generic.Dictionary`2[...]), space-joined for a list of objects.
_PS_NESTED = frozenset(
    {
        "InitiatedBy",
        "User",
        "App",
        "TargetResources",
        "ModifiedProperties",
        "AdditionalDetails",
        "AdditionalProperties",
        "Status",
        "Location",
        "DeviceDetail",
        "GeoCoordinates",
        "AppliedConditionalAccessPolicies",
    }
)
_TYPE_NAME = re.compile(r"(?:Microsoft\.Graph\.|System\.)[\w.`\[\], ]*")
# The nested objects pimwatch reads (the others, such as a sign-in's DeviceDetail, GeoCoordinates and
# conditional access policies, are dropped without a word when they are type names).
_PS_READ = frozenset(
    {
        "InitiatedBy",
        "User",
        "App",
        "TargetResources",
        "ModifiedProperties",
        "AdditionalDetails",
        "Status",
        "Location",
    }
)
# What a lost (type-name) property means, by the record's top-level property.
PS_LOST = {
    "InitiatedBy": "actor",
    "TargetResources": "targets",
    "AdditionalDetails": "details",
    "Status": "status",
    "Location": "location",
}


def _ps_key(key: str) -> str:
    return _PS_RENAME.get(key) or key[:1].lower() + key[1:]


def _ps_date(value: Any) -> Any:
    """A DateTime as PowerShell wrote it → ISO 8601 (PowerShell 7 writes ISO already)."""
    if isinstance(value, Mapping) and "value" in value:  # a 5.1 DateTime with its ETS members
        value = value["value"]
    if isinstance(value, str) and (m := _PS_DATE.fullmatch(value.strip())):
        ms = int(m.group(1))
        if -62135596800000 <= ms <= 253402300799999:  # what datetime can hold
            when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
            return when.isoformat().replace("+00:00", "Z")
    return value


def _ps(value: Any, key: str, top: str, lost: set[str], depth: int) -> Any:
    """One property value of a PowerShell object, in Graph key names; a type name stands for a
    value that was not written (None, its top-level property noted in ``lost``)."""
    if key in _PS_NESTED and isinstance(value, str):
        if not value.strip() or _TYPE_NAME.fullmatch(value.strip()):
            if value.strip() and top in PS_LOST and key in _PS_READ:
                lost.add(PS_LOST[top])
            return None
        return _json_value(value)
    if key.endswith("DateTime"):
        return _ps_date(value)
    if depth > MAX_PS_DEPTH:
        return value
    if isinstance(value, Mapping):
        return _ps_object(value, top, lost, depth + 1)
    if isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, str) and key in _PS_NESTED and _TYPE_NAME.fullmatch(item.strip()):
                if top in PS_LOST and key in _PS_READ:
                    lost.add(PS_LOST[top])
                continue
            items.append(_ps(item, key, top, lost, depth + 1) if isinstance(item, (Mapping, list)) else item)
        return items
    return value


MAX_PS_DEPTH = 64  # Graph objects nest fewer than 10 levels; deeper values are kept as they are


def _ps_object(obj: Mapping[str, Any], top: str | None, lost: set[str], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key == "AdditionalProperties" or not isinstance(key, str) or not key:
            continue
        out[_ps_key(key)] = _ps(value, key, top or key, lost, depth)
    extra = obj.get("AdditionalProperties")
    if isinstance(extra, str):
        _ps(extra, "AdditionalProperties", top or "", lost, depth)  # a type name: nothing to take
    elif isinstance(extra, Mapping):
        # Graph keys the SDK model does not declare (userType, homeTenantId, ...), in Graph's names.
        for key, value in extra.items():
            if isinstance(key, str) and key and out.get(key) is None:
                out[key] = _ps(value, key, top or key, lost, depth)
    return out


def from_powershell(obj: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str]]:
    """A Graph PowerShell SDK object as ConvertTo-Json or Export-Csv wrote it → (the Graph object,
    what was lost). PascalCase properties become Graph's camelCase keys (``IPAddress`` →
    ``ipAddress``, ``RiskEventTypesV2`` → ``riskEventTypes_v2``), each ``AdditionalProperties`` is
    merged into its object, ``Key``/``Value`` pairs become ``key``/``value``, ``\\/Date(ms)\\/``
    becomes ISO 8601. A nested value written as its .NET type name (Export-Csv; ConvertTo-Json
    below its ``-Depth``) is dropped and named in the result: ``actor``, ``targets``,
    ``details``, ``status``, ``location``."""
    lost: set[str] = set()
    return _ps_object(obj, None, lost, 0), frozenset(lost)
