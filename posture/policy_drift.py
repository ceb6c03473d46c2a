"""P6, P10–P14 (and P19 for PIM groups): every rule of every baselined role's policy, and of the
``member`` policy of every PIM group that holds a baselined role (or is named in a tier), against the
baseline file (``posture.baseline``; default: the guide's tiers, pimwatch/graph/baseline.py). One
finding per (role or group, rule, field): expected and actual. No anchor checks the whole list; CISA
7.6 / ZTA 21817 check GA approval, PIM's NoMfaOnRoleActivationAlert MFA, EasyPIM drift the rest."""

from __future__ import annotations

from typing import Any

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.graph.baseline import Tier, compare
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Json, Snapshot


class Params(Base):
    groups: bool = True  # also the PIM groups that hold a baselined role


CHECK = Check(
    id="posture.policy_drift",
    title="PIM setting differs from the baseline",
    severity=Severity.MEDIUM,
    sources=(
        "role_definitions",
        "role_policies",
        "assignment_instances",
        "eligibility_instances",
        "group_policies",
    ),
    anchors=(
        "P6",
        "P10",
        "P11",
        "P12",
        "P13",
        "P14",
        "P19",
        "CISA MS.AAD.7.6",
        "ZTA 21817",
        "EasyPIM Test-PIMPolicyDrift",
    ),
    runbook=(
        "Open the role (or group) in PIM > Settings and set the rule back to the baseline, or change the "
        "baseline file if the difference is intended. Find who changed it: the 'Update role setting in "
        "PIM' audit record (pimwatch's settings.changed detector)."
    ),
    params=Params,
)


def rules_of(policy_assignment: Json) -> dict[str, Json]:
    rules = (policy_assignment.get("policy") or {}).get("rules") or []
    return {str(r.get("id")): r for r in rules if isinstance(r, dict)}


def _mfa_by_context(rules: dict[str, Json]) -> bool:
    ctx = rules.get("AuthenticationContext_EndUser_Assignment") or {}
    return ctx.get("isEnabled") is True and bool(ctx.get("claimValue"))


def drift(scope: str, target_id: str, name: str, tier: Tier, rules: dict[str, Json]) -> list[Finding]:
    out = []
    for rule_id, expected in sorted(tier.rules.items()):
        actual = rules.get(rule_id)
        for field, want, got in compare(rule_id, expected, actual):
            if (
                rule_id == "Enablement_EndUser_Assignment"
                and field == "enabledRules"
                and _mfa_by_context(rules)
                and set(want) - {str(x) for x in got or []} == {"MultiFactorAuthentication"}
            ):
                continue  # MFA through an authentication context meets it (graph-and-report.md §1.4)
            shown: Any = got if actual is not None else "(rule missing)"
            out.append(
                Finding(
                    key=f"{scope}/{target_id.lower()}/{rule_id}/{field}",
                    title=f"{name}: {rule_id}.{field} is {shown!r}, baseline {want!r} (tier {tier.name})",
                    evidence={
                        "scope": scope,
                        "target": name,
                        "target_id": target_id,
                        "rule": rule_id,
                        "field": field,
                        "expected": want,
                        "actual": got,
                        "tier": tier.name,
                    },
                )
            )
    return out


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    out: list[Finding] = []
    tiers: dict[str, Tier] = {}  # role id -> tier
    for pa in snap.role_policies:
        rid = str(pa.get("roleDefinitionId") or "")
        tier = snap.baseline.tier_of_role(rid, snap.role_name(rid))
        if tier is None:
            continue
        tiers[rid.lower()] = tier
        out += drift("role", rid, snap.role_name(rid), tier, rules_of(pa))
    if params.groups:
        group_tier: dict[str, Tier] = {}
        names: dict[str, str] = {}
        for row in (*snap.eligibility_instances, *snap.assignment_instances):
            p = row.get("principal") or {}
            t = tiers.get(str(row.get("roleDefinitionId") or "").lower())
            gid = str(p.get("id") or "").lower()
            if p.get("displayName"):
                names[gid] = str(p["displayName"])
            if (
                t is not None
                and gid in snap.group_policies
                and (gid not in group_tier or t.rank < group_tier[gid].rank)
            ):
                group_tier[gid] = t
        for gid, pas in sorted(snap.group_policies.items()):
            tier = snap.baseline.tier_of_group(gid) or group_tier.get(gid)
            if tier is None:
                continue
            for pa in pas:
                if str(pa.get("roleDefinitionId") or "") == "member":
                    out += drift("group", gid, f"group {names.get(gid, gid)}", tier, rules_of(pa))
    return out
