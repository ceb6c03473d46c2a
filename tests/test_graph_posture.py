"""Posture checks end to end against the local Graph on loopback (pimwatch/graph/fake.py): a compliant
tenant, one that breaks every check once, the fix that resolves them, paging, a missing permission,
no P2, the baseline file's validation, the CLI and the Functions path (same outbox and sinks)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pimwatch import cli
from pimwatch.config import Config, ConfigError, build
from pimwatch.delivery.deliverer import Deliverer
from pimwatch.delivery.sink import Http
from pimwatch.detection.detector import discover
from pimwatch.graph import baseline
from pimwatch.graph.fake import FakeGraph, Fault, serve
from pimwatch.graph.posture import Outcome
from pimwatch.graph.run import check_tenant, record, timer
from pimwatch.graph.tenants import BREAK_GLASS, GA, SECA, compliant, violating, without_p2
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLUGINS = discover()
CHECKS = [
    "posture.breakglass",
    "posture.builtin_alerts",
    "posture.global_admin_count",
    "posture.global_admin_ratio",
    "posture.license",
    "posture.notifications",
    "posture.outside_pim",
    "posture.permanent_assignment",
    "posture.policy_drift",
    "posture.privileged_hybrid",
    "posture.privileged_principals",
    "posture.stale_eligible",
]


def _config(url: str, **extra: Any) -> Config:
    data = {
        "graph": {"endpoint": url, "credential": "none"},
        "break_glass": {"accounts": list(BREAK_GLASS)},
        **extra,
    }
    return build(data, PLUGINS, "test config")


def _check(g: FakeGraph, now: datetime = NOW, **extra: Any) -> Outcome:
    waits: list[float] = []

    async def sleep(s: float) -> None:
        waits.append(s)

    outcome, _ = check_tenant(_config(g.url, **extra), now, sleep=sleep)
    return outcome


def _findings(outcome: Outcome) -> dict[str, list[dict[str, Any]]]:
    return {c.id: [{"key": f.key, **f.evidence} for f in c.findings] for c in outcome.checks}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_the_check_catalogue_is_discovered() -> None:
    from pimwatch.graph.posture import discover as checks

    assert [p.meta.id for p in checks()] == CHECKS


def test_a_compliant_tenant_has_no_findings() -> None:
    with serve(compliant(NOW).copy()) as g:
        outcome = _check(g)
    assert {c.id: c.status for c in outcome.checks} == dict.fromkeys(CHECKS, "ran")
    assert {c: f for c, f in _findings(outcome).items() if f} == {}
    assert outcome.licensed is True


def test_a_tenant_breaking_every_check_once_gets_each_finding_once_with_its_evidence() -> None:
    with serve(violating(NOW).copy()) as g:
        found = _findings(_check(g))
    assert {c: len(f) for c, f in found.items()} == {**dict.fromkeys(CHECKS, 1), "posture.license": 0}
    (count,) = found["posture.global_admin_count"]
    assert (count["key"], count["count"], count["max"]) == ("too_many", 9, 8)
    (ratio,) = found["posture.global_admin_ratio"]
    assert (ratio["global_admins"], ratio["other_privileged"]) == (9, 7)
    (perm,) = found["posture.permanent_assignment"]
    assert perm["role"] == "Security Administrator" and perm["expiration"]["type"] == "noExpiration"
    (outside,) = found["posture.outside_pim"]
    assert outside["role_id"] == SECA and outside["definitions"] == ["maester", "scubagear"]
    (drift,) = found["posture.policy_drift"]
    assert {k: drift[k] for k in ("scope", "target", "rule", "field", "expected", "actual", "tier")} == {
        "scope": "role",
        "target": "Global Administrator",
        "rule": "Expiration_EndUser_Assignment",
        "field": "maximumDuration",
        "expected": "PT4H",
        "actual": "PT8H",
        "tier": "high",
    }
    (note,) = found["posture.notifications"]
    assert (note["role"], note["rule"], note["verdicts"]) == (
        "Security Administrator",
        "Notification_Admin_EndUser_Assignment",
        {"scubagear": False, "zta": True},
    )
    (bg,) = found["posture.breakglass"]
    assert (bg["account"], bg["problem"]) == (BREAK_GLASS[1], "drill_overdue")
    assert bg["last_sign_in"] == "2026-01-16T12:00:00.000000Z"  # 45 days before NOW
    (stale,) = found["posture.stale_eligible"]
    assert stale["role"] == "Helpdesk Administrator"
    (hybrid,) = found["posture.privileged_hybrid"]
    assert hybrid["roles"] == ["Billing Administrator"] and hybrid["onPremisesSyncEnabled"] is True
    (guest,) = found["posture.privileged_principals"]
    assert (guest["kind"], guest["roles"]) == ("guest", ["Authentication Administrator"])
    (pim_alert,) = found["posture.builtin_alerts"]
    assert (pim_alert["alert"], pim_alert["incidentCount"]) == ("RedundantAssignmentAlert", 2)


def test_the_zta_definition_of_notifications_accepts_default_recipients() -> None:
    with serve(violating(NOW).copy()) as g:
        outcome = _check(g, posture={"checks": {"posture.notifications": {"definition": "zta"}}})
    assert _findings(outcome)["posture.notifications"] == []


def test_paging_gives_the_same_findings_as_one_page() -> None:
    with serve(violating(NOW).copy(), page_size=2) as g:
        paged = _findings(_check(g))
        assert sum("$skiptoken=" in r for r in g.requests) > 10
    with serve(violating(NOW).copy()) as g:
        assert _findings(_check(g)) == paged


@pytest.fixture(params=["sqlite", "table"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Both state stores: SQLite, and Azure Tables on Azurite (what the Functions app uses)."""
    import uuid

    from pimwatch.state.tables import TableStore

    s: Any
    if request.param == "sqlite":
        s = SqliteStore(str(tmp_path / "state.db"))
    else:
        s = TableStore(request.getfixturevalue("azurite_tables"), prefix="t" + uuid.uuid4().hex[:16])
    yield s
    s.close()


