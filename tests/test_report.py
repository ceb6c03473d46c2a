"""``pimwatch report``: exact figures from a known stream, the same bytes for any input order, CSVs
that round-trip through pandas, the page rendered in a real headless Chromium, and the Event Hub path
never importing pandas or matplotlib.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from pimwatch.cli import main
from pimwatch.detection.activities import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_COMPLETED,
    ACTIVATION_DENIED,
    ACTIVATION_ENDED,
    ACTIVATION_EXPIRED_REQUEST,
    ACTIVATION_REQUESTED,
)
from pimwatch.report.frames import TABLES
from pimwatch.testing import PIM_SYSTEM, User, directory, guid, pim, signin, user
from tests.conftest import REPO

DAY = "2026-03-16"  # a Monday
ALICE, BOB, CAROL, DAVE, ERIN = (
    user(n) for n in ("adm-alice", "adm-bob", "adm-carol", "adm-dave", "adm-erin")
)
FRANK, GINA, HANK, VICTOR = (user(n) for n in ("adm-frank", "adm-gina", "adm-hank", "adm-victor"))
BG = user("bg-admin01")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
EVIL = '=HYPERLINK("http://x.test","click"), "quoted"\nnew line ü <script>alert(1)</script>'
CONFIG = f"break_glass:\n  accounts:\n    - {BG[0]}\n"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _t(hhmmss: str, day: str = DAY) -> str:
    return f"{day}T{hhmmss}Z"


def _activation(
    who: tuple[str, str | None, str | None],
    at: str,
    until: str,
    *,
    role: tuple[str, str] = UA,
    justification: str = "",
    mfa: str | None = None,
    approver: tuple[str, str | None, str | None] | None = None,
    approved_at: str | None = None,
    completed_at: str,
) -> list[dict[str, Any]]:
    rid = guid("req", who, at)
    details = {"ExpirationTime": until} | ({"IsAuthenticatedWithMfa": mfa} if mfa else {})
    out = [
        pim(
            ACTIVATION_REQUESTED,
            at,
            who,
            principal=who,
            role=role,
            justification=justification,
            request_id=rid,
            extra_details=details,
        ),
    ]
    if approver is not None and approved_at is not None:
        out.append(
            pim(
                ACTIVATION_APPROVAL_REQUESTED,
                at.replace(":00Z", ":02Z"),
                who,
                principal=who,
                role=role,
                request_id=rid,
            )
        )
        out.append(pim(ACTIVATION_APPROVED, approved_at, approver, principal=who, role=role, request_id=rid))
    out.append(
        pim(
            ACTIVATION_COMPLETED,
            completed_at,
            who,
            principal=who,
            role=role,
            request_id=rid,
            justification=justification,
            extra_details={"ExpirationTime": until},
        )
    )
    return out


def _refused(who: User, hhmm: str, outcome: str, at: str, by: Any) -> list[dict[str, Any]]:
    """A GA request that needs approval, then its refusal (denied, or expired)."""
    rid = guid("req", who)
    asked = dict(principal=who, role=GA, request_id=rid)
    return [
        pim(
            ACTIVATION_REQUESTED,
            _t(f"{hhmm}:00"),
            who,
            justification="weekly access review follow-up",
            **asked,
        ),
        pim(ACTIVATION_APPROVAL_REQUESTED, _t(f"{hhmm}:01"), who, **asked),
        pim(outcome, at, by, **asked),
    ]


def known_stream() -> list[dict[str, Any]]:
    """One Monday: three activations (one approved, one deactivated early at night, one whose end is
    after the period), a denial, an expired request, assignments via PIM and outside it, a break-glass
    sign-in, and the principals' own actions inside and outside their windows."""
    recs: list[dict[str, Any]] = []
    # alice: approved by victor after 10.5 min, 131 min requested, expires after 120 min of use.
    recs += _activation(
        ALICE,
        _t("09:00:00"),
        _t("11:11:00"),
        justification="INC123456 mailbox restore",
        mfa="True",
        approver=VICTOR,
        approved_at=_t("09:10:30"),
        completed_at=_t("09:11:00"),
    )
    recs.append(pim(ACTIVATION_ENDED, _t("11:11:00"), PIM_SYSTEM, principal=ALICE, role=UA))
    # bob: at 22:00 (off hours), empty justification, no MFA field, 1 h asked, deactivated after 30 min.
    recs += _activation(BOB, _t("22:00:00"), _t("23:00:30"), justification="", completed_at=_t("22:00:30"))
    recs.append(
        pim("Remove member from role completed (PIM deactivate)", _t("22:30:30"), BOB, principal=BOB, role=UA)
    )
    # erin: GA at 23:30, requested until 01:30 the next day: the end is not in the period.
    recs += _activation(
        ERIN,
        _t("23:30:00"),
        _t("01:30:00", "2026-03-17"),
        role=GA,
        justification=EVIL,
        mfa="False",
        completed_at=_t("23:30:20"),
    )
    recs.append(pim(ACTIVATION_ENDED, _t("01:30:20", "2026-03-17"), PIM_SYSTEM, principal=ERIN, role=GA))
    # carol: denied by victor after 5 min; dave: the approval request expired.
    recs += _refused(CAROL, "10:00", ACTIVATION_DENIED, _t("10:05:00"), VICTOR)
    recs += _refused(DAVE, "12:00", ACTIVATION_EXPIRED_REQUEST, _t("13:00:00"), PIM_SYSTEM)
    # What alice did: one action in her window, one after it.
    recs.append(directory("Update user", _t("09:30:00"), ALICE, HANK, category="UserManagement"))
    recs.append(directory("Update user", _t("12:00:00"), ALICE, HANK, category="UserManagement"))
    # Assignments: frank eligible via PIM today (review), hank eligible since January (remove), gina
    # given GA directly by victor (outside PIM, permanent).
    recs.append(
        pim(
            "Add eligible member to role in PIM completed (timebound)",
            _t("08:00:00"),
            VICTOR,
            principal=FRANK,
            role=UA,
            extra_details={"ExpirationTime": "2027-03-16T08:00:00Z"},
        )
    )
    recs.append(
        pim(
            "Add eligible member to role in PIM completed (permanent)",
            "2026-01-05T08:00:00Z",
            VICTOR,
            principal=HANK,
            role=UA,
        )
    )
    recs.append(directory("Add member to role", _t("14:00:00"), VICTOR, GINA, role=GA))
    # The break-glass drill, and the account's permanent GA (standing by design).
    recs.append(signin(BG, _t("03:00:00")))
    recs.append(
        pim("Add member to role in PIM completed (permanent)", _t("07:00:00"), VICTOR, principal=BG, role=GA)
    )
    # Sign-ins every hour (coverage) except 05:00.
    recs += [signin(FRANK, _t(f"{h:02d}:20:00")) for h in range(24) if h != 5]
    return recs


