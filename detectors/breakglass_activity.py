"""Any audit record initiated by, or targeting, an emergency ("break-glass") account.

A password reset, an authentication-method change, a role or group change on an emergency account,
or anything it does, is rare and high-stakes (detections.md D44, D45). One alert per account per
hour: every record in that hour (the several records one PIM action writes included) folds into it,
and ``context.activities`` lists what was done.
"""

from __future__ import annotations

from pimwatch.detection import Case, Detector, Event, Hit, Severity, State, Window, minutes
from pimwatch.detection.records import directory, pim, user

DETECTOR = Detector(
    id="breakglass.activity",
    severity=Severity.CRITICAL,
    summary="An audited action was taken by, or on, an emergency (break-glass) account.",
    runbook=(
        "Check the change against the emergency-access procedure. An unplanned credential, method, "
        "role or group change on an emergency account is a takeover attempt until proven otherwise."
    ),
    anchors=("Microsoft security operations guide", "Sentinel (hunting)"),
    mitre=("T1098", "T1078.004"),
    tactics=("InitialAccess", "Persistence", "PrivilegeEscalation"),
    kinds=("audit",),
    break_glass_only=True,
    window=Window(suppress=minutes(60), accumulate=("activities",)),
)


def detect(event: Event, state: State) -> Hit | None:
    settings = state.settings
    by = settings.is_break_glass(event.actor)
    on = settings.is_break_glass(event.target)
    if not (by or on):
        return None
    account = event.actor if by else event.target
    if by and on:
        how = f"{event.activity!r} on itself"
    elif by:
        how = (
            f"{event.activity!r} on {event.target.label()}"
            if event.target.id or event.target.upn
            else repr(event.activity)
        )
    else:
        how = f"{event.activity!r} by {event.actor.label()}"
    verb = "performed" if by else "was the target of"
    result = "" if event.result in (None, "success") else f" ({event.result})"
    title = f"Break-glass account {account.label()} {verb} {how}{result}"
    context = {
        "activity": event.activity,
        "activities": [event.activity],
        "role": event.role_name,
        "service": event.service,
        "audit_category": event.audit_category,
        "result": event.result,
        "result_reason": event.result_reason,
        "initiated_by": event.actor.as_alert() | {"ip": event.actor.ip},
        "target": event.target.as_alert(),
        "correlation_id": event.correlation_id,
    }
    return DETECTOR.alert(
        event,
        key=(account.id or account.upn,),
        title=title,
        context=context,
        principal=account,
    )


BG = ("c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com", "Emergency Admin 01")
ALICE = user("alice")
BOB = user("bob")
CONFIG = {"break_glass": {"accounts": [BG[0]]}}
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")

CASES = [
    Case(
        "the break-glass account resets another user's password",
        [
            directory(
                "Reset password (by admin)", "2026-03-10T02:25:00Z", BG, ALICE, category="UserManagement"
            )
        ],
        [
            {
                "severity": "critical",
                "title": "Break-glass account bg-admin01@contoso.onmicrosoft.com performed "
                "'Reset password (by admin)' on alice@contoso.com",
                "principal": {"id": BG[0]},
                "context": {"activity": "Reset password (by admin)"},
            }
        ],
        CONFIG,
    ),
    Case(
        "someone changes the break-glass account's role (Core Directory, outside PIM)",
        [directory("Remove member from role", "2026-03-10T09:00:00Z", BOB, BG, role=GA)],
        [
            {
                "title": "Break-glass account bg-admin01@contoso.onmicrosoft.com was the target of "
                "'Remove member from role' by bob@contoso.com",
                "context": {"role": "Global Administrator"},
            }
        ],
        CONFIG,
    ),
    Case(
        "everything about the account within the hour folds into one alert listing the activities",
        [
            directory("Update user", "2026-03-10T09:00:00Z", BOB, BG, category="UserManagement"),
            directory("Update user", "2026-03-10T09:20:00Z", BOB, BG, category="UserManagement"),
            directory(
                "User registered security info", "2026-03-10T09:21:00Z", BG, BG, category="UserManagement"
            ),
            directory("Update user", "2026-03-10T10:05:00Z", BOB, BG, category="UserManagement"),
        ],
        [
            {
                "count": 3,
                "title_has": "'Update user' by bob",
                "context": {"activities": ["Update user", "User registered security info"]},
            },
            {"count": 1, "first_seen": "2026-03-10T10:05:00.000000Z"},
        ],
        CONFIG,
    ),
    Case(
        "one PIM action on the account (requested, completed, the MS-PIM directory write) is one alert",
        [
            pim(
                "Add member to role in PIM requested (permanent)",
                "2026-03-10T11:00:00Z",
                BOB,
                principal=BG,
                role=GA,
            ),
            directory("Add member to role", "2026-03-10T11:00:30Z", "MS-PIM", BG, role=GA),
            pim(
                "Add member to role in PIM completed (permanent)",
                "2026-03-10T11:00:31Z",
                BOB,
                principal=BG,
                role=GA,
            ),
        ],
        [{"count": 3, "title_has": "'Add member to role in PIM requested (permanent)' by bob"}],
        CONFIG,
    ),
    Case(
        "a PIM record about the account (permanent assignment through PIM) alerts",
        [
            pim(
                "Add member to role in PIM completed (permanent)",
                "2026-03-10T11:00:00Z",
                BOB,
                principal=BG,
                role=GA,
            )
        ],
        [{"title_has": "was the target of 'Add member to role in PIM completed (permanent)'"}],
        CONFIG,
    ),
    Case(
        "activity between ordinary users is quiet",
        [
            directory(
                "Reset password (by admin)", "2026-03-10T02:25:00Z", BOB, ALICE, category="UserManagement"
            )
        ],
        [],
        CONFIG,
    ),
]
