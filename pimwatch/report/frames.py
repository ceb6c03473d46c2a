"""The report's tables, as pandas frames built from the collected normalized events.

Every figure comes from :class:`~pimwatch.report.collect.Rec` (the events the detectors saw), never
from the raw records. Rules the auditor can rely on:

* **period**: ``[start, end)`` in UTC; only records inside it count. An activation's duration comes from
  the record that ended it (``... (PIM activation expired)`` or ``... completed (PIM deactivate)``),
  matched as the detectors match it (:func:`pimwatch.detection.lifecycle.activation_key`, the first end within
  24 h); when that record is not in the period the duration is blank (unknown), never guessed;
* **MFA**: ``IsAuthenticatedWithMfa`` on the request (else the completion) record; absent is
  ``unknown``, not "no";
* **order**: rows are sorted by content (time, then ids), so any input order gives the same bytes.

The column lists below are the CSV documentation (docs/report.md lists them; tests/test_report.py
keeps the two in step).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pandas as pd

from detectors._assignments import PIM_INITIATORS, read_assignment
from detectors.activation_off_hours import Calendar
from detectors.activation_off_hours import Config as OffHours
from detectors.activation_off_hours import calendar as off_hours_calendar
from pimwatch.config import Config
from pimwatch.detection.activities import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_CANCELED,
    ACTIVATION_COMPLETED,
    ACTIVATION_DENIED,
    ACTIVATION_END,
    ACTIVATION_ENDED,
    ACTIVATION_EXPIRED_REQUEST,
    ACTIVATION_REQUEST_ACTIVITIES,
    ACTIVATION_REQUESTED,
    PIM_ACTIVITIES,
    ROLE_SETTING_UPDATED,
)
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.event import Event, Principal
from pimwatch.detection.lifecycle import LONGEST_ACTIVATION, activation_key
from pimwatch.detection.timeutil import iso
from pimwatch.report.collect import Collected, Rec

DRILL_DAYS = 30  # break-glass: a successful sign-in (the drill) is expected at least this often
REVIEW_GRACE_DAYS = 30  # access review: an eligibility younger than this is "review", not "remove"
_MAX_DURATION = re.compile(r"Maximum activation duration updated to (\d+):(\d{2}):(\d{2})")
_TICKET = re.compile(r"\b(?:[A-Z][A-Z0-9]{1,9}-\d{2,}|(?:INC|CHG|RITM|REQ|SR|CR|TASK)\d{3,})\b")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# name → what the column holds (the CSV documentation).
ACTIVATIONS: dict[str, str] = {
    "activated_at": "when the role became active: 'Add member to role completed (PIM activation)' (UTC)",
    "principal": "who activated (UPN, else display name, else object id)",
    "principal_id": "their object id",
    "role": "role display name",
    "role_id": "role template id",
    "scope": "where the role applies: directory, group or resource name",
    "request_id": "PIM request id (joins approvals.csv and elevated_activity.csv)",
    "requested_at": "the activation request's time; blank when the request is not in the period",
    "justification": "the justification as entered",
    "ticket": "ticket number (the ticket field, else one found in the justification)",
    "mfa": "true / false from IsAuthenticatedWithMfa; unknown when the record has no such field",
    "approver": "who approved (blank: no approval recorded)",
    "requested_minutes": "requested duration (ExpirationTime − StartTime); blank when not recorded",
    "used_minutes": "actual duration: activation → the record that ended it; blank when the end is "
    "not in the period",
    "max_minutes": "the role's maximum activation duration from the last 'Update role setting in PIM' "
    "read before the activation; blank when unknown",
    "ended_at": "time of the record that ended it; blank when not in the period",
    "ended_by": "expired / deactivated; blank when the end is not in the period",
    "off_hours": "true when outside business hours (the activation.off_hours calendar)",
    "local_time": "activation time in the business-hours time zone",
    "record_id": "audit record id of the completion",
}
APPROVALS: dict[str, str] = {
    "request_id": "PIM request id",
    "principal": "who asked",
    "role": "role display name",
    "scope": "where the role applies",
    "requested_at": "the request's time; blank when not in the period",
    "outcome": "approved / denied / expired / canceled / pending (no decision in the period)",
    "decided_at": "time of the decision (or of the expiry)",
    "approver": "who decided (blank for expired, canceled and pending)",
    "latency_minutes": "request → decision; blank when either is not in the period",
    "self_approved": "true when the approver is the requester",
    "justification": "the request's justification",
}
ASSIGNMENTS: dict[str, str] = {
    "time": "when the change was recorded (UTC)",
    "change": "added / removed",
    "assignment": "active / eligible",
    "via": "PIM, or outside PIM (a direct directory write, or PIM's 'outside of PIM' scan)",
    "duration": "permanent / expiring",
    "expires_at": "end of an expiring assignment; blank when permanent or not recorded",
    "principal": "who got or lost the role",
    "principal_id": "their object id",
    "role": "role display name",
    "role_id": "role template id",
    "scope": "where the role applies",
    "actor": "who made the change",
    "justification": "the justification recorded",
    "activity": "the audit activity",
    "record_id": "audit record id",
}
BREAKGLASS: dict[str, str] = {
    "time": "when (UTC)",
    "account": "the break-glass account (UPN, else object id)",
    "kind": "sign-in / audit",
    "activity": "audit activity, or the sign-in's application",
    "result": "success / failure (sign-ins: error code 0 is success)",
    "error_code": "sign-in error code",
    "ip": "IP address",
    "country": "sign-in country",
    "conditional_access": "sign-in Conditional Access status",
    "authentication": "sign-in authentication requirement",
    "target": "audit record: the principal acted on",
    "role": "audit record: the role",
    "record_id": "record id",
}
ALERTS: dict[str, str] = {
    "first_seen": "event time of the first record of the alert (UTC)",
    "last_seen": "event time of the last record",
    "detector": "detector id",
    "severity": "critical / high / medium / low / info",
    "status": "open / resolved",
    "count": "distinct records folded into the alert",
    "principal": "the principal it is about",
    "title": "alert title",
    "alert_id": "alert id",
}
ELEVATED: dict[str, str] = {
    "activated_at": "the activation (as in activations.csv)",
    "principal": "who held the role",
    "role": "the activated role",
    "request_id": "PIM request id of the activation",
    "window_end": "end of the window searched",
    "window_basis": "ended (the end record) / scheduled (ExpirationTime) / period (neither known)",
    "time": "time of the action (UTC)",
    "activity": "audit activity performed by the principal",
    "service": "the logging service",
    "result": "success / failure",
    "target": "what was acted on",
    "target_role": "the role named by the record, if any",
    "record_id": "audit record id",
}
ACCESS_REVIEW: dict[str, str] = {
    "principal": "the assignee",
    "principal_id": "their object id",
    "role": "role display name",
    "role_id": "role template id",
    "scope": "where the role applies",
    "assignment": "eligible / active (permanent)",
    "assigned_at": "when the assignment was recorded, if in the input",
    "evidence": "how the assignment is known: assignment record or activation",
    "activations": "activations in the period",
    "last_activation": "the last activation in the input up to the period's end (UTC); blank: none",
    "recommendation": "keep / remove / review",
    "reason": "why",
    "decision": "for the reviewer: keep / remove (left blank)",
    "reviewer": "for the reviewer (left blank)",
}
TABLES: dict[str, dict[str, str]] = {
    "activations": ACTIVATIONS,
    "approvals": APPROVALS,
    "assignments": ASSIGNMENTS,
    "breakglass": BREAKGLASS,
    "alerts": ALERTS,
    "elevated_activity": ELEVATED,
    "access_review": ACCESS_REVIEW,
}
AUDIT_BASE: dict[str, str] = {
    "time": "activityDateTime (UTC)",
    "record_id": "audit record id",
    "activity": "activityDisplayName (canonical spelling)",
    "service": "loggedByService",
    "operation_type": "operationType",
    "result": "result",
    "result_reason": "resultReason",
    "actor": "initiatedBy: UPN, else display name, else id",
    "actor_id": "initiatedBy id",
    "actor_ip": "initiatedBy IP address",
    "principal": "the principal acted on",
    "principal_id": "its id",
    "role": "role display name",
    "role_id": "role template id",
    "scope_type": "directory / group / resource",
    "scope": "scope name, else id",
    "request_id": "PIM request id",
    "correlation_id": "correlationId",
    "justification": "justification",
    "ticket": "ticket number",
    "start": "StartTime",
    "expiration": "ExpirationTime",
}


@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime  # exclusive

    def has(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def hours(self) -> list[str]:
        out, t = [], self.start.replace(minute=0, second=0, microsecond=0)
        while t < self.end:
            out.append(iso(t)[:13])
            t += timedelta(hours=1)
        return out

    def label(self) -> str:
        last = self.end - timedelta(seconds=1)
        return f"{self.start:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M:%S} UTC"


def default_period(c: Collected, start: datetime | None, end: datetime | None) -> Period:
    """``--from``/``--to`` as given; a missing bound is the UTC day of the first / after the last record."""
    times = [r.time for r in c.recs]
    hours = [datetime.fromisoformat(h + ":00:00+00:00") for _, h in c.hours]
    everything = times + hours
    if start is None:
        if not everything:
            raise ValueError("no dated record in the input: give --from and --to")
        first = min(everything)
        start = first.replace(hour=0, minute=0, second=0, microsecond=0)
    if end is None:
        if not everything:
            raise ValueError("no dated record in the input: give --to")
        last = max(everything)
        end = last.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    if end <= start:
        raise ValueError(f"--to ({iso(end)}) is not after --from ({iso(start)})")
    return Period(start.astimezone(UTC), end.astimezone(UTC))


def _t(dt: datetime | None) -> str:
    return iso(dt) if dt is not None else ""


def _who(p: Principal) -> str:
    return p.upn or p.name or p.id or ""


def _scope(r: Rec) -> str:
    return r.scope_name or r.scope_id or ""


def _minutes(a: datetime | None, b: datetime | None) -> float | None:
    if a is None or b is None:
        return None
    return round((b - a).total_seconds() / 60, 1)


def _frame(rows: list[dict[str, Any]], columns: Mapping[str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(columns))


def _as_event(r: Rec) -> Event:
    """A :class:`Rec` has the attributes the shared readers use (duck-typed)."""
    return cast(Event, r)


def calendar(config: Config) -> Calendar:
    """Business hours as the ``activation.off_hours`` detector is configured: its own calendar, read
    and validated by the detector's code, with its defaults."""
    det = config.detectors.get("activation.off_hours")
    values: dict[str, Any] = det.values() if det is not None else {}
    d = OffHours()
    return off_hours_calendar(
        str(values.get("timezone", d.timezone)),
        int(values.get("start_hour", d.start_hour)),
        int(values.get("end_hour", d.end_hour)),
        tuple(values.get("workdays", d.workdays)),
    )


