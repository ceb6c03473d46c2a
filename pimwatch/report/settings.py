"""``report:`` in the config: how long the deployment keeps the report's ledger, and the weekly e-mail.

```yaml
report:
  retention_days: 400          # the ledger (pimwatch.detection.ledger), by whole UTC days
  ledger: true                 # the Functions app and consume keep it (false: not written)
  schedule: {weekday: mon, hour: 7, period_days: 7}   # the weekly report, UTC (unset: not sent)
  mail: <email sink>           # required with schedule: the summary, report.html and the CSVs
  teams: <teams sink>          # optional: a card with the numbers
```

Part of the config layer (validated with the whole file); no pandas here.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Schedule(BaseModel):
    """When the periodic report is sent: each ``weekday`` at ``hour`` UTC, for the ``period_days``
    whole UTC days before that day."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    weekday: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    hour: int = Field(7, ge=0, le=23)
    period_days: int = Field(7, ge=1, le=31)

    def last(self, now: datetime) -> datetime:
        """The latest scheduled time at or before ``now`` (UTC)."""
        day = now.replace(hour=self.hour, minute=0, second=0, microsecond=0)
        day -= timedelta(days=(now.weekday() - WEEKDAYS.index(self.weekday)) % 7)
        return day if day <= now else day - timedelta(days=7)

    def period(self, at: datetime) -> tuple[datetime, datetime]:
        """The report period of the send due at ``at``: ``period_days`` whole days before its day."""
        end = at.replace(hour=0)
        return end - timedelta(days=self.period_days), end


class ReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    retention_days: PositiveFloat = 400.0
    ledger: bool = True
    schedule: Schedule | None = None
    mail: str | None = None
    teams: str | None = None


def problems(settings: ReportSettings, sink_types: dict[str, str]) -> list[str]:
    """What is wrong with ``report:`` given the configured sinks (name → type)."""
    out: list[str] = []
    if settings.schedule is not None and settings.mail is None:
        out.append("report.mail: the weekly report (report.schedule) needs an email sink to send it through")
    if settings.mail is not None and sink_types.get(settings.mail) != "email":
        out.append(f"report.mail: {settings.mail!r} is not an email sink of this config")
    if settings.teams is not None and sink_types.get(settings.teams) != "teams":
        out.append(f"report.teams: {settings.teams!r} is not a teams sink of this config")
    if settings.schedule is not None and not settings.ledger:
        out.append("report.schedule: the weekly report is built from the ledger: report.ledger must be true")
    return out
