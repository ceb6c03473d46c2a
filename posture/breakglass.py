"""P20: the emergency-access (break-glass) accounts of ``break_glass.accounts``, as ZTA 21835 and the
guide define them: ``min_accounts`` to ``max_accounts`` of them (2–3), each a permanent Global
Administrator, cloud-only, with phishing-resistant methods only (FIDO2, certificate), excluded from
every enabled Conditional Access policy; and the drill: each signed in within ``drill_days`` (Graph
``signIns``, newest first; the stream's sign-ins raise breakglass.signin as they happen)."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import GLOBAL_ADMIN, Json, Snapshot, label, who

STRONG = {"fido2AuthenticationMethod", "x509CertificateAuthenticationMethod", "passwordAuthenticationMethod"}


class Params(Base):
    min_accounts: int = Field(2, ge=0)
    max_accounts: int = Field(3, ge=1)
    drill_days: int = Field(30, ge=1)


CHECK = Check(
    id="posture.breakglass",
    title="Break-glass account not as the baseline requires",
    severity=Severity.HIGH,
    sources=("assignment_schedules", "ca_policies", "break_glass", "auth_methods", "signins"),
    anchors=("P20", "ZTA 21835", "Maester MT.1005 / MT.1034", "Microsoft emergency-access guidance"),
    runbook=(
        "Keep 2-3 cloud-only break-glass accounts, each a permanent Global Administrator with FIDO2 or "
        "certificate sign-in only, excluded from every Conditional Access policy, and sign in with each "
        "one as a monthly drill (pimwatch raises breakglass.signin for it: expected during a drill)."
    ),
    params=Params,
    needs_p2=False,
)


def _method(m: Json) -> str:
    return str(m.get("@odata.type") or "").rsplit(".", 1)[-1]


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    found = {a: u for a, u in snap.break_glass.items() if u.get("id")}
    n = len(found)
    if not params.min_accounts <= n <= params.max_accounts:
        out.append(
            Finding(
                key="count",
                title=(
                    f"{n} break-glass accounts found (baseline {params.min_accounts} to "
                    f"{params.max_accounts})"
                ),
                evidence={
                    "configured": sorted(snap.break_glass),
                    "found": sorted(found),
                    "min": params.min_accounts,
                    "max": params.max_accounts,
                },
            )
        )
    standing_ga = set()
    for row in snap.assignment_schedules:
        expiration = (row.get("scheduleInfo") or {}).get("expiration") or {}
        if (
            str(row.get("roleDefinitionId") or "").lower() == GLOBAL_ADMIN
            and str(row.get("assignmentType") or "Assigned") == "Assigned"
            and expiration.get("type") == "noExpiration"
        ):
            standing_ga.add(
                str((row.get("principal") or {}).get("id") or row.get("principalId") or "").lower()
            )
    enabled_ca = [p for p in snap.ca_policies if p.get("state") == "enabled"]
    since = ctx.now - timedelta(days=params.drill_days)
    for account, user in sorted(found.items()):
        uid = str(user["id"]).lower()
        problems: list[tuple[str, str, dict[str, object]]] = []
        if uid not in standing_ga:
            problems.append(("not_permanent_ga", "is not a permanent Global Administrator", {}))
        if user.get("onPremisesSyncEnabled") is True or user.get("onPremisesImmutableId"):
            problems.append(("hybrid", "is synchronised from on-premises", {}))
        methods = sorted({_method(m) for m in snap.auth_methods.get(uid, [])})
        weak = [m for m in methods if m not in STRONG]
        if weak or not {"fido2AuthenticationMethod", "x509CertificateAuthenticationMethod"} & set(methods):
            problems.append(
                (
                    "methods",
                    "has phishable sign-in methods or no FIDO2/certificate",
                    {"methods": methods, "phishable": weak},
                )
            )
        covering = sorted(
            str(p.get("displayName") or p.get("id"))
            for p in enabled_ca
            if uid
            not in {
                str(x).lower()
                for x in ((p.get("conditions") or {}).get("users") or {}).get("excludeUsers") or []
            }
        )
        if covering:
            problems.append(
                (
                    "ca_not_excluded",
                    "is not excluded from enabled Conditional Access policies",
                    {"policies": covering},
                )
            )
        last = max(
            (t for t in (parse_time(s.get("createdDateTime")) for s in snap.signins.get(uid, [])) if t),
            default=None,
        )
        if last is None or last < since:
            problems.append(
                (
                    "drill_overdue",
                    f"has not signed in within {params.drill_days} days (drill overdue)",
                    {"last_sign_in": iso(last) if last else None, "drill_days": params.drill_days},
                )
            )
        for what, text, extra in problems:
            out.append(
                Finding(
                    key=f"{what}/{uid}",
                    title=f"Break-glass account {label(user)} {text}",
                    evidence={"account": account, "problem": what, **extra},
                    principal=who(user),
                )
            )
    return out
