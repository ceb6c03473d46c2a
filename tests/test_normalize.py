"""Normalization: the real samples give the fields they hold, and the documented drift changes nothing.

Field locations: shared/reference/entra-events.md §1.3–1.5, §2, §3.3, §4. Drift: §0 and §1.3.
"""

from __future__ import annotations

import contextlib
import copy
import io
import itertools
import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimwatch.cli import main
from pimwatch.config import build
from pimwatch.detection import activities
from pimwatch.detection.activities import (
    ACTIVATION_COMPLETED,
    PIM_ACTIVITIES,
    ROLE_SETTING_UPDATED,
    canonical,
    register,
)
from pimwatch.detection.detector import Plugin
from pimwatch.detection.event import NOBODY, Event, Modified
from pimwatch.detection.normalize import BadRecord, audit_event, la_to_camel, signin_event
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import Routed, Skipped, classify, read_file, route_record
from pimwatch.detection.timeutil import parse_time
from pimwatch.hosting.driver import Driver
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import TENANT, as_log_analytics, csv_bytes, directory, in_every_shape, pim, signin, user
from pimwatch.testing.harness import run_records
from tests.conftest import SHARED_SAMPLES

# --- helpers -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples() -> Path:
    if not SHARED_SAMPLES.is_dir():
        pytest.skip(f"shared samples folder not found at {SHARED_SAMPLES}")
    return SHARED_SAMPLES


def sample_events(folder: Path, prefix: str) -> list[Event]:
    (path,) = folder.glob(f"{prefix}_*.json")
    items = list(read_file(str(path), [0]))
    assert all(isinstance(i, Routed) for i in items), items
    return [normalize(i) for i in items if isinstance(i, Routed)]


def sample_record(folder: Path, prefix: str) -> dict[str, Any]:
    (path,) = folder.glob(f"{prefix}_*.json")
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def normalize(item: Routed) -> Event:
    fn = audit_event if item.route == "audit" else signin_event
    return fn(item.props, item.top, item.shape, item.category, item.raw)


def event_of(rec: dict[str, Any]) -> Event:
    item = route_record(rec, "test", 1)
    assert isinstance(item, Routed), item
    return normalize(item)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def principal(e_actor: Any) -> tuple[Any, ...]:
    return (e_actor.id, e_actor.upn, e_actor.name, e_actor.type)


# --- 1. the shared samples, normalized -----------------------------------------------------------


def test_sample_01_core_directory_role_is_read_from_modified_properties(samples: Path) -> None:
    (e,) = sample_events(samples, "01")
    assert (e.kind, e.shape, e.category) == ("audit", "eventhub", "AuditLogs")
    assert e.id == "Directory_5d3c3340-5c5e-419c-9ae9-193b1669f84e_D4P59_168172641"
    assert e.time == utc(2020, 4, 8, 7, 40, 53, 169543)
    assert e.activity == "Add member to role"
    assert (e.service, e.audit_category, e.operation_type, e.result) == (
        "Core Directory",
        "RoleManagement",
        "Assign",
        "success",
    )
    assert principal(e.actor) == (
        "9ff6ab06-49d6-49e8-9974-e979522283c1",
        "test.user@datadoghq.com",
        None,
        "User",
    )
    assert e.actor.ip == "192.182.149.21"
    assert principal(e.target) == (
        "febf6383-8bed-4efb-8244-c9a456a1f172",
        None,
        "Test Service Principal",
        "ServicePrincipal",
    )
    assert (e.role_name, e.role_id) == ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d")
    assert e.tenant_id == "4d3bac44-0230-4732-9e70-cc00736f0a97"
    assert e.correlation_id == "5d3c3340-5c5e-419c-9ae9-193b1669f84e"


@pytest.mark.parametrize(
    ("prefix", "activity"),
    [
        ("02", "Add member to role in PIM completed (permanent)"),
        ("03", "Add member to role in PIM requested (permanent)"),
    ],
)
def test_samples_02_03_pim_fields_are_read_by_type_and_key(samples: Path, prefix: str, activity: str) -> None:
    (e,) = sample_events(samples, prefix)
    assert e.id == "PIM_123415"
    # Panther's "2024-12-16 16:32:16.087554000": no zone means UTC; nanoseconds cut to microseconds.
    assert e.time == utc(2024, 12, 16, 16, 32, 16, 87554)
    assert e.activity == activity and activity in PIM_ACTIVITIES
    assert e.service == "PIM"
    assert principal(e.actor) == ("12345", "Radahn@Starscourge.onmicrosoft.com", "Ju Cho", "User")
    assert e.actor.ip == "1.2.3.4"  # additionalDetails ipaddr: the record has no user ipAddress
    assert principal(e.target) == ("12345", None, "Malenia", "User")
    assert e.role_name == "Application Administrator"
    assert e.role_id == "123412351"  # additionalDetails TemplateId
    assert e.justification == "test assign"
    assert e.request_id == "111111111111"
    assert e.start == utc(2024, 12, 16, 16, 32, 15, 844168)
    assert e.end is None
    assert (e.scope_type, e.scope_id, e.scope_name) == ("directory", "12345", "Panther")
    assert e.tenant_id == "12345"
    assert e.details["roledefinitionorigintype"] == "BuiltInRole"


