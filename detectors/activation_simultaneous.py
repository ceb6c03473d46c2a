"""One principal gets several distinct roles activated within minutes.

Activations are ``Add member to role completed (PIM activation)`` records (Entra roles, PIM for
Groups and Azure resources alike). The Core Directory ``Add member to role`` that PIM writes for the
same activation (initiated by MS-PIM) is a different activity and is not counted twice.

The alert is resolved when the activations it is about have all ended (``Remove member from role
(PIM activation expired)`` or ``... completed (PIM deactivate)``, :mod:`pimwatch.detection.lifecycle`): the
detector keeps each activation of the principal and, on every activation or end, finds the ones
counted in a burst (``threshold`` distinct roles within ``within_minutes``, as the engine counts
them). Counted activations that overlap in time (one starts before the others have ended) are one
episode; when every activation of an episode has ended, its alerts are resolved at the latest of
those ends; while one is still active, they stay open, and so do the principal's later alerts (a
resolution closes every older open alert of the principal: the outbox resolves by key), for up to
the week of state the detector reads around a record. Ends that arrive before their activation are
remembered, so any arrival order converges. Limits: an activation that arrives after its burst's
alert was resolved folds into the resolved alert (an alert is never reopened), and a second burst
that overlaps the first but arrives after the first's ends leaves the first resolved at its own end.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from pimwatch.detection import (
    ACTIVATION_COMPLETED,
    ACTIVATION_END,
    ACTIVATION_ENDED,
    LONGEST_ACTIVATION,
    Case,
    Detector,
    Event,
    Hit,
    Member,
    Resolve,
    Severity,
    Skip,
    State,
    Window,
    activation_key,
    end_of,
    minutes,
    remember_end,
)
from pimwatch.detection.records import PIM_SYSTEM, directory, pim, user

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
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_COMPLETED}) | ACTIVATION_END,
    window=Window(
        threshold=3, within=minutes(10), suppress=minutes(60), distinct="roles", accumulate=("roles",)
    ),
)

# How far around a record the episodes are read: a resolution closes every older open alert of the
# principal too, so every activation that may still hold one open must be seen. The clean-up keeps a
# week of state at least (pimwatch.state.retention.FLOOR); what is older is over anyway.
HISTORY = timedelta(days=7)


def detect(event: Event, state: State) -> Hit | Resolve | list[Hit | Resolve] | None:
    if event.activity in ACTIVATION_END:
        key = remember_end(event, state)
        if key is None or not key[0]:
            return None
        at = event.time.timestamp()

        def ended_here(act: Member) -> bool:
            mine = _same(tuple((act.payload or {}).get("key", ())), key)
            return mine and act.at <= at <= act.at + LONGEST_ACTIVATION.total_seconds()

        return _resolutions(key[0], event.time, state, ended_here) or None
    if event.activity != ACTIVATION_COMPLETED or event.failed:
        return None
    who = event.subject
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
    window = state.window
    title = f"{who.label()} activated {window.threshold} or more roles within {window.within_minutes} minutes"
    context = {"roles": [label], "justification": event.justification, "request_id": event.request_id}
    pid = who.id or who.upn or ""
    state.add(_activations(pid), event.id, event.time, distinct, {"key": list(activation_key(event))})
    hit = DETECTOR.alert(event, key=(pid,), title=title, context=context, principal=who, distinct=distinct)
    return [hit, *_resolutions(pid, event.time, state, lambda act: act.member == event.id)]


def _activations(pid: str) -> str:
    return f"activations:{pid.lower()}"


def _same(a: tuple[str | None, ...], b: tuple[str | None, ...]) -> bool:
    return [(k or "").lower() for k in a] == [(k or "").lower() for k in b]


def _resolutions(
    pid: str, around: datetime, state: State, touched: Callable[[Member], bool]
) -> list[Hit | Resolve]:
    """The resolutions due now that the record at hand changed the activation it ``touched``.

    The counted activations (those in a burst) near ``around`` form episodes: an activation that
    starts before every earlier one has ended joins their episode. An episode is over at the latest
    end of its activations. Each alert belongs to one episode and begins after the previous episode
    is over, so resolving at an episode's end closes its alerts and no later ones. The episodes are
    resolved in time order up to the first one still active (resolving past it would close its
    alerts too), and only when the touched activation is among them (otherwise nothing changed)."""
    acts = state.members(_activations(pid), around - HISTORY, around + HISTORY)
    counted = state.window.counted(acts)
    episodes: list[tuple[list[Member], float | None]] = []  # activations, end (None: one active)
    for act in sorted(counted, key=lambda a: (a.at, a.member)):
        key = tuple((act.payload or {}).get("key", ()))
        end = end_of(state, key, datetime.fromtimestamp(act.at, UTC)) if key else None
        stop = end.timestamp() if end is not None else None
        if episodes and (episodes[-1][1] is None or act.at <= episodes[-1][1]):
            members, last = episodes[-1]
            episodes[-1] = ([*members, act], None if last is None or stop is None else max(last, stop))
        else:
            episodes.append(([act], stop))
    over: list[Hit | Resolve] = []
    changed = False
    for members, stop in episodes:
        if stop is None:
            break
        changed = changed or any(touched(m) for m in members)
        over.append(DETECTOR.resolve(key=(pid,), at=datetime.fromtimestamp(stop, UTC)))
    return over if changed else []


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


def _expired(who: tuple[str, str | None, str | None], at: str, role: tuple[str, str]) -> dict[str, object]:
    return pim(ACTIVATION_ENDED, at, PIM_SYSTEM, principal=who, role=role)


def _deactivated(
    who: tuple[str, str | None, str | None], at: str, role: tuple[str, str]
) -> dict[str, object]:
    return pim("Remove member from role completed (PIM deactivate)", at, who, principal=who, role=role)


def _burst(who: tuple[str, str | None, str | None], day: str, hour: str = "09") -> list[dict[str, object]]:
    """Three roles in four minutes (each case its own day: the cases also run as one stream)."""
    return [_act(who, f"2026-03-{day}T{hour}:0{2 * i}:00Z", ROLES[i]) for i in range(3)]


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
        "resolved when the last of its activations ends (one deactivated early, two expired)",
        [
            *_burst(OSCAR, "11"),
            _deactivated(OSCAR, "2026-03-11T09:30:00Z", ROLES[1]),
            directory("Remove member from role", "2026-03-11T10:59:54Z", "MS-PIM", OSCAR, role=ROLES[0]),
            _expired(OSCAR, "2026-03-11T11:00:00Z", ROLES[0]),
            _expired(OSCAR, "2026-03-11T11:04:00Z", ROLES[2]),
        ],
        [{"count": 3, "status": "resolved", "resolved_at": "2026-03-11T11:04:00.000000Z"}],
    ),
    Case(
        "one of three activations ended: still open",
        [*_burst(OSCAR, "11"), _deactivated(OSCAR, "2026-03-11T09:30:00Z", ROLES[1])],
        [{"count": 3, "status": "open", "resolved_at": None}],
    ),
    Case(
        "the ends arrive before their activations (Entra delivers out of order): resolved all the same",
        [
            _expired(OSCAR, "2026-03-12T10:00:00Z", ROLES[0]),
            _expired(OSCAR, "2026-03-12T10:02:00Z", ROLES[1]),
            _expired(OSCAR, "2026-03-12T10:04:00Z", ROLES[2]),
            *_burst(OSCAR, "12"),
        ],
        [{"count": 3, "status": "resolved", "resolved_at": "2026-03-12T10:04:00.000000Z"}],
    ),
    Case(
        "a later activation outside the burst does not keep the alert open; another's ends do not close it",
        [
            *_burst(OSCAR, "13"),
            *(_expired(OSCAR, f"2026-03-13T10:0{2 * i}:00Z", ROLES[i]) for i in range(3)),
            _act(OSCAR, "2026-03-13T10:30:00Z", ROLES[3]),
            *_burst(MALLORY, "13", "12"),
            *(_expired(MALLORY, f"2026-03-13T13:0{2 * i}:00Z", ROLES[i]) for i in range(2)),
        ],
        [
            {"principal": {"upn": "adm-oscar@contoso.com"}, "status": "resolved"},
            {"principal": {"upn": "adm-mallory@contoso.com"}, "status": "open"},
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
