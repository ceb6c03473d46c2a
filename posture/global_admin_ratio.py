"""P2: Global Administrators per user of the other seven CISA highly privileged roles (at most 1):
CISA MS.AAD.7.2, Maester, ZTA 21813, Secure Score "Use least privileged administrative roles"."""

from __future__ import annotations

from pydantic import Field

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import CISA_PRIVILEGED, GLOBAL_ADMIN, Snapshot


class Params(Base):
    max_ratio: float = Field(1.0, gt=0)


CHECK = Check(
    id="posture.global_admin_ratio",
    title="More Global Administrators than other privileged administrators",
    severity=Severity.MEDIUM,
    sources=(
        "role_definitions",
        "assignment_instances",
        "eligibility_instances",
        "group_members",
        "group_eligibility",
    ),
    anchors=("P2", "CISA MS.AAD.7.2", "Maester CISA.MS.AAD.7.2", "ZTA 21813"),
    runbook=(
        "Most administrators need a narrower role than Global Administrator: move them to the role that "
        "covers their work (User, Exchange, SharePoint, Application Administrator ...)."
    ),
    params=Params,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    ga = snap.users_holding({GLOBAL_ADMIN})
    others = snap.users_holding(set(CISA_PRIVILEGED) - {GLOBAL_ADMIN})
    n_ga, n_other = len(ga), len(set(others) - set(ga))
    ratio = n_ga / n_other if n_other else (float("inf") if n_ga else 0.0)
    if ratio <= params.max_ratio:
        return []
    shown = round(ratio, 2) if n_other else None
    return [
        Finding(
            key="ratio",
            title=f"{n_ga} Global Administrators for {n_other} other privileged administrators",
            evidence={
                "global_admins": n_ga,
                "other_privileged": n_other,
                "ratio": shown,
                "max_ratio": params.max_ratio,
            },
        )
    ]