def test_sample_04_app_initiator_and_service_principal_target(samples: Path) -> None:
    (e,) = sample_events(samples, "04")
    assert e.id == "Directory_53161141-e3f4-4944-85b6-7b953f17265e_6X649_134684731"
    assert e.time == utc(2022, 1, 22, 18, 15, 2, 516809)
    assert e.activity == "Add service principal credentials"
    assert principal(e.actor) == (
        "b9814691-9ca1-4e55-a1ac-8ef5dd010ec0",
        None,
        "Managed Service Identity",
        "App",
    )
    assert e.actor.ip == "1.128.3.4"  # top-level callerIpAddress
    assert principal(e.target) == (
        "a7d5dcbe-0627-4ddf-a2f4-86b6785bcc42",
        None,
        "billing-test-wus",
        "ServicePrincipal",
    )
    assert (e.role_name, e.role_id) == (None, None)
    assert e.tenant_id == "4bbb79f7-5724-4c9e-95f3-de075f6ec090"
    assert e.details["user-agent"] == "Microsoft Azure Graph Client Library 2.1.17-internal"


def test_sample_05_signin_fields(samples: Path) -> None:
    (e,) = sample_events(samples, "05")
    assert (e.kind, e.shape, e.category, e.activity) == (
        "signin",
        "eventhub",
        "SignInLogs",
        "Sign-in activity",
    )
    assert e.id == "933f20c0-efdf-477f-9586-e5cc566d2e00"
    assert e.time == utc(2022, 1, 24, 5, 10, 8, 681666)
    assert principal(e.actor) == (
        "2ce85a15-8640-465d-b916-d2eac620a717",
        "mpliftrelastic20210901@outlook.com",
        "elastic testing",
        "User",
    )
    s = e.signin
    assert s is not None
    assert (s.app, s.app_id, s.resource) == (
        "Azure Portal",
        "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
        "Windows Azure Service Management API",
    )
    assert (s.ip, s.country, s.city) == ("1.128.3.4", "IN", "Nizampet")
    assert (s.error_code, s.succeeded, s.failure_reason) == (0, True, None)
    assert (s.ca_status, s.auth_requirement) == ("notApplied", "singleFactorAuthentication")
    assert s.auth_methods == ("Previously satisfied",)
    assert (s.risk_during, s.risk_aggregated, s.risk_state) == ("none", "none", "none")
    assert (s.interactive, s.client_app) == (True, "Browser")
    assert s.tenant_id == "4bbb79f7-5724-4c9e-95f3-de075f6ec090"
    assert s.correlation_id == "7532b99a-06da-4c23-91e5-0f062bc0dcb3"


def test_signin_details_are_decoded_only_when_asked(samples: Path) -> None:
    (e,) = sample_events(samples, "05")
    assert e._signin == []
    first = e.signin
    assert e._signin == [first] and e.signin is first


def test_sample_07_numeric_result_and_empty_initiator(samples: Path) -> None:
    (e,) = sample_events(samples, "07")
    assert e.id == "Directory_VNXV4_28148892"
    assert e.time == utc(2018, 12, 10, 0, 3, 46, 616182)
    assert e.activity == "Update policy"
    assert e.result == "success" and not e.failed  # "result": 0
    assert principal(e.actor) == (None, None, "MS-PIM", None)  # initiatedBy {} → top-level identity
    assert e.actor.ip is None  # callerIpAddress "<null>"
    assert e.target == NOBODY  # a Policy target is not a principal
    assert e.tenant_id == "7918d4b5-0442-4a97-be2d-36f9f9962ece"


def test_sample_08_graph_directory_audit(samples: Path) -> None:
    (e,) = sample_events(samples, "08")
    assert (e.shape, e.id) == ("graph", "SSGM_b662f17a-4e4d-4e1c-9248-cdec180024b2_MCDC4_88453290")
    assert e.time == utc(2024, 12, 27, 10, 1, 19, 579674)
    assert (e.activity, e.service, e.audit_category) == (
        "GroupLifecyclePolicies_Get",
        "Self-service Group Management",
        "GroupManagement",
    )
    assert (e.result, e.result_reason) == ("success", "OK")
    assert principal(e.actor) == ("00000000-0000-0000-0000-000000000000", None, None, "User")
    assert e.actor.ip == "10.0.0.0"
    assert e.target == NOBODY  # type "N/A"
    assert e.tenant_id is None  # Graph carries no tenant


