"""An activation request shortly after a risky sign-in by the same principal.

None of the anchors correlates sign-ins with PIM requests in real time (detections.md D21, D54,
D55). A sign-in is risky by what the record itself says: risk level (during the sign-in or
aggregated) in ``risk_levels``, or Conditional Access failed. So the sign-in screen can let exactly
those through (``signin_values``) without knowing who is privileged, and what is
found does not depend on the order of the input. Risky sign-ins and requests are both kept in the
store, and each looks for the other: an ``Add member to role requested (PIM activation)`` by the
principal within ``within_minutes`` after a risky sign-in alerts, whichever of the two is read
first, with the same alert (every request is its own alert; several risky sign-ins fold into it).

Every request's alert is resolved when the activation made from it ends (``Remove member from role
(PIM activation expired)`` or ``... completed (PIM deactivate)`` of the same principal, role and
scope, within two days of the request: up to a day pending approval, up to a day active;
:mod:`pimwatch.detection.lifecycle`): the role obtained from the suspect session is gone. An end that arrives
before the request or the sign-in is remembered, and the alert is then created already resolved. A
request that is denied or cancelled is not resolved (the suspect session is still worth a look).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pimwatch.detection import (
    ACTIVATION_COMPLETED,
    ACTIVATION_END,
    ACTIVATION_ENDED,
    ACTIVATION_REQUESTED,
    LONGEST_ACTIVATION,
    ActivationKey,
    Case,
    Detector,
    Event,
    Hit,
    Params,
    Principal,
    Resolve,
    Severity,
    State,
    Window,
    activation_key,
    end_of,
    entity,
    iso,
    minutes,
    model_validator,
    parse_time,
    remember_end,
)
from pimwatch.detection.records import PIM_SYSTEM, pim, signin, user

# The risk levels a sign-in may be flagged for (the screen lets all of them through).
RISK_LEVELS = frozenset({"low", "medium", "high"})


class Config(Params):
    risk_levels: list[str] = ["medium", "high"]  # sign-in risk (during or aggregated) that counts
    flag_conditional_access: bool = True  # Conditional Access failed

    @model_validator(mode="after")
    def _known_levels(self) -> Config:
        """Risk levels the screen does not let through would never match."""
        unknown = sorted(x for x in self.risk_levels if x.lower() not in RISK_LEVELS)
        if unknown:
            raise ValueError(f"risk_levels: {', '.join(unknown)} is not one of low, medium, high")
        return self


DETECTOR = Detector(
    id="activation.risky_session",
    severity=Severity.HIGH,
    summary="A privileged-role activation was requested shortly after a risky sign-in by the requester.",
    runbook=(
        "Treat the session as suspect: contact the requester out of band, deny or revoke the activation, "
        "revoke sessions, and review the risky sign-in (IP, country, device, methods)."
    ),
    mitre=("T1078.004",),
    tactics=("InitialAccess", "PrivilegeEscalation"),
    anchors=("none in real time (Microsoft security operations guide describes it)",),
    kinds=("signin", "audit"),
    activities=frozenset({ACTIVATION_REQUESTED}) | ACTIVATION_END,
    signin_values={
        "riskLevelDuringSignIn": RISK_LEVELS,
        "riskLevelAggregated": RISK_LEVELS,
        "conditionalAccessStatus": frozenset({"failure"}),
    },
    window=Window(within=minutes(60), accumulate=("reasons", "risky_sign_ins")),
    params=Config,
)

# From a request to the end of its activation: up to a day pending approval, up to a day active.
REQUEST_TO_END = timedelta(hours=24) + LONGEST_ACTIVATION


def _pid(p: Principal) -> str:
    return (p.id or p.upn or "").lower()


def detect(event: Event, state: State[Config]) -> Hit | Resolve | list[Hit | Resolve] | None:
    if event.kind == "signin":
        return _signin(event, state)
    if event.activity in ACTIVATION_END:
        return _ended(event, state)
    if event.failed:
        return None
    who = event.actor if (event.actor.id or event.actor.upn) else event.target
    if not _pid(who):
        return None
    request = {
        "t": iso(event.time),
        "record": event.id,
        "role": event.role_name or event.role_id,
        "request_id": event.request_id,
        "principal": who.as_alert(),
        "activation": list(activation_key(event)),
    }
    state.add(f"req:{_pid(who)}", event.id, event.time, payload=request)
    within = state.window.within
    risky = [
        m.payload for m in state.members(f"risky:{_pid(who)}", event.time - within, event.time) if m.payload
    ]
    return _with_end(_hit(request, risky, state), request, state) if risky else None


def _same(a: ActivationKey, b: ActivationKey) -> bool:
    return [(k or "").lower() for k in a] == [(k or "").lower() for k in b]


def _end_of(request: dict[str, Any], state: State) -> Resolve | None:
    """The resolution of the request's alert when the end of its activation has been seen."""
    key, when = request.get("activation"), parse_time(request["t"])
    if not key or when is None:
        return None
    at = end_of(state, tuple(key), when, REQUEST_TO_END)
    # The engine keys an alert of suppress_minutes 0 by its key and record id (not lowercased).
    return None if at is None else Resolve((_pid(Principal(**request["principal"])), request["record"]), at)