@dataclass
class Report:
    """The frames and the figures of one report."""

    period: Period
    calendar: Calendar
    tables: dict[str, pd.DataFrame]
    audit: pd.DataFrame  # PIM-Audit-<date>.csv
    coverage: pd.DataFrame
    gaps: list[str]
    summary: dict[str, Any]
    findings: list[str]
    drills: pd.DataFrame
    justification: dict[str, Any]
    repeated: pd.DataFrame
    by_approver: pd.DataFrame
    by_role_latency: pd.DataFrame
    per_activation: pd.DataFrame
    not_used: str = ""
    notes: list[str] = field(default_factory=list)


def build(c: Collected, config: Config, period: Period) -> Report:
    recs = [r for r in c.recs if period.has(r.time)]
    cal = calendar(config)
    audit = [r for r in recs if r.kind == "audit"]
    activations = _activations(audit, c.recs, period, cal)
    approvals = _approvals(audit)
    assignments = _assignments(audit)
    breakglass, drills = _breakglass(recs, c.break_glass, period)
    alerts = _alerts(c.alerts, period)
    elevated, per_activation = _elevated(activations, audit, period)
    review = _access_review(c.recs, period, config)
    coverage, gaps = _coverage(c, period)
    export = _audit_export(audit)
    jq, repeated = _justification(activations)
    by_approver, by_role = _latency(approvals)
    tables = {
        "activations": activations,
        "approvals": approvals,
        "assignments": assignments,
        "breakglass": breakglass,
        "alerts": alerts,
        "elevated_activity": elevated,
        "access_review": review,
    }
    summary = _summary(c, period, tables, coverage, jq)
    findings = _findings(tables, drills, jq, gaps, summary)
    not_used = ", ".join(f"{cat} {n:,}" for cat, n in sorted(c.stats.skipped.items()))
    return Report(
        period,
        cal,
        tables,
        export,
        coverage,
        gaps,
        summary,
        findings,
        drills,
        jq,
        repeated,
        by_approver,
        by_role,
        per_activation,
        not_used,
    )