def test_sample_09_graph_signin(samples: Path) -> None:
    (e,) = sample_events(samples, "09")
    assert (e.shape, e.category, e.id) == ("graph", "SignInLogs", "66ea54eb-6301-4ee5-be62-ff5a759b0100")
    assert e.time == utc(2020, 3, 13, 19, 15, 41, 619583)
    assert principal(e.actor) == (
        "26be570a-ae82-4189-b4e2-a37c6808512d",
        "testaccount1@contoso.com",
        "Test Contoso",
        "User",
    )
    s = e.signin
    assert s is not None
    assert (s.app, s.ip, s.country, s.city) == ("Graph explorer", "131.107.159.37", "US", "Redmond")
    assert (s.error_code, s.ca_status, s.risk_during, s.risk_aggregated) == (0, "notApplied", "none", "none")
    assert (s.auth_requirement, s.auth_methods) == (None, ())  # v1.0 has neither


def test_sample_10_core_directory_remove_takes_the_role_from_old_value(samples: Path) -> None:
    core, _ = sample_events(samples, "10")
    assert core.id == "Directory_9154767b-525c-4bd4-b76c-4bfa9c053b3a_FSD0Z_121401637"
    assert core.time == utc(2026, 9, 6, 18, 40, 46, 745592)
    assert (core.activity, core.operation_type) == ("Remove member from role", "Unassign")
    assert principal(core.actor) == ("bdefcbb6-d8b2-497d-a944-b683d9a36b0c", None, "MS-PIM", "App")
    assert principal(core.target) == (
        "03ee6546-f113-4ec5-ba9d-e57381b0c928",
        "adm-jsmith@raytakosharkygmail.onmicrosoft.com",
        None,
        "User",
    )
    assert (core.role_name, core.role_id) == ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")


def test_sample_10_pim_expiry_is_initiated_by_the_pim_system_user(samples: Path) -> None:
    _, e = sample_events(samples, "10")
    assert e.id.startswith("PIM_cc22d319-a360-4006-bbf8-99d66b1d0926_")
    assert e.time == utc(2026, 9, 6, 18, 40, 52, 677024)
    assert e.activity == "Remove member from role (PIM activation expired)" and e.activity in PIM_ACTIVITIES
    assert principal(e.actor) == ("9dfd627f-bdc5-4b1c-af9d-c85097fdeff8", None, "Azure AD PIM", "User")
    assert e.request_id == "61998d6f-fcf3-400a-9d40-cbfa74a3bfbd"  # RoleAssignmentRequestId
    assert e.details["audittype"] == "RemoveActivatedRole"
    assert e.target == NOBODY  # the notebook left the targets out (PARTIAL)


def test_every_sample_event_time_is_aware_utc(samples: Path) -> None:
    for prefix in ("01", "02", "03", "04", "05", "07", "08", "09", "10"):
        for e in sample_events(samples, prefix):
            assert e.time.utcoffset() is not None and e.time.utcoffset().total_seconds() == 0, prefix


# --- 3. drift ------------------------------------------------------------------------------------


