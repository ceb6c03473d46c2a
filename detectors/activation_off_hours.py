"""A privileged role was activated outside business hours or on a non-working day.

detections.md D17: Sentinel's hunting query flags successful ``(PIM activation)`` records before 07:00
or from 20:00 UTC, or on Saturday and Sunday; Microsoft's security operations guide asks for the
account's working pattern. Here the calendar is configurable: an IANA ``timezone`` (``zoneinfo``;
daylight saving applies), business hours ``start_hour`` ≤ local hour < ``end_hour`` (default 07:00–
19:00) and ``workdays`` (``Mon`` … ``Sun``). ``exempt_principals`` (object ids or UPNs) and
``exempt_roles`` (role names or template ids; for PIM for Groups also the group's name or id) are
allow-lists for on-call accounts and routine roles, matched case-insensitively.

Only ``Add member to role completed (PIM activation)`` with a successful result is read: the moment the
role took effect. The request, the approval and the MS-PIM Core Directory mirror (``Add member to
role`` / ``Add member to group``, a few seconds later) are other activities, so one activation gives
one alert (``suppress_minutes: 0``: every activation is its own alert; a record delivered twice folds
on its record id). The title gives the local weekday, date and time in the configured zone.

The calendar parameters are checked the first time the detector runs, because config validation
cannot call detector code: an unknown zone or a bad hour or day raises a ValueError naming the
parameter (``detectors.activation.off_hours.timezone: unknown time zone 'Mars/Olympus'``), which the
engine logs and counts as a detector error for every activation until the config is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pimwatch.detection import (
    ACTIVATION_COMPLETED,
    ACTIVATION_END,
    Case,
    Count,
    Detector,
    Event,
    Hit,
    Params,
    Resolve,
    Severity,
    Skip,
    State,
    activation_key,
    ended,
    iso,
    model_validator,
    with_end,
)
from pimwatch.detection.records import PIM_SYSTEM, directory, guid, pim, user


class Config(Params):
    timezone: str = "UTC"  # an IANA zone name
    start_hour: Count = 7
    end_hour: Count = 19
    workdays: list[str] = ["Mon", "Tue", "Wed", "Thu", "Fri"]
    exempt_principals: list[str] = []  # object ids or UPNs
    exempt_roles: list[str] = []  # role names or template ids, group names or ids

    @model_validator(mode="after")
    def _check_calendar(self) -> Config:
        """What the types cannot judge: the zone name, the hour range, the day names."""
        try:
            self.calendar()
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix(f"{_PARAM}.")) from None
        return self

    def calendar(self) -> Calendar:
        return calendar(self.timezone, self.start_hour, self.end_hour, tuple(self.workdays))


DETECTOR = Detector(
    id="activation.off_hours",
    severity=Severity.MEDIUM,
    summary="A role was activated outside business hours or on a non-working day.",
    runbook=(
        "Confirm with the person that they activated the role (on-call, incident, planned change). "
        "An activation at night or at the weekend that nobody expected, after an unusual sign-in, is a "
        "sign of a stolen session: revoke it and review what the role was used for."
    ),
    anchors=("Sentinel (hunting)", "Microsoft security operations guide", "Sigma (deprecated)"),
    mitre=("T1078.004",),
    tactics=("PrivilegeEscalation",),
    kinds=("audit",),
    activities=frozenset({ACTIVATION_COMPLETED}) | ACTIVATION_END,
    params=Config,
)

_PARAM = "detectors.activation.off_hours"
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DAY_NUMBERS = {name.lower(): i for names in (DAYS, DAY_NAMES) for i, name in enumerate(names)}


@dataclass(frozen=True)
class Calendar:
    zone: ZoneInfo
    name: str
    start: int
    end: int
    workdays: frozenset[int]  # datetime.weekday() numbers

    def hours(self) -> str:
        return f"{self.start:02d}:00–{self.end:02d}:00"

    def days(self) -> str:
        return ", ".join(DAYS[d] for d in sorted(self.workdays))

    def outside(self, t: datetime) -> bool:
        """Whether ``t`` falls outside business hours (a non-working day, or out of hours)."""
        local = t.astimezone(self.zone)
        return not (local.weekday() in self.workdays and self.start <= local.hour < self.end)

    def describe(self) -> str:
        return f"{self.hours()} {self.name}, {self.days()}"


@lru_cache(maxsize=8)
def calendar(timezone: str, start: int, end: int, workdays: tuple[str, ...]) -> Calendar:
    """The validated calendar; a ValueError names the offending parameter."""
    name = timezone.strip()
    try:
        zone = ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"{_PARAM}.timezone: unknown time zone {timezone!r} (expected an IANA name such as "
            f"'UTC' or 'Europe/Berlin')"
        ) from exc
    if not 0 <= start <= 23:
        raise ValueError(f"{_PARAM}.start_hour: expected an hour from 0 to 23, got {start}")
    if not 1 <= end <= 24 or end <= start:
        raise ValueError(
            f"{_PARAM}.end_hour: expected an hour after start_hour ({start}) up to 24, got {end}"
        )
    days: set[int] = set()
    for day in workdays:
        number = _DAY_NUMBERS.get(day.strip().lower())
        if number is None:
            raise ValueError(f"{_PARAM}.workdays: expected day names Mon … Sun, got {day!r}")
        days.add(number)
    return Calendar(zone, name, start, end, frozenset(days))


def _listed(values: list[str], *candidates: str | None) -> bool:
    wanted = {v.strip().lower() for v in values if v.strip()}
    return any(c is not None and c.lower() in wanted for c in candidates)


def detect(event: Event, state: State[Config]) -> Hit | Resolve | list[Hit | Resolve] | None:
    if event.activity in ACTIVATION_END:
        return ended(event, state, DETECTOR)  # the role is no longer active: resolved
    if event.activity != ACTIVATION_COMPLETED or event.result not in (None, "success"):
        return None
    cal = state.params.calendar()
    who = event.subject
    if not (who.id or who.upn):
        raise Skip("activation without a principal")
    local = event.time.astimezone(cal.zone)
    workday = local.weekday() in cal.workdays
    if workday and cal.start <= local.hour < cal.end:
        return None
    if _listed(state.params.exempt_principals, who.id, who.upn):
        return None
    group = (event.scope_name, event.scope_id) if event.scope_type == "group" else (None, None)
    if _listed(state.params.exempt_roles, event.role_name, event.role_id, *group):
        return None
    role = event.role_name or event.role_id or "(unknown role)"
    scope = event.scope_name or event.scope_id
    label = f"{role} ({scope})" if event.scope_type in ("group", "resource") and scope else role
    why = f"outside business hours {cal.hours()}" if workday else "a non-working day"
    title = f"{who.label()} activated {label} on {_when(local)} ({cal.name}), {why}"
    context = {
        "role": event.role_name,
        "role_id": event.role_id,
        "scope_type": event.scope_type,
        "scope": scope,
        "local_time": local.isoformat(timespec="seconds"),
        "weekday": DAY_NAMES[local.weekday()],
        "timezone": cal.name,
        "reason": "outside business hours" if workday else "non-working day",
        "business_hours": cal.hours(),
        "workdays": cal.days(),
        "activated_at": iso(event.time),
        "justification": event.justification,
        "request_id": event.request_id,
        "initiated_by": event.actor.as_alert() | {"ip": event.actor.ip},
    }
    hit = DETECTOR.alert(event, key=activation_key(event), title=title, context=context, principal=who)
    return with_end(hit, event, state, DETECTOR)


def _when(local: datetime) -> str:
    return f"{DAY_NAMES[local.weekday()]} {local.day} {local:%b %Y} at {local:%H:%M}"


NINA = user("adm-nina")
OLIVER = user("adm-oliver")
ONCALL = user("svc-oncall")
GA = ("Global Administrator", "62e90394-69f5-4237-9190-012177145e10")
READER = ("Reports Reader", "4a5d8f65-41da-4de4-8968-e035b65339cf")
BERLIN = {"detectors": {"activation.off_hours": {"timezone": "Europe/Berlin"}}}


def _act(
    who: tuple[str, str | None, str | None],
    at: str,
    role: tuple[str, str] = GA,
    *,
    category: str = "RoleManagement",
    group: tuple[str, str] | None = None,
) -> dict[str, object]:
    return pim(
        ACTIVATION_COMPLETED,
        at,
        who,
        principal=who,
        role=role,
        justification="INC0042",
        category=category,
        group=group,
    )


def _mirror(
    who: tuple[str, str | None, str | None], at: str, role: tuple[str, str] = GA
) -> dict[str, object]:
    return directory("Add member to role", at, "MS-PIM", who, role=role)


def _end(who: tuple[str, str | None, str | None], at: str, role: tuple[str, str] = GA) -> dict[str, object]:
    return pim("Remove member from role (PIM activation expired)", at, PIM_SYSTEM, principal=who, role=role)


CASES = [
    Case(
        "the alert is resolved when the activation expires",
        [
            _act(NINA, "2026-03-10T23:10:00Z"),
            _end(NINA, "2026-03-11T01:10:00Z"),
        ],
        [{"status": "resolved", "resolved_at": "2026-03-11T01:10:00.000000Z", "count": 1}],
    ),
    Case(
        "a weekday activation at 23:40 UTC, with its MS-PIM mirror and a duplicate: one alert",
        [
            _act(NINA, "2026-03-10T23:40:00Z"),
            _mirror(NINA, "2026-03-10T23:40:04Z"),
            _act(NINA, "2026-03-10T23:40:00Z"),
        ],
        [
            {
                "severity": "medium",
                "count": 1,
                "title": "adm-nina@contoso.com activated Global Administrator on Tuesday 10 Mar 2026 at "
                "23:40 (UTC), outside business hours 07:00–19:00",
                "principal": {"upn": "adm-nina@contoso.com"},
                "context": {
                    "role_id": GA[1],
                    "weekday": "Tuesday",
                    "local_time": "2026-03-10T23:40:00+00:00",
                    "reason": "outside business hours",
                    "justification": "INC0042",
                },
            }
        ],
    ),
    Case(
        "a Saturday activation at noon is a non-working day",
        [_act(NINA, "2026-03-14T12:00:00Z")],
        [
            {
                "title": "adm-nina@contoso.com activated Global Administrator on Saturday 14 Mar 2026 at "
                "12:00 (UTC), a non-working day",
                "context": {"reason": "non-working day", "weekday": "Saturday"},
            }
        ],
    ),
    Case(
        "every off-hours activation is its own alert; inside hours is quiet; the mirrors never count",
        [
            _act(OLIVER, "2026-03-11T05:10:00Z"),
            _act(OLIVER, "2026-03-11T07:00:00Z"),
            _act(OLIVER, "2026-03-11T18:59:00Z"),
            _mirror(OLIVER, "2026-03-11T20:10:00Z"),
            _act(OLIVER, "2026-03-11T19:00:00Z"),
        ],
        [
            {"count": 1, "title_has": "on Wednesday 11 Mar 2026 at 05:10 (UTC), outside business hours"},
            {"count": 1, "title_has": "on Wednesday 11 Mar 2026 at 19:00 (UTC), outside business hours"},
        ],
    ),
    Case(
        "Europe/Berlin: 06:30 UTC on a Monday in March is 07:30 local, inside hours",
        [_act(NINA, "2026-03-09T06:30:00Z")],
        [],
        BERLIN,
    ),
    Case(
        "Europe/Berlin: 05:30 UTC on a Monday is 06:30 local, before hours; after the DST change +2 h",
        [_act(NINA, "2026-03-09T05:30:00Z"), _act(NINA, "2026-03-30T04:30:00Z")],
        [
            {
                "title": "adm-nina@contoso.com activated Global Administrator on Monday 9 Mar 2026 at "
                "06:30 (Europe/Berlin), outside business hours 07:00–19:00",
                "context": {"local_time": "2026-03-09T06:30:00+01:00", "timezone": "Europe/Berlin"},
            },
            {
                "title_has": "on Monday 30 Mar 2026 at 06:30 (Europe/Berlin)",
                "context": {"local_time": "2026-03-30T06:30:00+02:00"},
            },
        ],
        BERLIN,
    ),
    Case(
        "Europe/Berlin: Friday 23:30 UTC is already Saturday in Berlin",
        [_act(OLIVER, "2026-03-13T23:30:00Z")],
        [{"title_has": "on Saturday 14 Mar 2026 at 00:30 (Europe/Berlin), a non-working day"}],
        BERLIN,
    ),
    Case(
        "exempt principals (by UPN) and exempt roles (by template id) are quiet",
        [
            _act(ONCALL, "2026-03-14T03:00:00Z"),
            _act(OLIVER, "2026-03-14T03:00:00Z", READER),
            _act(OLIVER, "2026-03-14T03:30:00Z"),
        ],
        [{"principal": {"upn": "adm-oliver@contoso.com"}, "context": {"role": "Global Administrator"}}],
        {
            "detectors": {
                "activation.off_hours": {
                    "exempt_principals": ["SVC-ONCALL@contoso.com"],
                    "exempt_roles": [READER[1]],
                }
            }
        },
    ),
    Case(
        "a custom week (Sun–Thu) and hours (08–17): Sunday 09:00 is a working day, Friday is not",
        [_act(OLIVER, "2026-03-15T09:00:00Z"), _act(OLIVER, "2026-03-13T10:00:00Z")],
        [{"title_has": "on Friday 13 Mar 2026 at 10:00 (UTC), a non-working day"}],
        {
            "detectors": {
                "activation.off_hours": {
                    "workdays": ["Sun", "Mon", "Tue", "Wed", "Thu"],
                    "start_hour": 8,
                    "end_hour": 17,
                }
            }
        },
    ),
    Case(
        "PIM for Groups: the group is named; a failed completion is not an activation",
        [
            _act(
                NINA,
                "2026-03-15T02:00:00Z",
                ("Member", "member"),
                category="GroupManagement",
                group=(guid("group", "pim-tier0-admins"), "PIM-Tier0-Admins"),
            ),
            pim(ACTIVATION_COMPLETED, "2026-03-15T02:30:00Z", OLIVER, principal=OLIVER, result="failure"),
        ],
        [
            {
                "title_has": "activated Member (PIM-Tier0-Admins) on Sunday 15 Mar 2026",
                "context": {"scope_type": "group"},
            }
        ],
    ),
    Case(
        "MS-PIM Core Directory mirrors alone, at night, are not activations",
        [_mirror(OLIVER, "2026-03-14T02:00:00Z"), _mirror(NINA, "2026-03-11T22:00:00Z")],
        [],
    ),
]
