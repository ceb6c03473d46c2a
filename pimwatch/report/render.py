"""Write the report: ``report.html`` (one self-contained file) and the CSV files.

The HTML is a Jinja2 template with autoescaping (audit fields are attacker-controlled text) and a
Content-Security-Policy that forbids every network fetch; the charts are inline SVG. CSVs are UTF-8
with a BOM (Excel reads them right), CRLF line ends, and text cells that a spreadsheet would run as a
formula (starting ``=``, ``+``, ``-``, ``@``, tab, CR) are prefixed with ``'``.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from pimwatch import __version__
from pimwatch.detection.alerts import Severity
from pimwatch.report import charts
from pimwatch.report.frames import ACCESS_REVIEW, TABLES, Report

HTML_CELL = 300  # characters of a text cell shown in the HTML (the CSV has all of it)
HTML_ROWS = 500  # rows of a table shown in the HTML (the CSV has all of them)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")
_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?Z$")


def audit_name(report: Report) -> str:
    last_day = (report.period.end - timedelta(seconds=1)).date()
    return f"PIM-Audit-{last_day.isoformat()}.csv"


def _safe(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def write_csv(df: pd.DataFrame, path: str) -> None:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(_safe)
    out.to_csv(path, index=False, encoding="utf-8-sig", lineterminator="\r\n")


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    if isinstance(value, float):
        return f"{value:g}" if abs(value) < 1e6 else f"{value:.0f}"
    s = str(value)
    if _ISO.match(s):
        return s[:16].replace("T", " ")  # to the minute in the page; the CSVs keep the record's time
    return s if len(s) <= HTML_CELL else s[:HTML_CELL] + "… [truncated]"


def _table(df: pd.DataFrame, columns: list[str] | None = None, limit: int = HTML_ROWS) -> dict[str, Any]:
    cols = columns or list(df.columns)
    rows = [[_cell(v) for v in row] for row in df[cols].head(limit).itertuples(index=False)]
    return {"columns": cols, "rows": rows, "total": len(df), "shown": len(rows)}


def env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def html(report: Report, files: list[str]) -> str:
    t = report.tables
    acts = t["activations"]
    period = report.period
    days = sorted({h[:10] for h in period.hours()})
    hours = [int(x[-5:-3]) for x in acts["local_time"]]
    cal = report.calendar
    outside = [not (cal.start <= h < cal.end) for h in range(24)]
    role_counts = acts["role"].value_counts().sort_index().sort_values(ascending=False, kind="stable")
    who_counts = acts["principal"].value_counts().sort_index().sort_values(ascending=False, kind="stable")
    span_hours = (period.end - period.start).total_seconds() / 3600
    width = 13 if span_hours <= 72 else 10
    buckets = period.hours() if width == 13 else days
    per_bucket = acts["activated_at"].str[:width].value_counts()
    lat = report.by_approver
    svg = {
        "over_time": charts.per_bucket(
            buckets,
            [int(per_bucket.get(b, 0)) for b in buckets],
            "over-time",
            "Activations per hour" if width == 13 else "Activations per day",
        ),
        "by_hour": charts.by_hour(hours, outside, "by-hour"),
        "by_role": charts.barh(
            list(role_counts.index), list(role_counts.values), "by-role", "activations by role", width=3.6
        ),
        "by_principal": charts.barh(
            list(who_counts.index),
            list(who_counts.values),
            "by-principal",
            "activations by principal",
            width=3.6,
        ),
        "durations": charts.durations(acts, "durations"),
        "latency": charts.barh(
            list(lat["approver"]) if not lat.empty else [],
            list(lat["median_minutes"]) if not lat.empty else [],
            "latency",
            "median approval latency (minutes) by approver",
        ),
        "alerts": charts.alerts_over_time(t["alerts"], buckets, width, "alerts"),
    }
    alerts = t["alerts"]
    severities = [sv.value for sv in reversed(Severity)]
    matrix = (
        pd.crosstab(
            alerts["detector"], pd.Categorical(alerts["severity"], categories=severities), dropna=False
        )
        .reindex(columns=severities, fill_value=0)
        .rename_axis(index="detector", columns=None)
        .reset_index()
        if not alerts.empty
        else pd.DataFrame(columns=["detector", *severities])
    )
    appr = t["approvals"]
    context = {
        "version": __version__,
        "r": report,
        "s": report.summary,
        "files": sorted(os.path.basename(f) for f in files),
        "svg": svg,
        "audit_csv": audit_name(report),
        "csvs": [f"{name}.csv" for name in TABLES],
        "t": {
            "activations": _table(
                acts,
                [
                    "activated_at",
                    "principal",
                    "role",
                    "justification",
                    "mfa",
                    "approver",
                    "requested_minutes",
                    "used_minutes",
                    "max_minutes",
                    "ended_by",
                ],
            ),
            "durations": _durations(acts),
            "by_approver": _table(report.by_approver),
            "by_role_latency": _table(report.by_role_latency),
            "refused": _table(
                appr[appr["outcome"] != "approved"],
                ["requested_at", "principal", "role", "outcome", "decided_at", "approver", "justification"],
            ),
            "off_hours": _table(
                acts[acts["off_hours"] == "true"],
                ["local_time", "principal", "role", "justification", "approver"],
            ),
            "repeated": _table(report.repeated),
            "alerts": _table(alerts, ["first_seen", "severity", "detector", "status", "count", "title"]),
            "matrix": _table(matrix),
            "drills": _table(report.drills),
            "breakglass": _table(
                t["breakglass"],
                [
                    "time",
                    "account",
                    "kind",
                    "activity",
                    "result",
                    "ip",
                    "country",
                    "conditional_access",
                    "target",
                    "role",
                ],
            ),
            "elevated": _table(report.per_activation),
            "assignments": _table(
                t["assignments"],
                [
                    "time",
                    "change",
                    "assignment",
                    "via",
                    "duration",
                    "expires_at",
                    "principal",
                    "role",
                    "actor",
                ],
            ),
            "review": _table(
                t["access_review"],
                [
                    c
                    for c in ACCESS_REVIEW
                    if c not in ("principal_id", "role_id", "assigned_at", "evidence", "reviewer")
                ],
            ),
            "coverage": _table(report.coverage),
        },
    }
    return env().get_template("report.html.j2").render(context)


def _durations(acts: pd.DataFrame) -> dict[str, Any]:
    used = acts["used_minutes"].astype("float64")
    req = acts["requested_minutes"].astype("float64")
    mx = acts["max_minutes"].astype("float64")
    both = used.notna() & req.notna()
    return {
        "known": int(used.notna().sum()),
        "unknown": int(used.isna().sum()),
        "median_used": _cell(round(float(used.median()), 1)) if used.notna().any() else "",
        "median_requested": _cell(round(float(req.median()), 1)) if req.notna().any() else "",
        "early": int((both & (used < req - 1)).sum()),
        "full": int((both & (used >= req - 1)).sum()),
        "at_max": int((req.notna() & mx.notna() & (req >= mx)).sum()),
        "max_known": int(mx.notna().sum()),
    }


def write(report: Report, out_dir: str, files: list[str]) -> list[str]:
    """Write everything into ``out_dir``; the paths written, in order."""
    os.makedirs(out_dir, exist_ok=True)
    written: list[str] = []
    for name, df in report.tables.items():
        path = os.path.join(out_dir, f"{name}.csv")
        write_csv(df, path)
        written.append(path)
    path = os.path.join(out_dir, audit_name(report))
    write_csv(report.audit, path)
    written.append(path)
    path = os.path.join(out_dir, "report.html")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(html(report, files))
    written.append(path)
    return written
