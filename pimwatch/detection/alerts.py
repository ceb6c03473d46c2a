"""Alerts, severities and the one way two sightings of the same alert are folded together.

An alert's id is a hash of the detector id, the alert key and the suppression bucket the
triggering event falls in, so the same records give the same ids in any order or batching.
Title, context and principal come from the earliest contributing event (by event time, then record
id) so the result does not depend on arrival order either.

**Folding is bounded** (O(1) whatever an alert's count): an alert keeps its exact ``count``, a
sample of its event ids — the first :data:`SAMPLE` and the most recent :data:`SAMPLE` by (event
time, record id) — and, for each accumulated list of context (IPs, apps, roles...), the
:data:`LIST_LIMIT` smallest values (by ``repr``) with ``<name>_omitted``: how many more distinct
values there were; ``entities`` likewise keep the first
:data:`~pimwatch.detection.entities.LIMIT` by (type, identity) and ``entities_omitted`` counts the
distinct others. All are functions of the *set* of contributing records, so any order, batching or
duplication gives the same alert. Exactness needs one thing from the store: which
incoming records and values it has not counted before (an insert-if-absent membership per alert,
see :func:`pimwatch.state.sqlite.SqliteStore.merge_alert`); :func:`fold` only adds what is new.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pimwatch import SCHEMA_VERSION
from pimwatch.detection import entities as _entities
from pimwatch.detection.timeutil import iso


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def __str__(self) -> str:
        return self.value


_RANK = {Severity.INFO: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


def alert_id(detector: str, key: str, bucket: str) -> str:
    name = f"{detector}\x1f{key}\x1f{bucket}"
    found = _IDS.get(name)
    if found is None:  # a busy alert (a spray) hashes its name once
        if len(_IDS) >= 4096:
            _IDS.clear()
        found = _IDS[name] = hashlib.sha256(name.encode()).hexdigest()[:32]
    return found


_IDS: dict[str, str] = {}  # alert name -> id


SAMPLE = 10  # event ids kept: the first SAMPLE and the most recent SAMPLE (at most 2 * SAMPLE)
LIST_LIMIT = 20  # values kept per accumulated context list; the rest are counted in <name>_omitted
OMITTED = "_omitted"  # suffix of the context key counting an accumulated list's values left out
ENTITIES = "entities"  # the name under which the store counts an alert's distinct entities


@dataclass
class Alert:
    """One alert as stored in the outbox and printed as JSON (the ``to_dict`` form).

    ``count`` is exact: the distinct records that contributed. ``events`` is a bounded sample of
    them, sorted by (event time, record id): all of them while ``count <= 2 * SAMPLE``, else the
    first :data:`SAMPLE` and the most recent :data:`SAMPLE`. Each ``accumulate`` list in ``context``
    keeps its :data:`LIST_LIMIT` smallest values (by ``repr``) and ``<name>_omitted`` counts the
    distinct values left out (absent when none were). ``count`` defaults to ``len(events)``.
    """

    id: str
    detector: str
    severity: Severity
    title: str
    summary: str
    runbook: str
    mitre: list[str]
    principal: dict[str, str | None]
    context: dict[str, Any]
    events: list[tuple[str, str]] = field(default_factory=list)  # (ISO time, record id): the sample
    key: str = ""
    bucket: str = ""
    accumulate: tuple[str, ...] = ()  # list-valued context keys unioned across folded events
    status: str = "open"  # "open" or "resolved" (a later record closed its reason)
    resolved_at: str | None = None  # event time of the record that resolved it
    count: int = -1  # -1: len(events)
    tactics: list[str] = field(default_factory=list)  # MITRE ATT&CK tactics (``mitre``: techniques)
    # Who and what the alert is about, in Sentinel's vocabulary (detection.entities): bounded, sorted.
    entities: list[dict[str, str]] = field(default_factory=list)
    entities_omitted: int = 0  # distinct entities beyond the bound (absent from to_dict when 0)
    # The group the alert is notified in (pimwatch/delivery/grouping.py): set by the outputs and the
    # deliverer from the routing config, never stored (it is a function of the alert and the config).
    group: str = ""

    def __post_init__(self) -> None:
        if self.count < 0:
            self.count = len(self.events)

    @property
    def anchor(self) -> tuple[str, str]:
        return self.events[0]

    @property
    def first_seen(self) -> str:
        return self.events[0][0]

    @property
    def last_seen(self) -> str:
        return max(self.events)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "severity": self.severity.value,
            "title": self.title,
            "summary": self.summary,
            "runbook": self.runbook,
            "mitre": self.mitre,
            "tactics": self.tactics,
            "principal": self.principal,
            "entities": self.entities,
            **({"entities_omitted": self.entities_omitted} if self.entities_omitted else {}),
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "event_ids": [eid for _, eid in self.events],
            "context": self.context,
            "status": self.status,
            "resolved_at": self.resolved_at,
            "schema_version": SCHEMA_VERSION,
            **({"group": self.group} if self.group else {}),
        }

    def to_store(self) -> dict[str, Any]:
        doc = self.to_dict()
        del doc["event_ids"]  # the ids are in ``events``
        doc["events"] = [list(e) for e in self.events]
        doc["key"] = self.key
        doc["bucket"] = self.bucket
        doc["accumulate"] = list(self.accumulate)
        doc.pop("group", None)
        return doc

    @classmethod
    def from_store(cls, doc: dict[str, Any]) -> Alert:
        return cls(
            id=doc["id"],
            detector=doc["detector"],
            severity=Severity(doc["severity"]),
            title=doc["title"],
            summary=doc["summary"],
            runbook=doc["runbook"],
            mitre=list(doc["mitre"]),
            principal=dict(doc["principal"]),
            context=dict(doc["context"]),
            events=[(t, i) for t, i in doc["events"]],
            count=int(doc.get("count", len(doc["events"]))),
            key=doc.get("key", ""),
            bucket=doc.get("bucket", ""),
            accumulate=tuple(doc.get("accumulate", ())),
            status=doc.get("status", "open"),
            resolved_at=doc.get("resolved_at"),
            tactics=list(doc.get("tactics", ())),
            entities=[dict(e) for e in doc.get("entities", ())],
            entities_omitted=int(doc.get("entities_omitted", 0)),
        )


def synthetic_alert(severity: Severity, now: datetime | None = None) -> Alert:
    """The test alert of ``pimwatch test-alert`` and the HTTP trigger: proves a sink is reachable."""
    when = iso(now or datetime.now(UTC))
    return Alert(
        id=alert_id("pimwatch.test", when, ""),
        detector="pimwatch.test",
        severity=severity,
        title="pimwatch test alert: if you can read this, delivery to this sink works",
        summary="A synthetic alert sent by 'pimwatch test-alert' or the app's test-alert endpoint.",
        runbook="Nothing to do.",
        mitre=[],
        principal={"id": None, "upn": None, "name": "pimwatch"},
        context={"test": True},
        events=[(when, "pimwatch-test")],
    )


def sample(events: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The bounded sample of ``events``: sorted, the first and the most recent :data:`SAMPLE`."""
    ordered = sorted(set(events))
    if len(ordered) <= 2 * SAMPLE:
        return ordered
    return ordered[:SAMPLE] + ordered[-SAMPLE:]


