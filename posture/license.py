"""P24: the tenant has no Entra ID P2 (nor ID Governance): PIM's data cannot be read, so every check
that needs it is skipped (and says so). PIM's InvalidLicenseAlert; Maester, ScubaGear and ZTA skip
their PIM tests below P2."""

from __future__ import annotations

from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import Params
from pimwatch.graph.posture import Check, Context, Finding
from pimwatch.graph.snapshot import Snapshot
from pimwatch.graph.sources import has_p2

CHECK = Check(
    id="posture.license",
    title="No Entra ID P2: PIM posture checks cannot run",
    severity=Severity.HIGH,
    sources=("subscribed_skus",),
    anchors=(
        "P24",
        "PIM InvalidLicenseAlert",
        "ScubaGear 7.4-7.9 (Aad2P2Licenses)",
        "Maester NotLicensedEntraIDP2",
    ),
    runbook=(
        "PIM needs Microsoft Entra ID P2 or Entra ID Governance. Without it, eligible assignments, "
        "activation settings and PIM alerts do not exist: pimwatch's PIM posture checks are skipped."
    ),
    params=Params,
    needs_p2=False,
)


def run(snap: Snapshot, params: Params, ctx: Context) -> list[Finding]:
    if has_p2(snap.subscribed_skus):
        return []
    skus = sorted(str(s.get("skuPartNumber")) for s in snap.subscribed_skus)
    return [
        Finding(
            key="no_p2",
            title="The tenant has no Entra ID P2 or ID Governance subscription: PIM checks cannot run",
            evidence={"skus": skus},
        )
    ]