def _with_end(hit: Hit, request: dict[str, Any], state: State) -> Hit | list[Hit | Resolve]:
    resolve = _end_of(request, state)
    return hit if resolve is None else [hit, resolve]


def _ended(event: Event, state: State) -> list[Hit | Resolve] | None:
    """An activation ended: resolve the alerts of the requests it was made from."""
    key = remember_end(event, state)
    if key is None or not key[0]:
        return None
    requests = state.members(f"req:{key[0].lower()}", event.time - REQUEST_TO_END, event.time)
    out: list[Hit | Resolve] = []
    for m in requests:
        if m.payload and _same(tuple(m.payload.get("activation") or ()), key):
            resolve = _end_of(m.payload, state)
            if resolve is not None:
                out.append(resolve)
    return out or None


def _signin(event: Event, state: State[Config]) -> list[Hit | Resolve] | None:
    s = event.signin
    if s is None:
        return None
    p = state.params
    reasons = []
    for level in (s.risk_during, s.risk_aggregated):
        # (the configured levels are among RISK_LEVELS: "none", the usual, is out at once)
        if level and level.lower() in RISK_LEVELS and level.lower() in {x.lower() for x in p.risk_levels}:
            reasons.append(f"risk {level.lower()}")
            break
    if p.flag_conditional_access and s.ca_status == "failure":
        reasons.append("Conditional Access failure")
    pid = _pid(event.actor)
    if not reasons or not pid:
        return None
    fact = {
        "t": iso(event.time),
        "id": event.id,
        "reasons": reasons,
        "ip": s.ip,
        "country": s.country,
        "app": s.app,
    }
    state.add(f"risky:{pid}", event.id, event.time, payload=fact)
    within = state.window.within
    later = [m.payload for m in state.members(f"req:{pid}", event.time, event.time + within) if m.payload]
    out: list[Hit | Resolve] = []
    for request in sorted(later, key=lambda r: (r["t"], r["record"])):
        found = _with_end(_hit(request, [fact], state), request, state)
        out += found if isinstance(found, list) else [found]
    return out or None


def _hit(request: dict[str, Any], risky: list[dict[str, Any]], state: State[Config]) -> Hit:
    who = Principal(**request["principal"])
    when = parse_time(request["t"])
    assert when is not None
    reasons = sorted({r for fact in risky for r in fact["reasons"]})
    within = state.window.within_minutes
    return Hit(
        key=(_pid(who),),
        title=f"{who.label()} requested activation of {request['role'] or '(unknown role)'} within "
        f"{within} minutes of a risky sign-in",
        context={
            "role": request["role"],
            "request_id": request["request_id"],
            "reasons": reasons,
            "risky_sign_ins": [
                {k: fact[k] for k in ("t", "id", "ip", "country", "app")}
                for fact in sorted(risky, key=lambda f: (f["t"], f["id"]))
            ],
        },
        principal=who,
        record=(when, request["record"]),
        entities=tuple(
            e
            for e in (
                *(entity("ip", address=fact["ip"]) for fact in risky),
                entity("role", name=request["role"]),
            )
            if e is not None
        ),
    )


ALICE = user("adm-alice")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")


def _known() -> dict[str, object]:
    """An earlier activation: Alice is a known privileged principal from then on."""
    return pim(
        "Add member to role completed (PIM activation)",
        "2026-03-09T09:00:00Z",
        ALICE,
        principal=ALICE,
        role=UA,
    )


def _request(at: str) -> dict[str, object]:
    return pim(ACTIVATION_REQUESTED, at, ALICE, principal=ALICE, role=GA, justification="urgent")


def _risky(day: str) -> dict[str, object]:
    """A high-risk sign-in at 14:00 on 2026-03-``day`` (each resolution case has its own day: the
    cases also run together as one stream)."""
    return signin(
        ALICE, f"2026-03-{day}T14:00:00Z", risk="high", ip="203.0.113.50", country="NL", city="Amsterdam"
    )


