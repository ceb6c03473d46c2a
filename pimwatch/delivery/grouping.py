"""Grouping: the alerts of one action (or one principal within ``group_wait``) as one notification.

Alertmanager groups alerts by labels and Sentinel turns alerts into incidents by entity; pimwatch
groups by what an analyst acts on. ``routing.group_by`` lists the dimensions two alerts must share
to be in one group (all of them, as Alertmanager's ``group_by``):

* ``action`` — the same action: the PIM request id when the alert carries one (``request_id`` in
  its context), else its correlation id (``correlation_id``), else its earliest record. A direct
  role assignment that trips ``assignment.outside_pim``, ``assignment.permanent`` and
  ``assignment.privileged`` is one record, one group; a PIM request's requested / approved /
  completed records share the request id.
* ``principal`` — the same principal (object id, else UPN, else name) in the same ``group_wait``
  slice of event time (the slice the alert's first event falls in).
* ``detector`` — the same detector.

**The group id is a pure function of the alert's content** (:func:`group_id`): a hash of the
dimensions' values, never of arrival. Those values come from the alert's earliest record (its
context, principal and first event follow the earliest record, :func:`pimwatch.detection.alerts.fold`),
so the same records give the same groups and group ids in any order or batching. The one thing a
late record can change: a record of the same alert that is *earlier* than every record seen so far
becomes its anchor, and if its request or correlation id differs, the alert moves to that group.
The stored alert and every output (``--format jsonl``, SIEM events) then carry the new group; a
notification already sent keeps the group it was sent under (it is not recalled), and the alert is
listed in the new group's next notification.

**group_wait** holds the first notification of a group so its other alerts can join it: the
notification sinks (``GROUPS = True``: Teams, PagerDuty, Opsgenie, e-mail) are queued only once the
*tick clock* (event time: :mod:`pimwatch.hosting.driver`) has passed the group's earliest first
event plus ``group_wait``, or at the end of the input (replay). No wall clock is involved, so tests
and replays are exact. A later alert of a group that has gone out is queued at the next tick after
its own wait and goes out as an *update* of the group (the other members are listed as sent before).
The SIEM sinks (sentinel, splunk, syslog, webhook, file) are not held: one event per alert, each
with its ``group``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from pimwatch.detection.alerts import Alert
from pimwatch.detection.entities import merge as merge_entities
from pimwatch.detection.timeutil import parse_time

Dimension = Literal["action", "principal", "detector"]
DIMENSIONS: tuple[str, ...] = ("action", "principal", "detector")
GROUP = "group"  # the context key of a group notification: its id, members, whether it updates
MEMBERS_SHOWN = 20  # alerts listed in one notification; the rest are counted
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class Grouping(BaseModel):
    """``routing:`` in the config: how alerts are grouped into notifications."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    group_by: tuple[Dimension, ...] = ("action",)
    group_wait: float = 30.0  # seconds of event time; "30s", "2m", "1h" are read too

    @field_validator("group_by", mode="before")
    @classmethod
    def _dimensions(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)):
            for v in value:
                if v not in DIMENSIONS:
                    raise ValueError(f"unknown dimension {v!r} (allowed: {', '.join(DIMENSIONS)})")
            if len(set(value)) != len(value):
                raise ValueError("a dimension is listed twice")
        return value

    @field_validator("group_wait", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m is None:
                raise ValueError(f"expected seconds or a duration such as 30s, 2m, 1h, got {value!r}")
            value = float(m.group(1)) * _UNIT[m.group(2)]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected seconds or a duration such as 30s, 2m, 1h, got {value!r}")
        if value < 0 or value > 86400:
            raise ValueError("must be between 0 and 24 hours")
        return float(value)

    @model_validator(mode="after")
    def _principal_needs_wait(self) -> Grouping:
        if "principal" in self.group_by and self.group_wait <= 0:
            raise ValueError("group_by 'principal' needs a group_wait above 0 (the slice of event time)")
        return self


def action_key(alert: Alert) -> str:
    """The action an alert came from: its PIM request id, else correlation id, else earliest record."""
    for name in ("request_id", "correlation_id"):
        value = alert.context.get(name)
        if isinstance(value, str) and value.strip():
            return f"{name}:{value.strip().lower()}"
    return f"record:{alert.anchor[1]}" if alert.events else f"alert:{alert.id}"


def group_key(alert: Alert, grouping: Grouping | None) -> tuple[str, ...]:
    """The values of the grouping dimensions for ``alert`` (empty: the alert is a group of its own)."""
    if grouping is None or not grouping.group_by:
        return ()
    parts: list[str] = []
    for dim in grouping.group_by:
        if dim == "action":
            parts.append(action_key(alert))
        elif dim == "detector":
            parts.append(f"detector:{alert.detector}")
        else:
            p = alert.principal
            who = (p.get("id") or p.get("upn") or p.get("name") or "").lower()
            first = _time(alert.first_seen).timestamp() if alert.events else 0.0
            parts.append(f"principal:{who}:{int(first // grouping.group_wait)}")
    return tuple(parts)


def group_id(alert: Alert, grouping: Grouping | None) -> str:
    """The alert's group id: a hash of :func:`group_key`; the alert's own id when it is not grouped."""
    key = group_key(alert, grouping)
    if not key:
        return alert.id
    return hashlib.sha256("\x1f".join(("group", *key)).encode()).hexdigest()[:32]


def with_group(alert: Alert, grouping: Grouping | None) -> Alert:
    """``alert`` with its ``group`` set (what the outputs and the SIEM sinks carry)."""
    return replace(alert, group=group_id(alert, grouping))


def release_at(alert: Alert, grouping: Grouping) -> datetime:
    """The tick clock from which the alert's group may go out: its first event plus ``group_wait``."""
    return _time(alert.first_seen) + timedelta(seconds=grouping.group_wait)


def _time(value: str) -> datetime:
    when = parse_time(value)
    if when is None:
        raise ValueError(f"alert time {value!r} is not an ISO time")
    return when


def _lead_order(a: Alert) -> tuple[int, str, str, str]:
    return (-a.severity.rank, a.first_seen, a.detector, a.id)


def group_alert(gid: str, members: Sequence[Alert], sent_before: Sequence[str] = ()) -> Alert:
    """One notification for a group: the alert a notification sink renders instead of each member.

    Its id is the group id (PagerDuty's ``dedup_key``, Opsgenie's ``alias``), its severity the highest
    of the members, its title, principal and context those of the lead member (the most severe,
    then the earliest), with ``context["group"]``: every member (severity, detector, title, id) and
    whether this notification updates one sent before (``sent_before``: members already notified).
    Resolved only when every member is. A group of one with nothing sent before is the alert itself,
    under the group id.
    """
    if not members:
        raise ValueError("a group needs at least one alert")
    ordered = sorted(members, key=_lead_order)
    lead = ordered[0]
    earlier = set(sent_before)
    update = any(m.id in earlier for m in ordered)
    detectors = sorted({m.detector for m in ordered})
    events = sorted({e for m in ordered for e in m.events})
    exact = all(m.count == len(m.events) for m in ordered)
    shown = sorted(ordered, key=lambda m: (m.first_seen, m.detector, m.id))[:MEMBERS_SHOWN]
    context = dict(lead.context)
    context[GROUP] = {
        "id": gid,
        "update": update,
        "detectors": detectors,
        "alerts": [
            {
                "id": m.id,
                "detector": m.detector,
                "severity": m.severity.value,
                "title": m.title,
                "first_seen": m.first_seen,
                "status": m.status,
                "new": m.id not in earlier,
            }
            for m in shown
        ],
        "alerts_omitted": max(0, len(ordered) - len(shown)),
    }
    title = lead.title
    others = [d for d in detectors if d != lead.detector]
    if others:
        title = f"{title} (+ {', '.join(others)})"
    if update:
        title = f"Update ({len(ordered)} alerts): {title}"
    resolved = all(m.status == "resolved" for m in ordered)
    return replace(
        lead,
        id=gid,
        severity=max((m.severity for m in ordered), key=lambda s: s.rank),
        title=title,
        mitre=sorted({t for m in ordered for t in m.mitre}),
        tactics=sorted({t for m in ordered for t in m.tactics}),
        entities=merge_entities(*(m.entities for m in ordered)),
        context=context,
        events=events,
        count=len({rid for _, rid in events}) if exact else sum(m.count for m in ordered),
        status="resolved" if resolved else "open",
        resolved_at=(max(m.resolved_at or "" for m in ordered) or None) if resolved else None,
        group=gid,
    )


__all__ = [
    "DIMENSIONS",
    "GROUP",
    "Grouping",
    "action_key",
    "group_alert",
    "group_id",
    "group_key",
    "release_at",
    "with_group",
]