def _variant(rec: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    change(out)
    return out


def _level(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(r: dict[str, Any]) -> None:
        r.pop("Level", None)
        r.pop("level", None)
        r[key] = value

    return change


@pytest.mark.parametrize(
    ("key", "value"), [("Level", 4), ("Level", "4"), ("level", "Informational"), ("level", 4)]
)
def test_level_key_and_value_spelling_change_nothing(samples: Path, key: str, value: Any) -> None:
    for prefix in ("04", "05"):
        rec = sample_record(samples, prefix)
        assert event_of(_variant(rec, _level(key, value))) == event_of(rec)


@pytest.mark.parametrize("duration", [0, "0", 123, "123"])
def test_duration_as_number_or_string_changes_nothing(samples: Path, duration: Any) -> None:
    for prefix in ("04", "05"):
        rec = sample_record(samples, prefix)
        changed = _variant(rec, lambda r, d=duration: r.__setitem__("durationMs", d))
        e, base = event_of(changed), event_of(rec)
        assert e == base
        assert e.signin == base.signin


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2022-01-24T05:10:08.6816663Z", utc(2022, 1, 24, 5, 10, 8, 681666)),
        ("2022-01-22T18:15:02.5168093+00:00", utc(2022, 1, 22, 18, 15, 2, 516809)),
        ("2026-03-10T11:30:00.1234567+02:00", utc(2026, 3, 10, 9, 30, 0, 123456)),
        ("2026-03-10T11:30:00-05:00", utc(2026, 3, 10, 16, 30)),
        ("2026-03-10T11:30:00+0200", utc(2026, 3, 10, 9, 30)),
        ("2024-12-16 16:32:16.087554000", utc(2024, 12, 16, 16, 32, 16, 87554)),
        ("2024-12-16 16:32:16.087554000 +01:00", utc(2024, 12, 16, 15, 32, 16, 87554)),
        ("11/14/2025 1:48:53 AM", utc(2025, 11, 14, 1, 48, 53)),
        ("11/14/2025 1:48:53 PM", utc(2025, 11, 14, 13, 48, 53)),
        ("11/14/2025 12:05:00 AM", utc(2025, 11, 14, 0, 5)),
        ("11/14/2025 12:05:00 PM", utc(2025, 11, 14, 12, 5)),
        ("01/09/2007 09:41:00", utc(2007, 1, 9, 9, 41)),
        ("2007-01-09T09:41:00", utc(2007, 1, 9, 9, 41)),
        (" 2026-03-10T11:30:00Z ", utc(2026, 3, 10, 11, 30)),
    ],
)
def test_time_formats_seen_in_the_wild_parse_to_utc(text: str, expected: datetime) -> None:
    got = parse_time(text)
    assert got == expected
    assert got is not None and got.utcoffset() is not None and got.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "13/45/2025 1:00:00 AM", "11/14/2025 13:48:53 PM", "2026-02-30T00:00:00Z", None, 0],
)
def test_unreadable_times_are_none_not_errors(text: Any) -> None:
    assert parse_time(text) is None


def test_signin_with_only_a_us_style_publication_time_uses_it(samples: Path) -> None:
    """Sample 06's top-level drift applied to sample 05 without its createdDateTime."""
    drift = {k: sample_record(samples, "06")[k] for k in ("time", "durationMs", "level")}
    rec = sample_record(samples, "05")
    del rec["properties"]["createdDateTime"], rec["Level"]
    rec |= drift
    assert event_of(rec).time == utc(2025, 11, 14, 1, 48, 53)


def test_audit_activity_time_with_an_offset_is_converted_to_utc() -> None:
    rec = pim(ACTIVATION_COMPLETED, "2026-03-10T11:30:00.5+02:00", user("alice"), principal=user("alice"))
    e = event_of(rec)
    assert e.time == utc(2026, 3, 10, 9, 30, 0, 500000)
    assert e.start == utc(2026, 3, 10, 9, 30, 0, 500000)


@pytest.mark.parametrize(
    ("result", "expected"), [(0, "success"), (1, "failure"), ("Success", "success"), ("failure", "failure")]
)
def test_result_may_be_a_number_or_any_case(result: Any, expected: str) -> None:
    rec = pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", user("alice"), principal=user("alice"))
    rec["properties"]["result"] = result
    e = event_of(rec)
    assert e.result == expected
    assert e.failed is (expected == "failure")


def test_missing_tenant_id_is_taken_from_resource_id_in_any_case(samples: Path) -> None:
    rec = sample_record(samples, "04")
    del rec["tenantId"]
    rec["resourceId"] = rec["resourceId"].upper()
    assert rec["resourceId"].startswith("/TENANTS/4BBB79F7-")
    assert event_of(rec).tenant_id == "4bbb79f7-5724-4c9e-95f3-de075f6ec090"
    srec = sample_record(samples, "05")
    del srec["tenantId"]
    srec["resourceId"] = srec["resourceId"].replace("/tenants/", "/Tenants/")
    s = event_of(srec).signin
    assert s is not None and s.tenant_id == "4bbb79f7-5724-4c9e-95f3-de075f6ec090"


def test_missing_top_level_tenant_id_falls_back_to_the_properties_copy(samples: Path) -> None:
    rec = sample_record(samples, "01")  # newer layout: tenantId repeated inside properties
    del rec["tenantId"]
    rec["resourceId"] = "/tenants/00000000-0000-0000-0000-000000000000/providers/Microsoft.aadiam"
    assert event_of(rec).tenant_id == "4d3bac44-0230-4732-9e70-cc00736f0a97"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Add member to role completed (PIM activation).", ACTIVATION_COMPLETED),
        ("Add member to role completed (PIM activation). ", ACTIVATION_COMPLETED),
        ("Add  member to role   completed (PIM activation)", ACTIVATION_COMPLETED),
        ("\tAdd member to role completed (PIM activation)\n", ACTIVATION_COMPLETED),
        (
            "Add eligible member to role in PIM completed (time bound)",
            "Add eligible member to role in PIM completed (timebound)",
        ),
        (
            "Add member to role in PIM requested (Time-Bound)",
            "Add member to role in PIM requested (timebound)",
        ),
        (
            "Add member to role in PIM requested ( timebound )",
            "Add member to role in PIM requested (timebound)",
        ),
        ("Disable PIM Alert", "Disable PIM alert"),
        ("update role setting in pim", ROLE_SETTING_UPDATED),
        ("Add member to role", "Add member to role"),  # Core Directory: not a PIM name, left alone
        ("Frobnicate  role  in PIM.", "Frobnicate role in PIM"),  # unknown: cleaned, not invented
    ],
)
def test_activity_name_drift_is_folded(name: str, expected: str) -> None:
    assert canonical(name) == expected
    rec = pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", user("alice"), principal=user("alice"))
    rec["properties"]["activityDisplayName"] = name
    rec["operationName"] = name
    assert event_of(rec).activity == expected


