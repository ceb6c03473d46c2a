"""Event Hub records written in the shapes users export them in, from the facts of
shared/reference/export-shapes.md ((a)-(e)) and entra-events.md §2 — test helpers, not guesses:
where the reference marks a fact INFERRED or THIN, the docstring says so.

Each writer takes Event Hub records (audit and user sign-ins; other categories have no place in
these exports) and returns the bytes of one file as the producing program writes it.
"""

from __future__ import annotations

import calendar
import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from pimwatch.detection.timeutil import parse_time
from pimwatch.testing import as_graph, as_log_analytics

MODELS = "Microsoft.Graph.PowerShell.Models."
USER_CATEGORIES = ("AuditLogs", "SignInLogs", "NonInteractiveUserSignInLogs")


def by_table(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """The audit and user sign-in records, by Event Hub category (the other categories dropped)."""
    out: dict[str, list[Mapping[str, Any]]] = {c: [] for c in USER_CATEGORIES}
    for rec in records:
        if rec["category"] in out:
            out[rec["category"]].append(rec)
    return out


# --- Graph API and Log Analytics -----------------------------------------------------------------


def graph_page(records: Sequence[Mapping[str, Any]], endpoint: str) -> bytes:
    """``GET /v1.0/auditLogs/<endpoint>`` response (entra-events.md §2.1, §2.2)."""
    page = {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#auditLogs/{endpoint}",
        "value": [as_graph(r) for r in records],
    }
    return json.dumps(page, indent=2).encode()


def la_row(rec: Mapping[str, Any]) -> dict[str, Any]:
    """as_log_analytics of a record with the Event Hub drift of the demo day (``level`` for
    ``Level``, no ``tenantId``) evened out: Log Analytics has one column for each."""
    fixed = dict(rec)
    fixed.setdefault("Level", rec.get("level", 4))
    fixed.setdefault("tenantId", rec["resourceId"].split("/")[2].lower())
    fixed.setdefault("operationVersion", "1.0")
    fixed.setdefault("resultSignature", "None")
    fixed.setdefault("durationMs", 0)
    return as_log_analytics(fixed)


def la_json(records: Sequence[Mapping[str, Any]]) -> bytes:
    """Log Analytics rows as a JSON array (entra-events.md §2.3: dynamic columns as JSON strings)."""
    return json.dumps([la_row(r) for r in records]).encode()


_PORTAL_TIMES = ("TimeGenerated", "CreatedDateTime", "ActivityDateTime")


def portal_time(value: str) -> str:
    """``9/19/2023, 1:42:37.848 PM`` (export-shapes.md (a) [SEEN]): three fraction digits."""
    dt = parse_time(value)
    assert dt is not None
    clock = f"{dt.hour % 12 or 12}:{dt.minute:02d}:{dt.second:02d}.{dt.microsecond // 1000:03d}"
    return f"{dt.month}/{dt.day}/{dt.year}, {clock} {'AM' if dt.hour < 12 else 'PM'}"


def portal_csv(records: Sequence[Mapping[str, Any]]) -> bytes:
    """Azure portal "Export → CSV (all columns)" (export-shapes.md (a)): `` [UTC]`` on datetime
    headers, portal times, dynamic columns as compact JSON, booleans TRUE/FALSE [THIN], CRLF."""
    rows = []
    for rec in records:
        row: dict[str, Any] = {}
        for key, value in la_row(rec).items():
            if key in _PORTAL_TIMES:
                row[f"{key} [UTC]"] = portal_time(value)
            elif isinstance(value, bool):
                row[key] = "TRUE" if value else "FALSE"
            elif isinstance(value, str) and value[:1] in ("{", "["):
                row[key] = json.dumps(json.loads(value), separators=(",", ":"), ensure_ascii=False)
            else:
                row[key] = value
        rows.append(row)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))  # csv's default line end is CRLF
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def az_query(records: Sequence[Mapping[str, Any]]) -> bytes:
    """``az monitor log-analytics query ... > file`` (export-shapes.md (b)): every value
    ``str(value)`` (``True``, ``None``), ``TableName`` added, keys sorted, two-space indent [SEEN];
    dynamic columns as JSON strings [INFERRED]."""
    rows = []
    for rec in records:
        row = {k: str(None if v == "" else v) for k, v in la_row(rec).items()}
        row["TableName"] = "PrimaryResult"
        rows.append(row)
    text = json.dumps(rows, ensure_ascii=False, indent=2, sort_keys=True, separators=(",", ": ")) + "\n"
    return text.encode()


def windows_powershell_redirect(data: bytes) -> bytes:
    """``>`` / Out-File in Windows PowerShell 5.1: UTF-16 LE with a BOM, CRLF [DOC]."""
    return data.decode().replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-16")