def _first_by_request(recs: Iterable[Rec], activities: frozenset[str] | set[str]) -> dict[str, Rec]:
    out: dict[str, Rec] = {}
    for r in recs:  # sorted by time: the first one wins
        if r.activity in activities and r.request_id and r.request_id not in out:
            out[r.request_id] = r
    return out


def _max_durations(recs: Sequence[Rec]) -> dict[str, list[tuple[datetime, float]]]:
    """Per role (template id, lower-cased): (time, maximum minutes) from role-setting records."""
    out: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for r in recs:
        if r.activity != ROLE_SETTING_UPDATED or r.failed or not r.role_id or not r.result_reason:
            continue
        m = _MAX_DURATION.search(r.result_reason)
        if m:
            h, mi, s = (int(x) for x in m.groups())
            out[r.role_id.lower()].append((r.time, h * 60 + mi + s / 60))
    return out


def _activations(
    audit: Sequence[Rec], everything: Sequence[Rec], period: Period, cal: Calendar
) -> pd.DataFrame:
    requests = _first_by_request(audit, {ACTIVATION_REQUESTED})
    approved = _first_by_request(audit, {ACTIVATION_APPROVED})
    maxima = _max_durations(everything)
    ends: dict[tuple[str, ...], list[Rec]] = defaultdict(list)
    for r in audit:
        if r.activity in ACTIVATION_END and not r.failed:
            ends[_key(r)].append(r)
    used: set[str] = set()
    rows: list[dict[str, Any]] = []
    for r in audit:
        if r.activity != ACTIVATION_COMPLETED or r.result not in (None, "success"):
            continue
        req = requests.get(r.request_id or "")
        end = None
        for e in ends.get(_key(r), ()):
            if e.id not in used and r.time <= e.time <= r.time + LONGEST_ACTIVATION:
                end = e
                used.add(e.id)
                break
        start_req = (req.start, req.end) if req is not None and req.start and req.end else (r.start, r.end)
        requested = _minutes(*start_req) if start_req[0] and start_req[1] else None
        maximum = None
        for when, minutes in maxima.get((r.role_id or "").lower(), ()):
            if when <= r.time:
                maximum = minutes
        justification = r.justification or (req.justification if req else None) or ""
        ticket = r.ticket or (req.ticket if req else None) or _ticket_in(justification)
        mfa = req.mfa if req is not None and req.mfa is not None else r.mfa
        appr = approved.get(r.request_id or "")
        rows.append(
            {
                "activated_at": _t(r.time),
                "principal": _who(r.subject),
                "principal_id": r.subject.id or "",
                "role": r.role_name or r.role_id or "",
                "role_id": r.role_id or "",
                "scope": _scope(r),
                "request_id": r.request_id or "",
                "requested_at": _t(req.time) if req else "",
                "justification": justification,
                "ticket": ticket or "",
                "mfa": "unknown" if mfa is None else str(mfa).lower(),
                "approver": _who(appr.actor) if appr else "",
                "requested_minutes": requested,
                "used_minutes": _minutes(r.time, end.time) if end else None,
                "max_minutes": round(maximum, 1) if maximum is not None else None,
                "ended_at": _t(end.time) if end else "",
                "ended_by": ("expired" if end.activity == ACTIVATION_ENDED else "deactivated") if end else "",
                "off_hours": str(cal.outside(r.time)).lower(),
                "local_time": r.time.astimezone(cal.zone).strftime("%a %Y-%m-%d %H:%M"),
                "record_id": r.id,
            }
        )
    return _frame(rows, ACTIVATIONS)