def test_activity_falls_back_to_operation_name() -> None:
    rec = pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", user("alice"), principal=user("alice"))
    del rec["properties"]["activityDisplayName"]
    e = audit_event(rec["properties"], rec, "eventhub", "AuditLogs", rec)
    assert e.activity == ACTIVATION_COMPLETED


def _recase_details(rec: dict[str, Any], how: Callable[[str], str]) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    for d in out["properties"]["additionalDetails"]:
        d["key"] = how(d["key"])
    return out


@pytest.mark.parametrize("how", [str.lower, str.upper, str.swapcase])
def test_additional_details_keys_in_any_case_give_the_same_event(
    samples: Path, how: Callable[[str], str]
) -> None:
    rec = sample_record(samples, "02")
    e = event_of(_recase_details(rec, how))
    assert e == event_of(rec)
    assert (e.justification, e.role_id, e.request_id) == ("test assign", "123412351", "111111111111")
    assert e.start == utc(2024, 12, 16, 16, 32, 15, 844168)


def test_justification_key_lower_case_wins_over_result_reason() -> None:
    rec = pim(
        ACTIVATION_COMPLETED,
        "2026-03-10T09:00:00Z",
        user("alice"),
        principal=user("alice"),
        reason="reason text",
        extra_details={"justification": "the key", "TEMPLATEID": "62e90394-69f5-4237-9190-012177145e10"},
    )
    rec["properties"]["additionalDetails"] = [
        d
        for d in rec["properties"]["additionalDetails"]
        if d["key"] not in ("TemplateId", "RoleDefinitionOriginId")
    ]
    e = event_of(rec)
    assert e.justification == "the key"
    assert e.role_id == "62e90394-69f5-4237-9190-012177145e10"


def _reorder(rec: dict[str, Any], order: list[int]) -> dict[str, Any]:
    out = copy.deepcopy(rec)
    targets = out["properties"]["targetResources"]
    out["properties"]["targetResources"] = [targets[i] for i in order]
    return out


ROLE_FIELDS = ("target", "role_name", "role_id", "request_id", "scope_type", "scope_id", "scope_name")


def _role_view(e: Event) -> tuple[Any, ...]:
    return tuple(getattr(e, f) for f in ROLE_FIELDS)


@pytest.mark.parametrize("prefix", ["01", "02"])
def test_reversed_target_resources_give_the_same_role_and_target(samples: Path, prefix: str) -> None:
    rec = sample_record(samples, prefix)
    n = len(rec["properties"]["targetResources"])
    assert event_of(_reorder(rec, list(reversed(range(n))))) == event_of(rec)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_shuffled_target_resources_give_the_same_role_and_target(data: st.DataObject) -> None:
    alice = user("alice")
    records = [
        pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", alice, principal=alice),
        pim(
            ROLE_SETTING_UPDATED,
            "2026-03-10T09:00:00Z",
            user("adm-eve"),
            category="GroupManagement",
            role=("Member", "member"),
            group=("2f3a1c9e-0000-4000-8000-000000000001", "PIM-Exchange-Admins"),
        ),
        directory(
            "Add member to role", "2026-03-10T09:00:00Z", "MS-PIM", alice, role=("User Administrator", "x")
        ),
    ]
    rec = data.draw(st.sampled_from(records))
    order = data.draw(st.permutations(range(len(rec["properties"]["targetResources"]))))
    assert _role_view(event_of(_reorder(rec, list(order)))) == _role_view(event_of(rec))


def test_core_directory_role_id_is_the_template_id_whether_or_not_the_role_target_has_a_name(
    samples: Path,
) -> None:
    rec = sample_record(samples, "01")
    role_target = rec["properties"]["targetResources"][1]
    assert role_target["type"] == "Role" and role_target["displayName"] is None
    named = copy.deepcopy(rec)
    named["properties"]["targetResources"][1]["displayName"] = "Security Administrator"
    assert (event_of(named).role_name, event_of(named).role_id) == (
        "Security Administrator",
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
    )


