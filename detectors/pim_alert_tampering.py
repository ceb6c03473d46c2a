"""Someone silenced PIM's own alerting or took a resource out of PIM.

PIM's security alerts are the tenant's built-in tripwire (detections.md §2.1); an attacker who
wants to assign roles outside PIM or keep a stale account quietly first disables, deactivates or
retunes the alert. Taking a resource or the whole tenant out of PIM, or removing a PIM policy, ends
just-in-time control over it. detections.md D23 (and the onboarding family of entra-events.md §3.1):
``Disable PIM alert``, ``Deactivate PIM alert``, ``Update PIM alert setting`` (and ``Disable Alert``,
the name the security operations guide gives for Azure resources), ``Offboarded resource from PIM``,
``Tenant offboarded from PIM``, ``PIM policy removed`` — all logged by service ``PIM``.

Sigma's rule matches ``Disable PIM Alert``; the log says ``Disable PIM alert`` (§3.1 quirks):
``canonical()`` folds the case, so both are read. ``Enable PIM alert``, ``Resolve PIM alert`` and
``Refresh PIM alert`` are not tampering and are not read. Microsoft's guide says to alert on success
*and* failure, so a failed attempt alerts too, marked "(failed)". Every record is its own alert
(``suppress_minutes: 0``); PIM writes one record per change (no Core Directory mirror is known for
these activities), and a record delivered twice folds on its record id.

The alert's name is the ``displayName`` of the record's ``Other`` or ``Role`` target (the community
pass-through rule reads ``targetResources[0].displayName``); :meth:`Event.named_target` is shared with
``pim.builtin_alert``.
"""

from __future__ import annotations

from typing import Any

from pimwatch.detection import Case, Detector, Event, Hit, Severity, Skip, State
from pimwatch.detection.records import guid, in_every_shape, pim, pim_alert, user

DISABLE = "Disable PIM alert"
DEACTIVATE = "Deactivate PIM alert"
UPDATE_SETTING = "Update PIM alert setting"
DISABLE_AZURE = "Disable Alert"  # the security operations guide's name for Azure resource alerts
RESOURCE_OFFBOARDED = "Offboarded resource from PIM"
TENANT_OFFBOARDED = "Tenant offboarded from PIM"
POLICY_REMOVED = "PIM policy removed"

ALERT_ACTIVITIES = {
    DISABLE: "disabled",
    DISABLE_AZURE: "disabled",
    DEACTIVATE: "deactivated",
    UPDATE_SETTING: "settings changed",
}
OFFBOARD_ACTIVITIES = frozenset({RESOURCE_OFFBOARDED, TENANT_OFFBOARDED, POLICY_REMOVED})
ACTIVITIES = frozenset(ALERT_ACTIVITIES) | OFFBOARD_ACTIVITIES

DETECTOR = Detector(
    id="pim.alert_tampering",
    severity=Severity.HIGH,
    summary="A PIM security alert was disabled, deactivated or retuned, or a resource was taken out of PIM.",
    runbook=(
        "Ask the initiator why; re-enable the alert or re-onboard the resource unless a change record "
        "covers it. Then look for what the alert would have caught: role assignments made outside PIM, "
        "new permanent or stale privileged accounts, and the initiator's other changes in the same session."
    ),
    anchors=("Microsoft security operations guide", "Sentinel (hunting)", "Sigma"),
    mitre=("T1562.001", "T1098"),
    tactics=("DefenseEvasion",),
    kinds=("audit",),
    activities=ACTIVITIES,
)