def list_values(context: dict[str, Any], name: str) -> list[Any]:
    """The values of an accumulated context list (none when it is absent or not a list)."""
    values = context.get(name)
    return values if isinstance(values, list) else []


def fold(
    existing: Alert | None,
    incoming: Alert,
    fresh: Sequence[tuple[str, str]],
    new_values: Mapping[str, int],
) -> Alert:
    """Fold ``incoming`` into ``existing`` (in place; None: ``incoming`` is a new alert) and return
    the result, in O(SAMPLE + LIST_LIMIT) whatever the count.

    ``fresh``: the records of ``incoming`` the store had not counted for this alert; ``new_values``:
    per accumulated list (and :data:`ENTITIES`), how many of ``incoming``'s values (entities) the
    store had not seen for it. Title, principal, severity and the other context come from whichever
    side has the earliest event; ``entities`` are the bounded union of both sides
    (:func:`pimwatch.detection.entities.merge`) and ``entities_omitted`` the distinct others.
    """
    if existing is None:
        out = replace(incoming, context={}, events=[], count=0)
        take = True
    else:
        out = existing
        take = bool(incoming.events) and min(incoming.events) <= existing.anchor
    lists: dict[str, tuple[list[Any], int]] = {}
    for name in out.accumulate:
        mine, theirs = out.context.get(name), incoming.context.get(name)
        if not isinstance(mine, list):
            if not isinstance(theirs, list):
                continue
            mine = []
        kept = _smallest(mine, theirs if isinstance(theirs, list) else [])
        total = max(len(mine) + int(out.context.get(name + OMITTED, 0)) + new_values.get(name, 0), len(kept))
        lists[name] = (kept, total - len(kept))
    if take:
        out.title, out.principal, out.severity = incoming.title, incoming.principal, incoming.severity
        out.context = dict(incoming.context)
    for name, (kept, omitted) in lists.items():
        out.context[name] = kept
        if omitted:
            out.context[name + OMITTED] = omitted
        else:
            out.context.pop(name + OMITTED, None)
    known = new_values.get(ENTITIES, 0)  # distinct entities seen: before, plus the new ones
    if existing is not None:
        known += len(out.entities) + out.entities_omitted
    if existing is None:
        out.entities = _entities.merge(incoming.entities)
    elif _entities.changes(out.entities, incoming.entities):
        out.entities = _entities.merge(out.entities, incoming.entities)
    out.entities_omitted = max(known - len(out.entities), 0)
    if len(out.events) == 2 * SAMPLE and all(e > out.events[-1] for e in fresh):
        out.events = out.events[:SAMPLE] + [*out.events[SAMPLE:], *sorted(fresh)][-SAMPLE:]  # the usual
    else:
        out.events = sample((*out.events, *fresh))
    out.count += len(fresh)
    return out