def _key(r: Rec) -> tuple[str, ...]:
    return tuple((k or "").lower() for k in activation_key(_as_event(r)))


def _ticket_in(text: str) -> str | None:
    m = _TICKET.search(text)
    return m.group(0) if m else None


_DECISIONS = {
    ACTIVATION_APPROVED: "approved",
    ACTIVATION_DENIED: "denied",
    ACTIVATION_EXPIRED_REQUEST: "expired",
    ACTIVATION_CANCELED: "canceled",
}


def _approvals(audit: Sequence[Rec]) -> pd.DataFrame:
    asked = _first_by_request(audit, {ACTIVATION_REQUESTED})
    asked_approval = _first_by_request(audit, {ACTIVATION_APPROVAL_REQUESTED})
    decided = _first_by_request(audit, set(_DECISIONS))
    rows: list[dict[str, Any]] = []
    for rid in sorted(set(asked_approval) | set(decided)):
        first = asked.get(rid) or asked_approval.get(rid)
        d = decided.get(rid)
        about = first or d
        assert about is not None
        outcome = _DECISIONS[d.activity] if d else "pending"
        if d is not None and d.failed and outcome == "approved":
            outcome = "approval failed"
        approver = _who(d.actor) if d and outcome in ("approved", "denied") else ""
        rows.append(
            {
                "request_id": rid,
                "principal": _who(about.subject),
                "role": about.role_name or about.role_id or "",
                "scope": _scope(about),
                "requested_at": _t(first.time) if first else "",
                "outcome": outcome,
                "decided_at": _t(d.time) if d else "",
                "approver": approver,
                "latency_minutes": _minutes(first.time, d.time) if first and d and approver else None,
                "self_approved": str(
                    bool(approver) and d is not None and _same(d.actor, about.subject)
                ).lower(),
                "justification": (first.justification if first else None) or about.justification or "",
            }
        )
    df = _frame(rows, APPROVALS)
    return df.sort_values(["requested_at", "decided_at", "request_id"], kind="stable").reset_index(drop=True)


def _same(a: Principal, b: Principal) -> bool:
    return bool(
        (a.id and b.id and a.id.lower() == b.id.lower())
        or (a.upn and b.upn and a.upn.lower() == b.upn.lower())
    )