def test_findings_fire_once_and_resolve_when_fixed(any_store: Any) -> None:
    store = any_store
    with serve(violating(NOW).copy()) as g:
        first = record(store, _check(g), NOW)
        again = record(store, _check(g, NOW + timedelta(hours=6)), NOW + timedelta(hours=6))
    assert [c for _, c in first] == ["new"] * 11 and again == []
    opened = {a.id: a for a in store.alerts()}
    assert len(opened) == 11 and {a.status for a in opened.values()} == {"open"}
    fixed_at = NOW + timedelta(hours=12)
    with serve(compliant(NOW).copy()) as g:
        fixed = record(store, _check(g, fixed_at), fixed_at)
    assert sorted(fixed) == sorted((aid, "resolved") for aid in opened)
    assert {a.status for a in store.alerts()} == {"resolved"}
    broken_again = NOW + timedelta(days=1)
    with serve(violating(NOW).copy()) as g:
        reopened = record(store, _check(g, broken_again), broken_again)
    assert len(reopened) == 11 and not {aid for aid, _ in reopened} & set(opened)  # new episodes


def test_a_missing_permission_names_it_and_keeps_what_was_open(store: SqliteStore) -> None:
    with serve(violating(NOW).copy()) as g:
        record(store, _check(g), NOW)
        g.faults.append(
            Fault(
                "policies/roleManagementPolicyAssignments",
                403,
                "Authorization_RequestDenied",
                message="Insufficient privileges to complete the operation.",
                times=100,
            )
        )
        outcome = _check(g, NOW + timedelta(hours=6))
        changes = record(store, outcome, NOW + timedelta(hours=6))
    status = {c.id: (c.status, c.reason) for c in outcome.checks}
    assert status["posture.policy_drift"][0] == "error"
    assert status["posture.policy_drift"][1].startswith(
        "posture.policy_drift needs RoleManagementPolicy.Read.Directory "
        "(GET /policies/roleManagementPolicyAssignments: 403 Authorization_RequestDenied"
    )
    assert status["posture.notifications"][1].startswith(
        "posture.notifications needs RoleManagementPolicy.Read.Directory"
    )
    assert {c for c, (s, _) in status.items() if s != "ran"} == {
        "posture.policy_drift",
        "posture.notifications",
    }
    assert not outcome.complete and changes == []  # nothing resolved: the checks could not look
    assert {a.status for a in store.alerts()} == {"open"}


