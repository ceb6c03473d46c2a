"""A PIM role setting (the activation and assignment policy of a role or group) was changed.

The changes are sentences in ``resultReason`` ("Setting changes in this session: ...";
entra-events.md §3.4, real text in shared/samples/11); when a record carries ``modifiedProperties``
with old and new values, those are read too.

Severity says what the on-call person must do: a change that weakens protection (MFA, approval,
justification or ticket no longer required, notifications removed, permanent assignments allowed,
a maximum activation longer than ``max_activation_hours``) of a privileged role (the configured
``privileged_roles``) is critical; one that weakens another role is high (the configured severity);
a change that only strengthens or is neutral is low — recorded, nobody paged. The title always says
what changed: the first two changes (weakenings first) and "+N more"; ``context.changes`` and
``context.weakening`` list them all.
"""

from __future__ import annotations

import re
from typing import Any

from pimwatch.detection import (
    ROLE_SETTING_UPDATED,
    Case,
    Count,
    Detector,
    Event,
    Hit,
    Params,
    Severity,
    State,
)
from pimwatch.detection.records import guid, in_every_shape, pim, user


class Config(Params):
    max_activation_hours: Count = 8  # a longer maximum activation is a weakening


DETECTOR = Detector(
    id="settings.changed",
    severity=Severity.HIGH,
    summary="The PIM settings (activation and assignment policy) of a role or group were changed.",
    runbook=(
        "Confirm the change with its author and the change record. Revert any weakening (MFA, approval, "
        "justification or ticket no longer required, longer or permanent assignments, notifications "
        "removed) that was not approved; review who activated the role since."
    ),
    anchors=("Sentinel", "Elastic", "Sigma", "Microsoft security operations guide"),
    mitre=("T1556", "T1484"),
    tactics=("PrivilegeEscalation", "DefenseEvasion"),
    kinds=("audit",),
    activities=frozenset({ROLE_SETTING_UPDATED}),
    params=Config,
)

PREFIX = "setting changes in this session:"
_PROTECTIONS = (
    ("mfa", "MFA"),
    ("multifactor", "MFA"),
    ("authentication context", "authentication context"),
    ("approval", "approval"),
    ("justification", "justification"),
    ("ticket", "ticket information"),
    ("notification", "notifications"),
)
_DURATION = re.compile(r"maximum activation duration (?:updated|set) to (\d+):(\d\d)(?::(\d\d))?")
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def changes(reason: str | None) -> list[str]:
    """The change sentences of a ``resultReason``, in order."""
    if not reason:
        return []
    text = reason.strip()
    if text.lower().startswith(PREFIX):
        text = text[len(PREFIX) :]
    else:
        return []
    parts = [p.strip().rstrip(".").strip() for p in re.split(r"\.\s+|\.$", text)]
    return [p for p in parts if p]


def weakening(sentence: str, max_hours: float) -> bool:
    s = sentence.lower()
    if any(word in s for word in (" disabled", " removed", "not required", " deleted")):
        return any(key in s for key, _ in _PROTECTIONS)
    if "permanent" in s and ("allowed" in s or "enabled" in s) and "not allowed" not in s:
        return True
    m = _DURATION.search(s)
    if m:
        hours = int(m.group(1)) + int(m.group(2)) / 60
        return hours > max_hours
    return False


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "false"):
            return v == "true"
    return None


