"""Graph PowerShell SDK output read as what it is (issue 10, "What to build" 1 and 2).

``Get-MgAuditLogDirectoryAudit`` / ``Get-MgAuditLogSignIn`` objects through ``ConvertTo-Json``
(PowerShell 7 and Windows PowerShell 5.1) and ``Export-Csv``, written by tests/shapes.py from the
facts of shared/reference/export-shapes.md (c)-(e): the same events as the Event Hub shape where
the export keeps them, and, where it does not (nested objects written as .NET type names), the
fields that survive plus a note naming the file.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimwatch.detection.normalize import from_powershell
from pimwatch.detection.reader import POWERSHELL, POWERSHELL_FLATTENED, Bad, Routed, Skipped, route_record
from tests import shapes
from tests.test_reader import RECORDS, _by_id, baseline, key_fields, read, routed_events, who
from tests.test_shapes_demo import demo_records, replay

AUDITS = [r for r in RECORDS if r["category"] == "AuditLogs"]
SIGNINS = [r for r in RECORDS if r["category"] != "AuditLogs"]


def _v1(e: Any) -> tuple[Any, ...]:
    """key_fields without what Graph v1.0 sign-ins do not carry: authenticationRequirement and the
    authentication methods are beta-only (entra-events.md §2.2), so Get-MgAuditLogSignIn has neither."""
    fields = key_fields(e)
    return fields[:21] + fields[23:] if e.kind == "signin" else fields


def _ms(e: Any) -> tuple[Any, ...]:
    """_v1 with times to the millisecond (5.1 writes \\/Date(ms)\\/)."""
    fields = list(_v1(e))
    fields[2] = fields[2].replace(microsecond=fields[2].microsecond // 1000 * 1000)
    return tuple(fields)


WRITERS = {"pwsh": (shapes.pwsh_json, _v1), "powershell 5.1": (shapes.windows_powershell_json, _ms)}


@pytest.mark.parametrize("writer", list(WRITERS))
@pytest.mark.parametrize("single", [False, True])
def test_convertto_json_gives_the_events_of_the_event_hub_shape(
    writer: str, single: bool, tmp_path: Path
) -> None:
    """-Depth 10, as an array (several objects piped) or one object per file (a single one)."""
    write, key = WRITERS[writer]
    events = []
    groups = [[r] for r in RECORDS] if single else [AUDITS, SIGNINS]
    for i, group in enumerate(groups):
        path = tmp_path / f"{i}.json"
        path.write_bytes(write(shapes.ps_objects(group), 10))
        items = read(path)
        assert all(isinstance(it, Routed) and it.shape == POWERSHELL for it in items), items
        events += routed_events(items)
    assert [key(e) for e in sorted(events, key=_by_id)] == [key(e) for e in baseline()]
    assert any(e.signin and e.signin.auth_requirement for e in baseline())  # the Event Hub has it
    assert not any(e.signin and (e.signin.auth_requirement or e.signin.auth_methods) for e in events)


def test_windows_powershell_5_1_layout_and_escapes_are_as_the_reference_says() -> None:
    data = shapes.windows_powershell_json(shapes.ps_objects(AUDITS[:1]), 10)
    assert data[:2] == b"\xff\xfe"  # UTF-16 LE BOM
    text = data.decode("utf-16")
    assert '"ActivityDateTime":  "\\/Date(' in text and "\r\n" in text
    assert '"InitiatedBy":  {\r\n                        "App":  ' in text  # aligned after the key
    obj, lost = from_powershell(json.loads(text))
    assert not lost and obj["activityDateTime"].endswith("Z") and "T" in obj["activityDateTime"]


def test_pascal_case_additional_properties_and_key_value_pairs_become_graph_keys() -> None:
    rec = {
        "ActivityDateTime": "\\/Date(1773122497550)\\/".replace("\\/", "/"),
        "ActivityDisplayName": "Add member to role completed (PIM activation)",
        "AdditionalDetails": [{"Key": "RoleDefinitionOriginId", "Value": "abc", "AdditionalProperties": {}}],
        "InitiatedBy": {
            "App": None,
            "User": {
                "DisplayName": "Alice",
                "IPAddress": "203.0.113.9",
                "Id": "u1",
                "UserPrincipalName": "alice@contoso.com",
                "AdditionalProperties": {"userType": "Member", "homeTenantId": "t1"},
            },
            "AdditionalProperties": {},
        },
        "TargetResources": [],
        "AdditionalProperties": {"extraKey": 1},
    }
    obj, lost = from_powershell(rec)
    assert not lost
    assert obj["activityDateTime"] == "2026-03-10T06:01:37.550000Z"
    assert obj["additionalDetails"] == [{"key": "RoleDefinitionOriginId", "value": "abc"}]
    assert obj["initiatedBy"]["user"] == {
        "displayName": "Alice",
        "ipAddress": "203.0.113.9",
        "id": "u1",
        "userPrincipalName": "alice@contoso.com",
        "userType": "Member",
        "homeTenantId": "t1",
    }
    assert obj["extraKey"] == 1
    item = route_record(rec, "x.json", 1)
    assert isinstance(item, Routed) and (item.route, item.shape) == ("audit", POWERSHELL)
    (event,) = routed_events([item])
    assert event.actor.upn == "alice@contoso.com" and event.actor.ip == "203.0.113.9"


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("/Date(1574202819000)/", "2019-11-19T22:33:39Z"),
        ("/Date(1574202819123+0100)/", "2019-11-19T22:33:39.123000Z"),  # the offset is only a hint
        ("/Date(-1000)/", "1969-12-31T23:59:59Z"),
    ],
)
def test_windows_powershell_dates_are_utc_milliseconds(text: str, iso: str) -> None:
    obj, _ = from_powershell({"CreatedDateTime": text, "UserId": "u"})
    assert obj["createdDateTime"] == iso
    wrapped, _ = from_powershell({"CreatedDateTime": {"value": text, "DisplayHint": 2, "DateTime": "x"}})
    assert wrapped["createdDateTime"] == iso


def test_a_5_1_array_passed_with_input_object_is_read_element_by_element(tmp_path: Path) -> None:
    """``ConvertTo-Json -InputObject $list`` in 5.1 wraps an array as {"value": [...], "Count": n}."""
    objs = json.loads(shapes.pwsh_json(shapes.ps_objects(AUDITS), 10))
    path = tmp_path / "a.json"
    path.write_text(json.dumps({"value": objs, "Count": len(objs)}))
    assert len(routed_events(read(path))) == len(AUDITS)


def test_a_log_analytics_row_is_never_taken_for_a_powershell_object() -> None:
    row = shapes.la_row(AUDITS[0])
    item = route_record(row, "x.json", 1)
    assert isinstance(item, Routed) and item.shape == "loganalytics"


def test_a_signin_at_the_default_depth_keeps_what_is_read_and_drops_the_rest_quietly(tmp_path: Path) -> None:
    """``Get-MgAuditLogSignIn | ConvertTo-Json`` (-Depth 2): conditional access policies and geo
    coordinates become type names (nothing reads them); status and location stay objects."""
    t = shapes.by_table(demo_records())
    signins = t["SignInLogs"][:100] + t["NonInteractiveUserSignInLogs"][:100]
    path = tmp_path / "s.json"
    path.write_bytes(shapes.pwsh_json(shapes.ps_objects(signins), 2))
    text = path.read_bytes()
    assert b'"GeoCoordinates": "Microsoft.Graph.PowerShell.Models.MicrosoftGraphGeoCoordinates"' in text
    assert b'"Microsoft.Graph.PowerShell.Models.MicrosoftGraphAppliedConditionalAccessPolicy' in text
    items = read(path)
    assert {i.shape for i in items if isinstance(i, Routed)} == {POWERSHELL}
    want = sorted(_v1(e) for e in routed_events(route_record(r, "eh", 1) for r in signins))
    assert sorted(_v1(e) for e in routed_events(items)) == want


def test_an_audit_at_the_default_depth_is_flattened() -> None:
    """``Get-MgAuditLogDirectoryAudit | ConvertTo-Json`` without -Depth: the initiator's user and the
    targets are type names; the record is routed with what survives, marked flattened."""
    (obj,) = json.loads(shapes.pwsh_json(shapes.ps_objects(AUDITS[:2]), 2))[:1]
    assert obj["InitiatedBy"]["User"] == "Microsoft.Graph.PowerShell.Models.MicrosoftGraphUserIdentity"
    item = route_record(obj, "x.json", 1)
    assert isinstance(item, Routed) and item.shape == POWERSHELL_FLATTENED
    _, lost = from_powershell(obj)
    assert lost >= {"actor", "targets"}


@pytest.mark.parametrize("windows_powershell", [False, True])
def test_export_csv_is_recognised_and_keeps_what_survives(windows_powershell: bool, tmp_path: Path) -> None:
    path = tmp_path / "PIM-Audit.csv"
    path.write_bytes(shapes.export_csv(shapes.ps_objects(AUDITS), windows_powershell=windows_powershell))
    if windows_powershell:
        assert path.read_bytes().startswith(
            b"#TYPE Microsoft.Graph.PowerShell.Models.MicrosoftGraphDirectoryAudit\r\n"
        )
    items = read(path)
    assert all(isinstance(i, Routed) and i.shape == POWERSHELL_FLATTENED for i in items), items
    events = routed_events(items)
    for e, b in zip(sorted(events, key=_by_id), [e for e in baseline() if e.kind == "audit"], strict=True):
        assert (
            e.id,
            e.activity,
            e.audit_category,
            e.result,
            e.result_reason,
            e.correlation_id,
            e.service,
        ) == (
            b.id,
            b.activity,
            b.audit_category,
            b.result,
            b.result_reason,
            b.correlation_id,
            b.service,
        )
        assert e.time == b.time.replace(microsecond=0)  # en-US DateTime.ToString(): whole seconds
        assert e.actor.id is None and e.actor.upn is None and e.targets == () and e.details == {}


def test_a_type_line_without_a_csv_suffix_is_still_read_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "export"  # no suffix: detected by content
    path.write_bytes(shapes.export_csv(shapes.ps_objects(AUDITS), windows_powershell=True))
    assert all(isinstance(i, Routed) for i in read(path))


def test_an_unrecognised_powershell_object_is_quarantined_whole() -> None:
    item = route_record({"DisplayName": "x", "AdditionalProperties": {}}, "x.json", 3)
    assert isinstance(item, Bad) and item.reason.startswith("unrecognised record shape")


def test_the_guides_export_csv_of_the_demo_day_is_explained_and_raises_only_what_needs_nothing_else(
    tmp_path: Path,
) -> None:
    """``Get-MgAuditLogDirectoryAudit -Filter "category eq 'RoleManagement'" | Export-Csv -Path
    PIM-Audit-<date>.csv`` of the demo day: settings.changed reads only the activity and the
    reason (PIM writes the change list there), so it still alerts, without role or actor (hence
    high, not critical, for the weakening; the strengthening ones are low, as with every shape; the
    two roles' changes by the same unknown actor fold per change list); every detector that needs
    an actor or a target is silent, and the note says why."""
    role_management = [
        r
        for r in demo_records()
        if r["category"] == "AuditLogs" and r["properties"]["category"] == "RoleManagement"
    ]
    path = tmp_path / "PIM-Audit-2026-03-10.csv"
    path.write_bytes(shapes.export_csv(shapes.ps_objects(role_management)))
    code, alerts, err = replay([path], tmp_path)
    assert code == 0
    assert {(a["detector"], a["severity"], a["principal"]["upn"]) for a in alerts} == {
        ("settings.changed", "high", None),
        ("settings.changed", "low", None),
    }
    weakened = [a for a in alerts if a["severity"] == "high"]
    assert len(weakened) == 1
    assert weakened[0]["title"].endswith(
        "— weakened: Maximum activation duration updated to 24:00:00; "
        "MFA on activation requirement disabled; +2 more"
    )
    last = err.splitlines()[-2:]
    assert last[0] == "pimwatch: 1 input file note (check these):"
    assert last[1].startswith(f"  {path}: Graph PowerShell Export-Csv output: ")
    assert "actor, targets and details of its 290 records were lost" in last[1]
    assert "ConvertTo-Json -Depth 10" in last[1] and "Log Analytics or the Event Hub" in last[1]
    assert replay([path], tmp_path, "--strict")[0] == 3


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=30,
)
_PS_KEYS = st.sampled_from(
    [
        "ActivityDateTime",
        "ActivityDisplayName",
        "InitiatedBy",
        "TargetResources",
        "AdditionalDetails",
        "CreatedDateTime",
        "UserId",
        "Status",
        "Location",
        "User",
        "ModifiedProperties",
    ]
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.dictionaries(_PS_KEYS | st.text(max_size=8), _JSON, max_size=8), _JSON)
def test_any_powershell_looking_object_is_routed_or_quarantined_never_raises(
    rec: dict[str, Any], extra: Any
) -> None:
    """Audit fields are attacker-controlled: whatever the values, the object is an item, and an
    event is made or refused with a reason the pipeline handles (BadRecord is a ValueError)."""
    rec["AdditionalProperties"] = extra
    item = route_record(rec, "x.json", 1)
    assert isinstance(item, (Routed, Skipped, Bad))
    if isinstance(item, Routed):
        with contextlib.suppress(ValueError):
            routed_events([item])


def test_export_csv_of_sign_ins_keeps_the_user_and_says_status_and_location_were_lost(tmp_path: Path) -> None:
    path = tmp_path / "signins.csv"
    path.write_bytes(shapes.export_csv(shapes.ps_objects(SIGNINS)))
    items = read(path)
    assert all(isinstance(i, Routed) and i.shape == POWERSHELL_FLATTENED for i in items), items
    got = sorted(
        (e.id, e.category, who(e.actor), e.signin.risk_during, e.signin.country) for e in routed_events(items)
    )
    want = sorted(
        (e.id, e.category, who(e.actor), e.signin.risk_during, None) for e in baseline() if e.signin
    )
    assert got == want  # the country is in Location, a type name here
    code, _, err = replay([path], tmp_path)
    assert code == 0 and "the status and location of its" in err.splitlines()[-1]