def test_a_tenant_without_p2_says_pim_checks_cannot_run() -> None:
    with serve(without_p2(NOW).copy()) as g:
        outcome = _check(g)
        pim_paths = [
            r for r in g.requests if "roleManagement" in r or "policies/" in r or "identityGovernance" in r
        ]
    status = {c.id: c.status for c in outcome.checks}
    assert status.pop("posture.license") == "ran" and status.pop("posture.breakglass") == "ran"
    assert set(status.values()) == {"skipped"}
    (finding,) = _findings(outcome)["posture.license"]
    assert finding["skus"] == ["AAD_PREMIUM"]
    assert outcome.licensed is False
    assert [p for p in pim_paths if "roleAssignmentSchedules" not in p] == []  # only breakglass's read


def test_the_baseline_file_is_validated_with_key_paths(tmp_path: Path) -> None:
    bad = tmp_path / "baseline.yaml"
    bad.write_text(
        "tiers:\n"
        "  high:\n"
        "    roles: [Global Administrator]\n"
        "    rules:\n"
        "      Expiration_EndUser_Assignment: {maximumDuration: 4 hours}\n"
        "      Enablement_EndUser_Assignment: {enabledRules: [MFA]}\n"
        "      Approval_Whatever: {isApprovalRequired: true}\n"
        "      Notification_Admin_EndUser_Assignment: {recipients: [a@b.c]}\n"
        "  low: {role: []}\n"
    )
    with pytest.raises(ConfigError) as caught:
        baseline.load(str(bad))
    problems = "\n".join(caught.value.problems)
    assert "tiers.low.role: unknown key" in problems
    bad.write_text(bad.read_text().replace("  low: {role: []}\n", ""))
    with pytest.raises(ConfigError) as caught_more:
        baseline.load(str(bad))
    got = caught_more.value.problems
    assert any(
        p.startswith("tiers.high.rules.Expiration_EndUser_Assignment.maximumDuration: expected an ISO 8601")
        for p in got
    )
    assert any(p.startswith("tiers.high.rules.Enablement_EndUser_Assignment.enabledRules[0]:") for p in got)
    assert any(p.startswith("tiers.high.rules.Approval_Whatever: unknown rule id") for p in got)
    assert "tiers.high.rules.Notification_Admin_EndUser_Assignment.recipients: unknown key" in got
    assert baseline.load(None).tiers[0].rules["Expiration_EndUser_Assignment"].maximumDuration == "PT4H"  # type: ignore[attr-defined]


def test_a_stricter_baseline_file_finds_more(tmp_path: Path) -> None:
    strict = tmp_path / "strict.yaml"
    strict.write_text(
        "tiers:\n  all:\n    roles: [Security Administrator]\n    rules:\n"
        "      Expiration_EndUser_Assignment: {maximumDuration: PT1H}\n"
        "      Approval_EndUser_Assignment: {isApprovalRequired: true, min_approvers: 2}\n"
    )
    with serve(compliant(NOW).copy()) as g:
        found = _findings(_check(g, posture={"baseline": str(strict)}))["posture.policy_drift"]
    assert [(f["rule"], f["field"], f["expected"], f["actual"]) for f in found] == [
        ("Approval_EndUser_Assignment", "isApprovalRequired", True, False),
        ("Approval_EndUser_Assignment", "min_approvers", 2, 0),
        ("Expiration_EndUser_Assignment", "maximumDuration", "PT1H", "PT8H"),
    ]


def test_check_parameters_are_validated_with_key_paths() -> None:
    with serve(compliant(NOW).copy()) as g, pytest.raises(ConfigError) as caught:
        _check(g, posture={"checks": {"posture.global_admin_count": {"max": "lots"}, "posture.nope": {}}})
    problems = caught.value.problems
    assert any(p.startswith("posture.checks.posture.nope: unknown check id") for p in problems)
    assert any(p.startswith("posture.checks.posture.global_admin_count.max:") for p in problems)


