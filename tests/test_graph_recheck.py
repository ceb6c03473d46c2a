"""The targeted re-check and the directory enrichment, end to end: records through the real runtime
(SQLite state), the queue drained by the ``recheck`` timer against the local Graph on loopback
(pimwatch/graph/fake.py), requests counted from the server's own log."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pytest

from pimwatch.config import build
from pimwatch.detection.activities import ACTIVATION_COMPLETED, ROLE_SETTING_UPDATED
from pimwatch.detection.alerts import Alert
from pimwatch.detection.contract import Store
from pimwatch.detection.detector import discover
from pimwatch.detection.directory import QUEUE
from pimwatch.detection.principals import Principals
from pimwatch.detection.records import directory, pim, signin, user
from pimwatch.detection.timeutil import iso
from pimwatch.graph import recheck
from pimwatch.graph.fake import FakeGraph, Fault, serve
from pimwatch.graph.run import timer as full_run
from pimwatch.graph.tenants import BREAK_GLASS, GA, GROUP, SECA, UA, Tenant, compliant, uid, violating
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from pimwatch.state.tables import TableStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLUGINS = discover()
ADMIN = user("changer")
BG_GROUP = "7e57b1a5-0000-4000-8000-00000000b6b6"
DRIFT_KEY = f"role/{GA}/Expiration_EndUser_Assignment/maximumDuration"


def _runtime(
    tmp_path: Path, g: FakeGraph, open_store: Callable[[], Store] | None = None, **extra: Any
) -> Runtime:
    data = {
        "graph": {"endpoint": g.url, "credential": "none", "max_retries": 0},
        "break_glass": {"accounts": list(BREAK_GLASS)},
        **extra,
    }
    config = build(data, PLUGINS, "test config")
    db = str(tmp_path / "state.db")
    return Runtime(
        config,
        PLUGINS,
        open_store or (lambda: SqliteStore(db)),
        Quarantine(str(tmp_path / "q.jsonl")),
        clock=lambda: NOW,
    )


@pytest.fixture(params=["sqlite", "table"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store] | None:
    """The state the runtime opens: SQLite, or Azure Tables on Azurite (the batch's unit of work)."""
    if request.param == "sqlite":
        return None
    conn = request.getfixturevalue("azurite_tables")
    prefix = "r" + uuid.uuid4().hex[:16]
    return lambda: TableStore(conn, prefix)


@pytest.fixture
def tenant() -> Tenant:
    t = compliant(NOW)
    member = t.user(90, "bg3@contoso.com")
    t.data["groups"][BG_GROUP] = {"members": [member], "eligibilityScheduleInstances": []}
    return t


def _setting_changed(role: tuple[str, str], minute: int) -> bytes:
    at = iso(NOW + timedelta(minutes=minute))
    record = pim(ROLE_SETTING_UPDATED, at, ADMIN, role=role, reason="Maximum activation duration updated")
    return orjson.dumps({"records": [record]})


def _posture(runtime: Runtime) -> dict[str, list[Alert]]:
    alerts = runtime.work(lambda s: [a for a in s.alerts() if a.detector.startswith("posture.")])
    out: dict[str, list[Alert]] = {}
    for a in alerts:
        out.setdefault(a.detector, []).append(a)
    return out


def _paths(g: FakeGraph) -> list[str]:
    return [unquote(r) for r in g.requests]


def test_a_settings_change_raises_the_drift_finding_with_targeted_reads_only(
    tmp_path: Path, tenant: Tenant, any_store: Callable[[], Store] | None
) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, any_store, posture={"enrichment_ttl_minutes": 0})
        try:
            g.tenant["rolePolicies"] = violating(NOW).copy()["rolePolicies"]  # GA: PT8H, baseline PT4H
            runtime.handle([_setting_changed(("Global Administrator", GA), 1)])
            assert g.requests == []  # the batch never calls Graph
            report = recheck.timer(runtime, NOW + timedelta(seconds=10))
            paths = _paths(g)
            found = _posture(runtime)
            queue = runtime.work(lambda s: s.members(QUEUE, NOW - timedelta(days=1), NOW + timedelta(days=1)))
        finally:
            runtime.close()
    assert report["rechecked"] == [f"role/{GA}/settings"]
    # one policy read for the one role, and the role names (no enrichment): no full scan
    assert len(paths) == 2, paths
    assert f"roleDefinitionId eq '{GA}'" in paths[0] and "roleManagementPolicyAssignments" in paths[0]
    assert "roleDefinitions" in paths[1]
    assert not any(p for p in paths if "Schedule" in p or "subscribedSkus" in p or "/groups/" in p)
    assert sorted(found) == ["posture.policy_drift"]
    assert [a.key for a in found["posture.policy_drift"]] == [DRIFT_KEY]
    assert found["posture.policy_drift"][0].context["actual"] == "PT8H"
    assert queue == []