def _what(event: Event) -> tuple[str, str | None]:
    """A phrase naming what was tampered with, and the name of the alert (alert activities only)."""
    if event.activity in ALERT_ACTIVITIES:
        named = event.named_target()
        if named is None:
            return "A PIM alert", None
        return f"PIM alert '{named[0]}'", named[0]
    if event.activity == TENANT_OFFBOARDED:
        tenant = event.scope_name or event.scope_id or event.tenant_id
        return (f"Tenant '{tenant}'" if tenant else "The tenant"), None
    if event.activity == RESOURCE_OFFBOARDED:
        named = event.named_target(("Group", "Other"))
        resource = event.scope_name or event.scope_id or (named[0] if named else None)
        return (f"Resource '{resource}'" if resource else "A resource"), None
    # PIM policy removed: the policy of a role, a group role or an Azure role.
    role = event.role_name or event.role_id
    if event.scope_type in ("group", "resource") and (event.scope_name or event.scope_id):
        where = event.scope_name or event.scope_id
        return (f"PIM policy of {role} on {where}" if role else f"PIM policy of {where}"), None
    return (f"PIM policy of {role}" if role else "A PIM policy"), None


def detect(event: Event, state: State) -> Hit | None:
    if event.activity not in ACTIVITIES or event.service != "PIM":
        return None
    if not (event.actor.id or event.actor.upn or event.actor.name):
        raise Skip("PIM alert or onboarding change without an initiator")
    what, alert = _what(event)
    alert_activity = event.activity in ALERT_ACTIVITIES
    if alert_activity:
        verb = ALERT_ACTIVITIES[event.activity]
        title = f"{what} {verb} by {event.actor.label()}"
        if verb == "settings changed":
            title = f"{what}: settings changed by {event.actor.label()}"
    elif event.activity == POLICY_REMOVED:
        title = f"{what} removed by {event.actor.label()}"
    else:
        title = f"{what} offboarded from PIM by {event.actor.label()}"
    if event.failed:
        title += f" (failed: {event.result_reason})" if event.result_reason else " (failed)"
    context = {
        "activity": event.activity,
        "alert": alert,
        # On alert records the Role target is the alert itself, not a role.
        "role": None if alert_activity else event.role_name,
        "role_id": None if alert_activity else event.role_id,
        "scope_type": event.scope_type,
        "scope": event.scope_name or event.scope_id,
        "audit_category": event.audit_category,
        "result": event.result,
        "result_reason": event.result_reason,
        "initiated_by": event.actor.as_alert() | {"ip": event.actor.ip},
        "correlation_id": event.correlation_id,
    }
    return DETECTOR.alert(
        event,
        key=(event.activity, alert or event.scope_id or event.role_id),
        title=title,
        context=context,
        principal=event.actor,
    )


# --- cases -----------------------------------------------------------------------------------

EVE = user("adm-eve")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
OUTSIDE = "Roles are being assigned outside of Privileged Identity Management"
TOO_MANY_GA = "There are too many global administrators"


def _subscription_offboarded(at: str) -> dict[str, Any]:
    rec = pim(RESOURCE_OFFBOARDED, at, EVE, category="ResourceManagement")
    sub = guid("subscription", "prod")
    rec["properties"]["targetResources"] = [
        {
            "administrativeUnits": [],
            "displayName": "Contoso-Prod",
            "id": f"/subscriptions/{sub}",
            "type": "subscription",
        },
        {"administrativeUnits": [], "id": guid("request", at), "type": "Request"},
    ]
    rec["properties"]["additionalDetails"] = []
    return rec


