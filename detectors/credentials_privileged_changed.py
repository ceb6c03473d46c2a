"""Authentication methods or the password of a privileged principal were changed by an audited action.

Taking over an admin rarely needs their role: resetting their password, registering a new MFA
method or a Temporary Access Pass for them is enough (detections.md D44, D47, D48). This alerts on
security-info changes (by anyone, the user included — an attacker with a stolen session registers
their own method), on a Temporary Access Pass, and on password resets by someone else, when the
target holds a privileged role. That is learned from the assignments and activations of privileged
roles (:mod:`pimwatch.detection.principals`; a directory lookup comes with the Graph issue), whenever they
happened and in either arrival order: a change of a principal not known (yet) to be privileged is
remembered, and the record that shows the principal privileged raises it, with the same alert as if
it had come first. Emergency accounts are left to ``breakglass.activity``, which already raises a
critical alert.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pimwatch.detection import (
    ACTIVATION_COMPLETED,
    LEARN_FROM,
    Case,
    Detector,
    Event,
    Hit,
    Principal,
    Severity,
    State,
    Window,
    iso,
    minutes,
    parse_time,
    privileged_subject,
)
from pimwatch.detection.records import directory, pim, user

SECURITY_INFO = frozenset(
    {
        "Admin registered security info",
        "Admin updated security info",
        "Admin deleted security info",
        "User registered security info",
        "User changed default security info",
        "User deleted security info",
        "User registered all required security info",
        "User reviewed security info",
        "Disable Strong Authentication",
    }
)
PASSWORD_RESETS = frozenset({"Reset user password", "Reset password (by admin)", "Change user password"})

DETECTOR = Detector(
    id="credentials.privileged_changed",
    severity=Severity.HIGH,
    summary=(
        "Authentication methods, a Temporary Access Pass or the password of a privileged principal changed."
    ),
    runbook=(
        "Confirm the change with the account owner through a channel other than their account. If "
        "unexpected: revoke sessions, remove the new method or pass, reset the credential, and review "
        "the account's recent sign-ins and role activations."
    ),
    mitre=("T1098.005", "T1556.006"),
    tactics=("Persistence", "CredentialAccess"),
    anchors=("Sentinel (hunting, watchlist)", "Microsoft security operations guide"),
    kinds=("audit",),
    activities=SECURITY_INFO | PASSWORD_RESETS | LEARN_FROM,
    window=Window(suppress=minutes(60)),
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_END = datetime(9999, 1, 1, tzinfo=UTC)


def _names(p: Principal) -> list[str]:
    """The keys a principal is found under: its object id and its UPN (a record may carry one)."""
    return ([f"id:{p.id.lower()}"] if p.id else []) + ([f"upn:{p.upn.lower()}"] if p.upn else [])


def detect(event: Event, state: State) -> Hit | list[Hit] | None:
    if event.activity in LEARN_FROM:
        return _privileged(event, state)
    target = event.target
    if event.failed or not (target.id or target.upn):
        return None
    if state.settings.is_break_glass(target):
        return None
    hit = _change(event)
    if hit is None:
        return None
    # Both sides of the join write before they read: whichever arrives second raises. The marker is
    # in this detector's state (what other instances wrote is read from the store, not from the
    # once-a-minute mirror of the learned principals).
    names = _names(target)
    if state.principals.knows(target) or any(state.members(f"privileged:{n}", _EPOCH, _END) for n in names):
        return hit
    payload = {
        "t": iso(event.time),
        "key": list(hit.key),
        "title": hit.title,
        "context": hit.context,
        "principal": hit.principal.as_alert(),
        "entities": [dict(e) for e in hit.entities],
    }
    for n in names:
        state.add(f"changed:{n}", event.id, event.time, payload=payload)
    if any(state.members(f"privileged:{n}", _EPOCH, _END) for n in names):
        return hit  # the other side came in meanwhile (another instance)
    return None


def _privileged(event: Event, state: State) -> list[Hit] | None:
    """A record that shows a principal privileged: raise the changes of it remembered so far."""
    who = privileged_subject(event, state.settings)
    if who is None:
        return None
    hits: dict[str, Hit] = {}
    for n in _names(who):
        state.add(f"privileged:{n}", "privileged", event.time)  # one member: a principal is or is not
        for m in state.members(f"changed:{n}", _EPOCH, _END):
            p, when = m.payload or {}, parse_time((m.payload or {}).get("t"))
            if m.member in hits or when is None:
                continue
            hits[m.member] = Hit(
                key=tuple(p["key"]),
                title=p["title"],
                context=p["context"],
                principal=Principal(**p["principal"]),
                record=(when, m.member),
                entities=tuple(p.get("entities", ())),
            )
    return [hits[k] for k in sorted(hits)] or None


def _change(event: Event) -> Hit | None:
    """The alert for a credential change of ``event.target`` (None: routine)."""
    target = event.target
    by_self = bool(
        (event.actor.id and event.actor.id.lower() == (target.id or "").lower())
        or (event.actor.upn and event.actor.upn.lower() == (target.upn or "").lower())
    )
    reason = event.result_reason or ""
    tap = "temporary access pass" in reason.lower()
    if event.activity in PASSWORD_RESETS:
        if by_self:
            return None  # a user changing their own password is routine
        what = "password reset"
    elif tap:
        what = "Temporary Access Pass created"
    else:
        what = event.activity
    by = "by the user" if by_self else f"by {event.actor.label()}"
    title = f"Privileged account {target.label()}: {what} {by}"
    context = {
        "activity": event.activity,
        "temporary_access_pass": tap,
        "by_self": by_self,
        "result_reason": reason or None,
        "initiated_by": event.actor.as_alert() | {"ip": event.actor.ip},
        "service": event.service,
    }
    return DETECTOR.alert(event, key=(target.id or target.upn, event.activity), title=title, context=context)


ALICE = user("adm-alice")
BOB = user("helpdesk.bob")
CAROL = user("carol")
UA = ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1")
READER = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
BG = ("c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com", "Emergency Admin 01")


def _activation(who: tuple[str, str | None, str | None], role: tuple[str, str] = UA) -> dict[str, object]:
    return pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", who, principal=who, role=role)


def _info(
    activity: str,
    at: str,
    actor: tuple[str, str | None, str | None],
    target: tuple[str, str | None, str | None],
    reason: str = "",
) -> dict[str, Any]:
    rec = directory(activity, at, actor, target, category="UserManagement")
    rec["properties"]["loggedByService"] = "Authentication Methods"
    rec["properties"]["resultReason"] = reason
    return rec


TAP = "Admin registered temporary access pass method for user"

CASES = [
    Case(
        "a Temporary Access Pass for a known User Administrator",
        [
            _activation(ALICE),
            _info("Admin registered security info", "2026-03-10T13:00:00Z", BOB, ALICE, TAP),
        ],
        [
            {
                "severity": "high",
                "title": "Privileged account adm-alice@contoso.com: Temporary Access Pass created by "
                "helpdesk.bob@contoso.com",
                "principal": {"upn": "adm-alice@contoso.com"},
                "context": {"temporary_access_pass": True, "by_self": False},
            }
        ],
    ),
    Case(
        "a password reset by someone else",
        [_activation(ALICE), _info("Reset user password", "2026-03-10T13:00:00Z", BOB, ALICE)],
        [{"title": "Privileged account adm-alice@contoso.com: password reset by helpdesk.bob@contoso.com"}],
    ),
    Case(
        "the admin registers a new method themselves (a stolen session can)",
        [_activation(ALICE), _info("User registered security info", "2026-03-10T13:00:00Z", ALICE, ALICE)],
        [{"title": "Privileged account adm-alice@contoso.com: User registered security info by the user"}],
    ),
    Case(
        "ordinary users and non-privileged roles are quiet",
        [
            _activation(CAROL, READER),
            _info("Admin registered security info", "2026-03-10T13:00:00Z", BOB, CAROL, TAP),
            _info("User registered security info", "2026-03-10T13:05:00Z", user("dave"), user("dave")),
        ],
        [],
    ),
    Case(
        "an admin changing their own password is routine",
        [_activation(ALICE), _info("Change user password", "2026-03-10T13:00:00Z", ALICE, ALICE)],
        [],
    ),
    Case(
        "break-glass accounts are left to breakglass.activity",
        [_activation(BG), _info("Reset user password", "2026-03-10T13:00:00Z", BOB, BG)],
        [],
        {"break_glass": {"accounts": [BG[0]]}},
    ),
    Case(
        "a change before the first record that shows the principal privileged: flagged all the same",
        [_info("Reset user password", "2026-03-10T08:00:00Z", BOB, ALICE), _activation(ALICE)],
        [{"title": "Privileged account adm-alice@contoso.com: password reset by helpdesk.bob@contoso.com"}],
    ),
    Case(
        "the activation that shows the principal privileged is read after the change: same alert",
        [
            _info("Admin registered security info", "2026-03-10T13:00:00Z", BOB, ALICE, TAP),
            _activation(ALICE),
        ],
        [{"title_has": "Temporary Access Pass created", "first_seen": "2026-03-10T13:00:00.000000Z"}],
    ),
    Case(
        "a failed activation, or one of a role that is not privileged, shows no one privileged",
        [
            _info("Reset user password", "2026-03-10T08:00:00Z", BOB, ALICE),
            pim(ACTIVATION_COMPLETED, "2026-03-10T09:00:00Z", ALICE, principal=ALICE, role=READER),
        ],
        [],
    ),
]
