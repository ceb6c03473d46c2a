"""P1: how many users hold Global Administrator: eligible, active, and through groups (members and
PIM-eligible members), each user once. CISA MS.AAD.7.1 / Maester: 2 to 8; CIS 1.1.3: 2 to 4."""

from __future__ import annotations

from pydantic import Field

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import GLOBAL_ADMIN, Snapshot, label


class Params(Base):
    min: int = Field(2, ge=0)
    max: int = Field(8, ge=1)


CHECK = Check(
    id="posture.global_admin_count",
    title="Global Administrator count outside the allowed range",
    severity=Severity.HIGH,
    sources=(
        "role_definitions",
        "assignment_instances",
        "eligibility_instances",
        "group_members",
        "group_eligibility",
    ),
    anchors=(
        "P1",
        "CISA MS.AAD.7.1",
        "Maester CISA.MS.AAD.7.1",
        "ZTA 21812",
        "CIS M365 1.1.3",
        "PIM TooManyGlobalAdmins",
    ),
    runbook=(
        "Count who holds Global Administrator (Entra ID > Roles > Global Administrator: eligible, active, "
        "and members of role-assignable groups). Keep 2 to 8 (fewer is a lock-out risk, more a larger "
        "attack surface); move day-to-day work to least-privileged roles."
    ),
    params=Params,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    users = snap.users_holding({GLOBAL_ADMIN})
    n = len(users)
    if params.min <= n <= params.max:
        return []
    side = "too_few" if n < params.min else "too_many"
    return [
        Finding(
            key=side,
            title=f"{n} users hold Global Administrator (allowed {params.min} to {params.max})",
            evidence={
                "count": n,
                "min": params.min,
                "max": params.max,
                "users": sorted(label(u) for u in users.values()),
            },
        )
    ]
