"""The demo day in each shape a user has raises its pinned alerts (issue 10, "What to build" 1).

samples/demo/day.eventhub.jsonl.gz (7,636 records; tests/test_demo.py pins its alerts) is written
whole in every export shape by the converters of tests/shapes.py (built from the facts of
shared/reference/export-shapes.md) and replayed; each shape must give the Event Hub run's alerts:
the same ids, detectors, severities, principals, counts and statuses. The exports hold the audit
and user sign-in records only (a Graph or Log Analytics export of those tables has no
service-principal sign-ins or Graph activity logs: the Event Hub run skips those 14 records).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pimwatch.cli import main
from pimwatch.testing import csv_bytes
from tests import shapes
from tests.conftest import REPO
from tests.test_demo import EXPECTED

DEMO = REPO / "samples" / "demo"
Records = Sequence[Mapping[str, Any]]


def demo_records() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with gzip.open(DEMO / "day.eventhub.jsonl.gz") as f:
        for line in f:
            out.extend(json.loads(line)["records"])
    return out


def replay(paths: list[Path], tmp: Path, *extra: str) -> tuple[int, list[dict[str, Any]], str]:
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
                *extra,
                *map(str, paths),
            ]
        )
    return code, [json.loads(x) for x in out.getvalue().splitlines()], err.getvalue()


def pinned(alerts: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(
        (
            a["id"],
            a["detector"],
            a["severity"],
            a["principal"]["upn"] or a["principal"]["id"],
            a["count"],
            a["status"],
        )
        for a in alerts
    )


def _per_table(write: Callable[[Records], bytes], suffix: str) -> Callable[[Records], dict[str, bytes]]:
    names = {
        "AuditLogs": "AuditLogs",
        "SignInLogs": "SigninLogs",
        "NonInteractiveUserSignInLogs": "AADNonInteractiveUserSignInLogs",
    }

    def files(records: Records) -> dict[str, bytes]:
        return {f"{names[c]}{suffix}": write(rs) for c, rs in shapes.by_table(records).items()}

    return files


def _graph(records: Records) -> dict[str, bytes]:
    t = shapes.by_table(records)
    return {
        "directoryAudits.json": shapes.graph_page(t["AuditLogs"], "directoryAudits"),
        "signIns.json": shapes.graph_page(t["SignInLogs"] + t["NonInteractiveUserSignInLogs"], "signIns"),
    }


def _powershell(write: Callable[[Sequence[shapes.Obj], int], bytes]) -> Callable[[Records], dict[str, bytes]]:
    """``Get-MgAuditLogDirectoryAudit -All | ConvertTo-Json -Depth 10 > audit.json`` and
    ``Get-MgAuditLogSignIn -All | ConvertTo-Json > signins.json`` (the default -Depth 2, as the
    issue's users ran it: the sign-ins' conditional access policies and geo coordinates become
    type names, which no detector reads)."""

    def files(records: Records) -> dict[str, bytes]:
        t = shapes.by_table(records)
        signins = t["SignInLogs"] + t["NonInteractiveUserSignInLogs"]
        return {
            "audit.json": write(shapes.ps_objects(t["AuditLogs"]), 10),
            "signins.json": write(shapes.ps_objects(signins), 2),
        }

    return files


SHAPES: dict[str, Callable[[Records], dict[str, bytes]]] = {
    "Graph API pages": _graph,
    "Log Analytics JSON": _per_table(shapes.la_json, ".json"),
    "Log Analytics CSV": _per_table(lambda rs: csv_bytes([shapes.la_row(r) for r in rs]), ".csv"),
    "portal CSV": _per_table(shapes.portal_csv, ".csv"),
    "az monitor log-analytics query": _per_table(shapes.az_query, ".json"),
    "az ... > file in Windows PowerShell 5.1 (UTF-16)": _per_table(
        lambda rs: shapes.windows_powershell_redirect(shapes.az_query(rs)), ".json"
    ),
    "PowerShell 7 ConvertTo-Json": _powershell(shapes.pwsh_json),
    "Windows PowerShell 5.1 ConvertTo-Json (UTF-16)": _powershell(shapes.windows_powershell_json),
}


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    return demo_records()


@pytest.fixture(scope="module")
def eventhub(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Any, ...]]:
    tmp = tmp_path_factory.mktemp("eh")
    code, alerts, _ = replay([DEMO / "day.eventhub.jsonl.gz"], tmp)
    assert code == 0
    got = pinned(alerts)
    assert sorted((d, s, p, n) for _, d, s, p, n, _ in got) == EXPECTED  # the pinned alerts
    return got


@pytest.mark.parametrize("shape", list(SHAPES))
def test_the_demo_day_in_each_shape_raises_its_pinned_alerts(
    shape: str, records: list[dict[str, Any]], eventhub: list[tuple[Any, ...]], tmp_path: Path
) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    for name, data in SHAPES[shape](records).items():
        (folder / name).write_bytes(data)
    code, alerts, err = replay([folder], tmp_path, "--strict")
    assert code == 0, err
    assert "bad records" not in err and "skipped (other categories)" not in err, err
    assert "input file note" not in err, err
    assert "7,622 records" in err  # 7,636 less the 12 service-principal sign-ins and 2 Graph activity logs
    assert pinned(alerts) == eventhub
