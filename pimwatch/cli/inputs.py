"""Per input file of a replay: whether it gave records the detectors could use, and if not, why (issue 10, 3).

A run that reads nothing usable must not look like a clean tenant. After each file, :class:`Checks`
compares the run's counters with what they were before it and keeps a note when the file yielded
no usable record (empty, all quarantined, all of other categories), when most of its records were
quarantined or skipped, or when it is a Graph PowerShell export whose nested objects were written
as .NET type names (``Export-Csv``; ``ConvertTo-Json`` below its ``-Depth``). The CLI prints the
notes last, and ``replay --strict`` exits 3 when there is one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from pimwatch.detection.reader import POWERSHELL_FLATTENED
from pimwatch.detection.stats import Stats

# How to export instead of a flattened Graph PowerShell file (export-shapes.md (c), (e)).
EXPORT_INSTEAD = (
    "export with `Get-MgAuditLogDirectoryAudit -All | ConvertTo-Json -Depth 10 > audit.json` "
    "(and `Get-MgAuditLogSignIn -All | ConvertTo-Json -Depth 10 > signins.json`), or from Log "
    "Analytics or the Event Hub"
)
LOST_AUDIT = "actor, targets and details"
LOST_SIGNIN = "status and location"


@dataclass(frozen=True)
class Note:
    path: str
    reason: str


@dataclass(frozen=True)
class _Counts:
    records: Counter[tuple[str, str]]
    skipped: Counter[str]
    bad: Counter[str]

    @classmethod
    def of(cls, stats: Stats) -> _Counts:
        return cls(Counter(stats.records), Counter(stats.skipped), Counter(stats.bad))


K = TypeVar("K", bound=Hashable)


def _since(now: Mapping[K, int], before: Mapping[K, int]) -> Counter[K]:
    return Counter({k: n - before.get(k, 0) for k, n in now.items() if n > before.get(k, 0)})


def _listed(counter: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))


class Checks:
    """Call :meth:`before` ahead of feeding a file and :meth:`after` when it is read."""

    def __init__(self, stats: Stats):
        self.stats = stats
        self.notes: list[Note] = []
        self._start = _Counts.of(stats)

    def before(self) -> None:
        self._start = _Counts.of(self.stats)

    def unopened(self, path: str, why: str) -> None:
        self.notes.append(Note(path, f"not read: {why}"))

    def after(self, path: str) -> None:
        start, stats = self._start, self.stats
        records = _since(stats.records, start.records)
        skipped = _since(stats.skipped, start.skipped)
        bad = _since(stats.bad, start.bad)
        used, n_skipped, n_bad = sum(records.values()), sum(skipped.values()), sum(bad.values())
        total = used + n_skipped + n_bad
        parts = []
        if n_bad:
            parts.append(f"{n_bad:,} quarantined ({_listed(bad)})")
        if n_skipped:
            parts.append(f"{n_skipped:,} of categories pimwatch does not read ({_listed(skipped)})")
        if total == 0:
            self.notes.append(Note(path, "no records in it"))
        elif used == 0:
            self.notes.append(Note(path, "no usable record: " + "; ".join(parts)))
        elif (n_bad + n_skipped) * 2 > total:
            self.notes.append(Note(path, f"most of its {total:,} records were not used: " + "; ".join(parts)))
        flattened = {category: n for (category, shape), n in records.items() if shape == POWERSHELL_FLATTENED}
        if flattened:
            audit = "AuditLogs" in flattened
            how = (
                "Export-Csv"
                if path.lower().removesuffix(".gz").endswith(".csv")
                else "ConvertTo-Json below -Depth"
            )
            kept = (
                "activity, time, category, result, reason, correlation id, record id, service, operation type"
                if audit
                else "user, time, app, IP address, risk levels, conditional access status"
            )
            self.notes.append(
                Note(
                    path,
                    f"Graph PowerShell {how} output: nested objects were written as .NET type names "
                    f"(Microsoft.Graph.PowerShell.Models....), so the {LOST_AUDIT if audit else LOST_SIGNIN} "
                    f"of its {sum(flattened.values()):,} records were lost; only what survives ({kept}) was "
                    "used, and detectors that need more could not see these records. "
                    f"Instead, {EXPORT_INSTEAD}",
                )
            )
