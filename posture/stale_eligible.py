"""P16 by activation history (not sign-ins): eligible for a privileged role for more than ``days`` and
never activated it in the last ``days``. History: Graph's ``roleAssignmentScheduleRequests`` with
``action eq 'selfActivate'``. PIM's RedundantAssignmentAlert and Maester MT.1030 are the anchors."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Snapshot, kind, label, who

DONE = {"Provisioned", "Granted", "Revoked", "Canceled", "ScheduleCreated"}  # an activation happened


class Params(Base):
    days: int = Field(90, ge=1)


CHECK = Check(
    id="posture.stale_eligible",
    title="Eligible for a privileged role and never activated it",
    severity=Severity.LOW,
    sources=("role_definitions", "eligibility_instances", "activations"),
    anchors=("P16", "PIM RedundantAssignmentAlert", "Maester MT.1030"),
    runbook=(
        "Remove the eligible assignment (or ask an access review): a role nobody uses is only attack surface."
    ),
    params=Params,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    since = ctx.now - timedelta(days=params.days)
    used: set[tuple[str, str]] = set()
    for r in snap.activations:
        at = parse_time(r.get("createdDateTime"))
        if at is not None and at >= since and str(r.get("status") or "Provisioned") in DONE:
            used.add((str(r.get("principalId") or "").lower(), str(r.get("roleDefinitionId") or "").lower()))
    out: dict[str, Finding] = {}
    for row in snap.eligibility_instances:
        rid = str(row.get("roleDefinitionId") or "")
        p = row.get("principal") or {"id": row.get("principalId")}
        pid = str(p.get("id") or row.get("principalId") or "").lower()
        start = parse_time(row.get("startDateTime"))
        if (
            not snap.is_privileged(rid)
            or kind(p) not in ("user", "unknown")
            or start is None
            or start > since
        ):
            continue
        if (pid, rid.lower()) in used:
            continue
        key = f"{rid.lower()}/{pid}"
        out[key] = Finding(
            key=key,
            title=(
                f"{label(p)} is eligible for {snap.role_name(rid)} and has not activated it in "
                f"{params.days} days"
            ),
            evidence={
                "role": snap.role_name(rid),
                "role_id": rid,
                "eligible_since": iso(start),
                "days": params.days,
            },
            principal=who(p),
        )
    return list(out.values())