CASES = [
    Case(
        "disabling the outside-PIM alert (alert name on the Role target)",
        [pim_alert(DISABLE, "2026-03-11T09:00:00Z", EVE, OUTSIDE, definition="RolesAssignedOutsidePimAlert")],
        [
            {
                "severity": "high",
                "count": 1,
                "title": f"PIM alert '{OUTSIDE}' disabled by adm-eve@contoso.com",
                "principal": {"upn": "adm-eve@contoso.com"},
                "context": {"alert": OUTSIDE, "activity": DISABLE, "result": "success"},
            }
        ],
    ),
    Case(
        "Sigma's 'Disable PIM Alert' casing and an alert name on an Other target are the same detection",
        [
            pim_alert(
                "Disable PIM Alert",
                "2026-03-11T09:05:00Z",
                EVE,
                TOO_MANY_GA,
                definition="TooManyGlobalAdminsAssignedToTenantAlert",
                on="Other",
            )
        ],
        [
            {
                "title": f"PIM alert '{TOO_MANY_GA}' disabled by adm-eve@contoso.com",
                "context": {"alert": TOO_MANY_GA},
            }
        ],
    ),
    Case(
        "deactivation and a settings change are each their own alert (suppress 0)",
        [
            pim_alert(
                DEACTIVATE, "2026-03-11T10:00:00Z", EVE, OUTSIDE, definition="RolesAssignedOutsidePimAlert"
            ),
            pim_alert(
                UPDATE_SETTING,
                "2026-03-11T10:01:00Z",
                EVE,
                TOO_MANY_GA,
                definition="TooManyGlobalAdminsAssignedToTenantAlert",
            ),
        ],
        [
            {"title": f"PIM alert '{OUTSIDE}' deactivated by adm-eve@contoso.com"},
            {"title": f"PIM alert '{TOO_MANY_GA}': settings changed by adm-eve@contoso.com"},
        ],
    ),
    Case(
        "a failed attempt to disable an alert still alerts (Microsoft: success and failure)",
        [
            pim_alert(
                DISABLE,
                "2026-03-11T11:00:00Z",
                user("adm-mallory"),
                OUTSIDE,
                definition="RolesAssignedOutsidePimAlert",
                result="failure",
                reason="Unauthorized",
            )
        ],
        [
            {
                "title_has": "disabled by adm-mallory@contoso.com (failed: Unauthorized)",
                "context": {"result": "failure"},
            }
        ],
    ),
    Case(
        "a subscription offboarded from PIM names the resource",
        [_subscription_offboarded("2026-03-11T12:00:00Z")],
        [
            {
                "title": "Resource 'Contoso-Prod' offboarded from PIM by adm-eve@contoso.com",
                "context": {"scope_type": "resource", "scope": "Contoso-Prod"},
            }
        ],
    ),
    Case(
        "tenant offboarding and a removed PIM policy",
        [
            pim(TENANT_OFFBOARDED, "2026-03-11T13:00:00Z", EVE),
            pim(POLICY_REMOVED, "2026-03-11T13:05:00Z", EVE, role=GA),
        ],
        [
            {"title": "Tenant 'Contoso' offboarded from PIM by adm-eve@contoso.com"},
            {"title": "PIM policy of Global Administrator removed by adm-eve@contoso.com"},
        ],
    ),
    Case(
        "the same record delivered twice is one alert",
        [pim_alert(DISABLE, "2026-03-11T14:00:00Z", EVE, OUTSIDE, definition="RolesAssignedOutsidePimAlert")]
        * 2,
        [{"count": 1}],
    ),
    Case(
        "enabling, resolving and refreshing PIM alerts is not tampering",
        [
            pim_alert(
                "Enable PIM alert",
                "2026-03-11T15:00:00Z",
                EVE,
                OUTSIDE,
                definition="RolesAssignedOutsidePimAlert",
            ),
            pim_alert(
                "Resolve PIM alert",
                "2026-03-11T15:01:00Z",
                EVE,
                OUTSIDE,
                definition="RolesAssignedOutsidePimAlert",
            ),
            pim_alert(
                "Refresh PIM alert",
                "2026-03-11T15:02:00Z",
                EVE,
                OUTSIDE,
                definition="RolesAssignedOutsidePimAlert",
            ),
            pim("Onboarded resource to PIM", "2026-03-11T15:03:00Z", EVE, category="GroupManagement"),
        ],
        [],
    ),
    *(
        Case(
            f"{shape}: the alert name and the offboarded resource are read whatever the input shape",
            records,
            [
                {
                    "title": f"PIM alert '{OUTSIDE}' disabled by adm-eve@contoso.com",
                    "context": {"alert": OUTSIDE},
                },
                {"title": "Resource 'Contoso-Prod' offboarded from PIM by adm-eve@contoso.com"},
            ],
        )
        for shape, records in in_every_shape(
            pim_alert(
                DISABLE, "2026-03-11T16:00:00Z", EVE, OUTSIDE, definition="RolesAssignedOutsidePimAlert"
            ),
            _subscription_offboarded("2026-03-11T16:05:00Z"),
        ).items()
    ),
]
