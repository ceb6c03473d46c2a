"""P22: privileged roles held by a guest, or by a service principal with client secrets (a password
that leaks is the role). Maester MT.1025 (guests), MT.1027 (service principals with secrets)."""

from __future__ import annotations

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Snapshot, label, who

CHECK = Check(
    id="posture.privileged_principals",
    title="Privileged role held by a guest or by a service principal with a secret",
    severity=Severity.HIGH,
    sources=(
        "role_definitions",
        "assignment_instances",
        "eligibility_instances",
        "group_members",
        "group_eligibility",
        "users",
        "service_principals",
    ),
    anchors=("P22", "Maester MT.1025", "Maester MT.1027"),
    runbook=(
        "Guests: give the role to a member account of this tenant. Service principals: replace the client "
        "secret with a certificate or a managed identity (or federated credentials), and narrow the role."
    ),
    params=Params,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    roles = snap.privileged_roles_held()
    out = []
    for uid, user in sorted(snap.users.items()):
        if uid in roles and str(user.get("userType") or "") == "Guest":
            out.append(
                Finding(
                    key=f"guest/{uid}",
                    title=f"Guest {label(user)} holds {', '.join(sorted(roles[uid]))}",
                    evidence={"kind": "guest", "roles": sorted(roles[uid])},
                    principal=who(user),
                )
            )
    for sid, sp in sorted(snap.service_principals.items()):
        secrets = [c for c in sp.get("passwordCredentials") or [] if isinstance(c, dict)]
        if sid in roles and secrets:
            out.append(
                Finding(
                    key=f"secret/{sid}",
                    title=(
                        f"Service principal {label(sp)} holds {', '.join(sorted(roles[sid]))} and has "
                        f"{len(secrets)} client secret(s)"
                    ),
                    evidence={
                        "kind": "service_principal_secret",
                        "roles": sorted(roles[sid]),
                        "secrets": [
                            {"keyId": c.get("keyId"), "endDateTime": c.get("endDateTime")} for c in secrets
                        ],
                    },
                    principal=who(sp),
                )
            )
    return out