def _write(path: Path, records: Iterable[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _report(tmp: Path, records: list[dict[str, Any]], name: str = "out", *extra: str, files: int = 1) -> Path:
    inputs = tmp / f"{name}-in"
    inputs.mkdir()
    step = -(-len(records) // files)
    for i in range(files):
        _write(inputs / f"part{i}.jsonl", records[i * step : (i + 1) * step])
    (tmp / "pimwatch.yaml").write_text(CONFIG, encoding="utf-8")
    out = tmp / name
    rc = main(
        [
            "report",
            "--config",
            str(tmp / "pimwatch.yaml"),
            "--from",
            DAY,
            "--to",
            "2026-03-17",
            "--out",
            str(out),
            *extra,
            str(inputs),
        ]
    )
    assert rc == 0
    return out


def _csv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / name, encoding="utf-8-sig", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _report(tmp_path_factory.mktemp("known"), known_stream())


def test_activation_figures_are_exact(known: Path) -> None:
    acts = _csv(known, "activations.csv").set_index("principal")
    assert list(acts.index) == ["adm-alice@contoso.com", "adm-bob@contoso.com", "adm-erin@contoso.com"]
    a, b, e = (acts.loc[f"adm-{n}@contoso.com"] for n in ("alice", "bob", "erin"))
    assert (a["requested_minutes"], a["used_minutes"], a["ended_by"]) == ("131.0", "120.0", "expired")
    assert (a["approver"], a["mfa"], a["ticket"], a["off_hours"]) == (
        "adm-victor@contoso.com",
        "true",
        "INC123456",
        "false",
    )
    assert (b["requested_minutes"], b["used_minutes"], b["ended_by"]) == ("60.5", "30.0", "deactivated")
    assert (b["mfa"], b["justification"], b["off_hours"], b["approver"]) == ("unknown", "", "true", "")
    # The end is after the period: unknown, not guessed from the expiration.
    assert (e["used_minutes"], e["ended_at"], e["ended_by"], e["mfa"]) == ("", "", "", "false")
    assert e["max_minutes"] == ""  # no role setting in the input: the maximum is unknown


def test_approval_latency_and_outcomes_are_exact(known: Path) -> None:
    appr = _csv(known, "approvals.csv").set_index("principal")
    assert dict(appr["outcome"]) == {
        "adm-alice@contoso.com": "approved",
        "adm-carol@contoso.com": "denied",
        "adm-dave@contoso.com": "expired",
    }
    assert dict(appr["latency_minutes"]) == {
        "adm-alice@contoso.com": "10.5",
        "adm-carol@contoso.com": "5.0",
        "adm-dave@contoso.com": "",
    }
    assert set(appr["approver"]) == {"adm-victor@contoso.com", ""}
    assert list(appr["self_approved"]) == ["false"] * 3


def test_assignments_breakglass_and_elevated_activity(known: Path) -> None:
    asg = _csv(known, "assignments.csv")
    assert list(zip(asg["principal"], asg["via"], asg["assignment"], asg["duration"], strict=True)) == [
        ("bg-admin01@contoso.com", "PIM", "active", "permanent"),
        ("adm-frank@contoso.com", "PIM", "eligible", "expiring"),
        ("adm-gina@contoso.com", "outside PIM", "active", "permanent"),
    ]
    assert asg.loc[1, "expires_at"] == "2027-03-16T08:00:00.000000Z"
    bg = _csv(known, "breakglass.csv")
    assert list(zip(bg["time"], bg["kind"], bg["result"], strict=True)) == [
        ("2026-03-16T03:00:00.000000Z", "sign-in", "success"),
        ("2026-03-16T07:00:00.000000Z", "audit", "success"),
    ]
    assert bg.loc[0, "account"] == "bg-admin01@contoso.com"
    elevated = _csv(known, "elevated_activity.csv")
    # alice's 09:30 action is in her window (09:11–11:11); the 12:00 one is not.
    assert list(zip(elevated["principal"], elevated["time"], elevated["activity"], strict=True)) == [
        ("adm-alice@contoso.com", "2026-03-16T09:30:00.000000Z", "Update user")
    ]
    assert elevated.loc[0, "window_basis"] == "ended"


def test_the_access_review_worksheet_rows(known: Path) -> None:
    review = _csv(known, "access_review.csv")
    rows = {
        (r.principal, r.role): (r.assignment, r.activations, r.recommendation)
        for r in review.itertuples(index=False)
    }
    assert rows == {
        ("adm-alice@contoso.com", "User Administrator"): ("eligible", "1", "keep"),
        ("adm-bob@contoso.com", "User Administrator"): ("eligible", "1", "keep"),
        ("adm-erin@contoso.com", "Global Administrator"): ("eligible", "1", "keep"),
        ("adm-frank@contoso.com", "User Administrator"): ("eligible", "0", "review"),
        ("adm-hank@contoso.com", "User Administrator"): ("eligible", "0", "remove"),
        ("adm-gina@contoso.com", "Global Administrator"): ("active (permanent)", "0", "review"),
        ("bg-admin01@contoso.com", "Global Administrator"): ("active (permanent)", "0", "keep"),
    }
    assert set(review["decision"]) == {""}  # for the reviewer


def test_coverage_names_the_gap_and_the_audit_export_flattens_every_role_record(known: Path) -> None:
    html = (known / "report.html").read_text(encoding="utf-8")
    assert f"Input: 1 file, {len(known_stream())} records read" in html
    assert "SignInLogs" in html and "2026-03-16 05:00–2026-03-16 06:00 UTC (1 h)" in html
    export = _csv(known, "PIM-Audit-2026-03-16.csv")
    # Every RoleManagement record of the period (the January assignment and erin's end are outside it).
    assert len(export) == 19
    assert {"detail.expirationtime", "target.Role.name", "target.User.upn", "detail.requestid"} <= set(
        export.columns
    )
    row = export[export["activity"] == ACTIVATION_COMPLETED].iloc[0]
    assert (
        row["target.Role.name"] == "User Administrator"
        and row["detail.expirationtime"] == "2026-03-16T11:11:00Z"
    )


def test_csvs_round_trip_through_pandas_with_bom_and_documented_columns(known: Path) -> None:
    for name, columns in TABLES.items():
        raw = (known / f"{name}.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), name
        df = _csv(known, f"{name}.csv")
        assert list(df.columns) == list(columns), name
    acts = _csv(known, "activations.csv")
    # Attacker text comes back whole; a formula is defused with a leading apostrophe.
    assert acts.loc[2, "justification"] == "'" + EVIL
    # Read as Excel or an analyst would: numbers come back as numbers, unknown as missing.
    typed = pd.read_csv(known / "activations.csv", encoding="utf-8-sig")
    assert typed["used_minutes"].tolist()[:2] == [120.0, 30.0] and pd.isna(typed["used_minutes"][2])
    assert typed["requested_minutes"].tolist() == [131.0, 60.5, 120.0]
    assert typed["off_hours"].tolist() == [False, True, True]


def test_docs_list_every_column_of_every_csv() -> None:
    doc = (REPO / "docs/report.md").read_text(encoding="utf-8")
    for name, columns in TABLES.items():
        section = doc.split(f"### `{name}.csv`", 1)[1].split("###", 1)[0]
        missing = [c for c in columns if f"| `{c}` |" not in section]
        assert not missing, f"docs/report.md: {name}.csv lacks {missing}"


def test_any_order_batching_and_duplication_give_the_same_bytes(tmp_path: Path, known: Path) -> None:
    records = known_stream()
    shuffled = records + records[::3]  # duplicates
    random.Random(7).shuffle(shuffled)
    other = _report(tmp_path, shuffled, "shuffled", files=3)
    reverse = _report(tmp_path, list(reversed(records)), "reversed")
    names = sorted(p.name for p in known.iterdir() if p.suffix in (".csv", ".html"))
    assert len(names) == 9
    for name in names:
        assert (reverse / name).read_bytes() == (known / name).read_bytes(), name
        if name != "report.html":
            assert (other / name).read_bytes() == (known / name).read_bytes(), name
    # Only the description of the input (3 files, duplicates read) differs.
    assert _without_input(other / "report.html") == _without_input(known / "report.html")
    assert _without_input(known / "report.html") != (known / "report.html").read_text(encoding="utf-8")


def _without_input(page: Path) -> str:
    return re.sub(
        r'<p( class="muted")? id="input(-files)?">.*?</p>', "", page.read_text(encoding="utf-8"), flags=re.S
    )


def test_the_hash_seed_does_not_reach_the_bytes(tmp_path: Path, known: Path) -> None:
    """Each seed is its own interpreter: no set order reaches a table, a chart or the page."""
    _write(tmp_path / "in.jsonl", known_stream())
    (tmp_path / "pimwatch.yaml").write_text(CONFIG, encoding="utf-8")
    outs = []
    for seed in ("0", "1"):
        out = tmp_path / f"seed{seed}"
        args = ["report", "--config", str(tmp_path / "pimwatch.yaml"), "--from", DAY, "--to", "2026-03-17"]
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        done = subprocess.run(
            [sys.executable, "-m", "pimwatch", *args, "--out", str(out), str(tmp_path / "in.jsonl")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        outs.append(out)
    for name in sorted(p.name for p in known.iterdir()):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
        if name != "report.html":  # the page names the input file, which differs from the fixture's
            assert (outs[0] / name).read_bytes() == (known / name).read_bytes(), name


def test_attacker_text_is_escaped_in_the_page(known: Path) -> None:
    html = (known / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_a_longer_period_and_an_empty_one(tmp_path: Path) -> None:
    """Days instead of hours for a longer period (the export named after its last day); a period
    without a record still writes every file, with headers only and the charts' placeholders."""
    _write(tmp_path / "in.jsonl", known_stream())
    week = tmp_path / "week"
    assert (
        main(
            [
                "report",
                "--from",
                "2026-03-10",
                "--to",
                "2026-03-20",
                "--out",
                str(week),
                str(tmp_path / "in.jsonl"),
            ]
        )
        == 0
    )
    assert len(_csv(week, "PIM-Audit-2026-03-19.csv")) == 20  # erin's end is in this period
    assert _csv(week, "activations.csv")["used_minutes"].tolist() == ["120.0", "30.0", "120.0"]
    assert "Activations per day" in (week / "report.html").read_text(encoding="utf-8")
    empty = tmp_path / "empty"
    assert (
        main(
            [
                "report",
                "--from",
                "2027-01-01",
                "--to",
                "2027-01-02",
                "--out",
                str(empty),
                str(tmp_path / "in.jsonl"),
            ]
        )
        == 0
    )
    for name, columns in TABLES.items():
        df = _csv(empty, f"{name}.csv")
        assert list(df.columns) == list(columns), name
        assert df.empty or name == "access_review", name
    # Assignments recorded before the period are still held: unused all year, they are to go.
    review = _csv(empty, "access_review.csv")
    assert dict(zip(review["principal"], review["recommendation"], strict=True)) == {
        "adm-alice@contoso.com": "remove",  # eligible (she activated in March), unused since
        "adm-bob@contoso.com": "remove",
        "adm-erin@contoso.com": "remove",
        "adm-frank@contoso.com": "remove",
        "adm-gina@contoso.com": "review",  # standing access
        "adm-hank@contoso.com": "remove",
        "bg-admin01@contoso.com": "review",  # no --config here: not known as break-glass
    }
    assert review.loc[0, "last_activation"] == "2026-03-16T09:11:00.000000Z"
    html = (empty / "report.html").read_text(encoding="utf-8")
    assert "Alerts: none in the period" in html and "2027-01-01 00:00–2027-01-02 00:00 UTC (24 h)" in html


def test_a_bad_record_is_quarantined_next_to_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "in.jsonl"
    _write(path, known_stream()[:3])
    path.write_text(path.read_text(encoding="utf-8") + "{not json\n", encoding="utf-8")
    assert main(["report", "--out", str(tmp_path / "out"), str(path)]) == 0
    assert "bad records: 1, quarantined in" in capsys.readouterr().err
    lines = (tmp_path / "out" / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["raw"] == "{not json"
    assert "1 bad records quarantined" in (tmp_path / "out" / "report.html").read_text(encoding="utf-8")


def test_chart_labels_are_escaped_and_never_rewritten() -> None:
    from pimwatch.report import charts

    label = '<b>x</b> id="a" url(#b)'  # short enough not to be cut
    svg = charts.barh([label], [1], "by-role", "activations")
    assert "<b>" not in svg and '&lt;b&gt;x&lt;/b&gt; id="a" url(#b)</text>' in svg
    ids = re.findall(r'<[^>]*\bid="([^"]+)"', svg)
    assert ids and all(i.startswith("by-role-") for i in ids)


def test_bad_arguments_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--from", "yesterday", str(tmp_path)]) == 2
    assert "--from: not a date" in capsys.readouterr().err
    assert main(["report", "--out", str(tmp_path / "o")]) == 2
    assert "give the input" in capsys.readouterr().err
    (tmp_path / "file").write_text("", encoding="utf-8")
    assert main(["report", "--out", str(tmp_path / "file" / "o"), str(tmp_path / "file")]) == 1
    assert "cannot create the output folder" in capsys.readouterr().err


def test_the_event_hub_path_never_imports_pandas_or_matplotlib(tmp_path: Path) -> None:
    """The report's libraries are an optional extra: the Functions app, the consumer and replay (which
    share the CLI module with ``report``) run without them."""
    _write(tmp_path / "in.jsonl", known_stream())
    code = (
        "import sys, function_app, pimwatch.hosting.runtime, pimwatch.hosting.consume;"
        "from pimwatch.cli import main;"
        f"rc = main(['replay', '--quarantine', {str(tmp_path / 'q.jsonl')!r}, "
        f"{str(tmp_path / 'in.jsonl')!r}]);"
        "print([m for m in sys.modules if m.split('.')[0] in ('pandas', 'matplotlib', 'numpy')], rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[] 0"


def test_the_report_is_mailed_with_its_files_to_a_real_smtp_server(tmp_path: Path) -> None:
    from sinks import email as email_sink
    from tests.sinks.test_email import Recorder, smtp_server

    _write(tmp_path / "in.jsonl", known_stream())
    handler = Recorder()
    with smtp_server(handler) as port:
        (tmp_path / "pimwatch.yaml").write_text(
            CONFIG + "sinks:\n  weekly:\n    type: email\n    sender: pimwatch@contoso.com\n"
            f"    to: [secops@contoso.com]\n    smtp_host: 127.0.0.1\n    smtp_port: {port}\n    tls: none\n",
            encoding="utf-8",
        )
        out = tmp_path / "out"
        args = ["report", "--config", str(tmp_path / "pimwatch.yaml"), "--from", DAY, "--to", "2026-03-17"]
        assert main([*args, "--mail", "weekly", "--out", str(out), str(tmp_path / "in.jsonl")]) == 0
        assert main([*args, "--mail", "nosuch", "--out", str(out), str(tmp_path / "in.jsonl")]) == 2
    assert len(handler.received) == 1
    msg = handler.received[0].parsed()
    assert (
        msg["Subject"]
        == "[pimwatch] PIM report 2026-03-16 00:00 – 2026-03-16 23:59:59 UTC: 3 activations, 12 alerts"
    )
    files = {part.get_filename(): part.get_payload(decode=True) for part in msg.iter_attachments()}
    assert sorted(files) == sorted(p.name for p in out.iterdir() if p.suffix in (".csv", ".html"))
    for name, content in files.items():
        assert content == (out / name).read_bytes(), name  # byte for byte, the BOM included
    body = msg.get_body(("html",))
    assert body is not None and "Activations outside business hours" in body.get_content()
    # Graph takes at most 4 MB per request: a report too large is refused before sending, with why.
    graph = email_sink.Config.model_validate(
        {
            "type": "email",
            "transport": "graph",
            "sender": "pimwatch@contoso.com",
            "to": ["secops@contoso.com"],
        }
    )
    big = email_sink.Attachment("activations.csv", "text/csv", b"x" * (email_sink.MAX_GRAPH_ATTACHMENTS + 1))
    with pytest.raises(email_sink.PermanentError, match="more than Graph sendMail takes"):
        email_sink.report_email("s", "t", "<p>h</p>", [big], graph, "k")
    small = email_sink.report_email(
        "s", "t", "<p>h</p>", [big.__class__("a.csv", "text/csv", b"a,b\r\n")], graph, "k"
    )
    attached = email_sink.graph_payload(small, graph)["message"]["attachments"]
    assert attached == [
        {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "a.csv",
            "contentType": "text/csv",
            "contentBytes": "YSxiDQo=",
        }
    ]


# --- the page in a real browser -------------------------------------------------------------------


def _chromium(tmp: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _console(stderr: str) -> list[str]:
    """What the page logged to the console: CSP violations (a fetch), script errors."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("PIMWATCH_REQUIRE_CHROMIUM"),
    reason="chromium is not installed (scripts/test.sh installs it with apt-get)",
)


@needs_chromium
def test_the_demo_day_renders_in_chromium_with_its_charts_and_no_error(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    assert (
        main(
            [
                "report",
                "--config",
                str(REPO / "samples/demo/pimwatch.yaml"),
                "--out",
                str(out),
                str(REPO / "samples/demo/day.eventhub.jsonl.gz"),
            ]
        )
        == 0
    )
    page = out / "report.html"
    dom = _chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _console(dom.stderr) == []
    charts = [
        c
        for c in ("over-time", "by-role", "by-principal", "by-hour", "durations", "latency", "alerts")
        if f'data-chart="{c}"' in dom.stdout
    ]
    assert len(charts) == 7, charts
    assert dom.stdout.count("<path") > 100  # bars were drawn, not the "none in the period" placeholder
    for section in ("summary", "coverage", "breakglass", "access-review", "signoff"):
        assert f'id="{section}"' in dom.stdout
    shot = tmp_path / "page.png"
    run = _chromium(tmp_path, page, "--window-size=1000,3000", f"--screenshot={shot}")
    assert run.returncode == 0 and _console(run.stderr) == []
    from PIL import Image  # matplotlib's own dependency

    image = Image.open(shot).convert("RGB")
    assert image.size == (1000, 3000)
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # text and charts, not a blank page
    assert any(
        abs(r - 0x31) < 8 and abs(g - 0x82) < 8 and abs(b - 0xBD) < 8 for _, (r, g, b) in colours
    )  # bars


@needs_chromium
def test_the_console_check_catches_a_page_that_fetches(tmp_path: Path, known: Path) -> None:
    """The control for the test above: a page that tries to load from the network is caught."""
    page = tmp_path / "bad.html"
    html = (known / "report.html").read_text(encoding="utf-8")
    page.write_text(html.replace("<body>", '<body><img src="http://203.0.113.1/x.png">', 1), encoding="utf-8")
    run = _chromium(tmp_path, page, "--dump-dom")
    assert any("Content Security Policy" in line for line in _console(run.stderr))
