"""Any sign-in by an emergency ("break-glass") account: successful or failed, interactive or not.

Microsoft's guidance (entra-events.md §4, detections.md D43): monitor both sign-in logs, match on
the object id first and the UPN second, alert at the highest severity on every use.
"""

from __future__ import annotations

from pimwatch.detection import Case, Detector, Event, Hit, Severity, State, Window, minutes
from pimwatch.detection.records import signin, user

DETECTOR = Detector(
    id="breakglass.signin",
    severity=Severity.CRITICAL,
    summary="An emergency (break-glass) account signed in or tried to.",
    runbook=(
        "Confirm with the account's custodians that an emergency is declared. If not: treat as a "
        "compromise, revoke sessions, reset the credential, review the account's audit activity."
    ),
    anchors=(
        "Microsoft emergency-access guidance",
        "Microsoft security operations guide",
        "Sentinel (hunting)",
    ),
    mitre=("T1078.004",),
    tactics=("InitialAccess",),
    kinds=("signin",),
    break_glass_only=True,
    window=Window(suppress=minutes(60), accumulate=("ip_addresses", "apps")),
)


def detect(event: Event, state: State) -> Hit | None:
    settings = state.settings
    if not settings.is_break_glass(event.actor):
        return None
    s = event.signin
    if s is None:
        return None
    actor = event.actor
    account = actor.id.lower() if actor.id and actor.id.lower() in settings.break_glass_ids else actor.upn
    single_factor = s.auth_requirement == "singleFactorAuthentication"
    password = any(m.lower() == "password" for m in s.auth_methods)
    not_covered = s.ca_status == "notApplied"
    outcome = "signed in" if s.succeeded else f"failed to sign in (error {s.error_code})"
    how = "interactive" if event.category == "SignInLogs" else "non-interactive"
    where = ", ".join(x for x in (s.ip, s.city, s.country) if x) or "unknown location"
    flags = [
        f
        for f, on in (
            ("single-factor", single_factor),
            ("password", password),
            ("no Conditional Access", not_covered),
        )
        if on
    ]
    title = f"Break-glass account {actor.label()} {outcome} ({how}) from {where}"
    if flags:
        title += " — " + ", ".join(flags)
    context = {
        "sign_in": how,
        "category": event.category,
        "succeeded": s.succeeded,
        "error_code": s.error_code,
        "failure_reason": s.failure_reason,
        "single_factor": single_factor,
        "password_used": password,
        "not_covered_by_conditional_access": not_covered,
        "conditional_access_status": s.ca_status,
        "authentication_requirement": s.auth_requirement,
        "authentication_methods": list(s.auth_methods),
        "ip_address": s.ip,
        "location": {"country": s.country, "city": s.city},
        "app": s.app,
        "client_app": s.client_app,
        "risk_level": s.risk_during,
        "ip_addresses": [s.ip] if s.ip else [],
        "apps": [s.app] if s.app else [],
    }
    return DETECTOR.alert(event, key=(account,), title=title, context=context, principal=actor)


BG = ("c0ffee00-0000-4000-8000-00000000b001", "bg-admin01@contoso.onmicrosoft.com", "Emergency Admin 01")
BG_UPPER_UPN = ("", "BG-ADMIN01@CONTOSO.ONMICROSOFT.COM", "Emergency Admin 01")  # no object id
ALICE = user("alice")
CONFIG = {"break_glass": {"accounts": [BG[0], BG[1]]}}

CASES = [
    Case(
        "single-factor password sign-in without CA is critical and says so",
        [
            signin(
                BG,
                "2026-03-10T02:17:00Z",
                requirement="singleFactorAuthentication",
                methods=("Password",),
                ca="notApplied",
                ip="185.220.101.4",
                country="RO",
                city="Bucharest",
            )
        ],
        [
            {
                "severity": "critical",
                "count": 1,
                "title": "Break-glass account bg-admin01@contoso.onmicrosoft.com signed in (interactive) "
                "from "
                "185.220.101.4, Bucharest, RO — single-factor, password, no Conditional Access",
                "principal": {"id": BG[0]},
                "context": {
                    "single_factor": True,
                    "password_used": True,
                    "not_covered_by_conditional_access": True,
                },
            }
        ],
        CONFIG,
    ),
    Case(
        "later sign-ins in the same hour fold into one alert, non-interactive and failed ones included",
        [
            signin(BG, "2026-03-10T02:17:00Z"),
            signin(
                BG, "2026-03-10T02:31:00Z", category="NonInteractiveUserSignInLogs", app="Microsoft Graph"
            ),
            signin(BG, "2026-03-10T02:40:00Z", error=50126, ip="203.0.113.9"),
        ],
        [
            {
                "count": 3,
                "title_has": "signed in (interactive)",
                "context": {
                    "ip_addresses": ["20.190.1.10", "203.0.113.9"],
                    "apps": ["Azure Portal", "Microsoft Graph"],
                },
            }
        ],
        CONFIG,
    ),
    Case(
        "a sign-in in the next hour is a new alert",
        [signin(BG, "2026-03-10T02:17:00Z"), signin(BG, "2026-03-10T03:05:00Z")],
        [
            {"count": 1, "first_seen": "2026-03-10T02:17:00.000000Z"},
            {"count": 1, "first_seen": "2026-03-10T03:05:00.000000Z"},
        ],
        CONFIG,
    ),
    Case(
        "UPN matches case-insensitively when the record has no object id",
        [signin(BG_UPPER_UPN, "2026-03-10T05:00:00Z", category="NonInteractiveUserSignInLogs")],
        [{"title_has": "non-interactive", "principal": {"upn": "BG-ADMIN01@CONTOSO.ONMICROSOFT.COM"}}],
        CONFIG,
    ),
    Case(
        "a failed attempt alerts too",
        [signin(BG, "2026-03-10T05:00:00Z", error=50126)],
        [{"title_has": "failed to sign in (error 50126)", "context": {"succeeded": False}}],
        CONFIG,
    ),
    Case("ordinary users are quiet", [signin(ALICE, "2026-03-10T05:00:00Z")], [], CONFIG),
    Case("no configured accounts, no alerts", [signin(BG, "2026-03-10T05:00:00Z")], []),
]
