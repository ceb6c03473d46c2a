"""P4: a permanent active assignment to a privileged role (no expiration), except the break-glass
accounts (``break_glass.accounts``) and the ``allow`` list. CISA MS.AAD.7.4 (ScubaGear: instance
``endDateTime`` null; Maester: schedule ``expiration.type == noExpiration``), ZTA 21815."""

from __future__ import annotations

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Json, Snapshot, kind, label, who


class Params(Base):
    allow: list[str] = []  # object ids or UPNs also allowed a standing assignment (service accounts)


CHECK = Check(
    id="posture.permanent_assignment",
    title="Permanent assignment to a privileged role",
    severity=Severity.HIGH,
    sources=("role_definitions", "assignment_schedules"),
    anchors=("P4", "CISA MS.AAD.7.4", "Maester CISA.MS.AAD.7.4", "ScubaGear 7.4", "ZTA 21815"),
    runbook=(
        "Make the assignment eligible (or time-bound) in PIM, or, for a break-glass account, list it in "
        "break_glass.accounts. Standing privileged access is what an attacker who takes the account gets."
    ),
    params=Params,
)


def permanent(row: Json) -> bool:
    info = row.get("scheduleInfo") or {}
    expiration = info.get("expiration") or {}
    return expiration.get("type") == "noExpiration" or not (
        expiration.get("endDateTime") or row.get("endDateTime")
    )


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    allowed = {a.lower() for a in params.allow}
    out: dict[str, Finding] = {}
    for row in snap.assignment_schedules:
        rid = str(row.get("roleDefinitionId") or "")
        if str(row.get("assignmentType") or "Assigned") != "Assigned" or not snap.is_privileged(rid):
            continue
        p = row.get("principal") or {"id": row.get("principalId")}
        pid = str(p.get("id") or row.get("principalId") or "")
        if not permanent(row) or snap.is_break_glass(p):
            continue
        if pid.lower() in allowed or str(p.get("userPrincipalName") or "").lower() in allowed:
            continue
        role = snap.role_name(rid)
        key = f"{rid.lower()}/{pid.lower()}"
        out[key] = Finding(
            key=key,
            title=f"{label(p)} holds {role} permanently",
            evidence={
                "role": role,
                "role_id": rid,
                "principal_type": kind(p),
                "schedule_id": row.get("id"),
                "expiration": (row.get("scheduleInfo") or {}).get("expiration"),
                "member_type": row.get("memberType"),
            },
            principal=who(p),
        )
    return list(out.values())