def test_the_cli_prints_findings_as_jsonl_and_exits_1_when_a_check_could_not_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command reads the wall clock: the tenant is built around it (its dates are days apart).
    with serve(violating(datetime.now(UTC)).copy()) as g:
        cfg = tmp_path / "pimwatch.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "graph": {"endpoint": g.url, "credential": "none"},
                    "break_glass": {"accounts": list(BREAK_GLASS)},
                }
            )
        )
        state = str(tmp_path / "state.db")
        assert cli.main(["posture", "--config", str(cfg), "--state", state, "--format", "jsonl"]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [x["id"] for x in lines if x["type"] == "check"] == CHECKS
        findings = [x for x in lines if x["type"] == "finding"]
        assert len(findings) == 11 and {x["change"] for x in findings} == {"new"}
        assert cli.main(["posture", "--config", str(cfg), "--state", state, "--format", "jsonl"]) == 0
        again = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert {x["change"] for x in again if x["type"] == "finding"} == {"open"}
        g.faults.append(Fault("roleDefinitions", 403, "Authorization_RequestDenied", times=100))
        assert cli.main(["posture", "--config", str(cfg), "--state", state]) == 1
        err = capsys.readouterr().err
        assert (
            "posture.global_admin_count error: posture.global_admin_count needs RoleManagement.Read.Directory"
            in err
        )


def test_the_cli_reports_a_config_error_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "pimwatch.yaml"
    cfg.write_text("graph: {endpoint: 'https://graph.example.com', credential: none}\n")
    assert cli.main(["posture", "--config", str(cfg)]) == 2
    assert "graph.credential:" in capsys.readouterr().err


def test_the_functions_timer_puts_findings_in_the_same_outbox_and_sinks(tmp_path: Path) -> None:
    alerts_file = tmp_path / "alerts.jsonl"
    with serve(violating(NOW).copy()) as g:
        config = _config(
            g.url, sinks={"file": {"type": "file", "path": str(alerts_file), "detectors": ["posture.*"]}}
        )
        db = str(tmp_path / "state.db")
        runtime = Runtime(
            config, PLUGINS, lambda: SqliteStore(db), Quarantine(str(tmp_path / "q.jsonl")), http=Http()
        )
        try:
            report = timer(runtime, NOW)
            again = timer(runtime, NOW + timedelta(hours=6))
        finally:
            runtime.close()
    assert report["findings"] == 11 and report["queued"] == 11 and again["queued"] == 0
    assert set(report["checks"].values()) == {"ran"}
    sent = [json.loads(x) for x in alerts_file.read_text().splitlines()]
    assert len(sent) == 11 and all(a["detector"].startswith("posture.") for a in sent)


def test_the_posture_timer_function_runs_every_6_hours_into_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decorated function as the worker calls it (tests/functions_host.py), app settings as deployed."""
    from azure.functions.timer import TimerRequest

    from pimwatch.hosting import runtime
    from tests.functions_host import APP, FUNCTIONS

    assert APP["posture"].get_trigger().schedule == "0 0 */6 * * *"
    now = datetime.now(UTC)  # the function reads the wall clock; the tenant is built around it
    with serve(violating(now).copy()) as g:
        cfg = tmp_path / "pimwatch.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "graph": {"endpoint": g.url, "credential": "none"},
                    "break_glass": {"accounts": list(BREAK_GLASS)},
                }
            )
        )
        monkeypatch.setenv("PIMWATCH_CONFIG", str(cfg))
        monkeypatch.setenv("PIMWATCH_STATE", str(tmp_path / "state.db"))
        runtime.reset_runtime()
        try:
            FUNCTIONS["posture"](TimerRequest(past_due=False))
        finally:
            runtime.reset_runtime()
    store = SqliteStore(str(tmp_path / "state.db"))
    try:
        detectors = sorted(a.detector for a in store.alerts())
    finally:
        store.close()
    assert detectors == sorted(c for c in CHECKS if c != "posture.license")


def test_record_queues_for_the_routed_sinks_only(tmp_path: Path, store: SqliteStore) -> None:
    config = build(
        {"sinks": {"high": {"type": "file", "path": str(tmp_path / "a.jsonl"), "min_severity": "high"}}},
        PLUGINS,
        "test",
    )
    with serve(violating(NOW).copy()) as g:
        outcome = _check(g)
    record(store, outcome, NOW, Deliverer(config.sinks, store, config.delivery, Http()))
    queued = {d.alert_id for d in store.deliveries("pending")}
    severities = {a.id: a.severity.value for a in store.alerts()}
    assert queued == {aid for aid, s in severities.items() if s in ("high", "critical")}
    assert queued and GA  # some high findings were routed


def test_the_posture_demo_shows_every_finding_without_a_tenant(capsys: pytest.CaptureFixture[str]) -> None:
    from pimwatch.cli.posture_demo import main

    assert main(["--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    findings = sorted(x["detector"] for x in lines if x["type"] == "finding")
    assert findings == sorted(c for c in CHECKS if c != "posture.license")


def test_docs_name_every_check_and_every_permission() -> None:
    from pimwatch.graph.sources import SOURCES

    doc = (Path(__file__).resolve().parent.parent / "docs" / "graph.md").read_text(encoding="utf-8")
    for check in CHECKS:
        assert f"`{check}`" in doc, check
    for source in SOURCES.values():
        assert source.permission.split(" ")[0] in doc, source.name
    consent = (Path(__file__).resolve().parent.parent / "scripts" / "graph-consent.sh").read_text()
    for source in SOURCES.values():
        assert source.permission.split(" ")[0] in consent, source.name


def test_group_policies_service_principal_secrets_disabled_alerts_and_mfa_by_context() -> None:
    """The less common findings: a PIM group's member policy drifting from the tier of the role the
    group holds, a service principal with a client secret holding a privileged role, a PIM alert
    switched off; and MFA through an authentication context meets the baseline."""
    from pimwatch.graph.tenants import APA, GROUP, Tenant

    t = compliant(NOW)
    (member_policy,) = [p for p in t.data["groupPolicies"][GROUP] if p["roleDefinitionId"] == "member"]
    for rule in member_policy["policy"]["rules"]:
        if rule["id"] == "Expiration_EndUser_Assignment":
            rule["maximumDuration"] = "PT10H"
    sp = "00000000-0000-4000-8000-000000000051"
    t.data["directoryObjects"][sp] = {
        "@odata.type": "#microsoft.graph.servicePrincipal",
        "id": sp,
        "displayName": "deploy-bot",
        "passwordCredentials": [{"keyId": "k1", "endDateTime": "2027-01-01T00:00:00Z"}],
    }
    Tenant.eligible(t, sp, APA)
    t.data["roleManagementAlerts"]["alertConfigurations"][1]["isEnabled"] = False
    t.rule(GA, "Enablement_EndUser_Assignment", enabledRules=["Justification", "Ticketing"])
    t.rule(GA, "AuthenticationContext_EndUser_Assignment", isEnabled=True, claimValue="c1")
    with serve(t.copy()) as g:
        found = _findings(_check(g))
    (drift,) = found["posture.policy_drift"]
    assert (drift["scope"], drift["target"], drift["tier"], drift["actual"]) == (
        "group",
        "group User admins (PIM)",
        "medium",
        "PT10H",
    )
    (secret,) = found["posture.privileged_principals"]
    assert (secret["kind"], secret["roles"], secret["secrets"]) == (
        "service_principal_secret",
        ["Application Administrator"],
        [{"keyId": "k1", "endDateTime": "2027-01-01T00:00:00Z"}],
    )
    (disabled,) = found["posture.builtin_alerts"]
    assert (disabled["key"], disabled["isEnabled"]) == ("disabled/StaleSignInAlert", False)
    assert {c: f for c, f in found.items() if f}.keys() == {
        "posture.policy_drift",
        "posture.privileged_principals",
        "posture.builtin_alerts",
    }


def test_the_cli_sends_new_findings_to_the_sinks_with_send(tmp_path: Path) -> None:
    alerts = tmp_path / "alerts.jsonl"
    with serve(violating(datetime.now(UTC)).copy()) as g:
        cfg = tmp_path / "pimwatch.yaml"
        cfg.write_text(
            json.dumps(
                {
                    "graph": {"endpoint": g.url, "credential": "none"},
                    "break_glass": {"accounts": list(BREAK_GLASS)},
                    "sinks": {"soc": {"type": "file", "path": str(alerts), "min_severity": "high"}},
                }
            )
        )
        state = str(tmp_path / "state.db")
        assert cli.main(["posture", "--config", str(cfg), "--state", state, "--send"]) == 0
        assert cli.main(["posture", "--config", str(cfg), "--state", state, "--send"]) == 0  # nothing new
    sent = [json.loads(x) for x in alerts.read_text().splitlines()]
    assert sorted(a["detector"] for a in sent) == [
        "posture.breakglass",
        "posture.global_admin_count",
        "posture.outside_pim",
        "posture.permanent_assignment",
        "posture.privileged_hybrid",
        "posture.privileged_principals",
    ]