def _hours(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    m = _ISO_DURATION.match(value.strip())
    if not m or not any(m.groups()):
        return None
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return d * 24 + h + mi / 60 + s / 3600


def modified_changes(event: Event, max_hours: float) -> tuple[list[str], list[str]]:
    """(all, weakening) changes from ``modifiedProperties`` with old and new values, if any."""
    found: list[str] = []
    weak: list[str] = []
    for mp in event.modified:
        name, old, new = mp.name, mp.old, mp.new
        if old == new or name in ("RoleDefinitionOriginId", "RoleDefinitionOriginType", "TemplateId"):
            continue
        ob, nb = _bool(old), _bool(new)
        oh, nh = _hours(old), _hours(new)
        if ob is not None and nb is not None:
            text = f"{name} changed from {ob} to {nb}"
            found.append(text)
            lowered = name.lower()
            if (ob and not nb and any(k.replace(" ", "") in lowered for k, _ in _PROTECTIONS)) or (
                nb and not ob and "permanent" in lowered
            ):
                weak.append(text)
        elif oh is not None and nh is not None:
            text = f"{name} changed from {old} to {new}"
            found.append(text)
            if nh > oh and nh > max_hours:
                weak.append(text)
    return found, weak


def detect(event: Event, state: State[Config]) -> Hit | None:
    if event.activity != ROLE_SETTING_UPDATED or event.failed:
        return None
    max_hours = float(state.params.max_activation_hours)
    listed = changes(event.result_reason)
    weak = [c for c in listed if weakening(c, max_hours)]
    from_props, weak_props = modified_changes(event, max_hours)
    listed += from_props
    weak += weak_props
    privileged = state.settings.is_privileged(event.role_name, event.role_id)
    if event.scope_type == "group":
        group = event.scope_name or event.scope_id or "(unknown group)"
        what = f"{event.role_name or 'member'} role of group {group}"
    elif event.scope_type == "resource":
        what = (
            f"{event.role_name or event.role_id or '(unknown role)'} on {event.scope_name or event.scope_id}"
        )
    else:
        what = event.role_name or event.role_id or "(unknown role)"
    title = f"PIM settings of {what} changed by {event.actor.label()}{_what_changed(listed, weak)}"
    context = {
        "role": event.role_name,
        "role_id": event.role_id,
        "scope_type": event.scope_type,
        "scope": event.scope_name or event.scope_id,
        "privileged_role": privileged,
        "changes": listed,
        "weakening": weak,
        "result_reason": event.result_reason,
        "changed_by": event.actor.as_alert() | {"ip": event.actor.ip},
    }
    return DETECTOR.alert(
        event,
        key=(event.role_id or event.role_name, event.scope_id),
        title=title,
        context=context,
        principal=event.actor,
        severity=(Severity.CRITICAL if privileged else None) if weak else Severity.LOW,
    )


SHOWN = 2  # changes named in the title; the rest are "+N more"


def _what_changed(listed: list[str], weak: list[str]) -> str:
    """The title's tail: the first :data:`SHOWN` changes, weakenings first, and how many more."""
    if not listed:
        return " (the record names no change)"
    ordered = weak + [c for c in listed if c not in weak]
    shown = "; ".join(ordered[:SHOWN])
    more = len(ordered) - SHOWN
    tail = f"; +{more} more" if more > 0 else ""
    return f" — {'weakened' if weak else 'changed'}: {shown}{tail}"


ADMIN = user("adm-eve")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
READER = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
# The real text captured from a tenant (shared/samples/11): it only strengthens.
REAL_TEXT = (
    "Setting changes in this session: Maximum activation duration updated to 02:00:00. "
    "CustomExtension_PreApproval_EndUser_Assignment added:  (). "
    "CustomExtension_PostApproval_EndUser_Assignment added:  (). MFA on activation requirement enabled. "
    "Approval enabled with approvers [redacted]. MFA on active assignment requirement enabled."
)
WEAK_TEXT = (
    "Setting changes in this session: Maximum activation duration updated to 24:00:00. "
    "MFA on activation requirement disabled. Approval disabled. "
    "Justification on activation requirement disabled."
)


def _setting(at: str, role: tuple[str, str], reason: str, **kw: Any) -> dict[str, Any]:
    return pim(ROLE_SETTING_UPDATED, at, ADMIN, role=role, reason=reason, **kw)


def _setting_props(at: str, role: tuple[str, str], changes: list[tuple[str, str, str]]) -> dict[str, Any]:
    """A settings change carried as ``modifiedProperties`` of the Role target (JSON-encoded values)."""
    rec = _setting(at, role, "")
    target = rec["properties"]["targetResources"][0]
    target["modifiedProperties"] = [{"displayName": n, "oldValue": o, "newValue": v} for n, o, v in changes]
    return rec


# The §10.2 probe: the same change, named in every input shape.
WEAK_PROPS = _setting_props(
    "2026-03-10T20:00:00Z",
    GA,
    [
        ("IsApprovalRequired", '"true"', '"false"'),
        ("ExpirationRule.MaximumDuration", '"PT8H"', '"P1D"'),
        ("IsJustificationRequired", '"false"', '"true"'),
        ("TemplateId", '""', '"62e90394-69f5-4237-9190-012177145e10"'),
    ],
)


CASES = [
    *(
        Case(
            f"weakening in modifiedProperties, {shape}: the same change is named whatever the input shape",
            records,
            [
                {
                    "severity": "critical",
                    "count": 1,
                    "title": "PIM settings of Global Administrator changed by adm-eve@contoso.com"
                    " — weakened: IsApprovalRequired changed from True to False; "
                    "ExpirationRule.MaximumDuration changed from PT8H to P1D; +1 more",
                    "context": {
                        "changes": [
                            "IsApprovalRequired changed from True to False",
                            "ExpirationRule.MaximumDuration changed from PT8H to P1D",
                            "IsJustificationRequired changed from False to True",
                        ],
                        "weakening": [
                            "IsApprovalRequired changed from True to False",
                            "ExpirationRule.MaximumDuration changed from PT8H to P1D",
                        ],
                    },
                }
            ],
        )
        for shape, records in in_every_shape(WEAK_PROPS).items()
    ),
    Case(
        "weakening Global Administrator (privileged) is critical; the title names two and counts the rest",
        [_setting("2026-03-10T19:40:00Z", GA, WEAK_TEXT)],
        [
            {
                "severity": "critical",
                "count": 1,
                "title": "PIM settings of Global Administrator changed by adm-eve@contoso.com — weakened: "
                "Maximum activation duration updated to 24:00:00; MFA on activation requirement disabled; "
                "+2 more",
                "principal": {"upn": "adm-eve@contoso.com"},
                "context": {
                    "privileged_role": True,
                    "role_id": GA[1],
                    "weakening": [
                        "Maximum activation duration updated to 24:00:00",
                        "MFA on activation requirement disabled",
                        "Approval disabled",
                        "Justification on activation requirement disabled",
                    ],
                },
            }
        ],
    ),
    Case(
        "the real text only strengthens Global Administrator: low, and the title says what changed",
        [_setting("2026-09-10T02:23:09Z", GA, REAL_TEXT)],
        [
            {
                "severity": "low",
                "title": "PIM settings of Global Administrator changed by adm-eve@contoso.com — changed: "
                "Maximum activation duration updated to 02:00:00; "
                "CustomExtension_PreApproval_EndUser_Assignment added:  (); +4 more",
                "context": {
                    "weakening": [],
                    "changes": [
                        "Maximum activation duration updated to 02:00:00",
                        "CustomExtension_PreApproval_EndUser_Assignment added:  ()",
                        "CustomExtension_PostApproval_EndUser_Assignment added:  ()",
                        "MFA on activation requirement enabled",
                        "Approval enabled with approvers [redacted]",
                        "MFA on active assignment requirement enabled",
                    ],
                },
            }
        ],
    ),
    Case(
        "weakening a role that is not privileged is high",
        [_setting("2026-03-10T08:00:00Z", READER, "Setting changes in this session: Approval disabled.")],
        [
            {
                "severity": "high",
                "title": "PIM settings of Reports Reader changed by adm-eve@contoso.com — weakened: "
                "Approval disabled",
                "context": {"privileged_role": False},
            }
        ],
    ),
    Case(
        "strengthening a role that is not privileged is low",
        [
            _setting(
                "2026-03-10T08:00:00Z",
                READER,
                "Setting changes in this session: MFA on activation "
                "requirement enabled. Justification on activation requirement enabled.",
            )
        ],
        [
            {
                "severity": "low",
                "title": "PIM settings of Reports Reader changed by adm-eve@contoso.com — changed: "
                "MFA on activation requirement enabled; Justification on activation requirement enabled",
                "context": {"weakening": []},
            }
        ],
    ),
    Case(
        "a neutral change only (a custom extension added) is low",
        [
            _setting(
                "2026-03-10T08:00:00Z",
                GA,
                "Setting changes in this session: CustomExtension_PreApproval_EndUser_Assignment added:  ().",
            )
        ],
        [{"severity": "low", "title_has": "— changed: CustomExtension_PreApproval_EndUser_Assignment added"}],
    ),
    Case(
        "a record that names no change is low and says so",
        [_setting("2026-03-10T08:00:00Z", GA, "")],
        [{"severity": "low", "title_has": "adm-eve@contoso.com (the record names no change)"}],
    ),
    Case(
        "PIM for Groups: the group is named and ticket removal is a weakening",
        [
            _setting(
                "2026-03-10T19:45:00Z",
                ("Member", "member"),
                "Setting changes in this session: Ticket info requirement disabled.",
                category="GroupManagement",
                group=(guid("group", "pim-exchange-admins"), "PIM-Exchange-Admins"),
            )
        ],
        [
            {
                "severity": "high",
                "title": "PIM settings of Member role of group PIM-Exchange-Admins changed by "
                "adm-eve@contoso.com"
                " — weakened: Ticket info requirement disabled",
                "context": {"scope_type": "group"},
            }
        ],
    ),
    Case(
        "the privileged-role list comes from the config: weakening Reports Reader is critical there",
        [_setting("2026-03-10T08:00:00Z", READER, "Setting changes in this session: Approval disabled.")],
        [{"severity": "critical", "context": {"privileged_role": True}}],
        {"privileged_roles": ["Reports Reader"]},
    ),
    Case(
        "... and weakening Global Administrator, now off the list, is high",
        [_setting("2026-03-10T08:00:00Z", GA, "Setting changes in this session: Approval disabled.")],
        [{"severity": "high", "context": {"privileged_role": False}}],
        {"privileged_roles": ["Reports Reader"]},
    ),
    Case(
        "two changes to the same role are two alerts (suppress_minutes 0)",
        [
            _setting("2026-03-10T08:00:00Z", READER, "Setting changes in this session: Approval enabled."),
            _setting("2026-03-10T08:05:00Z", READER, "Setting changes in this session: Approval disabled."),
        ],
        [
            {"count": 1, "severity": "low", "title_has": "changed: Approval enabled"},
            {"count": 1, "severity": "high", "title_has": "weakened: Approval disabled"},
        ],
    ),
    Case(
        "other PIM activity is quiet",
        [
            pim(
                "Add member to role completed (PIM activation)",
                "2026-03-10T08:00:00Z",
                ADMIN,
                principal=ADMIN,
            )
        ],
        [],
    ),
]