def _expired(at: str, role: tuple[str, str] = GA) -> dict[str, object]:
    return pim(ACTIVATION_ENDED, at, PIM_SYSTEM, principal=ALICE, role=role)


CASES = [
    Case(
        "resolved when the activation made from the request expires",
        [
            _known(),
            _risky("12"),
            _request("2026-03-12T14:20:00Z"),
            pim(ACTIVATION_COMPLETED, "2026-03-12T14:20:30Z", ALICE, principal=ALICE, role=GA),
            _expired("2026-03-12T15:20:30Z"),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-12T15:20:30.000000Z"}],
    ),
    Case(
        "the end arrives before the request (out of order): created resolved",
        [_known(), _risky("13"), _expired("2026-03-13T15:20:30Z"), _request("2026-03-13T14:20:00Z")],
        [{"status": "resolved", "resolved_at": "2026-03-13T15:20:30.000000Z"}],
    ),
    Case(
        "the end arrives before the risky sign-in: created resolved when the sign-in comes",
        [
            _known(),
            _request("2026-03-14T14:20:00Z"),
            pim(
                "Remove member from role completed (PIM deactivate)",
                "2026-03-14T14:50:00Z",
                ALICE,
                principal=ALICE,
                role=GA,
            ),
            _risky("14"),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-14T14:50:00.000000Z"}],
    ),
    Case(
        "the end of another role's activation leaves it open",
        [_known(), _risky("15"), _request("2026-03-15T14:20:00Z"), _expired("2026-03-15T15:00:00Z", UA)],
        [{"status": "open", "resolved_at": None}],
    ),
    Case(
        "a high-risk sign-in 20 minutes before the request",
        [
            _known(),
            signin(
                ALICE, "2026-03-10T14:00:00Z", risk="high", ip="203.0.113.50", country="NL", city="Amsterdam"
            ),
            _request("2026-03-10T14:20:00Z"),
        ],
        [
            {
                "severity": "high",
                "title": "adm-alice@contoso.com requested activation of Global Administrator within "
                "60 minutes of a risky sign-in",
                "first_seen": "2026-03-10T14:20:00.000000Z",
                "principal": {"upn": "adm-alice@contoso.com"},
                "context": {"reasons": ["risk high"], "role": "Global Administrator"},
            }
        ],
    ),
    Case(
        "the risky sign-in arrives after the request (late delivery): same alert",
        [
            _known(),
            _request("2026-03-10T14:20:00Z"),
            signin(
                ALICE, "2026-03-10T14:00:00Z", risk="high", ip="203.0.113.50", country="NL", city="Amsterdam"
            ),
        ],
        [{"first_seen": "2026-03-10T14:20:00.000000Z", "context": {"reasons": ["risk high"]}}],
    ),
    Case(
        "Conditional Access failed (a blocked attempt) shortly before the request",
        [
            _known(),
            signin(ALICE, "2026-03-16T08:00:00Z", country="US"),
            signin(
                ALICE,
                "2026-03-16T13:50:00Z",
                error=53003,
                ca="failure",
                country="BR",
                city="Sao Paulo",
            ),
            _request("2026-03-16T14:20:00Z"),
        ],
        [{"context": {"reasons": ["Conditional Access failure"]}}],
    ),
    Case(
        "normal MFA sign-ins from home, or a risky one more than an hour before: quiet",
        [
            _known(),
            signin(ALICE, "2026-03-10T12:00:00Z", risk="high"),
            signin(ALICE, "2026-03-10T14:00:00Z"),
            _request("2026-03-10T14:20:00Z"),
        ],
        [],
    ),
    Case(
        "a low-risk sign-in is not flagged by default",
        [_known(), signin(ALICE, "2026-03-17T14:00:00Z", risk="low"), _request("2026-03-17T14:20:00Z")],
        [],
    ),
    Case(
        "a risky sign-in read before anything showed its user privileged: found all the same",
        [_risky("18"), _request("2026-03-18T14:20:00Z")],
        [{"first_seen": "2026-03-18T14:20:00.000000Z", "context": {"reasons": ["risk high"]}}],
    ),
    Case(
        "two requests after one risky sign-in that is read last: an alert for each",
        [_request("2026-03-19T14:20:00Z"), _request("2026-03-19T14:40:00Z"), _risky("19")],
        [{"first_seen": "2026-03-19T14:20:00.000000Z"}, {"first_seen": "2026-03-19T14:40:00.000000Z"}],
    ),
]
