"""PIM activity names as Microsoft's audit activity reference spells them (entra-events.md §3.1).

Records drift: a trailing dot ("Add member to role."), "time bound" for "timebound", extra
whitespace. :func:`canonical` folds those; names that are still unknown pass through unchanged and
are counted by the pipeline so the first real new name is noticed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

ACTIVATION_REQUESTED = "Add member to role requested (PIM activation)"
ACTIVATION_APPROVAL_REQUESTED = "Add member to role approval requested (PIM activation)"
ACTIVATION_APPROVED = "Add member to role request approved (PIM activation)"
ACTIVATION_DENIED = "Add member to role request denied (PIM activation)"
ACTIVATION_COMPLETED = "Add member to role completed (PIM activation)"
ACTIVATION_CANCELED = "Add member to role canceled (PIM activation)"
ACTIVATION_EXPIRED_REQUEST = "PIM activation request expired"
ACTIVATION_ENDED = "Remove member from role (PIM activation expired)"
ROLE_SETTING_UPDATED = "Update role setting in PIM"

# PIM's system identity: the user object "Azure AD PIM" (no UPN) that initiates PIM's scans, alerts,
# expiries and some of its directory writes (entra-events.md §3.3). Its object id is the same in
# every tenant.
PIM_SERVICE = "9dfd627f-bdc5-4b1c-af9d-c85097fdeff8"
PIM_SERVICE_NAME = "Azure AD PIM"

PIM_ACTIVITIES: frozenset[str] = frozenset(
    {
        ACTIVATION_REQUESTED,
        ACTIVATION_APPROVAL_REQUESTED,
        ACTIVATION_APPROVED,
        ACTIVATION_DENIED,
        ACTIVATION_COMPLETED,
        ACTIVATION_CANCELED,
        ACTIVATION_EXPIRED_REQUEST,
        "Remove member from role requested (PIM deactivate)",
        "Remove member from role completed (PIM deactivate)",
        ACTIVATION_ENDED,
        "Add member to role in PIM requested (permanent)",
        "Add member to role in PIM completed (permanent)",
        "Add member to role in PIM requested (timebound)",
        "Add member to role in PIM completed (timebound)",
        "Add member to role in PIM requested (renew)",
        "Add member to role in PIM canceled (permanent)",
        "Add member to role in PIM canceled (timebound)",
        "Add member to role in PIM canceled (renew)",
        "Add eligible member to role in PIM requested (permanent)",
        "Add eligible member to role in PIM completed (permanent)",
        "Add eligible member to role in PIM requested (timebound)",
        "Add eligible member to role in PIM completed (timebound)",
        "Add eligible member to role in PIM requested (renew)",
        "Add eligible member to role in PIM canceled (permanent)",
        "Add eligible member to role in PIM canceled (timebound)",
        "Add eligible member to role in PIM canceled (renew)",
        "Remove member from role in PIM requested (permanent)",
        "Remove member from role in PIM completed (permanent)",
        "Remove member from role in PIM requested (timebound)",
        "Remove member from role in PIM completed (timebound)",
        "Remove eligible member from role in PIM requested (permanent)",
        "Remove eligible member from role in PIM completed (permanent)",
        "Remove eligible member from role in PIM requested (timebound)",
        "Remove eligible member from role in PIM completed (timebound)",
        "Remove permanent direct role assignment",
        "Remove permanent eligible role assignment",
        "Update member in PIM requested (extend)",
        "Update eligible member in PIM requested (extend)",
        "Update member in PIM canceled (extend)",
        "Update eligible member in PIM canceled (extend)",
        "Update member in PIM approved by admin (extend/renew)",
        "Update member in PIM denied by admin (extend/renew)",
        "Process request",
        "Process role removal request",
        "Process role update request",
        "Cancel request",
        "Cancel request for role removal",
        "Cancel request for role update",
        "Remove request",
        "Approve request - direct role assignment",
        "Restore member from role",
        "Restore member from role in PIM completed",
        "Restore eligible member from role in PIM completed",
        "Restore permanent direct role assignment",
        "Restore permanent eligible role assignment",
        ROLE_SETTING_UPDATED,
        "PIM policy removed",
        "Role definition created",
        "Onboarded resource to PIM",
        "Onboarded resource from PIM",
        "Onboard resource to PIM",
        "Offboarded resource from PIM",
        "Tenant offboarded from PIM",
        "Resource updated",
        "Triggered PIM alert",
        "Resolve PIM alert",
        "Disable PIM alert",
        "Enable PIM alert",
        "Deactivate PIM alert",
        "Refresh PIM alert",
        "Update PIM alert setting",
        "Add member to role outside of PIM (permanent)",
    }
)

# The end of an activation: it expired, or the principal deactivated early (§3.1).
ACTIVATION_END: frozenset[str] = frozenset(
    {ACTIVATION_ENDED, "Remove member from role completed (PIM deactivate)"}
)

# Every activity a failed or refused activation request can be logged under (§3.2).
ACTIVATION_REQUEST_ACTIVITIES: frozenset[str] = frozenset(
    {a for a in PIM_ACTIVITIES if "(PIM activation)" in a} | {ACTIVATION_EXPIRED_REQUEST}
)

# Misspellings seen in Microsoft's own lists (entra-events.md §3.1, quirks).
_ALIASES = {"Add EligibleRoleAssignement to RoleDefinition": "Add EligibleRoleAssignment to RoleDefinition"}

_WS = re.compile(r"\s+")
_TIMEBOUND = re.compile(r"\(\s*time[\s-]*bound\s*\)", re.IGNORECASE)
_CACHE: dict[str, str] = {}
_KNOWN: dict[str, str] = {n.lower(): n for n in PIM_ACTIVITIES}  # lower-cased → the spelling it folds to
_EXACT: set[str] = set(PIM_ACTIVITIES)  # spellings that stay as written


def canonical(name: str) -> str:
    """Fold the documented spelling drift; unknown names come back cleaned but otherwise as given."""
    hit = _CACHE.get(name)
    if hit is not None:
        return hit
    s = _WS.sub(" ", name).strip()
    while s.endswith("."):
        s = s[:-1].rstrip()
    s = _TIMEBOUND.sub("(timebound)", s)
    s = _ALIASES.get(s, s)
    # Case drift (Sigma's "Disable PIM Alert"): the known spelling of the name, if there is one.
    if s not in _EXACT:
        s = _KNOWN.get(s.lower(), s)
    if len(_CACHE) < 4096:
        _CACHE[name] = s
    return s


def register(names: Iterable[str]) -> None:
    """Make more activity names known (the detectors' own), so their case drift folds too.

    The result does not depend on the order of ``names`` (detectors pass frozensets, whose order
    changes with ``PYTHONHASHSEED``) nor on the order of calls: a registered spelling stays as written
    (a detector may read two, as ``conditional_access.weakened`` does), other case drift folds to the
    smallest registered spelling, and Microsoft's PIM reference spellings always win.
    """
    for n in names:
        known = _KNOWN.get(n.lower())
        if known in PIM_ACTIVITIES:
            continue
        _EXACT.add(n)
        if known is None or n < known:
            _KNOWN[n.lower()] = n
    _CACHE.clear()


def is_pim_activation_failure(event_activity: str, failed: bool) -> bool:
    """A failed or refused activation request (entra-events.md §3.2)."""
    if event_activity in (ACTIVATION_DENIED, ACTIVATION_EXPIRED_REQUEST):
        return True
    return failed and ("(PIM activation)" in event_activity or event_activity == ACTIVATION_REQUESTED)
