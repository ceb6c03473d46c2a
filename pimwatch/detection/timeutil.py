"""Event-time parsing that tolerates the formats Entra really emits.

Seen in the wild (reference/entra-events.md §1.3): ISO 8601 with 7 decimals and ``Z`` or an
offset, Panther-style ``2024-12-16 16:32:16.087554000`` (9 decimals, no zone), US-style
``11/14/2025 1:48:53 AM``, the Azure portal's Log Analytics CSV ``9/19/2023, 1:42:37.848 PM``
(export-shapes.md (a)) and US-style with an offset ``1/9/2007 10:41:00 AM +01:00``. A time without
a zone is UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_ISO = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*(Z|z|[+-]\d\d:?\d\d)?$"
)
_US = re.compile(
    r"^(\d{1,2})/(\d{1,2})/(\d{4}),?\s+(\d{1,2}):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?\s*([AaPp][Mm])?"
    r"\s*(Z|z|UTC|[+-]\d\d:?\d\d)?$"
)


_fromiso = datetime.fromisoformat


def parse_time(value: object) -> datetime | None:
    """Return an aware UTC datetime, or None when ``value`` is not a recognisable time."""
    if type(value) is str:
        try:
            dt = _fromiso(value)
        except ValueError:
            parsed = _slow_parse(value.strip())
            if parsed is None:
                return None
            dt = parsed
    elif isinstance(value, datetime):
        dt = value
    else:
        return None
    tz = dt.tzinfo
    if tz is UTC:
        return dt
    if tz is None:
        return dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def _slow_parse(s: str) -> datetime | None:
    m = _ISO.match(s)
    if m:
        year, month, day, hour, minute, sec, frac, zone = m.groups()
        micro = int((frac or "0")[:6].ljust(6, "0"))
        try:
            dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(sec or 0), micro)
        except ValueError:
            return None
        if zone and zone not in ("Z", "z"):
            z = zone.replace(":", "")
            try:
                return datetime.strptime(dt.isoformat() + z, "%Y-%m-%dT%H:%M:%S.%f%z")
            except ValueError:
                return datetime.strptime(dt.isoformat() + z, "%Y-%m-%dT%H:%M:%S%z")
        return dt.replace(tzinfo=UTC)
    m = _US.match(s)
    if m:
        month, day, year, hour, minute, sec, frac, ampm, zone = m.groups()
        h = int(hour)
        if ampm:
            if h < 1 or h > 12:
                return None
            h = h % 12 + (12 if ampm.lower() == "pm" else 0)
        micro = int((frac or "0")[:6].ljust(6, "0"))
        tz = UTC
        if zone and zone[0] in "+-":
            hours, minutes = int(zone[1:3]), int(zone[-2:])
            if hours > 23 or minutes > 59:
                return None
            sign = -1 if zone[0] == "-" else 1
            tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
        try:
            local = datetime(int(year), int(month), int(day), h, int(minute), int(sec or 0), micro, tzinfo=tz)
        except ValueError:
            return None
        return local.astimezone(UTC)
    return None


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with ``Z`` and microseconds, the one time format pimwatch writes."""
    if dt.tzinfo is not UTC:
        dt = dt.astimezone(UTC)
    return dt.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
