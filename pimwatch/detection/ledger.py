"""The ledger: compact rows of the PIM, role and break-glass records, kept in the state for the report.

:class:`Rec` is what the report keeps of one normalized event (``pimwatch report`` from files keeps
one per event; a deployment keeps those the ledger :func:`wants` in the state, through the
:class:`~pimwatch.detection.contract.Ledger` role). :class:`LedgerWriter` is the pipeline's hook: it
turns each normalized event into a plain dict row (:func:`row`) — no pandas here, this runs on the
Event Hub path — and :func:`rec_of` turns a row back. Rows are keyed by record id, so a record read
twice is one row; their partition is the event's UTC day (``YYYY-MM-DD``), which is also what the
clean-up drops (``report.retention_days``, :mod:`pimwatch.state.retention`).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pimwatch.detection.activities import PIM_ACTIVITIES
from pimwatch.detection.contract import Ledger
from pimwatch.detection.detector import Settings
from pimwatch.detection.event import Event, Principal
from pimwatch.detection.timeutil import iso, parse_time

HOUR = "~hour|"  # the row id prefix of a coverage mark (record ids never start with "~")
MARKS_KEPT = 4096
LEDGER_CATEGORIES = frozenset({"RoleManagement"})  # audit categories kept whole (assignments, PIM)


@dataclass(frozen=True, slots=True)
class Rec:
    """What the report keeps of one normalized event (no raw record: bounded memory)."""

    id: str
    kind: str
    time: datetime
    category: str
    activity: str
    audit_category: str | None
    service: str | None
    operation_type: str | None
    result: str | None
    result_reason: str | None
    correlation_id: str | None
    request_id: str | None
    actor: Principal
    target: Principal
    subject: Principal
    role_name: str | None
    role_id: str | None
    scope_type: str | None
    scope_id: str | None
    scope_name: str | None
    justification: str | None
    ticket: str | None
    start: datetime | None
    end: datetime | None
    mfa: bool | None  # additionalDetails IsAuthenticatedWithMfa; None when absent (unknown, not "no")
    break_glass: bool  # the actor, the subject or any target is a break-glass account
    # Sign-ins only.
    app: str | None = None
    ip: str | None = None
    country: str | None = None
    error_code: int | None = None
    ca_status: str | None = None
    auth_requirement: str | None = None
    # RoleManagement audit records only: every nested field, flattened to named columns.
    flat: tuple[tuple[str, str], ...] = ()

    @property
    def failed(self) -> bool:
        return self.result == "failure"

    def order(self) -> tuple[str, str, str, str, str]:
        """A total order independent of arrival: time, id, then content (for duplicate ids)."""
        return (iso(self.time), self.id, self.activity, self.result or "", self.subject.label())


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    return True if v == "true" else False if v == "false" else None


def _flat(event: Event) -> tuple[tuple[str, str], ...]:
    """The nested fields of a RoleManagement record as (column, text): additionalDetails by key,
    targetResources by type (``Other``, ``Other#2`` when repeated), modifiedProperties by name."""
    out: dict[str, str] = {}
    for key, value in event.details.items():
        out[f"detail.{key}"] = value
    seen: Counter[str] = Counter()
    for t in event.targets:
        ttype = t.type or "target"
        seen[ttype] += 1
        name = ttype if seen[ttype] == 1 else f"{ttype}#{seen[ttype]}"
        for attr in ("id", "name", "upn"):
            value = getattr(t, attr)
            if value:
                out[f"target.{name}.{attr}"] = value
        for m in t.modified:
            for side in ("old", "new"):
                value = getattr(m, side)
                if value is not None:
                    out[f"modified.{name}.{m.name}.{side}"] = value if isinstance(value, str) else repr(value)
    return tuple(sorted(out.items()))


def to_rec(event: Event, settings: Settings) -> Rec:
    """The compact form of ``event`` (``settings``: who is a break-glass account)."""
    bg = settings.is_break_glass(event.actor) or settings.is_break_glass(event.subject)
    if not bg and event.kind == "audit":
        bg = any(settings.is_break_glass(Principal(id=t.id, upn=t.upn)) for t in event.targets)
    signin = event.signin if event.kind == "signin" else None
    return Rec(
        id=event.id,
        kind=event.kind,
        time=event.time,
        category=event.category,
        activity=event.activity,
        audit_category=event.audit_category,
        service=event.service,
        operation_type=event.operation_type,
        result=event.result,
        result_reason=event.result_reason,
        correlation_id=event.correlation_id,
        request_id=event.request_id,
        actor=event.actor,
        target=event.target,
        subject=event.subject,
        role_name=event.role_name,
        role_id=event.role_id,
        scope_type=event.scope_type,
        scope_id=event.scope_id,
        scope_name=event.scope_name,
        justification=event.justification,
        ticket=event.ticket,
        start=event.start,
        end=event.end,
        mfa=_bool(event.details.get("isauthenticatedwithmfa")),
        break_glass=bg,
        app=signin.app if signin else None,
        ip=(signin.ip if signin else None) or event.actor.ip,
        country=signin.country if signin else None,
        error_code=signin.error_code if signin else None,
        ca_status=signin.ca_status if signin else None,
        auth_requirement=signin.auth_requirement if signin else None,
        flat=_flat(event) if event.kind == "audit" and event.audit_category == "RoleManagement" else (),
    )


def wants(rec: Rec) -> bool:
    """Whether the ledger keeps ``rec``: PIM and role-management audit records, and anything done by
    or to a break-glass account (its sign-ins and actions). The rest of the audit log is not kept."""
    return (
        rec.break_glass
        or (rec.kind == "audit" and (rec.audit_category in LEDGER_CATEGORIES or rec.service == "PIM"))
        or rec.activity in PIM_ACTIVITIES
    )


def wants_raw(props: Mapping[str, Any], activity: str) -> bool:
    """The same judgement on an audit record before it is normalized (the pipeline's screen)."""
    return (
        props.get("category") in LEDGER_CATEGORIES
        or props.get("loggedByService") == "PIM"
        or activity in PIM_ACTIVITIES
    )


_PRINCIPALS = ("actor", "target", "subject")
_TIMES = ("time", "start", "end")


def row(rec: Rec) -> dict[str, Any]:
    """``rec`` as a plain JSON-able dict: None fields left out, principals as dicts, times as ISO."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(rec):
        value = getattr(rec, f.name)
        if value is None or value == ():
            continue
        if f.name in _PRINCIPALS:
            value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
        elif f.name in _TIMES:
            value = iso(value)
        elif f.name == "flat":
            value = [list(pair) for pair in value]
        out[f.name] = value
    return out


def rec_of(data: Mapping[str, Any]) -> Rec:
    """The :class:`Rec` of a stored :func:`row`."""
    values: dict[str, Any] = {f.name: None for f in dataclasses.fields(Rec)}
    values.update(data)
    for name in _PRINCIPALS:
        values[name] = Principal(**(data.get(name) or {}))
    for name in _TIMES:
        values[name] = parse_time(data[name]) if data.get(name) else None
    values["flat"] = tuple((str(k), str(v)) for k, v in data.get("flat", ()))
    values["break_glass"] = bool(data.get("break_glass"))
    return Rec(**values)


def day(rec_time: datetime) -> str:
    return rec_time.strftime("%Y-%m-%d")


class LedgerWriter:
    """The pipeline's ledger hook: each normalized event the ledger :func:`wants` becomes a row in
    ``store`` (in the caller's unit of work; a record seen again is one row)."""

    def __init__(self, store: Ledger, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.written = 0
        self._marked: set[tuple[str, str]] = set()  # hours marked by this writer (its session)

    def __call__(self, event: Event) -> None:
        rec = to_rec(event, self.settings)
        hour = (rec.category, iso(rec.time)[:13])
        if hour not in self._marked:
            # Coverage: records of this category were read in this hour (presence, not a count).
            if len(self._marked) >= MARKS_KEPT:
                self._marked.clear()
            self._marked.add(hour)
            self.store.ledger_add(
                day(rec.time), HOUR + "|".join(hour), "", {"hour": hour[1], "category": hour[0]}
            )
        if wants(rec):
            self.store.ledger_add(day(rec.time), rec.id, "|".join(rec.order()), row(rec))
            self.written += 1


def read(rows: Iterable[Mapping[str, Any]]) -> tuple[list[Rec], set[tuple[str, str]]]:
    """Stored rows → the records (sorted, as the report keeps them) and the (category, hour) marks."""
    recs: list[Rec] = []
    hours: set[tuple[str, str]] = set()
    for data in rows:
        if "hour" in data and "id" not in data:
            hours.add((str(data["category"]), str(data["hour"])))
        else:
            recs.append(rec_of(data))
    recs.sort(key=Rec.order)
    return recs, hours
