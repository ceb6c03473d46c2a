"""Alerts, severities and the one way two sightings of the same alert are folded together.

An alert's id is a hash of the detector id, the alert key and the suppression bucket the
triggering event falls in, so the same records give the same ids in any order or batching.
Folding is a set union of contributing events; title, context and principal come from the
earliest contributing event (by event time, then record id) so the result does not depend on
arrival order either.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pimwatch import SCHEMA_VERSION
from pimwatch.timeutil import iso


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
    return hashlib.sha256(f"{detector}\x1f{key}\x1f{bucket}".encode()).hexdigest()[:32]


@dataclass
class Alert:
    """One alert as stored in the outbox and printed as JSON (the ``to_dict`` form)."""

    id: str
    detector: str
    severity: Severity
    title: str
    summary: str
    runbook: str
    mitre: list[str]
    principal: dict[str, str | None]
    context: dict[str, Any]
    events: list[tuple[str, str]] = field(default_factory=list)  # (ISO time, record id), sorted
    key: str = ""
    bucket: str = ""
    accumulate: tuple[str, ...] = ()  # list-valued context keys unioned across folded events
    status: str = "open"  # "open" or "resolved" (a later record closed its reason)
    resolved_at: str | None = None  # event time of the record that resolved it

    @property
    def anchor(self) -> tuple[str, str]:
        return self.events[0]

    @property
    def count(self) -> int:
        return len(self.events)

    @property
    def first_seen(self) -> str:
        return self.events[0][0]

    @property
    def last_seen(self) -> str:
        return max(t for t, _ in self.events)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "detector": self.detector,
            "severity": self.severity.value,
            "title": self.title,
            "summary": self.summary,
            "runbook": self.runbook,
            "mitre": self.mitre,
            "principal": self.principal,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "count": self.count,
            "event_ids": [eid for _, eid in self.events],
            "context": self.context,
            "status": self.status,
            "resolved_at": self.resolved_at,
            "schema_version": SCHEMA_VERSION,
        }

    def to_store(self) -> dict[str, Any]:
        doc = self.to_dict()
        doc["events"] = [list(e) for e in self.events]
        doc["key"] = self.key
        doc["bucket"] = self.bucket
        doc["accumulate"] = list(self.accumulate)
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
            key=doc.get("key", ""),
            bucket=doc.get("bucket", ""),
            accumulate=tuple(doc.get("accumulate", ())),
            status=doc.get("status", "open"),
            resolved_at=doc.get("resolved_at"),
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


def fold(existing: Alert, incoming: Alert) -> bool:
    """Fold ``incoming`` into ``existing`` in place; return whether anything visible changed."""
    known = {eid: t for t, eid in existing.events}
    changed = False
    for t, eid in incoming.events:
        old = known.get(eid)
        if old is None or t < old:
            known[eid] = t
            changed = True
    merged = _union_lists(existing.context, incoming.context, existing.accumulate)
    if any(merged[k] != existing.context[k] for k in merged):
        changed = True
    if not changed:
        return False
    before = existing.anchor
    existing.events = sorted((t, eid) for eid, t in known.items())
    if incoming.anchor < before or existing.anchor == incoming.anchor:
        existing.title = incoming.title
        existing.principal = incoming.principal
        existing.severity = incoming.severity
        existing.context = {**incoming.context, **merged}
    else:
        existing.context = {**existing.context, **merged}
    return True


def _union_lists(a: dict[str, Any], b: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The ``keys`` whose values are lists in both are unioned and sorted (order-independent)."""
    out: dict[str, Any] = {}
    for k in keys:
        va, vb = a.get(k), b.get(k)
        if isinstance(va, list) and isinstance(vb, list):
            seen: dict[str, Any] = {}
            for item in (*va, *vb):
                seen.setdefault(repr(item), item)
            out[k] = [seen[r] for r in sorted(seen)]
    return out
