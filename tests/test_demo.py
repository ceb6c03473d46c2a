"""The bundled demo day surfaces exactly its planted incidents (samples/demo/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pimwatch.cli import main
from tests.conftest import REPO

DEMO = REPO / "samples" / "demo"


def test_demo_alerts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(
        [
            "replay",
            "--config",
            str(DEMO / "pimwatch.yaml"),
            "--format",
            "jsonl",
            "--quarantine",
            str(tmp_path / "q.jsonl"),
            str(DEMO / "day.eventhub.jsonl.gz"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    alerts = [json.loads(x) for x in out.splitlines()]
    got = sorted(
        (a["detector"], a["severity"], a["principal"]["upn"] or a["principal"]["id"], a["count"])
        for a in alerts
    )
    assert got == [
        ("activation.repeated_failure", "high", "adm-trudy@contoso.com", 4),
        ("activation.simultaneous", "high", "adm-mallory@contoso.com", 4),
        ("breakglass.activity", "critical", "bg-admin01@contoso.onmicrosoft.com", 1),
        ("breakglass.signin", "critical", "bg-admin01@contoso.onmicrosoft.com", 1),
        ("breakglass.signin", "critical", "bg-admin01@contoso.onmicrosoft.com", 4),
        ("settings.changed", "critical", "adm-sybil@contoso.com", 1),
        ("settings.changed", "critical", "adm-walter@contoso.com", 1),
        ("settings.changed", "high", "adm-sybil@contoso.com", 1),
        ("settings.changed", "high", "adm-walter@contoso.com", 1),
    ]
    weakened = sorted(a["title"].split(" — weakened: ")[1] for a in alerts if "weakened" in a["title"])
    assert weakened == [
        "Maximum activation duration updated to 24:00:00; MFA on activation requirement disabled; "
        "Approval disabled; Justification on activation requirement disabled",
        "Ticket info requirement disabled",
    ]
    assert not (tmp_path / "q.jsonl").exists()
    assert "MicrosoftGraphActivityLogs 2" in err and "ServicePrincipalSignInLogs 12" in err
    assert "7,122 records" in err