def _smallest(kept: list[Any], more: list[Any]) -> list[Any]:
    """The :data:`LIST_LIMIT` smallest (by ``repr``) distinct values of ``kept`` (already so) and
    ``more``; without a sort when nothing in ``more`` can enter (the usual case of a busy alert)."""
    last = repr(kept[-1]) if len(kept) >= LIST_LIMIT else None
    if all(shows(kept, v) or (last is not None and repr(v) > last) for v in more):
        return list(kept)
    seen: dict[str, Any] = {}
    for item in (*kept, *more):
        seen.setdefault(repr(item), item)
    return [seen[r] for r in sorted(seen)[:LIST_LIMIT]]


def shows(values: list[Any], value: Any) -> bool:
    """Whether ``value`` is among ``values`` (the same type and equal: 1 is not True)."""
    if value not in values:  # no element equal (nor identical): the usual answer, in C
        return False
    kind = type(value)
    return any(v == value and type(v) is kind for v in values)


def value_member(name: str, value: Any) -> str:
    """The membership key under which an alert remembers one accumulated value it has counted."""
    return f"v\x1f{name}\x1f{value!r}"


def record_member(record_id: str) -> str:
    """The membership key under which an alert remembers one record it has counted."""
    return f"r\x1f{record_id}"


def records(incoming: Alert) -> list[tuple[str, str]]:
    """The distinct records of ``incoming`` (a record id listed twice: its earliest time), sorted."""
    times: dict[str, str] = {}
    for t, rid in incoming.events:
        if rid not in times or t < times[rid]:
            times[rid] = t
    return sorted((t, rid) for rid, t in times.items())


def entity_member(entity: Mapping[str, str]) -> str:
    """The membership key under which an alert remembers one entity it has counted (by identity)."""
    return value_member(ENTITIES, _entities.identity(entity))


def incoming_values(incoming: Alert) -> list[tuple[str, str, Any]]:
    """(list name, membership key, value) of every distinct accumulated value ``incoming`` carries,
    and of every distinct entity (name :data:`ENTITIES`, by identity)."""
    out: dict[str, tuple[str, Any]] = {}
    for name in incoming.accumulate:
        for item in list_values(incoming.context, name):
            out.setdefault(value_member(name, item), (name, item))
    for entity in incoming.entities:
        if _entities.identity(entity)[1]:
            out.setdefault(entity_member(entity), (ENTITIES, entity))
    return [(name, member, item) for member, (name, item) in sorted(out.items())]


class Shown:
    """``Shown(existing)(name, value)``: whether ``existing`` shows ``value`` of list ``name`` (an
    entity: one of the same identity), so the store counted it already and need not ask its
    membership. The identities of the entities it shows are computed once per fold, not per value
    (a spray folds every record into one alert)."""

    def __init__(self, existing: Alert) -> None:
        self.existing = existing
        self._identities: set[tuple[int, str, str]] | None = None

    def __call__(self, name: str, value: Any) -> bool:
        if name == ENTITIES:
            if self._identities is None:
                self._identities = {_entities.identity(e) for e in self.existing.entities}
            return _entities.identity(value) in self._identities
        return shows(list_values(self.existing.context, name), value)


def portion(alert: Alert, values: Sequence[tuple[str, tuple[str, Any]]], later: Iterable[str]) -> Alert:
    """``alert`` with only ``values`` ((member, (name, value))) in its accumulated lists and without
    the entities of the membership keys ``later``: the part a store folds in one transaction when
    an alert brings more new values than one can hold."""
    part = replace(alert, context=dict(alert.context))
    for name in alert.accumulate:
        if name in part.context:
            part.context[name] = [item for _, (n, item) in values if n == name]
    skip = set(later)
    if skip:
        part.entities = [e for e in alert.entities if entity_member(e) not in skip]
    return part