def test_three_changes_to_one_role_make_one_recheck(
    tmp_path: Path, tenant: Tenant, any_store: Callable[[], Store] | None
) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, any_store, posture={"enrichment_ttl_minutes": 0})
        try:
            runtime.handle([_setting_changed(("Global Administrator", GA), 1)])
            runtime.handle([_setting_changed(("Global Administrator", GA), 2)])
            runtime.handle(
                [_setting_changed(("Global Administrator", GA), 3), _setting_changed(("x", GA), 4)]
            )
            report = recheck.timer(runtime, NOW + timedelta(minutes=5))
            again = recheck.timer(runtime, NOW + timedelta(minutes=6))
        finally:
            runtime.close()
    assert report["rechecked"] == [f"role/{GA}/settings"]
    assert sum("roleManagementPolicyAssignments" in p for p in _paths(g)) == 1
    assert again == {"rechecked": [], "enrichment": "fresh", "requests": 0, "findings": 0}


def test_a_change_to_a_compliant_role_finds_nothing(tmp_path: Path, tenant: Tenant) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, posture={"enrichment_ttl_minutes": 0})
        try:
            runtime.handle([_setting_changed(("User Administrator", UA), 1)])
            report = recheck.timer(runtime, NOW + timedelta(seconds=10))
            found = _posture(runtime)
        finally:
            runtime.close()
    assert report["rechecked"] == [f"role/{UA}/settings"] and report["findings"] == 0
    assert found == {}


def test_a_recheck_resolves_only_what_it_looked_at(tmp_path: Path, tenant: Tenant) -> None:
    """After a full run (every finding open), fixing GA's setting and re-checking GA resolves the GA
    drift; the other checks' findings, and other roles', stay open."""
    bad = violating(NOW)
    with serve(bad.copy()) as g:
        runtime = _runtime(tmp_path, g, posture={"enrichment_ttl_minutes": 0})
        try:
            full_run(runtime, NOW)
            before = {k: [a.key for a in v if a.resolved_at is None] for k, v in _posture(runtime).items()}
            g.tenant["rolePolicies"] = compliant(NOW).copy()["rolePolicies"]
            runtime.handle([_setting_changed(("Global Administrator", GA), 1)])
            recheck.timer(runtime, NOW + timedelta(seconds=10))
            after = {k: [a.key for a in v if a.resolved_at is None] for k, v in _posture(runtime).items()}
        finally:
            runtime.close()
    assert before["posture.policy_drift"] == [DRIFT_KEY]
    assert "posture.policy_drift" not in {k for k, v in after.items() if v}
    assert {k: v for k, v in after.items() if k != "posture.policy_drift"} == {
        k: v for k, v in before.items() if k != "posture.policy_drift"
    }


def test_an_assignment_record_rechecks_that_roles_assignments(tmp_path: Path, tenant: Tenant) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, posture={"enrichment_ttl_minutes": 0})
        try:
            t = Tenant(NOW)
            t.data = g.tenant
            t.active(t.user(41, "direct@contoso.com"), SECA, direct=True)
            at = iso(NOW + timedelta(minutes=1))
            record = directory(
                "Add member to role", at, ADMIN, user("direct"), role=("Security Administrator", SECA)
            )
            runtime.handle([orjson.dumps({"records": [record]})])
            report = recheck.timer(runtime, NOW + timedelta(seconds=10))
            found = _posture(runtime)
        finally:
            runtime.close()
    assert report["rechecked"] == [f"role/{SECA}/assignments"]
    paths = _paths(g)
    assert all(f"roleDefinitionId eq '{SECA}'" in p for p in paths if "Schedule" in p)
    assert sorted(found) == ["posture.outside_pim", "posture.permanent_assignment"]
    assert [a.key for a in found["posture.permanent_assignment"]] == [f"{SECA}/{uid(41)}"]


def test_a_transient_failure_puts_the_target_back(tmp_path: Path, tenant: Tenant) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, posture={"enrichment_ttl_minutes": 0})
        try:
            runtime.handle([_setting_changed(("Global Administrator", GA), 1)])
            g.faults.append(Fault("roleManagementPolicyAssignments", 503, "ServiceUnavailable"))
            failed = recheck.timer(runtime, NOW + timedelta(seconds=10))
            g.faults.append(Fault("roleManagementPolicyAssignments", 403, "Authorization_RequestDenied"))
            denied = recheck.timer(runtime, NOW + timedelta(seconds=20))
            empty = recheck.timer(runtime, NOW + timedelta(seconds=30))
        finally:
            runtime.close()
    assert failed["requeued"] is True and denied["rechecked"] == [f"role/{GA}/settings"]
    assert denied["requeued"] is False and empty["rechecked"] == []


