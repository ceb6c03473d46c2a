"""Run counters: what was read, skipped, quarantined and raised, for the end-of-run summary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Stats:
    records: Counter[tuple[str, str]] = field(default_factory=Counter)  # (category, shape)
    skipped: Counter[str] = field(default_factory=Counter)  # category → count
    bad: Counter[str] = field(default_factory=Counter)  # reason → count
    unknown_activities: Counter[str] = field(default_factory=Counter)
    detector_errors: Counter[str] = field(default_factory=Counter)
    detector_skipped: Counter[str] = field(default_factory=Counter)
    screened: int = 0  # records counted without being normalized: no enabled detector reads them

    @property
    def total_records(self) -> int:
        return sum(self.records.values()) + sum(self.skipped.values()) + sum(self.bad.values())
