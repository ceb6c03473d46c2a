"""One principal gets several distinct roles activated within minutes.

Activations are ``Add member to role completed (PIM activation)`` records (Entra roles, PIM for
Groups and Azure resources alike). The Core Directory ``Add member to role`` that PIM writes for the
same activation (initiated by MS-PIM) is a different activity and is not counted twice.
"""

from __future__ import annotations

from pimwatch.activities import ACTIVATION_COMPLETED
from pimwatch.alerts import Severity
from pimwatch.detector import Case, Detector, Hit, Skip, State
from pimwatch.event import Event
from pimwatch.testing import directory, pim, user

DETECTOR = Detector(
    id="activation.simultaneous",
    severity=Severity.HIGH,
    summary="One principal activated several distinct privileged roles within a few minutes.",
    runbook=(
        "Ask the person why they needed these roles together; compare the justifications; check the "
        "sign-in that preceded the activations. A burst of activations is typical of a hijacked session "
        "collecting privileges."
    ),
    anchors=(),
    mitre=("T1078.004", "T1098.003"),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_COMPLETED}),
    params={"threshold": 3, "within_minutes": 10, "suppress_minutes": 60},
    accumulate=("roles",),
)


def detect(event: Event, state: State) -> Hit | None:
    if event.activity != ACTIVATION_COMPLETED or event.failed:
        return None
    who = event.target if (event.target.id or event.target.upn) else event.actor
    if not (who.id or who.upn):
        raise Skip("activation without a principal")
    role = event.role_name or event.role_id
    if role is None:
        raise Skip("activation without a role")
    label = (
        f"{role} ({event.scope_name or event.scope_id})"
        if event.scope_type in ("group", "resource")
        else role
    )
    distinct = f"{(event.role_id or role).lower()}@{(event.scope_id or '').lower()}"
    threshold = state.params["threshold"]
    minutes = state.params["within_minutes"]
    title = f"{who.label()} activated {threshold} or more roles within {minutes} minutes"
    context = {"roles": [label], "justification": event.justification, "request_id": event.request_id}
    return DETECTOR.alert(
        event, key=(who.id or who.upn,), title=title, context=context, principal=who, distinct=distinct
    )


MALLORY = user("adm-mallory")
OSCAR = user("adm-oscar")
ROLES = [
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de"),
    ("Security Administrator", "194ae4cb-b126-40b2-bd5b-6091b380977d"),
    ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10"),
]


def _act(who: tuple[str, str | None, str | None], at: str, role: tuple[str, str]) -> dict[str, object]:
    return pim(ACTIVATION_COMPLETED, at, who, principal=who, role=role, justification="ticket CHG0012")


def _mirror(who: tuple[str, str | None, str | None], at: str, role: tuple[str, str]) -> dict[str, object]:
    return directory("Add member to role", at, "MS-PIM", who, role=role)


CASES = [
    Case(
        "four roles in six minutes: one alert listing every role",
        [
            _act(MALLORY, "2026-03-10T14:05:00Z", ROLES[0]),
            _mirror(MALLORY, "2026-03-10T14:05:01Z", ROLES[0]),
            _act(MALLORY, "2026-03-10T14:07:00Z", ROLES[1]),
            _mirror(MALLORY, "2026-03-10T14:07:01Z", ROLES[1]),
            _act(MALLORY, "2026-03-10T14:09:00Z", ROLES[2]),
            _act(MALLORY, "2026-03-10T14:11:00Z", ROLES[3]),
        ],
        [
            {
                "severity": "high",
                "count": 4,
                "title": "adm-mallory@contoso.com activated 3 or more roles within 10 minutes",
                "principal": {"upn": "adm-mallory@contoso.com"},
                "context": {
                    "roles": [
                        "Exchange Administrator",
                        "Global Administrator",
                        "Security Administrator",
                        "User Administrator",
                    ]
                },
            }
        ],
    ),
    Case(
        "two roles in ten minutes is below the threshold",
        [_act(OSCAR, "2026-03-10T09:00:00Z", ROLES[0]), _act(OSCAR, "2026-03-10T09:09:00Z", ROLES[1])],
        [],
    ),
    Case(
        "three roles spread over two hours are not simultaneous",
        [
            _act(OSCAR, "2026-03-10T09:00:00Z", ROLES[0]),
            _act(OSCAR, "2026-03-10T10:00:00Z", ROLES[1]),
            _act(OSCAR, "2026-03-10T11:00:00Z", ROLES[2]),
        ],
        [],
    ),
    Case(
        "the same role activated three times is one distinct role",
        [
            _act(OSCAR, "2026-03-10T09:00:00Z", ROLES[0]),
            _act(OSCAR, "2026-03-10T09:03:00Z", ROLES[0]),
            _act(OSCAR, "2026-03-10T09:06:00Z", ROLES[0]),
        ],
        [],
    ),
    Case(
        "threshold and window come from the config",
        [_act(OSCAR, "2026-03-10T09:00:00Z", ROLES[0]), _act(OSCAR, "2026-03-10T09:20:00Z", ROLES[1])],
        [{"count": 2, "title": "adm-oscar@contoso.com activated 2 or more roles within 30 minutes"}],
        {"detectors": {"activation.simultaneous": {"threshold": 2, "within_minutes": 30}}},
    ),
    Case(
        "Core Directory mirrors alone (MS-PIM) are not activations",
        [_mirror(OSCAR, f"2026-03-10T09:0{i}:00Z", ROLES[i]) for i in range(3)],
        [],
    ),
]