def _bg_signin(minute: int) -> bytes:
    who = (uid(90), "bg3@contoso.com", "bg3")
    return orjson.dumps(
        {"records": [signin(who, iso(NOW + timedelta(minutes=minute)), ip=f"20.0.0.{minute}")]}
    )


def test_a_break_glass_group_member_is_break_glass_once_enriched(
    tmp_path: Path, tenant: Tenant, any_store: Callable[[], Store] | None
) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(
            tmp_path, g, any_store, break_glass={"accounts": list(BREAK_GLASS), "groups": [BG_GROUP]}
        )
        try:
            runtime.handle([_bg_signin(1)])
            unknown = runtime.work(lambda s: [a for a in s.alerts() if a.detector == "breakglass.signin"])
            report = recheck.timer(runtime, NOW + timedelta(minutes=2))
            runtime.handle([_bg_signin(3)])
            alerts = runtime.work(lambda s: [a for a in s.alerts() if a.detector == "breakglass.signin"])
            settings = runtime.config.settings
            known = runtime.work(lambda s: Principals(s, settings).ids)
        finally:
            runtime.close()
    assert unknown == [] and report["enrichment"] == "read"
    assert [a.principal["upn"] for a in alerts] == ["bg3@contoso.com"]
    assert f"/groups/{BG_GROUP}/transitiveMembers" in "".join(g.requests)
    # the privileged principals from eligibility and active instances, for the detectors
    assert {uid(11), uid(12), uid(13), uid(21), uid(31), uid(32)} <= known


def test_the_enrichment_is_read_again_when_its_ttl_is_over(tmp_path: Path, tenant: Tenant) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(
            tmp_path,
            g,
            break_glass={"accounts": list(BREAK_GLASS), "groups": [BG_GROUP]},
            posture={"enrichment_ttl_minutes": 60},
        )
        try:
            first = recheck.timer(runtime, NOW)
            n = len(g.requests)
            cached = recheck.timer(runtime, NOW + timedelta(minutes=59))
            assert len(g.requests) == n
            g.tenant["groups"][BG_GROUP]["members"] = [tenant.user(91, "bg4@contoso.com")]
            g.tenant["directoryObjects"].update(tenant.data["directoryObjects"])
            expired = recheck.timer(runtime, NOW + timedelta(minutes=61))
            doc = runtime.work(lambda s: s.get("directory:enrichment"))
        finally:
            runtime.close()
    assert (first["enrichment"], cached["enrichment"], expired["enrichment"]) == ("read", "fresh", "read")
    assert cached["requests"] == 0 and len(g.requests) > n
    assert doc["break_glass"]["upns"] == ["bg4@contoso.com"] and doc["read_at"] == iso(
        NOW + timedelta(minutes=61)
    )


def test_a_membership_change_of_a_watched_group_reads_the_enrichment_again(
    tmp_path: Path, tenant: Tenant
) -> None:
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, break_glass={"accounts": list(BREAK_GLASS), "groups": [BG_GROUP]})
        try:
            recheck.timer(runtime, NOW)
            record = directory("Add member to group", iso(NOW + timedelta(minutes=1)), ADMIN, user("newbg"))
            record["properties"]["category"] = "GroupManagement"
            record["properties"]["targetResources"].append(
                {"id": BG_GROUP, "displayName": "BG", "type": "Group"}
            )
            other = directory("Add member to group", iso(NOW + timedelta(minutes=1)), ADMIN, user("x"))
            other["properties"]["category"] = "GroupManagement"
            other["properties"]["targetResources"].append(
                {"id": uid(999), "displayName": "any", "type": "Group"}
            )
            runtime.handle([orjson.dumps({"records": [record, other]})])
            report = recheck.timer(runtime, NOW + timedelta(minutes=2))
        finally:
            runtime.close()
    assert report["rechecked"] == [f"group/{BG_GROUP}/members"] and report["enrichment"] == "read"


def test_the_recheck_function_runs_every_10_seconds() -> None:
    from tests.functions_host import APP

    assert APP["recheck"].get_trigger().schedule == "*/10 * * * * *"


