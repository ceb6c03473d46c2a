"""Evidence: the raw records behind an alert, kept in the state for ``pimwatch show``.

Per alert the store keeps (as window members under ``EVIDENCE + alert id``, keyed by record id) the
raw record of its first :data:`~pimwatch.detection.alerts.SAMPLE` and latest ``SAMPLE`` records by
(event time, record id) — the same bounded sample as the alert's ``events``, so the evidence shown is
a function of the set of records (any order gives the same). The stored set is trimmed back to the
sample when one record in :data:`TRIM_EVERY` (by a hash of its id) is added, so a busy alert (a
spray) does not read its evidence index on every record; in between it holds a few records more.
A record over :data:`RAW_LIMIT` bytes of JSON is kept as its first ``RAW_LIMIT`` characters with a
marker. Kept: records that raised a hit when they were read (a windowed alert's earlier members
carry their raw record in their window payload until the alert exists). Not kept: the record behind
a hit raised by the clock (``approval.overdue``), which was read before the hit. Evidence is forgotten
with the window members (retention, ``pimwatch prune``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from pimwatch.detection.alerts import SAMPLE, Alert
from pimwatch.detection.contract import Windows

EVIDENCE = "\x1devidence\x1f"
INDEX = "\x1devidence.ids\x1f"  # the same members without their records: trimming reads only these
TRIM_EVERY = 8  # one added record in this many trims the evidence (reading its index) back to the sample
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
    if not added or not any(_trims(rid) for _, rid, _ in records):
        return
    rows = store.members(index, _EPOCH, _FAR)
    if len(rows) <= 2 * SAMPLE:
        return
    # The alert's sample (pimwatch.detection.alerts.sample): (epoch, id) sorts as (ISO time, id) does.
    ordered = sorted((m.at, m.member) for m in rows)
    kept = {*ordered[:SAMPLE], *ordered[-SAMPLE:]}
    for m in rows:
        if (m.at, m.member) not in kept:
            store.remove(index, m.member)
            store.remove(key, m.member)


def _trims(record_id: str) -> bool:
    """Whether adding this record trims the evidence back to the sample: one record in
    :data:`TRIM_EVERY`, chosen by a hash of its id (so the same records trim alike in any order);
    between trims a busy alert keeps a few records more than its sample (``records`` shows only the
    sample)."""
    return zlib.crc32(record_id.encode()) % TRIM_EVERY == 0


def records(store: Windows, alert: Alert) -> list[dict[str, Any]]:
    """The evidence of ``alert``: per sampled record, its time, id and raw record (None: not kept)."""
    raws = {m.member: (m.payload or {}).get("raw") for m in store.members(EVIDENCE + alert.id, _EPOCH, _FAR)}
    return [{"time": t, "record_id": rid, "raw": raws.get(rid)} for t, rid in alert.events]
