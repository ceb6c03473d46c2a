"""``pimwatch report --mail SINK``: the summary as the message body, report.html and the CSVs attached,
sent through a configured ``email`` sink (SMTP or Graph sendMail)."""

from __future__ import annotations

import os
from typing import Any

from pimwatch.delivery.deliverer import LoadedSink
from pimwatch.delivery.sink import Http
from pimwatch.report.frames import Report
from pimwatch.report.render import env

CONTENT_TYPES = {".csv": "text/csv", ".html": "text/html"}


def figures(report: Report) -> list[tuple[str, Any]]:
    s = report.summary
    sev = ", ".join(f"{n} {k}" for k, n in s["alerts_by_severity"].items() if n) or "none"
    return [
        ("Activations", s["activations"]),
        (
            "Approval requests (approved / denied / expired)",
            f"{s['approved']} / {s['denied']} / {s['expired']}",
        ),
        ("Activations outside business hours", s["off_hours"]),
        ("Alerts", f"{s['alerts']} ({sev})"),
        ("Break-glass sign-ins and actions", s["breakglass_events"]),
        ("Assignment changes (outside PIM)", f"{s['assignment_changes']} ({s['outside_pim']})"),
        ("Access review: recommended for removal", f"{s['review_remove']} of {s['review_rows']}"),
        ("Coverage gaps", len(report.gaps)),
    ]


def send(report: Report, sink: LoadedSink, written: list[str]) -> str:
    """Send the report; the sink's answer (``250 ...``). Raises the sink's errors."""
    module = sink.module
    if sink.config.type != "email" or not hasattr(module, "report_email"):
        raise ValueError(f"sink {sink.name!r} is of type {sink.config.type!r}: --mail needs an email sink")
    files = [p for p in written if os.path.splitext(p)[1] in CONTENT_TYPES]
    attachments = []
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        attachments.append(
            module.Attachment(os.path.basename(path), CONTENT_TYPES[os.path.splitext(path)[1]], data)
        )
    names = [a.name for a in attachments]
    rows = figures(report)
    html = (
        env()
        .get_template("summary.html.j2")
        .render(s=report.summary, figures=rows, findings=report.findings, files=names)
    )
    text = "\n".join(
        [f"Privileged access report, {report.summary['period']}", ""]
        + [f"{label}: {value}" for label, value in rows]
        + ["", "Findings:"]
        + [f"- {f}" for f in report.findings or ["Nothing that needs attention."]]
        + ["", "Attached: " + ", ".join(names)]
    )
    s = report.summary
    subject = f"PIM report {s['period']}: {s['activations']} activations, {s['alerts']} alerts"
    email = module.report_email(subject, text, html, attachments, sink.config, report.period.label())
    http = Http()
    try:
        return sink.send(email, http)
    finally:
        http.close()