# --- Graph PowerShell SDK objects ------------------------------------------------------------------


class Obj(dict[str, Any]):
    """An SDK model object: its properties (PascalCase, declared ones present even when null, in
    ordinal order) and ``AdditionalProperties`` last; ``cls`` is its .NET class name."""

    def __init__(self, cls: str, declared: Mapping[str, Any], extra: Mapping[str, Any] | None = None):
        super().__init__(sorted(declared.items(), key=lambda kv: kv[0].encode("utf-16-be")))
        self["AdditionalProperties"] = Extra(extra or {})
        self.cls = MODELS + cls


class Extra(dict[str, Any]):
    """``AdditionalProperties``: a Dictionary<string, object> of the Graph keys the model lacks."""

    cls = "System.Collections.Generic.Dictionary`2[System.String,System.Object]"


class Date(datetime):
    """A System.DateTime (Kind Utc) with its 100-ns ticks: ``fraction`` holds the 7 digits."""

    fraction: str


def _date(value: Any) -> Date | None:
    """A Graph time string → the DateTime the SDK parses it to (AdjustToUniversal, [SEEN])."""
    if not isinstance(value, str) or not value:
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?(Z|[+-]00:00)", value)
    assert m, f"not a UTC ISO time: {value}"
    dt = datetime.fromisoformat(m.group(1)).replace(tzinfo=UTC)
    fraction = (m.group(2) or "").ljust(7, "0")
    out = Date(dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second, int(fraction) // 10, UTC)
    out.fraction = fraction
    return out


def _kv(items: Any) -> list[Obj]:
    return [
        Obj("MicrosoftGraphKeyValue", {"Key": i.get("key"), "Value": i.get("value")}) for i in items or []
    ]


_USER = {
    "displayName": "DisplayName",
    "id": "Id",
    "ipAddress": "IPAddress",
    "userPrincipalName": "UserPrincipalName",
}
_APP = {
    "appId": "AppId",
    "displayName": "DisplayName",
    "servicePrincipalId": "ServicePrincipalId",
    "servicePrincipalName": "ServicePrincipalName",
}
_TARGET = ("displayName", "groupType", "id", "type", "userPrincipalName")


def _model(cls: str, names: Mapping[str, str], value: Any) -> Obj | None:
    """A Graph object as the SDK model ``cls`` whose declared properties are ``names``; the keys it
    does not declare go to AdditionalProperties (export-shapes.md (c): userType, homeTenantId)."""
    if not isinstance(value, Mapping):
        return None
    declared = {pascal: value.get(camel) for camel, pascal in names.items()}
    return Obj(cls, declared, {k: v for k, v in value.items() if k not in names})


def _pascal(key: str) -> str:
    return key[:1].upper() + key[1:]


def ps_directory_audit(rec: Mapping[str, Any]) -> Obj:
    """``Get-MgAuditLogDirectoryAudit`` output object for an Event Hub audit record (export-shapes.md
    (c) [SEEN] property set; Graph keys of §2.1, the Event-Hub-only ones left out by as_graph)."""
    g = as_graph(rec)
    initiated = g.get("initiatedBy") or {}
    targets = []
    for t in g.get("targetResources") or []:
        modified = [
            Obj(
                "MicrosoftGraphModifiedProperty",
                {
                    "DisplayName": m.get("displayName"),
                    "NewValue": m.get("newValue"),
                    "OldValue": m.get("oldValue"),
                },
            )
            for m in t.get("modifiedProperties") or []
        ]
        declared = {_pascal(k): t.get(k) for k in _TARGET} | {"ModifiedProperties": modified}
        extra = {k: v for k, v in t.items() if k not in _TARGET and k != "modifiedProperties"}
        targets.append(Obj("MicrosoftGraphTargetResource", declared, extra))
    declared = {
        "ActivityDateTime": _date(g.get("activityDateTime")),
        "ActivityDisplayName": g.get("activityDisplayName"),
        "AdditionalDetails": _kv(g.get("additionalDetails")),
        "Category": g.get("category"),
        "CorrelationId": g.get("correlationId"),
        "Id": g.get("id"),
        "InitiatedBy": Obj(
            "MicrosoftGraphAuditActivityInitiator1",
            {
                "App": _model("MicrosoftGraphAppIdentity", _APP, initiated.get("app")),
                "User": _model("MicrosoftGraphUserIdentity", _USER, initiated.get("user")),
            },
        ),
        "LoggedByService": g.get("loggedByService"),
        "OperationType": g.get("operationType"),
        "Result": g.get("result"),
        "ResultReason": g.get("resultReason"),
        "TargetResources": targets,
        "UserAgent": g.get("userAgent"),
    }
    return Obj(
        "MicrosoftGraphDirectoryAudit", declared, {k: v for k, v in g.items() if _pascal(k) not in declared}
    )


_SIGNIN = (
    "appDisplayName",
    "appId",
    "clientAppUsed",
    "conditionalAccessStatus",
    "correlationId",
    "id",
    "isInteractive",
    "resourceDisplayName",
    "resourceId",
    "riskDetail",
    "riskEventTypes",
    "riskLevelAggregated",
    "riskLevelDuringSignIn",
    "riskState",
    "userDisplayName",
    "userId",
    "userPrincipalName",
)


def ps_sign_in(rec: Mapping[str, Any]) -> Obj:
    """``Get-MgAuditLogSignIn`` (v1.0) output object (export-shapes.md (c) [SEEN] property set).
    v1.0 returns none of the beta-only fields (authenticationRequirement, authenticationDetails,
    userAgent, ...; entra-events.md §2.2 [DOC]): they are not in the object at all."""
    g = as_graph(rec)
    status = g.get("status") or {}
    location = g.get("location") or {}
    geo = location.get("geoCoordinates")
    device = g.get("deviceDetail") or {}
    declared: dict[str, Any] = {_pascal(k): g.get(k) for k in _SIGNIN}
    declared |= {
        "IPAddress": g.get("ipAddress"),
        "RiskEventTypesV2": g.get("riskEventTypes_v2"),
        "CreatedDateTime": _date(g.get("createdDateTime")),
        "Status": Obj(
            "MicrosoftGraphSignInStatus",
            {
                "AdditionalDetails": status.get("additionalDetails"),
                "ErrorCode": status.get("errorCode"),
                "FailureReason": status.get("failureReason"),
            },
        ),
        "Location": Obj(
            "MicrosoftGraphSignInLocation",
            {
                "City": location.get("city"),
                "CountryOrRegion": location.get("countryOrRegion"),
                "GeoCoordinates": Obj(
                    "MicrosoftGraphGeoCoordinates",
                    {"Altitude": None, "Latitude": geo.get("latitude"), "Longitude": geo.get("longitude")},
                )
                if isinstance(geo, Mapping)
                else None,
                "State": location.get("state"),
            },
        ),
        "DeviceDetail": Obj(
            "MicrosoftGraphDeviceDetail",
            {
                _pascal(k): device.get(k)
                for k in (
                    "browser",
                    "deviceId",
                    "displayName",
                    "isCompliant",
                    "isManaged",
                    "operatingSystem",
                    "trustType",
                )
            },
        ),
        "AppliedConditionalAccessPolicies": [
            Obj(
                "MicrosoftGraphAppliedConditionalAccessPolicy",
                {
                    _pascal(k): p.get(k)
                    for k in (
                        "displayName",
                        "enforcedGrantControls",
                        "enforcedSessionControls",
                        "id",
                        "result",
                    )
                },
            )
            for p in g.get("appliedConditionalAccessPolicies") or []
        ],
    }
    return Obj("MicrosoftGraphSignIn", declared)


def ps_objects(records: Sequence[Mapping[str, Any]]) -> list[Obj]:
    return [ps_directory_audit(r) if r["category"] == "AuditLogs" else ps_sign_in(r) for r in records]


def _to_string(value: Any) -> str:
    """What PowerShell's LanguagePrimitives.ConvertTo<string> gives for an object past -Depth: the
    class name; a list, its items' strings joined by spaces ($OFS)."""
    if isinstance(value, list):
        return " ".join(_to_string(v) for v in value)
    if isinstance(value, Extra):
        return " ".join(f"[{k}, {v}]" for k, v in value.items())
    return getattr(value, "cls", str(value))


def _process(value: Any, depth: int, max_depth: int) -> Any:
    """ConvertTo-Json's ProcessValue (PowerShell JsonObject.cs): primitives and DateTime at any
    depth; a dictionary, list or object deeper than -Depth becomes its string; members one deeper."""
    if value is None or isinstance(value, (str, bool, int, float, Date)):
        return value
    if depth > max_depth:
        return _to_string(value)
    if isinstance(value, list):
        return [_process(v, depth + 1, max_depth) for v in value]
    return {k: _process(v, depth + 1, max_depth) for k, v in value.items()}


def convert_to_json(objs: Sequence[Obj], depth: int = 2) -> Any:
    """The value ConvertTo-Json serializes for ``objs`` piped into it: several objects are one list
    (depth 0, each object at depth 1), a single object is itself (depth 0)."""
    return _process(objs[0] if len(objs) == 1 else list(objs), 0, depth)


def _pwsh_date(d: Date) -> str:
    """Json.NET's DateTime (Kind Utc): ISO with ``Z``, fraction digits without trailing zeros."""
    fraction = d.fraction.rstrip("0")
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + "Z"


def pwsh_json(objs: Sequence[Obj], depth: int = 2) -> bytes:
    """PowerShell 7 ``... | ConvertTo-Json [-Depth n] > file`` (export-shapes.md (c) [SEEN]): Json.NET
    indented (two spaces, ``"key": value``, ``[]``/``{}``), only ``"``, ``\\`` and control
    characters escaped; Out-File: UTF-8 without a BOM [DOC], CRLF [INFERRED]."""

    def dates(v: Any) -> Any:
        if isinstance(v, Date):
            return _pwsh_date(v)
        if isinstance(v, list):
            return [dates(x) for x in v]
        if isinstance(v, dict):
            return {k: dates(x) for k, x in v.items()}
        return v

    text = json.dumps(dates(convert_to_json(objs, depth)), indent=2, ensure_ascii=False)
    return (text.replace("\n", "\r\n") + "\r\n").encode()


_PS5_ESCAPES = {"'": "\\u0027", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}


def _ps5_string(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    return re.sub(r"['<>&]", lambda m: _PS5_ESCAPES[m.group()], text)


def _ps5(value: Any, column: int) -> str:
    """Windows PowerShell 5.1's printer (export-shapes.md (d) [SEEN]): four-space indent,
    ``"key":  value``, a nested value's members at the column after its key plus four, an empty
    list or object as the bracket, a blank line, the bracket at that column."""
    pad = " " * column
    if isinstance(value, Date):
        ms = calendar.timegm(value.utctimetuple()) * 1000 + int(value.fraction[:3])  # ticks // 10,000
        return f'"\\/Date({ms})\\/"'
    if isinstance(value, str):
        return _ps5_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, list):
        if not value:
            return f"[\r\n\r\n{pad}]"
        inner = ",\r\n".join(f"{pad}    {_ps5(v, column + 4)}" for v in value)
        return f"[\r\n{inner}\r\n{pad}]"
    if not value:
        return f"{{\r\n\r\n{pad}}}"
    members = []
    for k, v in value.items():
        key = f"{_ps5_string(k)}:  "
        members.append(f"{pad}    {key}{_ps5(v, column + 4 + len(key))}")
    return "{\r\n" + ",\r\n".join(members) + f"\r\n{pad}}}"


def windows_powershell_json(objs: Sequence[Obj], depth: int = 2) -> bytes:
    """Windows PowerShell 5.1 ``... | ConvertTo-Json [-Depth n] > file`` (export-shapes.md (d)):
    dates ``\\/Date(ms)\\/`` [SEEN], ``'<>&`` escaped [SEEN], the 5.1 layout, written by ``>``
    as UTF-16 LE with a BOM and CRLF [DOC]."""
    return windows_powershell_redirect((_ps5(convert_to_json(objs, depth), 0) + "\r\n").encode())


def _culture_date(d: Date) -> str:
    """DateTime.ToString() in en-US: ``11/26/2026 10:40:00 AM`` [INFERRED]."""
    clock = f"{d.hour % 12 or 12}:{d.minute:02d}:{d.second:02d} {'AM' if d.hour < 12 else 'PM'}"
    return f"{d.month}/{d.day}/{d.year} {clock}"


_ARRAYS = {
    "AdditionalDetails": "IMicrosoftGraphKeyValue[]",
    "TargetResources": "IMicrosoftGraphTargetResource[]",
    "AppliedConditionalAccessPolicies": "IMicrosoftGraphAppliedConditionalAccessPolicy[]",
}


def _csv_cell(key: str, value: Any) -> str:
    """Export-Csv writes each property's ToString(): a class name for an object, the array type
    for a list ([INFERRED]: .NET Array.ToString()), the culture's format for a DateTime."""
    if value is None:
        return ""
    if isinstance(value, Date):
        return _culture_date(value)
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, Extra):
        return Extra.cls
    if isinstance(value, list):
        return MODELS + _ARRAYS[key] if key in _ARRAYS else "System.String[]"
    if isinstance(value, Obj):
        return value.cls
    return str(value)


def export_csv(objs: Sequence[Obj], *, windows_powershell: bool = False) -> bytes:
    """``Get-MgAuditLogDirectoryAudit ... | Export-Csv -Path file.csv`` (export-shapes.md (e)):
    columns the properties in order, every field quoted; PowerShell 7: no ``#TYPE`` line, UTF-8
    without a BOM [DOC]; Windows PowerShell 5.1: ``#TYPE <class>`` first, ASCII [DOC]."""
    out = io.StringIO()
    if windows_powershell:
        out.write(f"#TYPE {objs[0].cls}\r\n")
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(list(objs[0]))
    for obj in objs:
        writer.writerow([_csv_cell(k, v) for k, v in obj.items()])
    return out.getvalue().encode("ascii", errors="replace") if windows_powershell else out.getvalue().encode()
