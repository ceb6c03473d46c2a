"""PIM's own security alerts (``Triggered PIM alert``), passed through to the same channel.

PIM scans the tenant periodically and raises alerts such as "Roles are being assigned outside of
Privileged Identity Management" (detections.md D57, §2.1–2.2). When the scan writes a ``Triggered
PIM alert`` audit record (service ``PIM``; categories ``RoleManagement`` and ``ResourceManagement``),
this detector forwards it with the alert's name — the ``displayName`` of the record's ``Other`` or
``Role`` target, as the community pass-through rule reads ``targetResources[0].displayName`` — so the
team sees PIM's findings next to pimwatch's own.

Severity is PIM's own, from :data:`PIM_SEVERITY` (a module constant, because parameters cannot be
mappings): the documented names of §2.1 and §2.2 and their Graph ``alertDefinition`` names (the
target id ends with them, ``DirectoryRole_<tenant>_<Name>``), matched case-insensitively. The
Entra doc and Graph disagree for three alerts; the doc wins (High only for assignments outside
PIM, Medium for stale accounts, Low for the other Entra alerts; Medium for the Azure resource
ones). An alert name not in the table gets the detector's configured severity.

PIM re-raises an open alert at every scan, so repeats of the same alert (and scope: the tenant for
Entra roles, the resource for Azure roles) fold into one alert per UTC day (``suppress_minutes:
1440``). ``Resolve``/``Refresh``/``Enable PIM alert`` are not findings and are not read. Nor is
``Add member to role outside of PIM (permanent)``: it is PIM's per-assignment record of the same
scan, re-emitted every ~2 h (entra-events.md §3.3), and belongs to the outside-PIM detector. Caveat
(§2.1): some tenants never log ``Triggered PIM alert``; polling Graph is the complete route.
"""

from __future__ import annotations

from typing import Any

from pimwatch.detection import (
    Case,
    Detector,
    Event,
    Hit,
    Severity,
    Skip,
    State,
    Window,
    minutes,
)
from pimwatch.detection.records import PIM_SYSTEM, in_every_shape, pim, pim_alert, user

TRIGGERED = "Triggered PIM alert"

# PIM's severity per alert, by documented name and by Graph alertDefinition name (lower-cased).
PIM_SEVERITY: dict[str, Severity] = {
    # Entra roles (§2.1)
    "roles are being assigned outside of privileged identity management": Severity.HIGH,
    "role assigned outside of pim": Severity.HIGH,
    "rolesassignedoutsidepimalert": Severity.HIGH,
    "potential stale accounts in a privileged role": Severity.MEDIUM,
    "stalesigninalert": Severity.MEDIUM,
    "administrators aren't using their privileged roles": Severity.LOW,
    "eligible administrators aren't activating their privileged role": Severity.LOW,
    "redundantassignmentalert": Severity.LOW,
    "roles don't require multifactor authentication for activation": Severity.LOW,
    "roles don't require multi-factor authentication for activation": Severity.LOW,
    "nomfaonroleactivationalert": Severity.LOW,
    "the organization doesn't have microsoft entra id p2 or microsoft entra id governance": Severity.LOW,
    "the organization doesn't have azure ad premium p2": Severity.LOW,
    "invalidlicensealert": Severity.LOW,
    "there are too many global administrators": Severity.LOW,
    "toomanyglobaladminsassignedtotenantalert": Severity.LOW,
    "roles are being activated too frequently": Severity.LOW,
    "sequentialactivationrenewalsalert": Severity.LOW,
    # Azure resource roles (§2.2); "assigned outside of PIM" is High there too (above)
    "too many owners assigned to a resource": Severity.MEDIUM,
    "too many permanent owners assigned to a resource": Severity.MEDIUM,
    "duplicate role created": Severity.MEDIUM,
}

DETECTOR = Detector(
    id="pim.builtin_alert",
    severity=Severity.MEDIUM,
    summary="PIM raised one of its built-in security alerts (passed through with PIM's own severity).",
    runbook=(
        "Open the alert in PIM (Microsoft Entra roles or Azure resources > Alerts), review the affected "
        "assignments or settings, and apply PIM's remediation: remove roles assigned outside PIM, remove "
        "stale or unneeded Global Administrators, require MFA on activation. Do not just dismiss it."
    ),
    anchors=("Microsoft PIM", "community KQL", "Sigma (Graph)", "Maester"),
    mitre=("T1078.004", "T1098.003"),
    tactics=("Persistence", "PrivilegeEscalation"),
    kinds=("audit",),
    activities=frozenset({TRIGGERED}),
    window=Window(suppress=minutes(1440)),
)


def pim_severity(name: str, definition_id: str) -> Severity | None:
    """PIM's severity for an alert, by display name, else by the id's alertDefinition suffix."""
    found = PIM_SEVERITY.get(name.strip().lower())
    if found is None and definition_id:
        found = PIM_SEVERITY.get(definition_id.rsplit("_", 1)[-1].strip().lower())
    return found


