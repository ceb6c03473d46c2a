"""The report's ledger in the state (issue 13 item 2) and the weekly report by e-mail (item 3), in the
Functions runtime: real ``azure.functions`` objects (tests/functions_host.py), SQLite and Azurite,
a real SMTP server (aiosmtpd) and a loopback Teams endpoint.
"""

from __future__ import annotations

import filecmp
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pimwatch.cli import main
from pimwatch.detection.activities import ACTIVATION_ENDED
from pimwatch.detection.ledger import HOUR, LedgerWriter, rec_of, row, to_rec, wants
from pimwatch.detection.normalize import audit_event
from pimwatch.hosting import runtime
from pimwatch.state import retention
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import PIM_SYSTEM, pim, signin
from tests.functions_host import FUNCTIONS, batch, messages, timer
from tests.loopback import Answer, serve
from tests.sinks.conftest import Recorder, smtp_server
from tests.test_report import ALICE, BG, CONFIG, DAY, UA, _activation, _report, _t, known_stream

LATER = "2026-03-17T12:00:00.000Z"  # when the day's records were enqueued: the tick clock passes it
STATE_TABLES = ("access_review", "activations", "approvals", "assignments", "breakglass")


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The Functions app's settings: a SQLite state and the config ``setup(text)`` writes."""

    def setup(text: str) -> Path:
        (tmp_path / "pimwatch.yaml").write_text(text, encoding="utf-8")
        monkeypatch.setenv("PIMWATCH_CONFIG", str(tmp_path / "pimwatch.yaml"))
        monkeypatch.setenv("PIMWATCH_STATE", str(tmp_path / "state.db"))
        monkeypatch.setenv("PIMWATCH_QUARANTINE_DIR", str(tmp_path / "quarantine"))
        return tmp_path

    runtime.reset_runtime()
    yield setup
    runtime.reset_runtime()


def _through_functions(records: list[dict[str, Any]], per_batch: int = 4, enqueued: str = LATER) -> None:
    bodies = messages(records)
    for i in range(0, len(bodies), per_batch):
        FUNCTIONS["entra_events"](batch(bodies[i : i + per_batch], enqueued=enqueued))


def test_the_report_from_the_ledger_of_the_functions_app_matches_the_report_from_the_files(
    app: Any, tmp_path: Path
) -> None:
    """The known day through the Functions app's Event Hub trigger, then ``pimwatch report --state``
    with no PATH: the tables built from PIM, role and break-glass records are byte-identical to the
    report of the files; what the ledger does not keep (other audit records, ordinary sign-ins) is
    the documented difference."""
    files = _report(tmp_path, known_stream(), "files")
    records = known_stream()
    records = records[1::2] + records[::2] + records[:7]  # another order, and duplicates
    app(CONFIG)
    _through_functions(records)
    timer()  # the clock-driven detectors decide what was absent (approval.overdue)
    runtime.reset_runtime()
    out = tmp_path / "ledger"
    args = ["report", "--config", str(tmp_path / "pimwatch.yaml"), "--from", DAY, "--to", "2026-03-17"]
    assert main([*args, "--state", str(tmp_path / "state.db"), "--out", str(out)]) == 0
    names = sorted(p.name for p in files.iterdir())
    same, differ, missing = filecmp.cmpfiles(files, out, names, shallow=False)
    assert missing == [] and sorted(p.name for p in out.iterdir()) == names
    assert same == [*(f"{t}.csv" for t in STATE_TABLES), "PIM-Audit-2026-03-16.csv", "alerts.csv"]
    # What differs, exactly: alice's "Update user" while elevated is a UserManagement record (not
    # kept), and the page's input line and coverage statement (the ledger counts only what it keeps).
    assert differ == ["elevated_activity.csv", "report.html"]
    from_files = (files / "elevated_activity.csv").read_text(encoding="utf-8-sig").splitlines()
    from_ledger = (out / "elevated_activity.csv").read_text(encoding="utf-8-sig").splitlines()
    assert from_ledger == from_files[:1] and len(from_files) == 2 and "Update user" in from_files[1]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "the ledger of" in page and "<b>3</b>activations (3 principals, 2 roles)" in page
