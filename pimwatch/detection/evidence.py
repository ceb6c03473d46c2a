"""Evidence: the raw records behind an alert, kept in the state for ``pimwatch show``.

Per alert the store keeps (as window members under ``EVIDENCE + alert id``, keyed by record id) the
raw record of its first :data:`~pimwatch.detection.alerts.SAMPLE` and latest ``SAMPLE`` records by
(event time, record id) — the same bounded sample as the alert's ``events``, so the evidence is a
function of the set of records (any order gives the same) and never grows with the alert's count.
A record over :data:`RAW_LIMIT` bytes of JSON is kept as its first ``RAW_LIMIT`` characters with a
marker. Kept: records that raised a hit when they were read (a windowed alert's earlier members
carry their raw record in their window payload until the alert exists). Not kept: the record behind
a hit raised by the clock (``approval.overdue``), which was read before the hit. Evidence is forgotten
with the window members (retention, ``pimwatch prune``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from pimwatch.detection.alerts import SAMPLE, Alert, sample
from pimwatch.detection.contract import Windows
from pimwatch.detection.timeutil import iso

EVIDENCE = "\x1devidence\x1f"
INDEX = "\x1devidence.ids\x1f"  # the same members without their records: trimming reads only these
RAW_LIMIT = 32_000  # bytes of JSON per record kept
_EPOCH = datetime.fromtimestamp(0, UTC)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


def bounded_raw(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The raw record as kept: itself, or its JSON cut at :data:`RAW_LIMIT` with a marker."""
    try:
        text = orjson.dumps(raw, default=str).decode()
    except TypeError:
        text = repr(raw)
    if len(text) <= RAW_LIMIT:
        return dict(raw) if isinstance(raw, dict) else dict(orjson.loads(text))
    return {
        "_truncated": f"{len(text)} characters of JSON, the first {RAW_LIMIT} kept",
        "_json": text[:RAW_LIMIT],
    }


def keep(store: Windows, alert_id: str, records: Iterable[tuple[datetime, str, Mapping[str, Any]]]) -> None:
    """Add these (time, record id, raw) to the alert's evidence, then trim it to the bounded sample."""
    key, index = EVIDENCE + alert_id, INDEX + alert_id
    added = False
    for at, rid, raw in records:
        # The record before its index entry: on a store whose writes are durable one at a time, a
        # crash between the two leaves the index unwritten, and the retried batch writes both.
        if rid:
            store.add(key, rid, at, payload={"raw": bounded_raw(raw)})
            added |= store.add(index, rid, at)
    if not added:
        return
    rows = store.members(index, _EPOCH, _FAR)
    if len(rows) <= 2 * SAMPLE:
        return
    kept = set(sample((iso(datetime.fromtimestamp(m.at, UTC)), m.member) for m in rows))
    for m in rows:
        if (iso(datetime.fromtimestamp(m.at, UTC)), m.member) not in kept:
            store.remove(index, m.member)
            store.remove(key, m.member)


def records(store: Windows, alert: Alert) -> list[dict[str, Any]]:
    """The evidence of ``alert``: per sampled record, its time, id and raw record (None: not kept)."""
    raws = {m.member: (m.payload or {}).get("raw") for m in store.members(EVIDENCE + alert.id, _EPOCH, _FAR)}
    return [{"time": t, "record_id": rid, "raw": raws.get(rid)} for t, rid in alert.events]
