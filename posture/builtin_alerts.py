"""P15, P17, P18: PIM's own security alerts (Graph beta) — one firing (stale accounts, redundant or
too frequent activations, roles without MFA ...) or one switched off (``alertConfigurations
.isEnabled: false``, which an attacker does before acting). Maester MT.1029-1032 read the same API."""

from __future__ import annotations

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Json, Snapshot

CHECK = Check(
    id="posture.builtin_alerts",
    title="A PIM built-in alert is firing or disabled",
    severity=Severity.MEDIUM,
    sources=("pim_alerts",),
    anchors=(
        "P15",
        "P16",
        "P17",
        "P18",
        "PIM security alerts (beta roleManagementAlerts)",
        "Maester MT.1029-1032",
    ),
    runbook=(
        "Open PIM > Microsoft Entra roles > Alerts: resolve what the alert lists (its incidents), and "
        "switch a disabled alert back on (Settings). Graph beta: the shape may change."
    ),
    params=Params,
)


def name(row: Json) -> str:
    definition = str(row.get("alertDefinitionId") or row.get("id") or "")
    return definition.rsplit("_", 1)[-1]


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    out = []
    for a in snap.pim_alerts:
        if a.get("isActive") is True and int(a.get("incidentCount") or 0) > 0:
            out.append(
                Finding(
                    key=f"firing/{name(a)}",
                    title=f"PIM alert {name(a)} is firing ({a.get('incidentCount')} incidents)",
                    evidence={
                        "alert": name(a),
                        "id": a.get("id"),
                        "incidentCount": a.get("incidentCount"),
                        "lastScannedDateTime": a.get("lastScannedDateTime"),
                    },
                )
            )
    for c in snap.pim_alert_configs:
        if c.get("isEnabled") is False:
            out.append(
                Finding(
                    key=f"disabled/{name(c)}",
                    title=f"PIM alert {name(c)} is disabled",
                    evidence={"alert": name(c), "id": c.get("id"), "isEnabled": False},
                    severity=Severity.HIGH,
                )
            )
    return out
