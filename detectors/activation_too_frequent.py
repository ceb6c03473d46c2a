"""The same principal activates the same role again and again within a few hours.

Parity with PIM's built-in alert "Roles are being activated too frequently"
(``SequentialActivationRenewalsAlert``; detections.md D18 and §2.1): the same user activates the same
privileged role ``threshold`` times within a timeframe. PIM scans for it periodically; here it fires
on the activation that crosses the threshold. Repeated short activations hint at a shared account or
an activation duration too short for the work — or at someone re-arming a role each time it expires.

Only ``Add member to role completed (PIM activation)`` counts (Entra roles, PIM for Groups and Azure
resources alike), successful records only. The Core Directory ``Add member to role`` (or ``Add member
to group``) that app MS-PIM writes a few seconds after each completion is a different activity and is
never read, so one activation counts once (detections.md §3). The key is the principal and the role
at its scope (role template id + scope id: Member of group A and Member of group B are different
roles); every activation record is a distinct value, and a record delivered twice counts once (the
engine keys window members on the record id). PIM's defaults are not documented (a configuration
captured from a live tenant shows a counter threshold of 3), so ``threshold: 3`` within
``within_minutes: 240``; ``suppress_minutes: 240`` folds a longer streak into one alert per 4 h.

The alert is never resolved by the end of an activation (expired or deactivated): it is about how
often the role was activated, and that rate does not change when the activations end — re-arming a
role as soon as it expires is the very pattern it reports. Close it by hand once the cause is known.
"""

from __future__ import annotations

from pimwatch.detection import (
    ACTIVATION_COMPLETED,
    Case,
    Detector,
    Event,
    Hit,
    Severity,
    Skip,
    State,
    Window,
    iso,
    minutes,
)
from pimwatch.detection.records import directory, guid, pim, user

DETECTOR = Detector(
    id="activation.too_frequent",
    severity=Severity.MEDIUM,
    summary="A principal activated the same role several times within a few hours.",
    runbook=(
        "Ask the person why the role was activated so often: a shared or scripted account, or an "
        "activation duration too short for the task (lengthen it or require MFA on activation, as PIM "
        "recommends). Compare the justifications and the sign-ins behind each activation."
    ),
    anchors=("Microsoft PIM (built-in alert)", "Sigma"),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_COMPLETED}),
    window=Window(
        threshold=3,
        within=minutes(240),
        suppress=minutes(240),
        distinct="activations (records)",
        accumulate=("activated_at", "justifications", "request_ids"),
    ),
)


