"""Repeated failed or denied activation requests for one principal.

Counted together (entra-events.md §3.2): ``result: failure`` on PIM activation request records,
``... request denied (PIM activation)`` and ``PIM activation request expired``. The key is the
principal who asked (the User target), not the approver who denied. Benign reasons such as
``RoleAssignmentExists`` (the role was already active) are excluded, the list configurable.
"""

from __future__ import annotations

from pimwatch.detection import (
    ACTIVATION_DENIED,
    ACTIVATION_EXPIRED_REQUEST,
    ACTIVATION_REQUEST_ACTIVITIES,
    ACTIVATION_REQUESTED,
    PIM_SERVICE,
    Case,
    Detector,
    Event,
    Hit,
    Params,
    Severity,
    Skip,
    State,
    Window,
    is_pim_activation_failure,
    minutes,
)
from pimwatch.detection.records import PIM_SYSTEM, pim, user


class Config(Params):
    benign_reasons: list[str] = ["RoleAssignmentExists"]  # result reasons that are not a failure


DETECTOR = Detector(
    id="activation.repeated_failure",
    severity=Severity.HIGH,
    summary="A principal's privileged-role activation requests keep failing or being denied.",
    runbook=(
        "Contact the requester: repeated refusals can be someone probing with a stolen session, or a "
        "legitimate admin blocked in an emergency. Check the reasons and the requester's sign-ins."
    ),
    anchors=("Sentinel (single denial)", "Sigma (single denial)"),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=ACTIVATION_REQUEST_ACTIVITIES,
    window=Window(
        threshold=3,
        within=minutes(30),
        suppress=minutes(60),
        distinct="failed or denied requests",
        accumulate=("roles", "outcomes"),
    ),
    params=Config,
)


def detect(event: Event, state: State[Config]) -> Hit | None:
    if event.service != "PIM" or not is_pim_activation_failure(event.activity, event.failed):
        return None
    reason = event.result_reason or ""
    benign = state.params.benign_reasons
    if any(b.lower() in reason.lower() for b in benign if b):
        return None
    who = event.subject
    if who.id == PIM_SERVICE or not (who.id or who.upn):
        raise Skip("failure without a requesting principal")
    if event.activity == ACTIVATION_DENIED:
        outcome = f"denied by {event.actor.label()}"
    elif event.activity == ACTIVATION_EXPIRED_REQUEST:
        outcome = "request expired"
    else:
        outcome = f"failed: {reason}" if reason else "failed"
    window = state.window
    title = (
        f"{who.label()} had {window.threshold} or more failed or denied role activations"
        f" within {window.within_minutes} minutes"
    )
    context = {
        "roles": [event.role_name or event.role_id or "(unknown role)"],
        "outcomes": [outcome],
        "request_id": event.request_id,
    }
    return DETECTOR.alert(event, key=(who.id or who.upn,), title=title, context=context, principal=who)


TRUDY = user("adm-trudy")
CAROL = user("adm-carol")
APPROVER = user("approver.dan")
HELPDESK = ("Helpdesk Administrator", "729827e3-9c14-49f7-bb1b-9608f156bbb8")


def _denied(at: str, who: tuple[str, str | None, str | None] = TRUDY) -> dict[str, object]:
    return pim(ACTIVATION_DENIED, at, APPROVER, principal=who, reason="Not approved: no change ticket")


CASES = [
    Case(
        "two denials, a policy failure and an expiry in twenty minutes",
        [
            _denied("2026-03-10T10:30:00Z"),
            pim(
                ACTIVATION_REQUESTED,
                "2026-03-10T10:36:00Z",
                TRUDY,
                principal=TRUDY,
                role=HELPDESK,
                result="failure",
                reason="JustificationRule",
            ),
            _denied("2026-03-10T10:41:00Z"),
            pim(ACTIVATION_EXPIRED_REQUEST, "2026-03-10T10:50:00Z", PIM_SYSTEM, principal=TRUDY),
        ],
        [
            {
                "severity": "high",
                "count": 4,
                "title": "adm-trudy@contoso.com had 3 or more failed or denied role activations "
                "within 30 minutes",
                "principal": {"upn": "adm-trudy@contoso.com"},
                "context": {
                    "outcomes": [
                        "denied by approver.dan@contoso.com",
                        "failed: JustificationRule",
                        "request expired",
                    ]
                },
            }
        ],
    ),
    Case(
        "the key is the requester: denials by one approver for different people do not add up",
        [
            _denied("2026-03-10T10:30:00Z", TRUDY),
            _denied("2026-03-10T10:31:00Z", CAROL),
            _denied("2026-03-10T10:32:00Z", user("adm-erin")),
        ],
        [],
    ),
    Case(
        "RoleAssignmentExists is benign",
        [
            pim(
                ACTIVATION_REQUESTED,
                f"2026-03-10T11:0{i}:00Z",
                CAROL,
                principal=CAROL,
                result="failure",
                reason="RoleAssignmentExists",
            )
            for i in range(4)
        ],
        [],
    ),
    Case(
        "three failures spread over two hours stay quiet",
        [_denied("2026-03-10T08:00:00Z"), _denied("2026-03-10T09:00:00Z"), _denied("2026-03-10T10:00:00Z")],
        [],
    ),
    Case(
        "a successful request is not a failure",
        [pim(ACTIVATION_REQUESTED, f"2026-03-10T11:0{i}:00Z", CAROL, principal=CAROL) for i in range(4)],
        [],
    ),
]
