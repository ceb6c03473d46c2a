"""A Conditional Access policy that protects admins or PIM's authentication context was weakened.

PIM's MFA-on-activation and authentication-context requirements are enforced by Conditional Access:
if the policy behind them is deleted, disabled, put in report-only or excludes the user, PIM's
protection silently goes (detections.md D24, and the PIM settings doc it cites). The change is read
from the policy itself: ``Update conditional access policy`` / ``Delete conditional access policy``
(category ``Policy``, service ``Conditional Access`` in current records — Panther's sample, id prefix
``IPCGraph_`` — or ``Core Directory``), whose ``Policy`` target carries the modifiedProperty
``ConditionalAccessPolicy`` with the whole policy, before and after, as JSON-encoded strings
(entra-events.md §1.4). Microsoft's lists also spell the activities with a capital "Conditional
Access"; both spellings are read (``canonical()`` only folds case for PIM's own names).

**Covers admins**: before or after the change, ``conditions.users.includeRoles`` holds a privileged
role template id (the configured ``privileged_roles``), ``includeUsers`` holds ``All``, or the
policy targets an authentication context (``includeAuthenticationContextClassReferences``: PIM's
``c1``…``c99``). A policy that only covers ordinary users or groups is not this detector's business.

**Weakened** (only a policy that was enforced, ``state: enabled``, can be weakened): deleted; set to
``disabled`` or report-only (``enabledForReportingButNotEnforced``); ``mfa`` removed from
``grantControls.builtInControls`` without an authentication strength in its place, or the
authentication strength removed without ``mfa`` in its place (Panther D24); ``block`` removed; the
grant operator relaxed from AND to OR; any of ``excludeUsers``, ``excludeGroups``, ``excludeRoles``,
``excludeApplications`` grew (Sentinel D24); privileged roles, ``All`` users or an authentication
context dropped from the policy's scope. Strengthening and unrelated edits (a rename, a new
session control) are not alerts.

A deletion record without the old policy cannot show whom the policy covered: it still alerts, at
medium severity, saying the scope is unknown. An update without both old and new values is skipped
(counted). Every record is its own alert (``suppress_minutes: 0``). The Core Directory ``Update
policy`` record written for the same change (``PolicyDetail`` in an older schema, Panther's negative
sample) is a different activity and is not read, so one change gives one alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from pimwatch.detection import (
    DEFAULT_PRIVILEGED_ROLES,
    Case,
    Detector,
    Event,
    Hit,
    Settings,
    Severity,
    Skip,
    State,
)
from pimwatch.detection.records import directory, guid, in_every_shape, user

UPDATE = "Update conditional access policy"
DELETE = "Delete conditional access policy"
# Microsoft's activity lists also capitalise "Conditional Access"; canonical() leaves non-PIM names as given.
ACTIVITIES = frozenset(
    {UPDATE, DELETE, "Update Conditional Access policy", "Delete Conditional Access policy"}
)
SERVICES = frozenset({"conditional access", "core directory"})
ENFORCED = "enabled"
REPORT_ONLY = "enabledForReportingButNotEnforced"
_EXCLUSIONS = (
    (("conditions", "users", "excludeUsers"), "user"),
    (("conditions", "users", "excludeGroups"), "group"),
    (("conditions", "users", "excludeRoles"), "role"),
    (("conditions", "applications", "excludeApplications"), "application"),
)
_ROLE_NAMES = {v: k for k, v in DEFAULT_PRIVILEGED_ROLES.items()}

DETECTOR = Detector(
    id="conditional_access.weakened",
    severity=Severity.HIGH,
    summary=(
        "A Conditional Access policy covering administrators or PIM's authentication context was deleted, "
        "disabled, set to report-only, lost its MFA or authentication-strength grant, or gained exclusions."
    ),
    runbook=(
        "Confirm the change with its author and the change record; restore the policy from its old value "
        "(in the alert's record) if it was not approved. Check the sign-ins and PIM activations of the "
        "excluded or no-longer-covered admins since the change, and who else the initiator changed."
    ),
    anchors=("Sentinel", "Panther", "Elastic", "Sigma", "Microsoft PIM settings guide"),
    mitre=("T1556.009", "T1562.001"),
    tactics=("Persistence", "DefenseEvasion", "CredentialAccess"),
    kinds=("audit",),
    activities=ACTIVITIES,
)


def _policy(value: Any) -> Mapping[str, Any] | None:
    """A policy object from a decoded modifiedProperty value (sometimes wrapped in a list of one)."""
    for _ in range(3):
        if not (isinstance(value, list) and len(value) == 1):
            break
        value = value[0]
    return value if isinstance(value, Mapping) else None


def _looks_like_policy(p: Mapping[str, Any] | None) -> bool:
    return p is not None and any(k in p for k in ("conditions", "grantControls", "state"))


def policy_values(
    event: Event,
) -> tuple[Mapping[str, Any] | None, Mapping[str, Any] | None, str, str]:
    """(old policy, new policy, policy id, policy name) from the record's ``Policy`` target."""
    found = event.targets
    policy_target = next((t for t in found if t.type == "Policy"), found[0] if found else None)
    old = new = None
    candidates = policy_target.modified if policy_target is not None else ()
    named = [mp for mp in candidates if mp.name.lower() == "conditionalaccesspolicy"]
    for mp in named or candidates:
        o, n = _policy(mp.old), _policy(mp.new)
        if _looks_like_policy(o) or _looks_like_policy(n):
            old, new = o, n
            break
    either = old or new or {}
    pid = (policy_target.id if policy_target else None) or str(either.get("id") or "")
    name = (policy_target.name if policy_target else None) or str(either.get("displayName") or "")
    return old, new, pid, name or pid or "(unnamed policy)"


