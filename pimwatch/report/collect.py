"""Read the input once through the real pipeline: the detectors run, and the report keeps the
normalized events they saw.

:class:`ReportPipeline` is the detectors' :class:`Pipeline` with two changes: every
audit record is normalized (the report needs all of them: the audit export, what was done while
elevated), and each normalized event is also kept as a compact :class:`Rec`. Sign-ins go through the
pipeline's own screen, so the report sees the break-glass sign-ins the detectors see. The items are
tapped on their way in to note, per log category and UTC hour, that records were present (the
coverage statement). Nothing here imports pandas: frames are built from the :class:`Rec` list later.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from pimwatch.config import Config
from pimwatch.detection.alerts import Alert
from pimwatch.detection.detector import Plugin
from pimwatch.detection.event import Event, Principal
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import Item, Routed, _dump, read_file
from pimwatch.detection.stats import Stats
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.hosting.driver import Driver, WatermarkTick
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore


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


@dataclass
class Collected:
    """Everything read: the events (deduplicated by record id, sorted), the alerts, the counts."""

    recs: list[Rec]
    alerts: list[Alert]
    stats: Stats
    hours: Counter[tuple[str, str]]  # (log category, UTC hour "YYYY-MM-DDTHH") → records read
    files: list[str]
    quarantined: int = 0
    quarantine_path: str | None = None
    break_glass: list[str] = field(default_factory=list)


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


def to_rec(event: Event, config: Config) -> Rec:
    settings = config.settings
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


class ReportPipeline(Pipeline):
    """The detectors' pipeline, keeping a :class:`Rec` of every event it normalizes."""

    def __init__(self, plugins: list[Plugin], config: Config, store: SqliteStore, quarantine: Quarantine):
        super().__init__(plugins, config, store, quarantine, report=lambda _msg: None)
        self.config = config
        self.recs: dict[str, Rec] = {}

    def _wanted_audit(self, item: Routed) -> bool:
        super()._wanted_audit(item)  # counts unknown PIM activities
        return True  # the report reads every audit record; detectors only get those they route

    def normalize(self, item: Routed) -> Event:
        event = super().normalize(item)
        if event.kind == "audit" or self._wanted_signin(event):
            rec = to_rec(event, self.config)
            old = self.recs.get(rec.id)
            if old is None or rec.order() < old.order():
                self.recs[rec.id] = rec
        return event

    def _wanted_signin(self, event: Event) -> bool:
        s = self.settings
        return s.is_break_glass(event.actor)


def _hour(item: Routed) -> str | None:
    props, top = item.props, item.top
    value = props.get("activityDateTime") or props.get("createdDateTime") or top.get("time")
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T" and value.endswith("Z"):
        return value[:13]  # the common ISO UTC form, without parsing
    when = parse_time(value)
    return iso(when)[:13] if when is not None else None


def _tap(
    items: Iterable[Item], hours: Counter[tuple[str, str]], seen: set[tuple[str, int]]
) -> Iterator[Item]:
    """Count each record once per (category, hour): a duplicate (same record id) is not counted again."""
    for item in items:
        if type(item) is Routed:
            hour = _hour(item)
            rid = item.props.get("id") or item.top.get("correlationId")
            key = (item.category, hash(rid) if isinstance(rid, str) else hash(_dump(item.raw)))
            if hour is not None and key not in seen:
                seen.add(key)
                hours[(item.category, hour)] += 1
        yield item


def collect(
    paths: list[str], plugins: list[Plugin], config: Config, state: str | None, out_dir: str
) -> Collected:
    """Run the detectors over ``paths`` with the report's pipeline; ``state`` is the SQLite state
    (None: a temporary one). Bad records go to ``quarantine.jsonl`` in ``out_dir`` (only if any)."""
    tmp = None
    if state is None:
        tmp = tempfile.TemporaryDirectory(prefix="pimwatch-report-")
        state = os.path.join(tmp.name, "state.db")
    store = SqliteStore(state)
    qpath = os.path.join(out_dir, "quarantine.jsonl")
    quarantine = Quarantine(qpath)
    pipeline = ReportPipeline(plugins, config, store, quarantine)
    driver = Driver(pipeline, WatermarkTick())
    hours: Counter[tuple[str, str]] = Counter()
    seen: set[tuple[str, int]] = set()  # hashes of record ids: membership only, never ordered
    counter = [0]
    try:
        for path in paths:
            driver.feed(_tap(read_file(path, counter, None), hours, seen))
        driver.finish()
        alerts = list(store.alerts())
        store.commit()
    finally:
        store.close()
        if tmp is not None:
            tmp.cleanup()
    recs = sorted(pipeline.recs.values(), key=Rec.order)
    bg = sorted(config.settings.break_glass_ids | config.settings.break_glass_upns)
    return Collected(
        recs=recs,
        alerts=alerts,
        stats=pipeline.stats,
        hours=hours,
        files=list(paths),
        quarantined=quarantine.count,
        quarantine_path=qpath if quarantine.count else None,
        break_glass=bg,
    )