def span(minutes: object) -> str:
    """``240`` → ``4 hours``, ``90`` → ``90 minutes``: the window as a title says it."""
    m = float(minutes) if isinstance(minutes, (int, float)) else 0.0
    if m >= 60 and m % 60 == 0:
        hours = int(m // 60)
        return "1 hour" if hours == 1 else f"{hours} hours"
    return f"{m:g} minutes"


def detect(event: Event, state: State) -> Hit | None:
    if event.activity != ACTIVATION_COMPLETED or event.failed:
        return None
    who = event.subject
    if not (who.id or who.upn):
        raise Skip("activation without a principal")
    role = event.role_name or event.role_id
    if role is None:
        raise Skip("activation without a role")
    scope = event.scope_name or event.scope_id
    label = f"{role} ({scope})" if event.scope_type in ("group", "resource") and scope else role
    title = (
        f"{who.label()} activated {label} {state.window.threshold} or more times within "
        f"{span(state.window.within_minutes)}"
    )
    context = {
        "role": event.role_name,
        "role_id": event.role_id,
        "scope_type": event.scope_type,
        "scope": scope,
        "activated_at": [iso(event.time)],
        "justifications": [event.justification] if event.justification else [],
        "request_ids": [event.request_id] if event.request_id else [],
    }
    return DETECTOR.alert(
        event,
        key=(who.id or who.upn, event.role_id or role, event.scope_id),
        title=title,
        context=context,
        principal=who,
        distinct=event.id,
    )


PAULA = user("adm-paula")
VICTOR = user("adm-victor")
WENDY = user("adm-wendy")
EXCHANGE = ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de")
SHAREPOINT = ("SharePoint Administrator", "f28a1f50-f6e7-4571-818b-6a12f2af6b6c")
MEMBER = ("Member", "member")
GROUP_A = (guid("group", "pim-exchange-ops"), "PIM-Exchange-Ops")
GROUP_B = (guid("group", "pim-sharepoint-ops"), "PIM-SharePoint-Ops")


def _act(
    who: tuple[str, str | None, str | None],
    at: str,
    role: tuple[str, str] = EXCHANGE,
    group: tuple[str, str] | None = None,
) -> dict[str, object]:
    if group is not None:
        return pim(
            ACTIVATION_COMPLETED,
            at,
            who,
            principal=who,
            role=MEMBER,
            category="GroupManagement",
            group=group,
            justification="mailbox migration",
        )
    return pim(ACTIVATION_COMPLETED, at, who, principal=who, role=role, justification="mailbox migration")


def _mirror(
    who: tuple[str, str | None, str | None], at: str, role: tuple[str, str] = EXCHANGE
) -> dict[str, object]:
    return directory("Add member to role", at, "MS-PIM", who, role=role)


CASES = [
    Case(
        "three activations of one role in three hours, with their MS-PIM mirrors and a duplicate",
        [
            _act(PAULA, "2026-03-10T08:10:00Z"),
            _mirror(PAULA, "2026-03-10T08:10:04Z"),
            _act(PAULA, "2026-03-10T09:20:00Z"),
            _mirror(PAULA, "2026-03-10T09:20:03Z"),
            _act(PAULA, "2026-03-10T09:20:00Z"),  # the same record delivered twice
            _act(PAULA, "2026-03-10T11:05:00Z"),
            _mirror(PAULA, "2026-03-10T11:05:05Z"),
        ],
        [
            {
                "severity": "medium",
                "count": 3,
                "title": "adm-paula@contoso.com activated Exchange Administrator 3 or more times within "
                "4 hours",
                "principal": {"upn": "adm-paula@contoso.com"},
                "first_seen": "2026-03-10T08:10:00.000000Z",
                "last_seen": "2026-03-10T11:05:00.000000Z",
                "context": {
                    "role_id": EXCHANGE[1],
                    "activated_at": [
                        "2026-03-10T08:10:00.000000Z",
                        "2026-03-10T09:20:00.000000Z",
                        "2026-03-10T11:05:00.000000Z",
                    ],
                    "justifications": ["mailbox migration"],
                },
            }
        ],
    ),
    Case(
        "two activations and their MS-PIM mirrors stay below the threshold",
        [
            _act(VICTOR, "2026-03-10T08:10:00Z"),
            _mirror(VICTOR, "2026-03-10T08:10:04Z"),
            _act(VICTOR, "2026-03-10T09:20:00Z"),
            _mirror(VICTOR, "2026-03-10T09:20:03Z"),
            _mirror(VICTOR, "2026-03-10T10:30:03Z"),
        ],
        [],
    ),
    Case(
        "three activations spread over five hours are not too frequent",
        [
            _act(VICTOR, "2026-03-11T08:00:00Z"),
            _act(VICTOR, "2026-03-11T10:30:00Z"),
            _act(VICTOR, "2026-03-11T13:00:00Z"),
        ],
        [],
    ),
    Case(
        "different roles do not add up (that is activation.simultaneous)",
        [
            _act(WENDY, "2026-03-10T08:10:00Z", EXCHANGE),
            _act(WENDY, "2026-03-10T08:40:00Z", SHAREPOINT),
            _act(WENDY, "2026-03-10T09:10:00Z", EXCHANGE),
        ],
        [],
    ),
    Case(
        "PIM for Groups: Member of two different groups are two roles",
        [
            _act(WENDY, "2026-03-11T08:10:00Z", group=GROUP_A),
            _act(WENDY, "2026-03-11T09:10:00Z", group=GROUP_B),
            _act(WENDY, "2026-03-11T10:10:00Z", group=GROUP_A),
        ],
        [],
    ),
    Case(
        "PIM for Groups: the same group three times alerts and names the group",
        [
            _act(WENDY, "2026-03-12T08:10:00Z", group=GROUP_A),
            _act(WENDY, "2026-03-12T09:10:00Z", group=GROUP_A),
            _act(WENDY, "2026-03-12T10:10:00Z", group=GROUP_A),
        ],
        [
            {
                "count": 3,
                "title": "adm-wendy@contoso.com activated Member (PIM-Exchange-Ops) 3 or more times "
                "within 4 hours",
                "context": {"scope_type": "group", "scope": "PIM-Exchange-Ops"},
            }
        ],
    ),
    Case(
        "threshold and window come from the config",
        [_act(VICTOR, "2026-03-12T08:00:00Z"), _act(VICTOR, "2026-03-12T08:50:00Z")],
        [
            {
                "count": 2,
                "title": "adm-victor@contoso.com activated Exchange Administrator 2 or more times within "
                "1 hour",
            }
        ],
        {"detectors": {"activation.too_frequent": {"threshold": 2, "within_minutes": 60}}},
    ),
    Case(
        "failed completions are not activations (spread out so they are not repeated failures either)",
        [
            pim(ACTIVATION_COMPLETED, at, PAULA, principal=PAULA, result="failure")
            for at in ("2026-03-12T09:00:00Z", "2026-03-12T09:40:00Z", "2026-03-12T10:20:00Z")
        ],
        [],
    ),
]