def _assignments(audit: Sequence[Rec]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for r in audit:
        outside_scan = r.activity == "Add member to role outside of PIM (permanent)" and not r.failed
        try:
            a = None if outside_scan else read_assignment(_as_event(r), PIM_INITIATORS, removals=True)
        except Exception:  # Skip: no principal named; listed with what is known
            a = None
        if a is None and not outside_scan:
            continue
        added = a.added if a else True
        eligible = a.eligible if a else False
        permanent = a.permanent if a else True
        rows.append(
            {
                "time": _t(r.time),
                "change": "added" if added else "removed",
                "assignment": "eligible" if eligible else "active",
                "via": "PIM" if a is not None and a.via_pim else "outside PIM",
                "duration": "permanent" if permanent else "expiring",
                "expires_at": "" if permanent else _t(r.end),
                "principal": _who(r.subject),
                "principal_id": r.subject.id or "",
                "role": r.role_name or r.role_id or "",
                "role_id": r.role_id or "",
                "scope": _scope(r),
                "actor": _who(r.actor),
                "justification": r.justification or "",
                "activity": r.activity,
                "record_id": r.id,
            }
        )
    return _frame(rows, ASSIGNMENTS)


def _breakglass(
    recs: Sequence[Rec], accounts: Sequence[str], period: Period
) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows: list[dict[str, Any]] = []
    per: dict[str, list[Rec]] = {a: [] for a in accounts}
    names: dict[str, str] = {}
    for r in recs:
        if not r.break_glass:
            continue
        account = _account(r, accounts)
        if account is not None:
            per[account].append(r)
            p = r.actor if _matches(r.actor, account) else r.subject
            if p.upn:
                names.setdefault(account, p.upn)
        signin = r.kind == "signin"
        rows.append(
            {
                "time": _t(r.time),
                "account": names.get(account or "", account or _who(r.actor)),
                "kind": "sign-in" if signin else "audit",
                "activity": (r.app or "sign-in") if signin else r.activity,
                "result": ("success" if r.error_code == 0 else "failure") if signin else (r.result or ""),
                "error_code": r.error_code if signin else None,
                "ip": r.ip or "",
                "country": r.country or "",
                "conditional_access": r.ca_status or "",
                "authentication": r.auth_requirement or "",
                "target": "" if signin else _who(r.subject),
                "role": "" if signin else (r.role_name or ""),
                "record_id": r.id,
            }
        )
    drills: list[dict[str, Any]] = []
    for account in accounts:
        events = per[account]
        ok = [r for r in events if r.kind == "signin" and r.error_code == 0]
        last = max((r.time for r in ok), default=None)
        age = (period.end - last).total_seconds() / 86400 if last else None
        status = (
            "no successful sign-in in the period"
            if last is None
            else ("overdue" if age is not None and age > DRILL_DAYS else "within policy")
        )
        drills.append(
            {
                "account": names.get(account, account),
                "sign_ins": sum(1 for r in events if r.kind == "signin"),
                "successful": len(ok),
                "audit_records": sum(1 for r in events if r.kind == "audit"),
                "last_drill": _t(last),
                "days_before_period_end": round(age, 1) if age is not None else None,
                "policy": f"every {DRILL_DAYS} days",
                "status": status,
            }
        )
    return _frame(rows, BREAKGLASS), pd.DataFrame(
        drills,
        columns=[
            "account",
            "sign_ins",
            "successful",
            "audit_records",
            "last_drill",
            "days_before_period_end",
            "policy",
            "status",
        ],
    )


def _matches(p: Principal, account: str) -> bool:
    return (p.id or "").lower() == account or (p.upn or "").lower() == account


def _account(r: Rec, accounts: Sequence[str]) -> str | None:
    for a in accounts:
        if _matches(r.actor, a) or _matches(r.subject, a):
            return a
    return None


def _alerts(alerts: Sequence[Alert], period: Period) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for a in alerts:
        first = datetime.fromisoformat(a.first_seen.replace("Z", "+00:00"))
        if not period.has(first):
            continue
        p = a.principal or {}
        rows.append(
            {
                "first_seen": a.first_seen,
                "last_seen": a.last_seen,
                "detector": a.detector,
                "severity": a.severity.value,
                "status": a.status,
                "count": a.count,
                "principal": p.get("upn") or p.get("name") or p.get("id") or "",
                "title": a.title,
                "alert_id": a.id,
            }
        )
    df = _frame(rows, ALERTS)
    return df.sort_values(["first_seen", "detector", "alert_id"], kind="stable").reset_index(drop=True)


# The activation's own records (request, approval, completion, deactivation, end): not "done while elevated".
_LIFECYCLE = (
    ACTIVATION_REQUEST_ACTIVITIES | ACTIVATION_END | {a for a in PIM_ACTIVITIES if "(PIM deactivate)" in a}
)


def _elevated(
    activations: pd.DataFrame, audit: Sequence[Rec], period: Period
) -> tuple[pd.DataFrame, pd.DataFrame]:
    by_actor: dict[str, list[Rec]] = defaultdict(list)
    for r in audit:
        if r.service == "PIM" and r.activity in _LIFECYCLE:
            continue  # the activation's own records
        for k in {(r.actor.id or "").lower(), (r.actor.upn or "").lower()} - {""}:
            by_actor[k].append(r)
    rows: list[dict[str, Any]] = []
    summary: list[dict[str, Any]] = []
    for a in activations.itertuples(index=False):
        start = datetime.fromisoformat(a.activated_at.replace("Z", "+00:00"))
        if a.ended_at:
            end, basis = datetime.fromisoformat(a.ended_at.replace("Z", "+00:00")), "ended"
        else:
            end, basis = period.end, "period"
        done: dict[str, Rec] = {}
        for k in {str(a.principal_id).lower(), str(a.principal).lower()} - {""}:
            got = by_actor.get(k, [])
            i = bisect_left([x.time for x in got], start)
            for r in got[i:]:
                if r.time > end:
                    break
                done[r.id] = r
        for r in sorted(done.values(), key=Rec.order):
            rows.append(
                {
                    "activated_at": a.activated_at,
                    "principal": a.principal,
                    "role": a.role,
                    "request_id": a.request_id,
                    "window_end": _t(end),
                    "window_basis": basis,
                    "time": _t(r.time),
                    "activity": r.activity,
                    "service": r.service or "",
                    "result": r.result or "",
                    "target": _who(r.subject),
                    "target_role": r.role_name or "",
                    "record_id": r.id,
                }
            )
        actions = Counter(r.activity for r in done.values())
        summary.append(
            {
                "activated_at": a.activated_at,
                "principal": a.principal,
                "role": a.role,
                "window": f"{a.activated_at[11:16]}–{_t(end)[11:16]} ({basis})",
                "actions": len(done),
                "what": "; ".join(
                    f"{n}× {act}" for act, n in sorted(actions.items(), key=lambda x: (-x[1], x[0]))
                ),
            }
        )
    return _frame(rows, ELEVATED), pd.DataFrame(
        summary, columns=["activated_at", "principal", "role", "window", "actions", "what"]
    )


def _access_review(everything: Sequence[Rec], period: Period, config: Config) -> pd.DataFrame:
    """Eligible assignments (assignment records up to the period's end, removals applied) and
    standing active ones, plus every (principal, role, scope) seen activating: eligibility is
    evidenced by the activation itself. Graph's eligibility list is not read yet."""
    held: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in everything:
        if r.time >= period.end or r.kind != "audit":
            continue
        try:
            a = read_assignment(_as_event(r), PIM_INITIATORS, removals=True)
        except Exception:
            continue
        if a is None:
            continue
        key = (_who(r.subject).lower(), (r.role_id or r.role_name or "").lower(), _scope(r).lower())
        if not a.added:
            held.pop(key, None)
            continue
        if not a.eligible and not a.permanent:
            continue  # a time-bound active assignment ends by itself
        held[key] = {
            "principal": _who(r.subject),
            "principal_id": r.subject.id or "",
            "role": r.role_name or r.role_id or "",
            "role_id": r.role_id or "",
            "scope": _scope(r),
            "assignment": "eligible" if a.eligible else "active (permanent)",
            "assigned_at": _t(r.time),
            "evidence": f"assignment record ({'via PIM' if a.via_pim else 'outside PIM'})",
            "break_glass": config.settings.is_break_glass(r.subject),
        }
    # Every activation in the input up to the period's end is evidence of eligibility; those in the
    # period are counted, the last one (even before the period) is shown.
    earlier = [
        r
        for r in everything
        if r.activity == ACTIVATION_COMPLETED and r.result in (None, "success") and r.time < period.end
    ]
    acts = pd.DataFrame(
        {
            "principal": [_who(r.subject) for r in earlier],
            "principal_id": [r.subject.id or "" for r in earlier],
            "role": [r.role_name or r.role_id or "" for r in earlier],
            "role_id": [r.role_id or "" for r in earlier],
            "scope": [_scope(r) for r in earlier],
            "activated_at": [_t(r.time) for r in earlier],
            "in_period": [r.time >= period.start for r in earlier],
        }
    )
    grouped = acts.groupby(["principal", "role_id", "scope"], sort=True, dropna=False).agg(
        activations=("in_period", "sum"),
        last_activation=("activated_at", "max"),
        principal_id=("principal_id", "first"),
        role=("role", "first"),
    )
    counts: dict[tuple[str, str, str], tuple[int, str]] = {}
    for (principal, role_id, scope), row in grouped.iterrows():
        key = (str(principal).lower(), str(role_id).lower(), str(scope).lower())
        counts[key] = (int(row["activations"]), str(row["last_activation"]))
        if key not in held:
            held[key] = {
                "principal": principal,
                "principal_id": row["principal_id"],
                "role": row["role"],
                "role_id": role_id,
                "scope": scope,
                "assignment": "eligible",
                "assigned_at": "",
                "evidence": "activation",
            }
    rows: list[dict[str, Any]] = []
    for key in sorted(held):
        row = dict(held[key])
        n, last = counts.get(key, (0, ""))
        row["activations"] = n
        row["last_activation"] = last
        if row.pop("break_glass", False):
            rec, why = "keep", "emergency-access account (configured): standing access by design"
        elif row["assignment"] != "eligible":
            rec, why = "review", "standing access: make it eligible, or record why it must stay active"
        elif n:
            rec, why = "keep", "activated in the period"
        elif last and row["evidence"] == "activation":
            rec, why = "remove", f"not activated in the period; last activation {last[:16].replace('T', ' ')}"
        else:
            assigned = (
                datetime.fromisoformat(row["assigned_at"].replace("Z", "+00:00"))
                if row["assigned_at"]
                else None
            )
            if assigned is not None and period.end - assigned < timedelta(days=REVIEW_GRACE_DAYS):
                rec, why = (
                    "review",
                    f"assigned less than {REVIEW_GRACE_DAYS} days before the period's end, not activated yet",
                )
            else:
                days = (period.end - period.start).total_seconds() / 86400
                rec, why = "remove", f"not activated in the period ({days:g} days)"
        row["recommendation"] = rec
        row["reason"] = why
        row["decision"] = ""
        row["reviewer"] = ""
        rows.append(row)
    return _frame(rows, ACCESS_REVIEW)


def _coverage(c: Collected, period: Period) -> tuple[pd.DataFrame, list[str]]:
    hours = period.hours()
    wanted = set(hours)
    present: dict[str, set[str]] = defaultdict(set)
    counts: Counter[str] = Counter()
    for (category, hour), n in c.hours.items():
        if hour in wanted:
            present[category].add(hour)
            counts[category] += n
    sources = sorted(set(present) | {"AuditLogs", "SignInLogs"})
    rows: list[dict[str, Any]] = []
    gaps: list[str] = []
    for s in sources:
        have = present.get(s, set())
        missing = [h for h in hours if h not in have]
        runs = _runs(missing, hours)
        rows.append(
            {
                "source": s,
                "records": counts[s],
                "hours_present": len(have),
                "hours_in_period": len(hours),
                "coverage": f"{100 * len(have) / len(hours):.1f}%" if hours else "",
                "gaps": "; ".join(runs) if runs else "none",
            }
        )
        gaps += [f"{s}: {r}" for r in runs]
    return pd.DataFrame(
        rows, columns=["source", "records", "hours_present", "hours_in_period", "coverage", "gaps"]
    ), gaps


def _runs(missing: list[str], hours: list[str]) -> list[str]:
    """Consecutive missing hours as 'YYYY-MM-DD HH:00–HH:00 UTC (N h)'."""
    index = {h: i for i, h in enumerate(hours)}
    out: list[str] = []
    run: list[str] = []
    for h in missing:
        if run and index[h] != index[run[-1]] + 1:
            out.append(_run(run))
            run = []
        run.append(h)
    if run:
        out.append(_run(run))
    return out


def _run(run: list[str]) -> str:
    first = datetime.fromisoformat(run[0] + ":00:00+00:00")
    last = datetime.fromisoformat(run[-1] + ":00:00+00:00") + timedelta(hours=1)
    return f"{first:%Y-%m-%d %H:%M}–{last:%Y-%m-%d %H:%M} UTC ({len(run)} h)"


def _audit_export(audit: Sequence[Rec]) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    extra: set[str] = set()
    for r in audit:
        if r.audit_category != "RoleManagement":
            continue
        row: dict[str, Any] = {
            "time": _t(r.time),
            "record_id": r.id,
            "activity": r.activity,
            "service": r.service or "",
            "operation_type": r.operation_type or "",
            "result": r.result or "",
            "result_reason": r.result_reason or "",
            "actor": _who(r.actor),
            "actor_id": r.actor.id or "",
            "actor_ip": r.actor.ip or "",
            "principal": _who(r.subject),
            "principal_id": r.subject.id or "",
            "role": r.role_name or "",
            "role_id": r.role_id or "",
            "scope_type": r.scope_type or "",
            "scope": _scope(r),
            "request_id": r.request_id or "",
            "correlation_id": r.correlation_id or "",
            "justification": r.justification or "",
            "ticket": r.ticket or "",
            "start": _t(r.start),
            "expiration": _t(r.end),
        }
        for k, v in r.flat:
            row[k] = v
            extra.add(k)
        rows.append(row)
    return pd.DataFrame(rows, columns=[*AUDIT_BASE, *sorted(extra)])


def _justification(activations: pd.DataFrame) -> tuple[dict[str, Any], pd.DataFrame]:
    text = activations["justification"].fillna("").map(lambda s: " ".join(str(s).split()).casefold())
    nonempty = text[text != ""]
    uses = nonempty.value_counts()
    repeated_texts = set(uses[uses > 1].index)
    repeated = (
        activations.assign(norm=text)[text.isin(repeated_texts)]
        .groupby("norm", sort=True)
        .agg(
            justification=("justification", "first"),
            uses=("activated_at", "size"),
            principals=("principal", lambda s: ", ".join(sorted(set(s)))),
        )
        .reset_index(drop=True)
        .sort_values(["uses", "justification"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )
    figures = {
        "activations": len(activations),
        "empty": int((text == "").sum()),
        "repeated": int(text.isin(repeated_texts).sum()),
        "with_ticket": int((activations["ticket"].fillna("") != "").sum()),
    }
    return figures, repeated


def _latency(approvals: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    decided = approvals[approvals["latency_minutes"].notna()]

    def agg(by: str) -> pd.DataFrame:
        if decided.empty:
            return pd.DataFrame(
                columns=[by, "decisions", "approved", "denied", "median_minutes", "max_minutes"]
            )
        g = decided.groupby(by, sort=True)
        out = pd.DataFrame(
            {
                "decisions": g.size(),
                "approved": g["outcome"].agg(lambda s: int((s == "approved").sum())),
                "denied": g["outcome"].agg(lambda s: int((s == "denied").sum())),
                "median_minutes": g["latency_minutes"].median().round(1),
                "max_minutes": g["latency_minutes"].max().round(1),
            }
        ).reset_index()
        return out

    return agg("approver"), agg("role")


def _summary(
    c: Collected, period: Period, t: Mapping[str, pd.DataFrame], coverage: pd.DataFrame, jq: Mapping[str, Any]
) -> dict[str, Any]:
    acts, appr, alerts = t["activations"], t["approvals"], t["alerts"]
    sev = Counter(alerts["severity"])
    return {
        "period": period.label(),
        "files": len(c.files),
        "records": c.stats.total_records,
        "quarantined": c.quarantined,
        "activations": len(acts),
        "principals": int(acts["principal"].nunique()),
        "roles": int(acts["role"].nunique()),
        "approvals_requested": len(appr),
        "approved": int((appr["outcome"] == "approved").sum()),
        "denied": int((appr["outcome"] == "denied").sum()),
        "expired": int((appr["outcome"] == "expired").sum()),
        "pending": int((appr["outcome"] == "pending").sum()),
        "off_hours": int((acts["off_hours"] == "true").sum()),
        "mfa_unknown": int((acts["mfa"] == "unknown").sum()),
        "duration_unknown": int(acts["used_minutes"].isna().sum()),
        "breakglass_events": len(t["breakglass"]),
        "assignment_changes": len(t["assignments"]),
        "outside_pim": int((t["assignments"]["via"] == "outside PIM").sum()),
        "alerts": len(alerts),
        "alerts_by_severity": {s.value: sev.get(s.value, 0) for s in reversed(Severity)},
        "review_remove": int((t["access_review"]["recommendation"] == "remove").sum()),
        "review_rows": len(t["access_review"]),
        "justification": dict(jq),
    }


def _n(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _findings(
    t: Mapping[str, pd.DataFrame],
    drills: pd.DataFrame,
    jq: Mapping[str, Any],
    gaps: list[str],
    s: Mapping[str, Any],
) -> list[str]:
    out: list[str] = []
    sev = s["alerts_by_severity"]
    if sev.get("critical") or sev.get("high"):
        out.append(f"{sev.get('critical', 0)} critical and {sev.get('high', 0)} high alerts.")
    if s["breakglass_events"]:
        out.append(
            f"{s['breakglass_events']} break-glass sign-ins or actions: "
            "each must match a drill or an emergency."
        )
    for d in drills.itertuples(index=False):
        if d.status != "within policy":
            out.append(
                f"Break-glass account {d.account}: {d.status} (policy: a drill every {DRILL_DAYS} days)."
            )
    if s["off_hours"]:
        out.append(f"{_n(s['off_hours'], 'activation')} outside business hours.")
    if s["outside_pim"]:
        out.append(f"{s['outside_pim']} assignment changes made outside PIM.")
    perm = t["assignments"]
    n_perm = int(
        (
            (perm["duration"] == "permanent") & (perm["change"] == "added") & (perm["assignment"] == "active")
        ).sum()
    )
    if n_perm:
        out.append(f"{n_perm} permanent active assignments added.")
    if s["denied"] or s["expired"]:
        out.append(f"{s['denied']} activation requests denied, {s['expired']} expired without a decision.")
    if jq["empty"] or jq["repeated"]:
        out.append(f"Justifications: {jq['empty']} empty, {jq['repeated']} repeated verbatim.")
    if s["mfa_unknown"]:
        out.append(
            f"{s['mfa_unknown']} activations without MFA evidence on their records (unknown, not 'no')."
        )
    if s["review_remove"]:
        out.append(
            f"Access review: {s['review_remove']} eligible assignments not used in the period (remove?)."
        )
    if gaps:
        out.append(f"Coverage gaps: {len(gaps)} (see the coverage statement).")
    return out
