"""``pimwatch check-config``, ``route`` and ``init``: what a config is checked for, how problems are
named (key paths, never an environment value), which sinks an alert reaches, and a starter config
that check-config accepts (also with its production block uncommented)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pimwatch.cli import main
from pimwatch.cli.init import STARTER
from tests.conftest import REPO

DEMO_CONFIG = str(REPO / "samples" / "demo" / "pimwatch.yaml")
SECRET = "s3cr3t-value-never-shown"
WEBHOOK_SECRET = "whsec_c2VjcmV0LW5ldmVyLXNob3duLTAxMjM0NTY3"  # a Standard Webhooks secret
PROD_ENV = {
    "PAGERDUTY_ROUTING_KEY": "R0123456789abcdef0123456789abcdef",
    "TEAMS_WORKFLOW_URL": "https://prod-01.westeurope.logic.azure.com/workflows/abc",
    "DCE_INGESTION_URL": "https://dce.westeurope-1.ingest.monitor.azure.com",
    "DCR_IMMUTABLE_ID": "dcr-0123456789abcdef0123456789abcdef",
    "AZURE_TENANT_ID": "11111111-1111-4111-8111-111111111111",
    "MAIL_CLIENT_ID": "22222222-2222-4222-8222-222222222222",
    "MAIL_CLIENT_SECRET": SECRET,
}


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _production(text: str) -> str:
    """The starter with its commented production routing block uncommented."""
    block = re.search(r"^# --- production routing.*?^# --- end of production routing ---$", text, re.M | re.S)
    assert block is not None
    body = "\n".join(line.replace("#   ", "  ", 1) for line in block.group(0).splitlines()[1:-1])
    return text[: block.start()] + body + text[block.end() :]


# --- check-config ---------------------------------------------------------------------------------


def test_the_demo_config_checks_ok(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "check-config", "--config", DEMO_CONFIG)
    assert code == 0, err
    assert out.startswith(f"{DEMO_CONFIG}: ok\n")
    assert "sinks: screen (console), archive (file)" in out


def test_errors_exit_2_each_named_by_its_key_path(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = _config(
        tmp_path,
        "detectors:\n  activation.simultaneous: {threshold: many}\n"
        "sinks:\n  pager: {type: pagerduty, min_severity: urgent, routing_key: x}\n",
    )
    code, out, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 2 and out == ""
    assert "detectors.activation.simultaneous.threshold: expected an integer, got 'many'" in err
    assert "sinks.pager.min_severity:" in err


def test_unset_variables_are_named_and_set_values_never_shown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PW_SET_SECRET", WEBHOOK_SECRET)
    monkeypatch.delenv("PW_UNSET_KEY", raising=False)
    cfg = _config(
        tmp_path,
        "sinks:\n"
        "  hook: {type: webhook, url: 'https://hooks.example.com/x', secret: '${PW_SET_SECRET}'}\n"
        "  pager: {type: pagerduty, routing_key: '${PW_UNSET_KEY}'}\n",
    )
    code, out, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 2
    assert "sinks.pager.routing_key: environment variable PW_UNSET_KEY is not set" in err
    assert WEBHOOK_SECRET not in out + err
    monkeypatch.setenv("PW_UNSET_KEY", "R0123456789abcdef0123456789abcdef")
    code, out, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 0, err
    assert "environment variables: PW_SET_SECRET, PW_UNSET_KEY (set)" in out
    assert WEBHOOK_SECRET not in out + err and "R0123456789abcdef" not in out + err


def _override(tmp_path: Path, name: str, text: str) -> Path:
    """A template folder with one override."""
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        # does not compile: named with its line
        (
            "email.subject.txt.j2",
            "{{ prefix }}\n{% if count %}unclosed\n",
            r"templates: email\.subject\.txt\.j2 line 2: ",
        ),
        # overrides nothing (a typo in the name): it would never be used
        (
            "email.subjct.txt.j2",
            "{{ prefix }}\n",
            r"templates: email\.subjct\.txt\.j2 overrides no bundled template",
        ),
    ],
)
def test_template_overrides_that_compile_not_or_override_nothing_are_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, text: str, expected: str
) -> None:
    folder = _override(tmp_path, name, text)
    cfg = _config(tmp_path, f"templates: {folder}\nsinks:\n  screen: {{type: console}}\n")
    code, _, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 2
    assert re.search(expected, err), err


def test_a_template_that_fails_on_a_sample_alert_names_the_sink(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """It compiles, but reads a name its context does not have (StrictUndefined): the e-mail sink
    would fail on every alert, so check-config renders sample alerts through every sink."""
    folder = _override(tmp_path, "email.subject.txt.j2", "{{ prefix }} {{ tenant_name }}\n")
    cfg = _config(
        tmp_path,
        f"templates: {folder}\nsinks:\n  mail: {{type: email, smtp_host: smtp.example.com, "
        "sender: a@example.com, to: [b@example.com]}\n",
    )
    code, _, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 2
    assert "sinks.mail: cannot render a sample alert (UndefinedError: 'tenant_name' is undefined)" in err


def test_routing_globs_that_match_no_detector_are_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = _config(
        tmp_path,
        "sinks:\n  screen: {type: console, detectors: ['breakglass.*', 'activaton.*'], "
        "exclude: [pim.builtin_alert, 'assignment.permanant']}\n",
    )
    code, _, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 2
    assert "sinks.screen.detectors[1]: 'activaton.*' matches no detector id" in err
    assert "sinks.screen.exclude[1]: 'assignment.permanant' matches no detector id" in err
    assert "detectors[0]" not in err and "exclude[0]" not in err


def test_a_sink_no_detector_reaches_is_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = _config(
        tmp_path, "sinks:\n  screen: {type: console, detectors: [activation.denied], min_severity: high}\n"
    )
    code, _, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 0
    assert "warning: sinks.screen: no enabled detector reaches it" in err


def test_without_config_it_reads_pimwatch_config_then_the_local_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIMWATCH_CONFIG", raising=False)
    code, _, err = _run(capsys, "check-config")
    assert code == 2 and "no config to check" in err
    (tmp_path / "pimwatch.yaml").write_text("detectors:\n  nope.detector: {}\n")
    code, _, err = _run(capsys, "check-config")
    assert code == 2 and "detectors.nope.detector: unknown detector id" in err
    monkeypatch.setenv("PIMWATCH_CONFIG", DEMO_CONFIG)
    code, out, _ = _run(capsys, "check-config")
    assert code == 0 and out.startswith(f"{DEMO_CONFIG}: ok")


# --- init -----------------------------------------------------------------------------------------


def test_init_writes_a_starter_that_check_config_accepts(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PIMWATCH_CONFIG", raising=False)
    code, _, err = _run(capsys, "init")
    assert code == 0, err
    assert (tmp_path / "pimwatch.yaml").read_text() == STARTER
    code, out, err = _run(capsys, "check-config")
    assert code == 0, err
    assert out.startswith("pimwatch.yaml: ok")
    # It says what to fill in first.
    assert "warning: break_glass.accounts is empty" in err


def test_init_does_not_overwrite_without_force(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("detectors: {}\n")
    code, _, err = _run(capsys, "init", str(path))
    assert code == 1 and "exists; --force replaces it" in err
    assert path.read_text() == "detectors: {}\n"
    assert _run(capsys, "init", "--force", str(path))[0] == 0
    assert path.read_text() == STARTER


def test_the_starters_production_routing_is_valid_once_uncommented(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path, _production(STARTER))
    for name in PROD_ENV:
        monkeypatch.delenv(name, raising=False)
    code, _, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 2
    assert sorted(re.findall(r"environment variable (\w+) is not set", err)) == sorted(PROD_ENV)
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    code, out, err = _run(capsys, "check-config", "--config", cfg)
    assert code == 0, err
    assert (
        "sinks: screen (console), oncall (pagerduty), channel (teams), siem (sentinel), digest (email)" in out
    )
    assert SECRET not in out + err


# --- route ----------------------------------------------------------------------------------------


def test_route_on_the_demo_config(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "route", "--config", DEMO_CONFIG, "--detector", "breakglass.signin")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "breakglass.signin at severity critical (configured)"
    assert [line.split() for line in lines[1:]] == [
        ["screen", "(console)", "yes,", "at", "once"],
        ["archive", "(file)", "yes,", "at", "once"],
    ]


def test_route_says_why_a_sink_does_not_get_it_and_when_the_others_do(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in PROD_ENV.items():
        monkeypatch.setenv(name, value)
    text = _production(STARTER).replace(
        "  screen: {type: console}", "  screen: {type: console, exclude: ['activation.*']}"
    )
    cfg = _config(tmp_path, text)
    code, out, err = _run(
        capsys, "route", "--config", cfg, "--detector", "activation.denied", "--format", "json"
    )
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["severity"], doc["severity_source"]) == ("low", "configured")
    rows = {r["sink"]: r for r in doc["sinks"]}
    assert rows["screen"] == {
        "sink": "screen",
        "type": "console",
        "routed": False,
        "reason": "excluded by 'activation.*'",
    }
    assert rows["oncall"]["reason"] == "below min_severity critical"
    assert rows["channel"]["reason"] == "below min_severity medium"
    assert rows["siem"]["when"] == "at once"
    assert rows["digest"]["when"].startswith("in the digest at the end of each 1440-minute interval")
    # --severity overrides the configured one: a critical alert of the same detector pages at once.
    code, out, _ = _run(
        capsys,
        "route",
        "--config",
        cfg,
        "--detector",
        "activation.denied",
        "--severity",
        "critical",
        "--format",
        "json",
    )
    rows = {r["sink"]: r for r in json.loads(out)["sinks"]}
    group = "one notification per group (action), after group_wait 30 s of event time"
    assert rows["oncall"] == {
        "sink": "oncall",
        "type": "pagerduty",
        "routed": True,
        "when": "at once",
        "group": group,
    }
    assert rows["digest"]["when"] == "at once"


def test_route_without_the_secrets_reads_the_routing_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A workstation without the production secrets can still ask where an alert goes."""
    for name in PROD_ENV:
        monkeypatch.delenv(name, raising=False)
    cfg = _config(tmp_path, _production(STARTER))
    code, out, err = _run(capsys, "route", "--config", cfg, "--detector", "breakglass.signin")
    assert code == 0, err
    assert "7 environment variable reference(s) of the sinks are not set" in err
    assert re.search(
        r"^  oncall \(pagerduty\) +yes, at once; group: one notification per group", out, re.M
    ), out


def test_route_unknown_detector_exits_2_with_suggestions(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "route", "--config", DEMO_CONFIG, "--detector", "breakglas.signin")
    assert code == 2 and out == ""
    assert "unknown detector 'breakglas.signin' (did you mean breakglass.signin" in err


def test_route_of_a_disabled_detector_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cfg = _config(
        tmp_path, "detectors:\n  pim.builtin_alert: {enabled: false}\nsinks:\n  s: {type: console}\n"
    )
    code, out, _ = _run(capsys, "route", "--config", cfg, "--detector", "pim.builtin_alert")
    assert code == 0
    assert "the detector is disabled in this config" in out.splitlines()[0]
