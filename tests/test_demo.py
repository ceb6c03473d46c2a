"""The bundled demo day surfaces exactly its planted incidents (samples/demo/README.md)."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pimwatch.cli import main
from pimwatch.detection.activities import PIM_SERVICE  # "Azure AD PIM", the identity of PIM's scans
from tests.conftest import REPO

DEMO = REPO / "samples" / "demo"

# (detector, severity, principal UPN or id, count): every alert of the demo day, sorted.
EXPECTED = [
    # single denials (oscar, rupert, trudy x2); judy's RoleAssignmentExists retries stay quiet
    ("activation.denied", "low", "adm-oscar@contoso.com", 1),
    ("activation.denied", "low", "adm-rupert@contoso.com", 1),
    ("activation.denied", "low", "adm-trudy@contoso.com", 1),
    ("activation.denied", "low", "adm-trudy@contoso.com", 1),
    ("activation.first_time", "low", "adm-niaj@contoso.com", 1),  # t
    ("activation.off_hours", "medium", "adm-quentin@contoso.com", 1),  # o
    # SCuBA MS.AAD.7.8: every Global Administrator (peggy, nora, victor) and Privileged Role
    # Administrator activation of the day
    ("activation.privileged_role", "medium", "adm-chuck@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-faythe@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-nora@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-peggy@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-sybil@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-uma@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-victor@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-walter@contoso.com", 1),
    ("activation.privileged_role", "medium", "adm-wendy@contoso.com", 1),
    ("activation.repeated_failure", "high", "adm-trudy@contoso.com", 4),  # c
    ("activation.risky_session", "high", "adm-lena@contoso.com", 1),  # p
    ("activation.simultaneous", "high", "adm-mallory@contoso.com", 4),  # b
    ("activation.too_frequent", "medium", "adm-yasmin@contoso.com", 3),  # n
    ("approval.overdue", "medium", "adm-hugo@contoso.com", 1),  # q, never decided
    ("approval.overdue", "medium", "adm-nora@contoso.com", 1),  # q, approved after 50 min
    ("approval.self_approved", "critical", "adm-victor@contoso.com", 1),  # r
    ("assignment.bulk", "high", "adm-wendy@contoso.com", 5),  # l
    ("assignment.outside_pim", "high", "chuck.wagner@contoso.com", 1),  # e
    ("assignment.outside_pim", "high", "svc-mailflow@contoso.com", 3),  # f: 3 scans, one alert
    ("assignment.permanent", "high", "adm-xavier@contoso.com", 1),  # g
    ("assignment.permanent", "high", "chuck.wagner@contoso.com", 1),  # e: a direct write is permanent
    # every new privileged assignment: e, g, k (the guest), l (5), adm-faythe's 3, bg-admin02's
    ("assignment.privileged", "medium", "adele.nunez@contoso.com", 1),
    ("assignment.privileged", "medium", "adm-xavier@contoso.com", 1),
    ("assignment.privileged", "medium", "alex.fischer@contoso.com", 1),
    ("assignment.privileged", "medium", "alex.smith@contoso.com", 1),
    ("assignment.privileged", "medium", "bg-admin02@contoso.onmicrosoft.com", 1),
    ("assignment.privileged", "medium", "chuck.wagner@contoso.com", 1),
    ("assignment.privileged", "medium", "debra.rossi@contoso.com", 1),
    ("assignment.privileged", "medium", "fatima.patel@contoso.com", 1),
    ("assignment.privileged", "medium", "lidia.sherman@contoso.com", 1),
    ("assignment.privileged", "medium", "nadia.khan_fabrikam.com#EXT#@contoso.onmicrosoft.com", 1),
    ("assignment.privileged", "medium", "tomasz.wilber@contoso.com", 1),
    ("assignment.privileged", "medium", "yuki.wilber@contoso.com", 1),
    ("assignment.self", "high", "adm-uma@contoso.com", 1),  # m
    ("breakglass.activity", "critical", "bg-admin01@contoso.onmicrosoft.com", 1),  # a
    # bg-admin02's permanent GA re-created: requested, completed and the MS-PIM directory write,
    # one action, one alert
    ("breakglass.activity", "critical", "bg-admin02@contoso.onmicrosoft.com", 3),
    ("breakglass.signin", "critical", "bg-admin01@contoso.onmicrosoft.com", 1),  # a
    ("breakglass.signin", "critical", "bg-admin01@contoso.onmicrosoft.com", 4),  # a
    ("conditional_access.weakened", "high", "adm-xavier@contoso.com", 1),  # i
    ("credentials.privileged_changed", "high", "adm-judy@contoso.com", 1),  # s
    ("elevation.root_access", "critical", "adm-xavier@contoso.com", 1),  # h
    ("pim.alert_tampering", "high", "adm-chuck@contoso.com", 1),  # e
    ("pim.builtin_alert", "low", PIM_SERVICE, 2),  # j: PIM's own severity, one alert per name per day
    ("settings.changed", "critical", "adm-sybil@contoso.com", 1),  # d: weakens GA
    ("settings.changed", "high", "adm-sybil@contoso.com", 1),  # d: weakens a group's Member role
    ("settings.changed", "low", "adm-walter@contoso.com", 1),  # only strengthens Exchange Admin
    ("settings.changed", "low", "adm-walter@contoso.com", 1),  # only strengthens Intune Admin
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, list[dict[str, Any]], str, Path]:
    """One replay of the demo day for the whole module: (exit code, alerts, stderr, temp folder)."""
    tmp = tmp_path_factory.mktemp("demo")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(
            [
                "replay",
                "--config",
                str(DEMO / "pimwatch.yaml"),
                "--format",
                "jsonl",
                "--quarantine",
                str(tmp / "q.jsonl"),
                str(DEMO / "day.eventhub.jsonl.gz"),
            ]
        )
    alerts = [json.loads(x) for x in out.getvalue().splitlines()]
    return code, alerts, err.getvalue(), tmp


def _one(alerts: list[dict[str, Any]], detector: str, principal: str) -> dict[str, Any]:
    found = [a for a in alerts if a["detector"] == detector and principal in (a["principal"]["upn"] or "")]
    assert len(found) == 1, (detector, principal, found)
    return found[0]


def test_demo_alerts(demo: tuple[int, list[dict[str, Any]], str, Path]) -> None:
    code, alerts, err, tmp = demo
    assert code == 0
    got = sorted(
        (a["detector"], a["severity"], a["principal"]["upn"] or a["principal"]["id"], a["count"])
        for a in alerts
    )
    assert got == EXPECTED
    assert not (tmp / "q.jsonl").exists()
    assert "MicrosoftGraphActivityLogs 2" in err and "ServicePrincipalSignInLogs 12" in err
    assert "7,636 records" in err
    assert "detector errors" not in err and "a detector skipped" not in err


def test_demo_titles(demo: tuple[int, list[dict[str, Any]], str, Path]) -> None:
    _, alerts, _, _ = demo
    settings = sorted(
        a["title"].split(" changed by ")[1] for a in alerts if a["detector"] == "settings.changed"
    )
    assert settings == [
        "adm-sybil@contoso.com — weakened: Maximum activation duration updated to 24:00:00; "
        "MFA on activation requirement disabled; +2 more",
        "adm-sybil@contoso.com — weakened: Ticket info requirement disabled",
        "adm-walter@contoso.com — changed: MFA on activation requirement enabled; "
        "Approval enabled with approvers [redacted]",
        "adm-walter@contoso.com — changed: MFA on activation requirement enabled; "
        "Justification on activation requirement enabled",
    ]
    titles = {a["title"] for a in alerts}
    assert (
        "PIM alert 'Roles are being assigned outside of Privileged Identity Management' disabled by "
        "adm-chuck@contoso.com"
    ) in titles
    assert "PIM security alert: There are too many global administrators" in titles
    assert "adm-victor@contoso.com approved their own request to activate Global Administrator" in titles
    assert (
        "adm-quentin@contoso.com activated SharePoint Administrator on Tuesday 10 Mar 2026 at 23:10 (UTC), "
        "outside business hours 07:00–19:00"
    ) in titles
    assert "adm-niaj@contoso.com activated Intune Administrator for the first time in 14 days" in titles
    guest = _one(alerts, "assignment.privileged", "#EXT#")
    assert guest["title"].startswith(
        "adm-faythe@contoso.com assigned Application Administrator (eligible, until 2026-04-09 14:19 UTC) "
        "to guest nadia.khan_fabrikam.com#EXT#@contoso.onmicrosoft.com"
    )
    ca = _one(alerts, "conditional_access.weakened", "adm-xavier")
    assert ca["title"].startswith(
        "Conditional Access policy 'CA003: Require phishing-resistant MFA for admins'"
    )


def test_demo_alert_details(demo: tuple[int, list[dict[str, Any]], str, Path]) -> None:
    _, alerts, _, _ = demo
    # approval.overdue: the late approval resolves nora's alert; hugo's request is still open.
    nora = _one(alerts, "approval.overdue", "adm-nora")
    hugo = _one(alerts, "approval.overdue", "adm-hugo")
    assert (nora["status"], hugo["status"]) == ("resolved", "open")
    # an activation alert closes when the activation ends (adm-niaj's at 19:21, adm-quentin's tomorrow)
    assert _one(alerts, "activation.first_time", "adm-niaj")["status"] == "resolved"
    assert _one(alerts, "activation.off_hours", "adm-quentin")["status"] == "open"
    assert nora["resolved_at"].startswith("2026-03-10T15:52:")
    # PIM's outside-PIM record, re-emitted at 3 scans, is one alert; the direct write another.
    scans = _one(alerts, "assignment.outside_pim", "svc-mailflow")
    assert (scans["first_seen"][:16], scans["last_seen"][:16]) == ("2026-03-10T06:01", "2026-03-10T10:05")
    assert _one(alerts, "assignment.outside_pim", "chuck.wagner")["event_ids"] == [
        "Directory_715cc4c9-20b0-42df-a840-6c7ae799e13e_CHK7Q_538120447"
    ]
    risky = _one(alerts, "activation.risky_session", "adm-lena")
    assert risky["context"]["reasons"] == ["risk high"]
    assert [s["id"] for s in risky["context"]["risky_sign_ins"]] == ["6f0d2c8e-93b1-4a57-8e2c-51d4b7a90c13"]
    tap = _one(alerts, "credentials.privileged_changed", "adm-judy")
    assert tap["context"]["temporary_access_pass"] is True
    assert _one(alerts, "assignment.bulk", "adm-wendy")["first_seen"].startswith("2026-03-10T15:36:12")


def test_demo_privileged_activations(demo: tuple[int, list[dict[str, Any]], str, Path]) -> None:
    """SCuBA MS.AAD.7.8: the day's three Global Administrator activations alert, with the evidence
    an analyst checks (justification, duration, approver) and the request id that groups them."""
    _, alerts, _, _ = demo
    ga = sorted(
        (a for a in alerts if a["detector"] == "activation.privileged_role" and "Global" in a["title"]),
        key=lambda a: a["first_seen"],
    )
    assert [a["title"] for a in ga] == [
        "adm-peggy@contoso.com activated Global Administrator for 8 h",
        "adm-nora@contoso.com activated Global Administrator for 2 h",
        "adm-victor@contoso.com activated Global Administrator for 1 h",
    ]
    assert [[x["upn"] for x in a["context"]["approvers"]] for a in ga] == [["adm-victor@contoso.com"]] * 3
    peggy = ga[0]["context"]
    assert peggy["justification"] == "CHG595557 approved change window"
    assert (peggy["duration_minutes"], peggy["request_id"]) == (480, "0529f49a-b7ce-4645-93ec-2b0ea0857182")
    assert peggy["correlation_id"] == "bb00d8e3-87d6-424b-a420-eae533483424"
    # victor's self-approved activation is both: the critical self-approval and the 7.8 alert
    victor = _one(alerts, "approval.self_approved", "adm-victor")
    assert victor["context"]["request_id"] == ga[2]["context"]["request_id"]


def test_demo_entities_and_tactics(demo: tuple[int, list[dict[str, Any]], str, Path]) -> None:
    """Every alert names its principal among its entities and declares MITRE tactics."""
    _, alerts, _, _ = demo
    for a in alerts:
        assert a["tactics"], a["detector"]
        ids = {e.get("aadUserId") for e in a["entities"]} | {e.get("upn") for e in a["entities"]}
        who = a["principal"]
        assert (
            (who["id"] or "").lower() in ids
            or (who["upn"] or "").lower() in ids
            or not (who["id"] or who["upn"])
        ), a
    # the 02:17 sign-in and the 3 refreshes folded into it: every app and address they used
    (signin,) = [a for a in alerts if a["detector"] == "breakglass.signin" and a["count"] == 4]
    assert [e for e in signin["entities"] if e["type"] in ("ip", "cloud-application")] == [
        {
            "type": "cloud-application",
            "appId": "14d82eec-204b-4c2f-b7e8-296a70dab67e",
            "name": "Microsoft Graph Command Line Tools",
        },
        {
            "type": "cloud-application",
            "appId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c",
            "name": "Azure Portal",
        },
        {"type": "ip", "address": "192.0.2.77"},
    ]
    peggy = _one(alerts, "activation.privileged_role", "adm-peggy")
    assert {(e["type"], e.get("upn") or e.get("name")) for e in peggy["entities"]} == {
        ("account", "adm-peggy@contoso.com"),
        ("account", "adm-victor@contoso.com"),  # the approver
        ("ip", None),
        ("role", "Global Administrator"),
    }
