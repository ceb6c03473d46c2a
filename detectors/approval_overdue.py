"""An activation request waits for approval longer than the SLA: escalate the approval bottleneck.

An ``Add member to role approval requested (PIM activation)`` record opens a request (keyed by the
PIM request id, entra-events.md §3.3). ``... request approved``, ``... request denied``,
``... canceled`` and ``PIM activation request expired`` decide it. Nothing in the log says "overdue":
the alert fires on the *absence* of a decision, from :func:`tick`, which the pipeline calls with the
clock in production and with the watermark (newest event time) at the end of a replay. A request is
judged only once the clock has passed its deadline plus ``lateness_minutes`` (Entra delivers minutes
late), from the whole picture then: no decision by the deadline alerts; a decision that came after
the deadline alerts *and* resolves the alert at the decision's time. A decision read after the tick
resolves it at the same time, so ticking early or late gives the same final alert (open, then
resolved). Several decisions of one request: the earliest counts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pimwatch.detection import (
    ACTIVATION_APPROVAL_REQUESTED,
    ACTIVATION_APPROVED,
    ACTIVATION_CANCELED,
    ACTIVATION_DENIED,
    ACTIVATION_EXPIRED_REQUEST,
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
    iso,
    minutes,
    parse_time,
)
from pimwatch.detection.records import PIM_SYSTEM, pim, user

DECISIONS = frozenset(
    {ACTIVATION_APPROVED, ACTIVATION_DENIED, ACTIVATION_CANCELED, ACTIVATION_EXPIRED_REQUEST}
)


class Config(Params):
    # A request waits this long for a decision; the state is read that far back.
    sla_minutes: Annotated[Count, History(timedelta(minutes=1))] = 30
    # And this much longer, for a decision that arrives late; added to the look-back.
    lateness_minutes: Annotated[Count, History(timedelta(minutes=1), lateness=True)] = 15


DETECTOR = Detector(
    id="approval.overdue",
    severity=Severity.MEDIUM,
    summary="A privileged-role activation request has waited for approval longer than the SLA.",
    runbook=(
        "Page the approvers of the role: someone may be blocked in an emergency. If the request is not "
        "expected, ask the requester; an unexpected request for a high role is itself suspicious."
    ),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    anchors=("none (needs streaming state: PIM only e-mails approvers)",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_APPROVAL_REQUESTED} | DECISIONS),
    window=Window(suppress=minutes(1440)),
    params=Config,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A decision is looked up when its request's deadline passes (minutes after it, or later when the
# request record itself arrives late); a week covers any delivery delay, then the key expires.
DECIDED_KEPT = timedelta(days=7)


def detect(event: Event, state: State) -> Hit | Resolve | None:
    request = event.request_id
    if event.activity == ACTIVATION_APPROVAL_REQUESTED:
        if event.failed:
            return None
        if not request:
            raise Skip("approval request without a request id")
        who = event.subject
        state.add(
            "pending",
            event.id,  # not the request id: two records of one request are judged alike, not lost
            event.time,
            payload={
                "request": request.lower(),
                "record": event.id,
                "requester": who.as_alert(),
                "role": event.role_name or event.role_id,
                "scope": event.scope_name or event.scope_id,
                "justification": event.justification,
            },
        )
        return None
    if not request:
        raise Skip("decision without a request id")
    decided = state.get(f"decided:{request.lower()}")
    if decided is not None and decided["t"] <= iso(event.time):
        return None  # an earlier (or the same) decision already counts
    state.put(
        f"decided:{request.lower()}", {"t": iso(event.time), "activity": event.activity}, ttl=DECIDED_KEPT
    )
    return DETECTOR.resolve(key=(request,))


def tick(now: datetime, state: State[Config]) -> list[Hit | Resolve]:
    """Requests whose deadline (plus the allowed lateness) has passed at ``now`` without a decision."""
    sla = timedelta(minutes=state.params.sla_minutes)
    late = timedelta(minutes=state.params.lateness_minutes)
    out: list[Hit | Resolve] = []
    for m in state.members("pending", _EPOCH, now - sla - late):
        p = m.payload or {}
        request = str(p.get("request") or m.member)
        requested = datetime.fromtimestamp(m.at, UTC)
        deadline = requested + sla
        decided = state.get(f"decided:{request}")
        decided_at = parse_time(decided["t"]) if decided else None
        state.remove("pending", m.member)
        if decided_at is not None and decided_at <= deadline:
            continue
        who = Principal(**p.get("requester", {}))
        minutes = int(sla.total_seconds() // 60)
        out.append(
            Hit(
                key=(request,),
                title=f"Activation request by {who.label()} for {p.get('role') or '(unknown role)'} "
                f"waited more than {minutes} minutes for approval",
                context={
                    "request_id": request,
                    "requested_at": iso(requested),
                    "deadline": iso(deadline),
                    "role": p.get("role"),
                    "scope": p.get("scope"),
                    "justification": p.get("justification"),
                },
                principal=who,
                record=(requested, m.member),
            )
        )
        if decided_at is not None:
            out.append(DETECTOR.resolve(key=(request,), at=decided_at))
    return out


TRUDY = user("adm-trudy")
PEGGY = user("adm-peggy")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")


def _ask(at: str, request: str) -> dict[str, object]:
    return pim(
        ACTIVATION_APPROVAL_REQUESTED,
        at,
        TRUDY,
        principal=TRUDY,
        role=GA,
        request_id=request,
        justification="INC42",
    )


def _decide(activity: str, at: str, request: str) -> dict[str, object]:
    actor = PIM_SYSTEM if activity == ACTIVATION_EXPIRED_REQUEST else PEGGY
    return pim(activity, at, actor, principal=TRUDY, role=GA, request_id=request)


def _later(at: str) -> dict[str, object]:
    """Any later record: it moves the watermark (the replay clock) forward."""
    return pim("Add member to role completed (PIM activation)", at, PEGGY, principal=PEGGY)


R1, R2 = "6a0c1d1e-0000-4000-8000-000000000001", "6a0c1d1e-0000-4000-8000-000000000002"

CASES = [
    Case(
        "no decision within the SLA: the alert fires once the watermark passes deadline + lateness",
        [_ask("2026-03-10T10:00:00Z", R1), _later("2026-03-10T11:00:00Z")],
        [
            {
                "severity": "medium",
                "count": 1,
                "status": "open",
                "title": "Activation request by adm-trudy@contoso.com for Global Administrator waited more "
                "than 30 minutes for approval",
                "first_seen": "2026-03-10T10:00:00.000000Z",
                "principal": {"upn": "adm-trudy@contoso.com"},
                "context": {"request_id": R1, "deadline": "2026-03-10T10:30:00.000000Z"},
            }
        ],
    ),
    Case(
        "approved after the SLA: the alert fires and is resolved by the approval",
        [
            _ask("2026-03-10T10:00:00Z", R1),
            _decide(ACTIVATION_APPROVED, "2026-03-10T10:50:00Z", R1),
            _later("2026-03-10T12:00:00Z"),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-10T10:50:00.000000Z"}],
    ),
    Case(
        "the approval arrives after the alert fired (late in the stream): resolved",
        [
            _ask("2026-03-10T10:00:00Z", R1),
            _later("2026-03-10T11:00:00Z"),
            _decide(ACTIVATION_APPROVED, "2026-03-10T11:05:00Z", R1),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-10T11:05:00.000000Z"}],
    ),
    Case(
        "approved, denied, canceled or expired within the SLA: quiet",
        [
            _ask("2026-03-10T10:00:00Z", R1),
            _decide(ACTIVATION_APPROVED, "2026-03-10T10:08:00Z", R1),
            _ask("2026-03-10T10:01:00Z", R2),
            _decide(ACTIVATION_DENIED, "2026-03-10T10:29:00Z", R2),
            _later("2026-03-10T12:00:00Z"),
        ],
        [],
    ),
    Case(
        "a decision that arrives before its request (out of order, within the lateness) still counts",
        [
            _decide(ACTIVATION_EXPIRED_REQUEST, "2026-03-10T10:20:00Z", R1),
            _ask("2026-03-10T10:00:00Z", R1),
            _later("2026-03-10T12:00:00Z"),
        ],
        [],
    ),
    Case(
        "not yet due at the end of the input: no alert yet",
        [_ask("2026-03-10T10:00:00Z", R1), _later("2026-03-10T10:40:00Z")],
        [],
    ),
    Case(
        "the SLA and lateness come from the config",
        [_ask("2026-03-10T10:00:00Z", R1), _later("2026-03-10T10:20:00Z")],
        [{"title_has": "waited more than 10 minutes"}],
        {"detectors": {"approval.overdue": {"sla_minutes": 10, "lateness_minutes": 5}}},
    ),
]