def test_log_analytics_initiator_with_a_nested_json_string_is_decoded() -> None:
    alice = user("alice")
    rec = pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", alice, principal=alice)
    p = rec["properties"]
    row = {
        "Type": "AuditLogs",
        "TenantId": "0f3e7c52-6a4d-4b8e-9c1f-2d7a5b9e4c33",
        "AADTenantId": TENANT,
        "TimeGenerated": "2026-03-10T09:02:00Z",
        "Id": p["id"],
        "ActivityDateTime": p["activityDateTime"],
        "OperationName": p["activityDisplayName"],
        "Category": p["category"],
        "LoggedByService": "PIM",
        "Result": "success",
        "InitiatedBy": json.dumps({"user": json.dumps(p["initiatedBy"]["user"])}),
        "TargetResources": json.dumps(p["targetResources"]),
        "AdditionalDetails": json.dumps(p["additionalDetails"]),
    }
    props, top = la_to_camel(row)
    assert "tenantId" in props and props["tenantId"] == TENANT
    e = audit_event(props, top, "loganalytics", "AuditLogs", row)
    base = event_of(rec)
    assert (principal(e.actor), e.actor.ip) == (principal(base.actor), base.actor.ip)
    assert _role_view(e) == _role_view(base)
    assert e.tenant_id == TENANT


# --- 3. unknown activities and categories, records without a time --------------------------------


def test_unknown_pim_activities_pass_through_and_are_counted(plugins: list[Plugin]) -> None:
    alice = user("alice")
    new = "Add member to role in PIM completed (quantum)"
    records = [
        pim(new, "2026-03-10T09:00:00Z", alice, principal=alice),
        pim(new, "2026-03-10T09:05:00Z", alice, principal=alice),
        pim("Add member to role completed (PIM activation).", "2026-03-10T09:10:00Z", alice, principal=alice),
        directory("Frobnicate role", "2026-03-10T09:15:00Z", alice, alice),  # not PIM: not counted
    ]
    _, pipeline = run_records(records, plugins)
    assert pipeline.stats.unknown_activities == Counter({new: 2})
    assert not pipeline.stats.bad
    assert event_of(records[0]).activity == new


def _graph_activity_record() -> dict[str, Any]:
    """MicrosoftGraphActivityLogs: no top-level tenantId, upper-case resourceId (entra-events.md §1.2)."""
    return {
        "time": "2026-03-10T09:00:00.0000000Z",
        "resourceId": f"/TENANTS/{TENANT.upper()}/PROVIDERS/MICROSOFT.AADIAM",
        "operationName": "Microsoft Graph Activity",
        "operationVersion": "v1.0",
        "category": "MicrosoftGraphActivityLogs",
        "resultSignature": "200",
        "durationMs": 152,
        "callerIpAddress": "20.190.1.10",
        "level": "Informational",
        "location": "West Europe",
        "properties": {
            "requestMethod": "GET",
            "requestUri": "https://graph.microsoft.com/v1.0/roleManagement/directory/roleAssignments",
            "responseStatusCode": 200,
            "userId": user("alice")[0],
            "appId": "14d82eec-204b-4c2f-b7e8-296a70dab67e",
        },
    }


def _adfs_signin() -> dict[str, Any]:
    rec = signin(user("alice"), "2026-03-10T09:00:00Z")
    rec["category"] = "ADFSSignInLogs"
    return rec


def _service_principal_signin() -> dict[str, Any]:
    rec = signin(("", "", ""), "2026-03-10T09:00:00Z")
    rec["category"] = "ServicePrincipalSignInLogs"
    rec["properties"]["servicePrincipalId"] = "99999999-9999-9999-9999-999999999999"
    return rec


def test_unknown_categories_are_skipped_and_counted_by_category(plugins: list[Plugin]) -> None:
    records = [
        _graph_activity_record(),
        _graph_activity_record(),
        _adfs_signin(),
        _service_principal_signin(),
        {"records": [_adfs_signin(), signin(user("bob"), "2026-03-10T09:01:00Z")]},
    ]
    alerts, pipeline = run_records(records, plugins)
    assert pipeline.stats.skipped == Counter(
        {"MicrosoftGraphActivityLogs": 2, "ADFSSignInLogs": 2, "ServicePrincipalSignInLogs": 1}
    )
    assert pipeline.stats.records == Counter({("SignInLogs", "eventhub"): 1})
    assert not pipeline.stats.bad and alerts == []