def detect(event: Event, state: State) -> Hit | None:
    if event.activity != TRIGGERED or event.service != "PIM":
        return None
    named = event.named_target()
    if named is None:
        raise Skip("Triggered PIM alert without an alert name")
    name, definition_id = named
    severity = pim_severity(name, definition_id)
    scope = event.scope_name or event.scope_id
    title = f"PIM security alert: {name}"
    if event.scope_type == "resource" and scope:
        title += f" (on {scope})"
    context = {
        "alert": name,
        "alert_id": definition_id or None,
        "pim_severity": severity.value if severity else None,
        "scope_type": event.scope_type,
        "scope": scope,
        "audit_category": event.audit_category,
        "result_reason": event.result_reason,
        "details": {k: v for k, v in event.details.items() if k not in ("requestid", "starttime")},
        "correlation_id": event.correlation_id,
    }
    return DETECTOR.alert(
        event,
        key=(name, event.scope_id),
        title=title,
        context=context,
        principal=event.subject,
        severity=severity,
    )


# --- cases -----------------------------------------------------------------------------------

OUTSIDE = "Roles are being assigned outside of Privileged Identity Management"
STALE = "Potential stale accounts in a privileged role"
TOO_MANY_GA = "There are too many global administrators"


def _triggered(at: str, alert: str, definition: str, **kw: Any) -> dict[str, Any]:
    return pim_alert(TRIGGERED, at, PIM_SYSTEM, alert, definition=definition, **kw)


CASES = [
    Case(
        "assignments outside PIM: PIM's High severity",
        [_triggered("2026-03-12T02:00:00Z", OUTSIDE, "RolesAssignedOutsidePimAlert")],
        [
            {
                "severity": "high",
                "count": 1,
                "title": f"PIM security alert: {OUTSIDE}",
                "principal": {"name": "Azure AD PIM"},
                "context": {"alert": OUTSIDE, "pim_severity": "high", "scope_type": "directory"},
            }
        ],
    ),
    Case(
        "stale accounts are Medium; too many Global Administrators is Low (alert name on an Other target)",
        [
            _triggered("2026-03-12T03:00:00Z", STALE, "StaleSignInAlert"),
            _triggered(
                "2026-03-12T03:00:05Z", TOO_MANY_GA, "TooManyGlobalAdminsAssignedToTenantAlert", on="Other"
            ),
        ],
        [
            {"severity": "medium", "title": f"PIM security alert: {STALE}"},
            {"severity": "low", "title": f"PIM security alert: {TOO_MANY_GA}"},
        ],
    ),
    Case(
        "a renamed alert keeps its severity through the Graph definition name",
        [
            _triggered(
                "2026-03-12T04:00:00Z", "Role assigned outside PIM (preview)", "RolesAssignedOutsidePimAlert"
            )
        ],
        [{"severity": "high", "context": {"pim_severity": "high"}}],
    ),
    Case(
        "an unknown alert name gets the configured severity",
        [_triggered("2026-03-12T05:00:00Z", "Some new PIM alert", "SomeNewAlert")],
        [{"severity": "medium", "context": {"pim_severity": None}}],
    ),
    Case(
        "PIM re-raising the same alert every scan folds per day; the next day is a new alert",
        [
            _triggered("2026-03-12T06:00:00Z", OUTSIDE, "RolesAssignedOutsidePimAlert"),
            _triggered("2026-03-12T08:00:00Z", OUTSIDE, "RolesAssignedOutsidePimAlert"),
            _triggered("2026-03-12T10:00:00Z", OUTSIDE, "RolesAssignedOutsidePimAlert"),
            _triggered("2026-03-13T00:30:00Z", OUTSIDE, "RolesAssignedOutsidePimAlert"),
        ],
        [{"count": 3}, {"count": 1}],
    ),
    Case(
        "resolving or refreshing an alert, and PIM's re-emitted outside-PIM record, are not passed through",
        [
            pim_alert(
                "Resolve PIM alert",
                "2026-03-12T09:00:00Z",
                user("adm-eve"),
                OUTSIDE,
                definition="RolesAssignedOutsidePimAlert",
            ),
            pim_alert(
                "Refresh PIM alert",
                "2026-03-12T09:01:00Z",
                user("adm-eve"),
                OUTSIDE,
                definition="RolesAssignedOutsidePimAlert",
            ),
            pim(
                "Add member to role outside of PIM (permanent)",
                "2026-03-12T09:02:00Z",
                PIM_SYSTEM,
                principal=user("svc-legacy"),
                role=("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf"),
                extra_details={"AuditType": "RoleElevatedOutsidePimAlert"},
            ),
        ],
        [],
    ),
    *(
        Case(
            f"{shape}: the alert name (on an Other target) is read whatever the input shape",
            records,
            [
                {
                    "severity": "low",
                    "title": f"PIM security alert: {TOO_MANY_GA}",
                    "context": {"alert": TOO_MANY_GA},
                }
            ],
        )
        for shape, records in in_every_shape(
            _triggered(
                "2026-03-12T12:00:00Z", TOO_MANY_GA, "TooManyGlobalAdminsAssignedToTenantAlert", on="Other"
            )
        ).items()
    ),
]
