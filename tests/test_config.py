"""Config errors name the key path and what was expected; valid values take effect."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from pimwatch.config import ConfigError, build, load
from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Plugin


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ({"break_glas": {}}, "break_glas: unknown key"),
        ({"break_glass": {"acounts": []}}, "break_glass.acounts: unknown key"),
        (
            {"break_glass": {"accounts": ["not-an-id"]}},
            "break_glass.accounts[0]: expected an object id (GUID) or a UPN",
        ),
        ({"break_glass": {"accounts": "a@b.c"}}, "break_glass.accounts: Input should be a valid list"),
        ({"detectors": {"nope.detector": {}}}, "detectors.nope.detector: unknown detector id"),
        (
            {"detectors": {"settings.changed": {"treshold": 1}}},
            "detectors.settings.changed.treshold: unknown parameter",
        ),
        (
            {"detectors": {"settings.changed": {"severity": "urgent"}}},
            "detectors.settings.changed.severity: expected one of",
        ),
        (
            {"detectors": {"settings.changed": {"enabled": "yes"}}},
            "detectors.settings.changed.enabled: expected true or false",
        ),
        (
            {"detectors": {"activation.simultaneous": {"threshold": 0}}},
            "detectors.activation.simultaneous.threshold: expected an integer >= 1, got 0",
        ),
        (
            {"detectors": {"activation.simultaneous": {"within_minutes": True}}},
            "detectors.activation.simultaneous.within_minutes: expected an integer",
        ),
        (
            {"detectors": {"activation.repeated_failure": {"benign_reasons": "RoleAssignmentExists"}}},
            "detectors.activation.repeated_failure.benign_reasons: expected a list of strings",
        ),
        ({"privileged_roles": "Global Administrator"}, "privileged_roles: Input should be a valid list"),
    ],
)
def test_errors_name_the_key_path(plugins: list[Plugin], data: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        build(data, plugins, "x.yaml")
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_all_problems_are_reported_at_once(plugins: list[Plugin]) -> None:
    with pytest.raises(ConfigError) as exc:
        build({"detectors": {"a.b": {}, "settings.changed": {"severity": "x"}}}, plugins)
    assert len(exc.value.problems) == 2


def test_values_take_effect(plugins: list[Plugin]) -> None:
    cfg = build(
        {
            "break_glass": {
                "accounts": ["C0FFEE00-0000-4000-8000-00000000B001", "BG@Contoso.onmicrosoft.com"]
            },
            "privileged_roles": ["Reports Reader", "62e90394-69f5-4237-9190-012177145e10"],
            "detectors": {
                "activation.simultaneous": {"threshold": 4, "severity": "critical", "enabled": False}
            },
        },
        plugins,
    )
    sim = cfg.detectors["activation.simultaneous"]
    assert (sim.enabled, sim.severity, sim.window.threshold, sim.window.within) == (
        False,
        Severity.CRITICAL,
        4,
        timedelta(minutes=10),
    )
    s = cfg.settings
    assert s.break_glass_ids == {"c0ffee00-0000-4000-8000-00000000b001"}
    assert s.break_glass_upns == {"bg@contoso.onmicrosoft.com"}
    assert s.is_privileged("reports reader", None) and s.is_privileged(
        None, "62e90394-69f5-4237-9190-012177145e10"
    )
    assert not s.is_privileged("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")


def test_default_privileged_roles_cover_the_issue_list(plugins: list[Plugin]) -> None:
    s = build({}, plugins).settings
    for name in (
        "Global Administrator",
        "Helpdesk Administrator",
        "Billing Administrator",
        "Conditional Access Administrator",
    ):
        assert s.is_privileged(name, None)
    assert s.is_privileged(None, "fe930be7-5e62-47db-91af-98c3a49a38b1")  # User Administrator by template id
    assert not s.is_privileged("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")


def test_file_errors(plugins: list[Plugin], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(str(tmp_path / "missing.yaml"), plugins)
    bad = tmp_path / "bad.yaml"
    bad.write_text("detectors: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(str(bad), plugins)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load(str(lst), plugins)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load(str(empty), plugins).settings.break_glass_ids == frozenset()


def test_a_detector_can_validate_values_the_type_check_cannot_judge(plugins: list[Plugin]) -> None:
    with pytest.raises(ConfigError) as exc:
        build({"detectors": {"activation.off_hours": {"timezone": "Mars/Olympus", "start_hour": 7}}}, plugins)
    assert exc.value.problems == [
        "detectors.activation.off_hours.timezone: unknown time zone 'Mars/Olympus' (expected an IANA name "
        "such as 'UTC' or 'Europe/Berlin')"
    ]
    ok = build({"detectors": {"activation.off_hours": {"timezone": "Europe/Berlin"}}}, plugins)
    assert ok.detectors["activation.off_hours"].params.timezone == "Europe/Berlin"


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"threshold": "3"}, "detectors.activation.simultaneous.threshold: expected an integer, got '3'"),
        (
            {"within_minutes": 2.5},
            "detectors.activation.simultaneous.within_minutes: expected an integer, got 2.5",
        ),
        (
            {"suppress_minutes": -1},
            "detectors.activation.simultaneous.suppress_minutes: expected an integer >= 0, got -1",
        ),
        (
            {"window": 3},
            "detectors.activation.simultaneous.window: unknown parameter (allowed: enabled, severity, "
            "suppress_minutes, threshold, within_minutes)",
        ),
    ],
)
def test_the_declared_window_is_overridden_by_its_three_keys(
    plugins: list[Plugin], overrides: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        build({"detectors": {"activation.simultaneous": overrides}}, plugins)
    assert exc.value.problems == [problem]


def test_only_the_keys_of_the_declared_window_are_accepted(plugins: list[Plugin]) -> None:
    # activation.risky_session declares a window width but counts nothing: no threshold to set.
    with pytest.raises(ConfigError) as exc:
        build({"detectors": {"activation.risky_session": {"threshold": 2}}}, plugins)
    assert exc.value.problems == [
        "detectors.activation.risky_session.threshold: unknown parameter (allowed: enabled, severity, "
        "flag_conditional_access, risk_levels, suppress_minutes, within_minutes)"
    ]
    cfg = build(
        {"detectors": {"activation.risky_session": {"within_minutes": 90, "suppress_minutes": 5}}}, plugins
    )
    risky = cfg.detectors["activation.risky_session"]
    assert (risky.window.threshold, risky.window.within, risky.window.suppress) == (
        1,
        timedelta(minutes=90),
        timedelta(minutes=5),
    )
    assert risky.window.accumulate == ("reasons", "risky_sign_ins")  # declared, not configurable
    assert risky.values()["within_minutes"] == 90


@pytest.mark.parametrize(
    ("detector", "overrides", "problem"),
    [
        (
            "activation.risky_session",
            {"flag_conditional_access": "yes"},
            "detectors.activation.risky_session.flag_conditional_access: expected true or false, got 'yes'",
        ),
        (
            "activation.off_hours",
            {"timezone": 1},
            "detectors.activation.off_hours.timezone: expected a string, got 1",
        ),
        (
            "activation.off_hours",
            {"workdays": ["Mon", 2]},
            "detectors.activation.off_hours.workdays: expected a list of strings, got ['Mon', 2]",
        ),
        (
            "activation.first_time",
            {"lookback_days": True},
            "detectors.activation.first_time.lookback_days: expected an integer, got True",
        ),
        (
            "settings.changed",
            {"max_activation_hours": -2},
            "detectors.settings.changed.max_activation_hours: expected an integer >= 0, got -2",
        ),
        (
            "activation.off_hours",
            {"start_hour": 20, "end_hour": 8},
            "detectors.activation.off_hours.end_hour: expected an hour after start_hour (20) up to 24, got 8",
        ),
    ],
)
def test_typed_parameters_are_checked_at_config_time(
    plugins: list[Plugin], detector: str, overrides: dict[str, object], problem: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        build({"detectors": {detector: overrides}}, plugins)
    assert exc.value.problems == [problem]


def test_problems_follow_the_order_of_the_file(plugins: list[Plugin]) -> None:
    with pytest.raises(ConfigError) as exc:
        build(
            {
                "detectors": {
                    "activation.simultaneous": {"threshold": 0, "within_minutes": -1, "enabled": "no"}
                }
            },
            plugins,
        )
    assert [p.split(":")[0].rsplit(".", 1)[1] for p in exc.value.problems] == [
        "threshold",
        "within_minutes",
        "enabled",
    ]