def test_records_that_change_no_role_queue_nothing(tmp_path: Path, tenant: Tenant) -> None:
    """The hot path: an activation, a failed settings change, a sign-in, a membership change of a
    group nobody watches queue no re-check (and the batch calls no Graph)."""
    at = iso(NOW + timedelta(minutes=1))
    failed = pim(ROLE_SETTING_UPDATED, at, ADMIN, role=("Global Administrator", GA), result="failure")
    activation = pim(ACTIVATION_COMPLETED, at, ADMIN, principal=ADMIN, role=("Global Administrator", GA))
    unwatched = directory("Add member to group", at, ADMIN, user("x"), category="GroupManagement")
    unwatched["properties"]["targetResources"].append({"id": uid(999), "displayName": "any", "type": "Group"})
    records = [failed, activation, unwatched, signin(ADMIN, at)]
    (tmp_path / "off").mkdir()
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g, posture={"enrichment_ttl_minutes": 0})
        off = _runtime(tmp_path / "off", g, posture={"recheck": False})
        try:
            runtime.handle([orjson.dumps({"records": records})])
            queue = runtime.work(lambda s: s.members(QUEUE, NOW - timedelta(days=1), NOW + timedelta(days=1)))
            off.handle([_setting_changed(("Global Administrator", GA), 2)])
            queue_off = off.work(lambda s: s.members(QUEUE, NOW - timedelta(days=1), NOW + timedelta(days=1)))
        finally:
            runtime.close()
            off.close()
    assert queue == [] and queue_off == [] and g.requests == []


def test_a_pim_group_settings_change_rechecks_the_group_against_its_roles_tier(
    tmp_path: Path, tenant: Tenant
) -> None:
    """The group holds User Administrator (medium tier: PT8H); its member policy allows PT10H."""
    with serve(tenant.copy()) as g:
        runtime = _runtime(tmp_path, g)
        try:
            recheck.timer(runtime, NOW)  # the enrichment: which roles the group holds
            for pa in g.tenant["groupPolicies"][GROUP]:
                for r in pa["policy"]["rules"]:
                    if r["id"] == "Expiration_EndUser_Assignment":
                        r["maximumDuration"] = "PT10H"
            g.requests.clear()
            at = iso(NOW + timedelta(minutes=1))
            record = pim(
                ROLE_SETTING_UPDATED,
                at,
                ADMIN,
                role=("Member", "member"),
                group=(GROUP, "User admins (PIM)"),
                category="GroupManagement",
            )
            runtime.handle([orjson.dumps({"records": [record]})])
            report = recheck.timer(runtime, NOW + timedelta(minutes=2))
            found = _posture(runtime)
        finally:
            runtime.close()
    assert report["rechecked"] == [f"group/{GROUP}/settings"] and report["enrichment"] == "fresh"
    paths = _paths(g)
    assert len(paths) == 2, paths
    assert f"scopeId eq '{GROUP}' and scopeType eq 'Group'" in paths[0]
    assert f"roleDefinitionId eq '{UA}'" in paths[1]
    assert [a.key for a in found["posture.policy_drift"]] == [
        f"group/{GROUP}/Expiration_EndUser_Assignment/maximumDuration"
    ]


def test_break_glass_groups_are_validated_with_their_key_path() -> None:
    from pimwatch.config import ConfigError

    with pytest.raises(ConfigError) as caught:
        build({"break_glass": {"groups": [BG_GROUP, "Break glass"]}}, PLUGINS, "cfg")
    assert caught.value.problems == [
        "break_glass.groups[1]: expected a group object id (GUID), got 'Break glass'"
    ]
    ok = build({"break_glass": {"groups": [BG_GROUP.upper()]}}, PLUGINS, "cfg")
    assert ok.settings.break_glass_groups == {BG_GROUP}


@pytest.mark.parametrize("ttl", [60, 0])
def test_the_full_run_treats_break_glass_group_members_as_the_recheck_does(
    tmp_path: Path, tenant: Tenant, ttl: int
) -> None:
    """A break-glass group member holding Global Administrator permanently is no finding once the
    enrichment has read the group (ttl 60), and is one without it (ttl 0: never read)."""
    tenant.active(uid(90), GA)
    with serve(tenant.copy()) as g:
        runtime = _runtime(
            tmp_path,
            g,
            break_glass={"accounts": list(BREAK_GLASS), "groups": [BG_GROUP]},
            posture={"enrichment_ttl_minutes": ttl},
        )
        try:
            recheck.timer(runtime, NOW)
            full_run(runtime, NOW)
            found = _posture(runtime).get("posture.permanent_assignment", [])
        finally:
            runtime.close()
    assert [a.key for a in found] == ([] if ttl else [f"{GA}/{uid(90)}"])