def _get(policy: Mapping[str, Any] | None, *path: str) -> Any:
    node: Any = policy
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _strings(policy: Mapping[str, Any] | None, *path: str) -> list[str]:
    value = _get(policy, *path)
    return [v for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def _lower_set(values: list[str]) -> set[str]:
    return {v.lower() for v in values}


def coverage(policy: Mapping[str, Any] | None, settings: Settings) -> list[str]:
    """Why a policy covers admins (empty: it does not)."""
    reasons: list[str] = []
    roles = [
        r for r in _strings(policy, "conditions", "users", "includeRoles") if settings.is_privileged(None, r)
    ]
    if roles:
        reasons.append("privileged roles: " + ", ".join(_ROLE_NAMES.get(r.lower(), r) for r in roles))
    if "all" in _lower_set(_strings(policy, "conditions", "users", "includeUsers")):
        reasons.append("all users")
    contexts = _strings(policy, "conditions", "applications", "includeAuthenticationContextClassReferences")
    if contexts:
        reasons.append("authentication context " + ", ".join(contexts))
    return reasons


def _strength(policy: Mapping[str, Any] | None) -> str | None:
    value = _get(policy, "grantControls", "authenticationStrength")
    if isinstance(value, Mapping):
        return str(value.get("displayName") or value.get("id") or "authentication strength")
    return str(value) if value else None


def weakenings(
    old: Mapping[str, Any], new: Mapping[str, Any], settings: Settings
) -> tuple[list[str], dict[str, list[str]]]:
    """What an update weakened (phrases, in a fixed order), and the exclusions it added."""
    found: list[str] = []
    state = new.get("state")
    if state == "disabled":
        found.append("disabled")
    elif state == REPORT_ONLY:
        found.append("set to report-only")
    old_controls = _lower_set(_strings(old, "grantControls", "builtInControls"))
    new_controls = _lower_set(_strings(new, "grantControls", "builtInControls"))
    old_strength, new_strength = _strength(old), _strength(new)
    if "mfa" in old_controls and "mfa" not in new_controls and not new_strength:
        found.append("MFA grant removed")
    if old_strength and not new_strength and "mfa" not in new_controls:
        found.append(f"authentication strength '{old_strength}' removed")
    if "block" in old_controls and "block" not in new_controls:
        found.append("block grant removed")
    old_op = str(_get(old, "grantControls", "operator") or "").upper()
    new_op = str(_get(new, "grantControls", "operator") or "").upper()
    strong = "mfa" in new_controls or new_strength
    if old_op == "AND" and new_op == "OR" and strong and len(new_controls) + bool(new_strength) > 1:
        found.append("grant controls relaxed from AND to OR")
    added: dict[str, list[str]] = {}
    for path, label in _EXCLUSIONS:
        before = _lower_set(_strings(old, *path))
        grown = [v for v in _strings(new, *path) if v.lower() not in before]
        if grown:
            added[f"{label}s"] = grown
            found.append(f"{len(grown)} {label} exclusion{'s' if len(grown) > 1 else ''} added")
    new_users = _lower_set(_strings(new, "conditions", "users", "includeUsers"))
    if "all" not in new_users:
        new_roles = _lower_set(_strings(new, "conditions", "users", "includeRoles"))
        dropped = [
            r
            for r in _strings(old, "conditions", "users", "includeRoles")
            if settings.is_privileged(None, r) and r.lower() not in new_roles
        ]
        if dropped:
            found.append("no longer covers " + ", ".join(_ROLE_NAMES.get(r.lower(), r) for r in dropped))
        if "all" in _lower_set(_strings(old, "conditions", "users", "includeUsers")):
            found.append("no longer applies to all users")
    path = ("conditions", "applications", "includeAuthenticationContextClassReferences")
    new_contexts = _lower_set(_strings(new, *path))
    gone = [c for c in _strings(old, *path) if c.lower() not in new_contexts]
    if gone:
        found.append("authentication context " + ", ".join(gone) + " no longer targeted")
    return found, added


def detect(event: Event, state: State) -> Hit | None:
    if event.activity not in ACTIVITIES or event.failed:
        return None
    if event.audit_category not in (None, "Policy") or (event.service or "").lower() not in SERVICES:
        return None
    deleted = event.activity.lower() == DELETE.lower()
    old, new, pid, name = policy_values(event)
    severity: Severity | None = None
    added: dict[str, list[str]] = {}
    if deleted:
        if old is not None and old.get("state") not in (None, ENFORCED):
            return None  # a disabled or report-only policy protected nobody
        covers = coverage(old, state.settings)
        if old is not None and not covers:
            return None
        found = ["policy deleted"]
        if old is None:
            found.append("scope unknown (the record has no old value)")
            severity = Severity.MEDIUM
    else:
        if old is None or new is None:
            raise Skip("conditional access update without old and new policy values")
        if old.get("state") not in (None, ENFORCED):
            return None
        covers = list(dict.fromkeys(coverage(old, state.settings) + coverage(new, state.settings)))
        if not covers:
            return None
        found, added = weakenings(old, new, state.settings)
        if not found:
            return None
    title = f"Conditional Access policy '{name}' weakened by {event.actor.label()}: " + "; ".join(found)
    context = {
        "policy": name,
        "policy_id": pid or None,
        "weakenings": found,
        "covers": covers,
        "old_state": old.get("state") if old else None,
        "new_state": None if deleted else (new.get("state") if new else None),
        "exclusions_added": added,
        "activity": event.activity,
        "service": event.service,
        "initiated_by": event.actor.as_alert() | {"ip": event.actor.ip},
        "correlation_id": event.correlation_id,
    }
    return DETECTOR.alert(
        event, key=(pid or name,), title=title, context=context, principal=event.actor, severity=severity
    )


# --- cases -----------------------------------------------------------------------------------

KIM = user("adm-kim")
GA_ID = DEFAULT_PRIVILEGED_ROLES["Global Administrator"]
PRA_ID = DEFAULT_PRIVILEGED_ROLES["Privileged Role Administrator"]
HELPDESK_GROUP = guid("group", "helpdesk-staff")
INTRUDER = guid("user", "svc-intruder")
ADMIN_POLICY = guid("policy", "admins")
PIM_POLICY = guid("policy", "pim-context")
STAFF_POLICY = guid("policy", "staff")
ALL_POLICY = guid("policy", "all-users")


def policy(
    pid: str,
    name: str,
    *,
    state: str = ENFORCED,
    roles: tuple[str, ...] = (),
    users: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    exclude_users: tuple[str, ...] = (),
    exclude_groups: tuple[str, ...] = (),
    contexts: tuple[str, ...] = (),
    controls: tuple[str, ...] | None = ("mfa",),
    strength: str | None = None,
    operator: str = "OR",
) -> dict[str, Any]:
    """A policy object in Graph's shape, as the ConditionalAccessPolicy old/new values hold it."""
    doc: dict[str, Any] = {
        "id": pid,
        "displayName": name,
        "createdDateTime": "2025-11-21T16:48:48.1196443+00:00",
        "modifiedDateTime": "2026-02-01T09:00:00.0000000+00:00",
        "state": state,
        "conditions": {
            "applications": {
                "includeApplications": [] if contexts else ["All"],
                "excludeApplications": [],
                "includeUserActions": [],
                "includeAuthenticationContextClassReferences": list(contexts),
                "applicationFilter": None,
            },
            "users": {
                "includeUsers": list(users),
                "excludeUsers": list(exclude_users),
                "includeGroups": list(groups),
                "excludeGroups": list(exclude_groups),
                "includeRoles": list(roles),
                "excludeRoles": [],
            },
            "userRiskLevels": [],
            "signInRiskLevels": [],
            "clientAppTypes": ["all"],
            "servicePrincipalRiskLevels": [],
        },
    }
    if controls is not None or strength is not None:
        doc["grantControls"] = {
            "operator": operator,
            "builtInControls": list(controls or ()),
            "customAuthenticationFactors": [],
            "termsOfUse": [],
            "authenticationStrength": {"id": guid("strength", strength), "displayName": strength}
            if strength
            else None,
        }
    return doc


def ca_record(
    activity: str,
    at: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    *,
    actor: Any = KIM,
    service: str = "Conditional Access",
) -> dict[str, Any]:
    """A Conditional Access audit record in Panther's sample layout (Policy target, old/new JSON text)."""
    either = old or new or {}
    pid = either.get("id") or guid("policy", "unknown")
    name = either.get("displayName") or "Unknown policy"
    old_text = orjson.dumps(old).decode() if old is not None else None
    new_text = orjson.dumps(new).decode() if new is not None else None
    rid = "IPCGraph_" + guid(activity, at, pid, old_text, new_text)
    rec = directory(activity, at, actor, actor, category="Policy", record_id=rid)
    props = rec["properties"]
    props["loggedByService"] = service
    props["operationType"] = "Delete" if activity.lower().startswith("delete") else "Update"
    props["targetResources"] = [
        {
            "id": pid,
            "displayName": name,
            "type": "Policy",
            "modifiedProperties": [
                {"displayName": "ConditionalAccessPolicy", "oldValue": old_text, "newValue": new_text}
            ],
            "administrativeUnits": [],
        }
    ]
    props["additionalDetails"] = [{"key": "Category", "value": "Conditional Access"}]
    return rec


def _mirror(at: str) -> dict[str, Any]:
    """The Core Directory ``Update policy`` PolicyDetail record written for the same change."""
    rec = directory("Update policy", at, KIM, KIM, category="Policy")
    detail = '["{\\"Version\\":1,\\"State\\":\\"Disabled\\"}"]'
    rec["properties"]["targetResources"] = [
        {
            "id": guid("policyobj", "admins"),
            "displayName": "Require MFA for admins",
            "type": "Policy",
            "modifiedProperties": [{"displayName": "PolicyDetail", "oldValue": detail, "newValue": detail}],
        }
    ]
    return rec


ADMINS = policy(ADMIN_POLICY, "Require MFA for admins", roles=(GA_ID, PRA_ID))
PIM_CONTEXT = policy(
    PIM_POLICY,
    "PIM activation: phishing-resistant MFA",
    users=("All",),
    contexts=("c1",),
    controls=(),
    strength="Phishing-resistant MFA",
)
STAFF = policy(STAFF_POLICY, "Require MFA for helpdesk staff", groups=(HELPDESK_GROUP,))
# Panther's sample: all users, builtInControls "MFA" in capitals; the new value has no grantControls.
ALL_USERS = policy(ALL_POLICY, "MFA", users=("All",), controls=("MFA",))
ALL_USERS_NO_GRANT = policy(ALL_POLICY, "MFA", users=("All",), controls=None)


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with some fields replaced: state, or a conditions.users / grantControls key."""
    doc = orjson.loads(orjson.dumps(base))
    for key, value in changes.items():
        if key == "state":
            doc["state"] = value
        elif key in doc["conditions"]["users"]:
            doc["conditions"]["users"][key] = value
        elif key in doc.get("grantControls", {}):
            doc["grantControls"][key] = value
        else:
            doc[key] = value
    return dict(doc)


CASES = [
    Case(
        "admin policy set to report-only with a new user exclusion: both named",
        [
            ca_record(
                UPDATE,
                "2026-03-13T08:00:00Z",
                ADMINS,
                _with(ADMINS, state=REPORT_ONLY, excludeUsers=[INTRUDER]),
            )
        ],
        [
            {
                "severity": "high",
                "count": 1,
                "title": "Conditional Access policy 'Require MFA for admins' weakened by "
                "adm-kim@contoso.com: set to report-only; 1 user exclusion added",
                "principal": {"upn": "adm-kim@contoso.com"},
                "context": {
                    "policy_id": ADMIN_POLICY,
                    "old_state": ENFORCED,
                    "new_state": REPORT_ONLY,
                    "covers": ["privileged roles: Global Administrator, Privileged Role Administrator"],
                    "exclusions_added": {"users": [INTRUDER]},
                },
            }
        ],
    ),
    Case(
        "Panther's sample: MFA ('MFA' in capitals) dropped from an all-users policy",
        [ca_record(UPDATE, "2026-03-13T08:10:00Z", ALL_USERS, ALL_USERS_NO_GRANT)],
        [{"title": "Conditional Access policy 'MFA' weakened by adm-kim@contoso.com: MFA grant removed"}],
    ),
    Case(
        "PIM's authentication-context policy loses its authentication strength",
        [
            ca_record(
                UPDATE, "2026-03-13T08:20:00Z", PIM_CONTEXT, _with(PIM_CONTEXT, authenticationStrength=None)
            )
        ],
        [
            {
                "title_has": "weakened by adm-kim@contoso.com: "
                "authentication strength 'Phishing-resistant MFA' removed",
                "context": {"covers": ["all users", "authentication context c1"]},
            }
        ],
    ),
    Case(
        "disabled, with Core Directory's Update policy mirror alongside: one alert",
        [
            ca_record(UPDATE, "2026-03-13T08:30:00Z", ADMINS, _with(ADMINS, state="disabled")),
            _mirror("2026-03-13T08:30:01Z"),
        ],
        [{"count": 1, "title_has": "'Require MFA for admins' weakened by adm-kim@contoso.com: disabled"}],
    ),
    Case(
        "capitalised activity name, Core Directory service, a group exclusion and a dropped role",
        [
            ca_record(
                "Update Conditional Access policy",
                "2026-03-13T08:40:00Z",
                ADMINS,
                _with(ADMINS, includeRoles=[GA_ID], excludeGroups=[HELPDESK_GROUP]),
                service="Core Directory",
            )
        ],
        [
            {
                "title_has": "1 group exclusion added; no longer covers Privileged Role Administrator",
                "context": {"exclusions_added": {"groups": [HELPDESK_GROUP]}},
            }
        ],
    ),
    Case(
        "a deleted admin policy is high; a deletion without the old value is medium, scope unknown",
        [
            ca_record(DELETE, "2026-03-13T09:00:00Z", ADMINS, None),
            ca_record(DELETE, "2026-03-13T09:05:00Z", None, None),
        ],
        [
            {
                "severity": "high",
                "title_has": "'Require MFA for admins' weakened by adm-kim@contoso.com: policy deleted",
            },
            {"severity": "medium", "title_has": "policy deleted; scope unknown"},
        ],
    ),
    Case(
        "the configured privileged-role list decides what 'admins' are",
        [ca_record(UPDATE, "2026-03-13T09:10:00Z", ADMINS, _with(ADMINS, state="disabled"))],
        [],
        {"privileged_roles": ["Exchange Administrator"]},
    ),
    Case(
        "strengthening: report-only to enabled, MFA added, an exclusion removed, MFA replaced by a strength",
        [
            ca_record(UPDATE, "2026-03-13T10:00:00Z", _with(ADMINS, state=REPORT_ONLY), ADMINS),
            ca_record(UPDATE, "2026-03-13T10:05:00Z", ALL_USERS_NO_GRANT, ALL_USERS),
            ca_record(UPDATE, "2026-03-13T10:10:00Z", _with(ADMINS, excludeUsers=[INTRUDER]), ADMINS),
            ca_record(
                UPDATE,
                "2026-03-13T10:15:00Z",
                ADMINS,
                _with(
                    ADMINS,
                    builtInControls=[],
                    authenticationStrength={"id": "x", "displayName": "Phishing-resistant MFA"},
                ),
            ),
        ],
        [],
    ),
    Case(
        "unrelated edits (a rename), ordinary-user policies and already-disabled policies are quiet",
        [
            ca_record(
                UPDATE, "2026-03-13T11:00:00Z", ADMINS, _with(ADMINS, displayName="MFA for admins (v2)")
            ),
            ca_record(UPDATE, "2026-03-13T11:05:00Z", STAFF, _with(STAFF, state="disabled")),
            ca_record(DELETE, "2026-03-13T11:10:00Z", STAFF, None),
            ca_record(
                UPDATE,
                "2026-03-13T11:15:00Z",
                _with(ADMINS, state="disabled"),
                _with(ADMINS, state="disabled", excludeUsers=[INTRUDER]),
            ),
        ],
        [],
    ),
    *(
        Case(
            f"{shape}: the old and new policy are read whatever the input shape",
            records,
            [
                {
                    "title": "Conditional Access policy 'Require MFA for admins' weakened by "
                    "adm-kim@contoso.com: disabled; 1 group exclusion added",
                    "context": {"policy_id": ADMIN_POLICY, "exclusions_added": {"groups": [HELPDESK_GROUP]}},
                }
            ],
        )
        for shape, records in in_every_shape(
            ca_record(
                UPDATE,
                "2026-03-13T12:00:00Z",
                ADMINS,
                _with(ADMINS, state="disabled", excludeGroups=[HELPDESK_GROUP]),
            )
        ).items()
    ),
]