def test_service_principal_signins_in_graph_and_log_analytics_shapes_are_skipped() -> None:
    sp = signin(("", "", ""), "2026-03-10T09:00:00Z")["properties"]
    sp |= {"userId": "", "servicePrincipalId": "99999999-9999-9999-9999-999999999999"}
    typed = dict(
        signin(user("bob"), "2026-03-10T09:00:00Z")["properties"], signInEventTypes=["servicePrincipal"]
    )
    la = {"Type": "AADServicePrincipalSignInLogs", "TimeGenerated": "2026-03-10T09:00:00Z", "AppId": "x"}
    got = [route_record(r, "t", 1) for r in (sp, typed, la)]
    assert got == [
        Skipped("ServicePrincipalSignInLogs", "graph"),
        Skipped("ServicePrincipalSignInLogs", "graph"),
        Skipped("AADServicePrincipalSignInLogs", "loganalytics"),
    ]


def test_noninteractive_graph_signins_are_routed_to_the_noninteractive_category() -> None:
    base = signin(user("bob"), "2026-03-10T09:00:00Z")["properties"]
    typed = dict(base, signInEventTypes=["nonInteractiveUser"])
    typed.pop("isInteractive")
    flagged = dict(base, isInteractive=False)
    for obj in (typed, flagged):
        item = route_record(obj, "t", 1)
        assert isinstance(item, Routed) and (item.shape, item.category) == (
            "graph",
            "NonInteractiveUserSignInLogs",
        )


def _pipeline(plugins: list[Plugin], config: dict[str, Any], tmp_path: Path) -> tuple[Pipeline, Path]:
    q = tmp_path / "quarantine.jsonl"
    cfg = build(config, plugins, "test config")
    return Pipeline(plugins, cfg, SqliteStore(":memory:"), Quarantine(str(q))), q


