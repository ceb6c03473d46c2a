"""P3: a user holding a privileged role is synchronised from on-premises AD (``onPremisesSyncEnabled``
or ``onPremisesImmutableId``): a compromise of AD becomes a compromise of the cloud. CISA MS.AAD.7.3
(ScubaGear: all 8 roles; Maester: GA), ZTA 21814, Maester MT.1026."""

from __future__ import annotations

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Snapshot, label, who

CHECK = Check(
    id="posture.privileged_hybrid",
    title="Privileged account synchronised from on-premises",
    severity=Severity.HIGH,
    sources=(
        "role_definitions",
        "assignment_instances",
        "eligibility_instances",
        "group_members",
        "group_eligibility",
        "users",
    ),
    anchors=("P3", "CISA MS.AAD.7.3", "ScubaGear 7.3", "Maester MT.1026", "ZTA 21814"),
    runbook=(
        "Give the administrator a cloud-only account for the role; keep the synchronised one for daily work."
    ),
    params=Params,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    roles = snap.privileged_roles_held()
    out = []
    for uid, user in sorted(snap.users.items()):
        if uid not in roles:
            continue
        if user.get("onPremisesSyncEnabled") is True or user.get("onPremisesImmutableId"):
            out.append(
                Finding(
                    key=uid,
                    title=(
                        f"{label(user)} holds {', '.join(sorted(roles[uid]))} and is synchronised "
                        "from on-premises"
                    ),
                    evidence={
                        "roles": sorted(roles[uid]),
                        "onPremisesSyncEnabled": user.get("onPremisesSyncEnabled"),
                        "onPremisesImmutableId": bool(user.get("onPremisesImmutableId")),
                    },
                    principal=who(user),
                )
            )
    return out
