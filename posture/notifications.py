"""P7–P9: notifications on privileged roles' assignments and activations. The anchors disagree
(graph-and-report.md §0.2), both verdicts are in the evidence and ``definition`` picks which fires:

* ``scubagear`` (CISA 7.7–7.9, Maester): ``notificationRecipients`` must not be empty (and the type
  Email) — someone beyond the default recipients is told;
* ``zta`` (ZTA 21818–21820): recipients, **or** ``isDefaultRecipientsEnabled``.

Rules: ``Notification_Admin_Admin_Eligibility`` and ``Notification_Admin_Admin_Assignment`` (P7, an
eligible or active assignment), ``Notification_Admin_EndUser_Assignment`` (P8 for Global
Administrator, P9 for the other privileged roles: an activation)."""

from __future__ import annotations

from typing import Literal

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params as Base
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Json, Snapshot

RULES = {
    "Notification_Admin_Admin_Eligibility": "P7",
    "Notification_Admin_Admin_Assignment": "P7",
    "Notification_Admin_EndUser_Assignment": "P8/P9",
}


class Params(Base):
    definition: Literal["scubagear", "zta"] = "scubagear"


CHECK = Check(
    id="posture.notifications",
    title="Nobody is told about a privileged role's assignment or activation",
    severity=Severity.MEDIUM,
    sources=("role_definitions", "role_policies"),
    anchors=("P7", "P8", "P9", "CISA MS.AAD.7.7-7.9", "Maester CISA.MS.AAD.7.7-7.9", "ZTA 21818-21820"),
    runbook=(
        "In PIM > the role > Settings > Notification, add the security team's mailbox as additional "
        "recipient of 'Role assignment alert' (eligible and active) and 'Notification to activate'."
    ),
    params=Params,
)


def verdicts(rule: Json | None) -> dict[str, bool]:
    rule = rule or {}
    recipients = [r for r in rule.get("notificationRecipients") or [] if r]
    email = str(rule.get("notificationType") or "Email") == "Email"
    return {
        "scubagear": bool(recipients) and email,
        "zta": bool(recipients) or rule.get("isDefaultRecipientsEnabled") is True,
    }


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    out = []
    for pa in snap.role_policies:
        rid = str(pa.get("roleDefinitionId") or "")
        if not snap.is_privileged(rid):
            continue
        rules = {
            str(r.get("id")): r for r in (pa.get("policy") or {}).get("rules") or [] if isinstance(r, dict)
        }
        role = snap.role_name(rid)
        for rule_id, anchor in RULES.items():
            v = verdicts(rules.get(rule_id))
            if v[params.definition]:
                continue
            rule = rules.get(rule_id) or {}
            out.append(
                Finding(
                    key=f"{rid.lower()}/{rule_id}",
                    title=f"{role}: {rule_id} notifies nobody beyond the defaults ({params.definition})",
                    evidence={
                        "role": role,
                        "role_id": rid,
                        "rule": rule_id,
                        "anchor": anchor,
                        "definition": params.definition,
                        "verdicts": v,
                        "isDefaultRecipientsEnabled": rule.get("isDefaultRecipientsEnabled"),
                        "notificationRecipients": rule.get("notificationRecipients"),
                    },
                )
            )
    return out