def test_audit_record_without_a_readable_time_is_quarantined_with_the_reason(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    alice = user("alice")
    rec = pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", alice, principal=alice)
    rec["properties"]["activityDateTime"] = "yesterday at noon"
    del rec["time"]
    with pytest.raises(BadRecord, match="no readable activityDateTime or time"):
        event_of(rec)
    pipeline, q = _pipeline(plugins, {}, tmp_path)
    good = pim(ACTIVATION_COMPLETED, "2026-03-10T09:05:00Z", alice, principal=alice)
    pipeline.feed(classify([rec, good], "input.jsonl", 7))
    Driver(pipeline).finish()
    assert pipeline.stats.records == Counter({("AuditLogs", "eventhub"): 1})
    (entry,) = [orjson.loads(line) for line in q.read_bytes().splitlines()]
    assert (entry["source"], entry["line"]) == ("input.jsonl", 7)
    assert "no readable activityDateTime or time" in entry["reason"]
    assert orjson.loads(entry["raw"]) == rec


def test_signin_without_a_readable_time_is_quarantined_with_the_reason(
    plugins: list[Plugin], tmp_path: Path
) -> None:
    bg = ("c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com", "Emergency Admin 01")
    rec = signin(bg, "2026-03-10T09:00:00Z")
    del rec["properties"]["createdDateTime"]
    rec["time"] = "soon"
    pipeline, q = _pipeline(plugins, {"break_glass": {"accounts": [bg[0]]}}, tmp_path)
    pipeline.feed(classify(rec, "signins.jsonl", 3))
    Driver(pipeline).finish()
    (entry,) = [orjson.loads(line) for line in q.read_bytes().splitlines()]
    assert "sign-in record has no readable createdDateTime or time" in entry["reason"]
    assert entry["line"] == 3 and orjson.loads(entry["raw"]) == rec


def test_same_record_in_many_orders_of_drift_is_one_event(samples: Path) -> None:
    """All the drift at once on sample 02: Level/level, string durationMs, key case, target order."""
    rec = sample_record(samples, "02")
    rng = random.Random(2)
    drifted = _recase_details(rec, str.upper)
    drifted = _reorder(drifted, rng.sample(range(5), 5))
    drifted.pop("Level")
    drifted["level"] = "Informational"
    drifted["durationMs"] = "0"
    drifted["properties"]["activityDisplayName"] += "."
    assert event_of(drifted) == event_of(rec)


# --- 4. targets and modified properties: decoded once, the same for every input shape ------------


def _events_in_every_shape(*records: dict[str, Any]) -> dict[str, list[Event]]:
    out: dict[str, list[Event]] = {}
    for shape, recs in in_every_shape(*records).items():
        items = [i for r in recs for i in classify(r, "test", 1)]
        assert all(isinstance(i, Routed) for i in items), items
        out[shape] = [normalize(i) for i in items if isinstance(i, Routed)]
    return out


def test_sample_01_modified_properties_are_decoded_the_same_in_every_shape(samples: Path) -> None:
    shapes = _events_in_every_shape(sample_record(samples, "01"))
    assert list(shapes) == ["Event Hub", "Graph", "Log Analytics JSON", "Log Analytics CSV"]
    assert [e.shape for (e,) in shapes.values()] == ["eventhub", "graph", "loganalytics", "loganalytics"]
    want = (
        Modified("Role.ObjectID", None, "260a316b-1246-41c7-bc20-16569a1bd28d"),
        Modified("Role.DisplayName", None, "Security Administrator"),
        Modified("Role.TemplateId", None, "194ae4cb-b126-40b2-bd5b-6091b380977d"),
        Modified("Role.WellKnownObjectName", None, "SecurityAdmins"),
        Modified("TargetId.ServicePrincipalNames", None, "9205c433-2781-42be-a046-c21ef6b5e608"),
    )
    for shape, (e,) in shapes.items():
        assert e.modified == want, shape
        assert [(t.type, t.id, t.name) for t in e.targets] == [
            ("ServicePrincipal", "febf6383-8bed-4efb-8244-c9a456a1f172", "Test Service Principal"),
            ("Role", "260a316b-1246-41c7-bc20-16569a1bd28d", None),
        ], shape
        assert e.targets[0].modified == want and e.targets[1].modified == ()


def test_policy_values_as_text_text_of_text_or_a_list_of_text_decode_to_the_same_object() -> None:
    policy = {"id": "p1", "state": "enabled", "conditions": {"users": {"includeUsers": ["All"]}}}
    text = json.dumps(policy)
    rec = directory("Update conditional access policy", "2026-03-10T09:00:00Z", user("adm-kim"), user("x"))
    rec["properties"]["targetResources"][0]["modifiedProperties"] = [
        {"displayName": "ConditionalAccessPolicy", "oldValue": text, "newValue": json.dumps(text)},
        {"displayName": "PolicyDetail", "oldValue": json.dumps([text]), "newValue": ""},
        {"displayName": "Note", "oldValue": "[redacted]", "newValue": "plain text"},
    ]
    for shape, (e,) in _events_in_every_shape(rec).items():
        assert e.modified == (
            Modified("ConditionalAccessPolicy", policy, policy),
            Modified("PolicyDetail", [policy], None),
            Modified("Note", "[redacted]", "plain text"),
        ), shape


def test_named_target_is_the_first_named_target_of_the_first_type_in_every_shape() -> None:
    rec = pim("Triggered PIM alert", "2026-03-10T09:00:00Z", user("adm-eve"))
    rec["properties"]["targetResources"][:0] = [
        {"id": "unnamed-other", "displayName": "  ", "type": "Other"},
        {"id": "alert-1", "displayName": " Stale accounts ", "type": "Other"},
    ]
    for shape, (e,) in _events_in_every_shape(rec).items():
        assert e.named_target() == ("Stale accounts", "alert-1"), shape
        assert e.named_target(("Role",)) == ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
        assert e.named_target(("Group",)) is None


def test_signins_have_no_targets() -> None:
    e = event_of(signin(user("alice"), "2026-03-10T09:00:00Z"))
    assert e.targets == () and e.modified == () and e.named_target() is None


def test_a_log_analytics_csv_export_names_the_settings_weakening(tmp_path: Path) -> None:
    """§10.2 end to end: ``pimwatch replay`` of a CSV export, as a user runs it."""
    from detectors.settings_changed import WEAK_PROPS

    path = tmp_path / "AuditLogs.csv"
    path.write_bytes(csv_bytes([as_log_analytics(WEAK_PROPS)]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["replay", "--format", "jsonl", str(path)]) == 0
    (alert,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert alert["detector"] == "settings.changed"
    assert alert["title"].endswith(
        "— weakened: IsApprovalRequired changed from True to False; "
        "ExpirationRule.MaximumDuration changed from PT8H to P1D; +1 more"  # (+ IsJustificationRequired)
    )


# --- 5. activity names: registration does not depend on order (PYTHONHASHSEED) -------------------


def test_registered_spellings_do_not_depend_on_the_order_of_registration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = ["Update conditional access policy", "Update Conditional Access policy", "Disable PIM Alert"]
    probes = [*names, "UPDATE CONDITIONAL ACCESS POLICY", "disable pim alert"]
    seen = set()
    for order in itertools.permutations(names):
        monkeypatch.setattr(activities, "_KNOWN", {n.lower(): n for n in PIM_ACTIVITIES})
        monkeypatch.setattr(activities, "_EXACT", set(PIM_ACTIVITIES))
        monkeypatch.setattr(activities, "_CACHE", {})
        register(order[:1])
        register(order[1:])
        seen.add(tuple(canonical(p) for p in probes))
    assert seen == {
        (
            "Update conditional access policy",  # a registered spelling stays as written
            "Update Conditional Access policy",
            "Disable PIM alert",  # Microsoft's reference spelling of a PIM name wins
            "Update Conditional Access policy",  # other drift: the smallest registered spelling
            "Disable PIM alert",
        )
    }
