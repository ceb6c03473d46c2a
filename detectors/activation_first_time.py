"""A principal activates a role it has not activated in the previous N days.

Sentinel's "new role activation" hunt (detections.md D16) left-anti-joins today's activations with
the previous 14 days. Here every ``Add member to role completed (PIM activation)`` is kept in the
store per (principal, role and scope). Whether one had none in the ``lookback_days`` before it is a
question about an *absence*, so it is decided in :func:`tick`, once the clock has passed the
activation plus :data:`LATENESS` (15 minutes), from all the history known then: an earlier activation that
arrives after a later one still counts (two at the same time: the smaller record id is the earlier).
A fresh install knows no history, so nothing alerts until the detector has watched for
``learning_hours`` (default: the lookback) from the earliest activation it has seen — otherwise
every admin's first activation would page.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pimwatch.detection import (
    ACTIVATION_COMPLETED,
    ACTIVATION_END,
    Case,
    Count,
    Detector,
    Event,
    History,
    Hit,
    Params,
    Principal,
    Resolve,
    Severity,
    Skip,
    State,
    Window,
    activation_key,
    end_of,
    ended,
    iso,
    minutes,
    parse_time,
)
from pimwatch.detection.records import pim, user


class Config(Params):
    lookback_days: Annotated[Count, History(timedelta(days=1))] = 14  # how far back an activation counts
    learning_hours: Count = 336  # quiet this long after the first activation seen (not a look-back)


DETECTOR = Detector(
    id="activation.first_time",
    severity=Severity.LOW,
    summary="A principal activated a role it had not activated in the lookback period.",
    runbook=(
        "Check that the person's duties changed (new project, new on-call rota) and the justification; "
        "a first activation of a high role by an account that never needed it is a takeover pattern."
    ),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    anchors=("Sentinel (new role activation, 14 d)",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_COMPLETED}) | ACTIVATION_END,
    window=Window(suppress=minutes(1440)),
    params=Config,
)
# How late an earlier activation may be read and still count: Entra delivers audit records minutes
# late (within the retention's slack, so its history is still there).
LATENESS = timedelta(minutes=15)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DUE = "due"  # activations not judged yet


def detect(event: Event, state: State[Config]) -> Resolve | None:
    if event.activity in ACTIVATION_END:
        return ended(event, state, DETECTOR)  # the role is no longer active: resolved
    if event.failed:
        return None
    who = event.subject
    role = event.role_id or event.role_name
    if not (who.id or who.upn) or not role:
        raise Skip("activation without a principal or a role")
    since = state.get("watching-since")
    if since is None or iso(event.time) < since:
        state.put("watching-since", iso(event.time))
    history = f"{(who.id or who.upn or '').lower()}|{role.lower()}|{(event.scope_id or '').lower()}"
    state.add(history, event.id, event.time)
    days = state.params.lookback_days
    label = event.role_name or event.role_id
    if event.scope_type in ("group", "resource"):
        label = f"{label} ({event.scope_name or event.scope_id})"
    due: dict[str, Any] = {
        "history": history,
        "key": list(activation_key(event)),
        "title": f"{who.label()} activated {label} for the first time in {days} days",
        "context": {"role": event.role_name, "role_id": event.role_id, "justification": event.justification},
        "principal": who.as_alert(),
    }
    state.add(DUE, event.id, event.time, payload=due)
    return None


def tick(now: datetime, state: State[Config]) -> list[Hit | Resolve]:
    """Judge the activations at least :data:`LATENESS` old at ``now``: first in the lookback?"""
    lookback = timedelta(days=state.params.lookback_days)
    learning = timedelta(hours=state.params.learning_hours)
    started = parse_time(state.get("watching-since"))
    out: list[Hit | Resolve] = []
    for m in state.members(DUE, _EPOCH, now - LATENESS):
        state.remove(DUE, m.member)
        p = m.payload or {}
        at = datetime.fromtimestamp(m.at, UTC)
        earlier = [
            e for e in state.members(p["history"], at - lookback, at) if (e.at, e.member) < (m.at, m.member)
        ]
        if earlier or started is None or at - started < learning:
            continue
        key = tuple(p["key"])
        resolve = DETECTOR.resolve(key=key, at=end_of(state, key, at))
        hit = Hit(resolve.key, p["title"], p["context"], Principal(**p["principal"]), record=(at, m.member))
        out += [hit, resolve] if resolve.at is not None else [hit]
    return out


ALICE = user("adm-alice")
BOB = user("adm-bob")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
EXO = ("Exchange Administrator", "29232cdf-9323-42fd-ade2-1d097af3e4de")
LEARN = {"detectors": {"activation.first_time": {"learning_hours": 24}}}


def _act(who: tuple[str, str | None, str | None], at: str, role: tuple[str, str] = UA) -> dict[str, object]:
    return pim(ACTIVATION_COMPLETED, at, who, principal=who, role=role, justification="CHG-1")


def _later(at: str) -> dict[str, object]:
    """A later record: it moves the replay clock (the watermark) past the lateness of the others."""
    return _act(BOB, at, EXO)


CASES = [
    Case(
        "after the learning period, a role the admin never activated alerts; a known one does not",
        [
            _act(ALICE, "2026-03-01T09:00:00Z"),
            _act(BOB, "2026-03-01T10:00:00Z", EXO),
            _act(ALICE, "2026-03-05T09:00:00Z"),
            _act(ALICE, "2026-03-05T10:00:00Z", EXO),
            _later("2026-03-05T11:00:00Z"),
        ],
        [
            {
                "severity": "low",
                "title": "adm-alice@contoso.com activated Exchange Administrator for the first time "
                "in 14 days",
                "principal": {"upn": "adm-alice@contoso.com"},
                "context": {"role_id": EXO[1]},
            }
        ],
        LEARN,
    ),
    Case(
        "resolved when the activation is deactivated early",
        [
            _act(ALICE, "2026-03-01T09:00:00Z"),
            _act(ALICE, "2026-03-05T10:00:00Z", EXO),
            pim(
                "Remove member from role completed (PIM deactivate)",
                "2026-03-05T10:30:00Z",
                ALICE,
                principal=ALICE,
                role=EXO,
            ),
            _later("2026-03-05T11:00:00Z"),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-05T10:30:00.000000Z"}],
        LEARN,
    ),
    Case(
        "a role last activated more than the lookback ago counts as new again",
        [
            _act(ALICE, "2026-03-01T09:00:00Z"),
            _act(ALICE, "2026-03-20T09:00:00Z"),
            _later("2026-03-20T10:00:00Z"),
        ],
        [{"first_seen": "2026-03-20T09:00:00.000000Z"}],
        LEARN,
    ),
    Case(
        "during the learning period nothing alerts (a fresh install knows no history)",
        [
            _act(ALICE, "2026-03-01T09:00:00Z"),
            _act(ALICE, "2026-03-01T11:00:00Z", EXO),
            _later("2026-03-01T12:00:00Z"),
        ],
        [],
        LEARN,
    ),
    Case(
        "the default learning period is the two-week lookback",
        [
            _act(BOB, "2026-03-01T09:00:00Z"),
            _act(ALICE, "2026-03-05T09:00:00Z"),
            _later("2026-03-05T10:00:00Z"),
        ],
        [],
    ),
    Case(
        "the earlier activation is read after the later one: still not a first time",
        [
            _act(ALICE, "2026-03-05T09:00:00Z"),
            _act(ALICE, "2026-03-01T09:00:00Z"),
            _later("2026-03-05T10:00:00Z"),
        ],
        [],
        LEARN,
    ),
    Case(
        "not judged until the clock has passed the activation plus its lateness",
        [_act(ALICE, "2026-03-01T09:00:00Z"), _act(ALICE, "2026-03-05T10:00:00Z", EXO)],
        [],
        LEARN,
    ),
]
