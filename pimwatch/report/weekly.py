"""The periodic report by e-mail (``report.schedule``): sent from the deployment's timer, once per
period whatever the number of instances, built from the state's ledger.

:func:`maybe_send` runs on the timer (:meth:`pimwatch.hosting.runtime.Runtime.tick`, after the
deliveries). Each ``weekday`` at ``hour`` UTC a report falls due, for the ``period_days`` whole UTC
days before that day; it is sent once:

* **exactly once across instances**: the send is taken with an insert-if-absent claim in the state
  (``report:weekly:<due>#<attempt>``: ``Store.claim``, a conditional insert on Azure Tables), so two
  instances whose timers fire together never both send; the answer is then written under
  ``report:weekly:sent:<due>`` and later timers see it;
* **a failed send is tried again** by the next timer (any instance), under the next attempt's claim,
  up to :data:`ATTEMPTS` times; then it is left, logged;
* **a late start** sends the due report if it is less than :data:`CATCH_UP` old (an app deployed on
  a Wednesday does not mail Monday's report).

The message is :func:`pimwatch.report.mail.send`'s (the summary as the HTML body, ``report.html``
and the CSVs attached) through the ``report.mail`` email sink; with ``report.teams``, a card with the
same figures goes to that Teams sink. pandas and matplotlib are imported here, off the Event Hub path,
only when a report is due.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import datetime, timedelta
from typing import Any

from pimwatch.config import Config
from pimwatch.delivery.sink import Http, SinkError
from pimwatch.detection.alerts import Alert, Severity, alert_id
from pimwatch.detection.contract import Store
from pimwatch.detection.timeutil import iso

log = logging.getLogger("pimwatch.report")
SENT = "report:weekly:sent:"
FAILED = "report:weekly:failed:"
ATTEMPTS = 5
CATCH_UP = timedelta(days=1)
KEPT = timedelta(days=62)  # the marks' time to live (the clean-up forgets them)
MARGIN = timedelta(days=31)  # ledger read before the period (role settings, requests that span it)


def due(config: Config, now: datetime) -> datetime | None:
    """The scheduled time of the report due at ``now`` (None: none, or too old to send)."""
    schedule = config.report.schedule
    if schedule is None:
        return None
    at = schedule.last(now)
    return at if now - at < CATCH_UP else None


def maybe_send(store: Store, config: Config, now: datetime, http: Http) -> str | None:
    """Send the due report if no instance has: the e-mail sink's answer (and Teams'), ``FAILED: ...``
    when the send failed (tried again at the next timer), None when nothing was due or it was sent."""
    at = due(config, now)
    if at is None:
        return None
    key = iso(at)
    if store.get(SENT + key) is not None:
        return None
    attempt = int(store.get(FAILED + key) or 0)
    if attempt >= ATTEMPTS or not store.claim(f"report:weekly:{key}#{attempt}"):
        return None
    store.commit()  # taken: other instances see the claim before this one sends
    try:
        answer = send(store, config, at, http)
    except (SinkError, OSError, ValueError, ImportError) as exc:
        store.put(FAILED + key, attempt + 1, ttl=KEPT)
        store.commit()
        log.warning("weekly report for %s not sent (attempt %d of %d): %s", key, attempt + 1, ATTEMPTS, exc)
        return f"FAILED: {exc}"
    store.put(SENT + key, answer, ttl=KEPT)
    store.commit()
    return answer


def send(store: Store, config: Config, at: datetime, http: Http) -> str:
    """Build the report of the period due at ``at`` from the ledger and send it; the answers."""
    from pimwatch.report.collect import from_ledger
    from pimwatch.report.frames import Period, build
    from pimwatch.report.mail import figures
    from pimwatch.report.mail import send as mail
    from pimwatch.report.render import write

    schedule, settings = config.report.schedule, config.report
    assert schedule is not None and settings.mail is not None
    start, end = schedule.period(at)
    collected = from_ledger(
        store, config, f"{start - MARGIN:%Y-%m-%d}", f"{end - timedelta(days=1):%Y-%m-%d}"
    )
    report = build(collected, config, Period(start, end))
    with tempfile.TemporaryDirectory(prefix="pimwatch-weekly-") as folder:
        written = write(report, folder, [])
        answers = [f"{settings.mail}: {mail(report, config.sinks[settings.mail], written)}"]
    if settings.teams is not None:
        sink = config.sinks[settings.teams]
        card = card_alert(report.summary, figures(report), report.findings, at, settings.mail)
        try:
            answers.append(f"{settings.teams}: {sink.send(sink.render([card]), http)}")
        except SinkError as exc:  # the mail went: the report is not sent again for the card
            answers.append(f"{settings.teams}: FAILED: {exc}")
    return "; ".join(answers)


def card_alert(
    summary: dict[str, Any], rows: list[tuple[str, Any]], findings: list[str], at: datetime, mail: str
) -> Alert:
    """The report's figures as an info "alert", so the Teams sink renders them as its card's facts."""
    key = iso(at)
    return Alert(
        id=alert_id("report.weekly", key, ""),
        detector="report.weekly",
        severity=Severity.INFO,
        title=f"PIM report {summary['period']}",
        summary=(" ".join(findings) if findings else "Nothing that needs attention.")
        + f" The report and its CSV files were e-mailed through the {mail!r} sink.",
        runbook="Open the e-mailed report.html; review the findings and sign the review block.",
        mitre=[],
        principal={"id": None, "upn": None, "name": "pimwatch"},
        context={label: str(value) for label, value in rows},
        events=[(key, f"report:{key}")],
    )
