"""Alert delivery, written once for every sink: routing, per-sink delivery state, retry, dead letters.

Each alert the pipeline creates (or resolves) is enqueued for every sink whose routing accepts it;
the queue is the ``deliveries`` table of the store, per (alert, sink), so a sink that fails is
retried alone and a sink that worked is never sent the alert again. A delivery run sends what is
due: a failure worth retrying (429, 5xx, network) is retried in the run with exponential backoff
and jitter, honouring ``Retry-After``, within a deadline well under the Functions timeout; what is
still undelivered stays pending for the next run (the timer, ``pimwatch deliver``) until it reaches
``max_attempts`` or ``max_age_hours`` and becomes a dead letter. A permanent error (other 4xx) is a
dead letter at once. Dead letters are kept, listed and re-sendable (``pimwatch outbox``).

**A delivery is claimed before it is sent**, so two deliverers at once (two ``pimwatch deliver`` on
one state file, two Functions instances draining the outbox) never both send it: the deliverer
takes a *lease* on each due row of a unit (``Store.lease``: a holder token and an expiry; a
conditional UPDATE in SQLite, committed before the send; ETag-conditional on Azure Tables), sends
only what it won, and ``mark_sent``/``mark_failed`` count only for the lease's holder. A claimant
that dies keeps its lease until it expires; the next run after that takes the delivery over. The
lease outlasts the longest send the policy allows (:meth:`Deliverer.lease_seconds`), so a live
claimant never loses its lease. Sooner than that, a run on the claimant's own host takes over at
once the claims of a process that is provably gone (:func:`claimant_gone`): a worker restarted
after a crash resumes its deliveries instead of waiting out its predecessor's leases. A resolve is
not claimed while another deliverer's live lease is on its trigger: an alert's trigger still goes
before its resolve.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from pimwatch.delivery.grouping import Grouping, group_alert, group_id, release_at, with_group
from pimwatch.delivery.sink import Http, PermanentError, SinkConfig, TransientError
from pimwatch.detection.alerts import Alert, Severity, alert_id
from pimwatch.detection.contract import Delivery, Store, StoreError
from pimwatch.detection.timeutil import iso

log = logging.getLogger("pimwatch.delivery")


class DeadLetters(Protocol):
    """Where the deliverer also writes dead letters (:class:`pimwatch.state.archive.Archive`): buffered
    by ``append``, written by ``flush``, which raises a :class:`StoreError` when it cannot write
    (then ``discard`` drops what is unwritten)."""

    def append(self, record: Mapping[str, Any]) -> None: ...
    def flush(self) -> None: ...
    def discard(self) -> None: ...


DEAD_LETTERS = "delivery.dead_letters"
# The requests one try of a send may make, each bounded by the sink's ``timeout_seconds``: a token,
# then the post (SMTP: connect/TLS, login, the message). The lease is sized by it.
REQUESTS_PER_SEND = 4
# Grouping's state, as window members: each group's alerts, and the deliveries held for their wait.
GROUP_MEMBERS = "\x1dgroup\x1f"
HELD = "\x1dgroup.held"
_EPOCH = datetime.fromtimestamp(0, UTC)
_FAR = datetime(9999, 1, 1, tzinfo=UTC)


def _this_host() -> str | None:
    """This machine and boot (hostname and boot id), for claim holders; None where the boot id is
    unknown (not Linux): then no claim is ever taken over before its lease expires."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot[:8]}"


HOST = _this_host()
INCARNATION = uuid.uuid4().hex[:8]  # this process, told apart from an earlier one with the same pid


def new_holder() -> str:
    """A claim's holder token: ``host:pid:incarnation:claim``."""
    return f"{HOST or socket.gethostname()}:{os.getpid()}:{INCARNATION}:{uuid.uuid4().hex[:8]}"


def claimant_gone(holder: str) -> bool:
    """True only when the claim's holder provably no longer runs: it was made on this host and boot,
    by a process id that is not running, or by an earlier process that had this process's id. Any
    doubt (another host, a process id in use, no boot id) is False: the lease is waited out."""
    parts = holder.rsplit(":", 3)
    if HOST is None or len(parts) != 4 or parts[0] != HOST or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return parts[2] != INCARNATION
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except OSError:  # exists, under another user
        return False
    return False


class Policy(BaseModel):
    """``delivery:`` in the config."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int = 12
    max_age_hours: float = 24.0
    base_delay_seconds: float = 1.0
    max_delay_seconds: float = 300.0
    run_deadline_seconds: float = 60.0  # per sink per run; the Functions timeout is 5-10 min
    retries_in_run: int = 2
    alert_on_dead_letters: bool = True  # a "delivery.dead_letters" alert through the other sinks
    lease_margin_seconds: float = 30.0  # added to the longest send: clock skew between instances
    # New alerts of this severity or higher are committed and sent as soon as their record is
    # processed, not at the end of the Event Hub batch (pimwatch/hosting/driver.py); None: at the end.
    at_once: Severity | None = None


@dataclass(frozen=True)
class LoadedSink:
    name: str
    config: SinkConfig
    module: ModuleType

    @property
    def batch(self) -> bool:
        return bool(getattr(self.module, "BATCH", False))

    @property
    def groups(self) -> bool:
        """A notification sink: one notification per group (``GROUPS = True``), held for the wait."""
        return bool(getattr(self.module, "GROUPS", False))

    @property
    def resolves(self) -> bool:
        return bool(getattr(self.module, "RESOLVES", False))

    def render(self, alerts: Sequence[Alert]) -> Any:
        return self.module.render(alerts, self.config)

    @property
    def label(self) -> str:
        """How errors and logs name this sink: the configured name, and its type when that differs
        ("soar (webhook)"), so two sinks of one type are told apart."""
        return self.name if self.name == self.config.type else f"{self.name} ({self.config.type})"

    def send(self, rendered: Any, http: Http) -> str:
        """The sink's ``send`` with its private CA (``tls_ca_file``) and errors that name this sink."""
        try:
            return str(self.module.send(rendered, self.config, http.for_sink(self.config)))
        except TransientError as exc:
            raise TransientError(self.named(str(exc)), exc.retry_after) from None
        except PermanentError as exc:
            raise PermanentError(self.named(str(exc))) from None

    def named(self, message: str) -> str:
        """``message`` under this sink's label; the sink type a sink module put first is replaced."""
        own = f"{self.config.type}: "
        return f"{self.label}: {message.removeprefix(own)}"


def sink_module(sink_type: str) -> ModuleType | None:
    """``sinks.<type>``, or None when there is no such sink."""
    if not sink_type.isidentifier() or sink_type.startswith("_"):
        return None
    try:
        return importlib.import_module(f"sinks.{sink_type}")
    except ModuleNotFoundError as exc:
        if exc.name == f"sinks.{sink_type}":
            return None
        raise


@dataclass
class Outcome:
    """What one delivery run did, per sink: sent, retried later, dead, and the last answer or error."""

    sent: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    answers: dict[str, str] = field(default_factory=dict)
    # Sent or failed after this run's lease had been taken over (the lease was too short): the
    # result is the new holder's, this run's is dropped.
    lost: dict[str, int] = field(default_factory=dict)

    def count(self, bucket: dict[str, int], sink: str, n: int = 1) -> None:
        if n:
            bucket[sink] = bucket.get(sink, 0) + n


def _parts(sink: LoadedSink, alerts: Sequence[Alert]) -> int:
    """How many requests' worth the unit renders to: a list payload is sent one part at a time. A
    render that fails counts one (the send attempt reports the failure)."""
    if not sink.batch or not alerts:
        return 1
    try:
        rendered = sink.render(alerts)
    except Exception:
        return 1
    return len(rendered) if isinstance(rendered, list) else 1


class Deliverer:
    def __init__(
        self,
        sinks: Mapping[str, LoadedSink],
        store: Store,
        policy: Policy,
        http: Http | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        archive: DeadLetters | None = None,
        grouping: Grouping | None = None,
    ):
        """``archive``: where dead letters are also written (pimwatch/state/archive.py), so what never
        reached a sink stays readable after the state store is pruned; None: the store only.
        ``grouping``: the config's ``routing`` (pimwatch/delivery/grouping.py); None (or an empty
        ``group_by``): every alert is delivered on its own, as it is queued."""
        self.sinks = sinks
        self.store = store
        self.policy = policy
        self.http = http or Http()
        self.clock = clock
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.archive = archive
        self.grouping = grouping if grouping is not None and grouping.group_by else None

    def enqueue(self, alert: Alert, change: str) -> int:
        """Queue a new (``change == "new"``) or resolved alert for every sink that routes it. With
        grouping, the grouping sinks' deliveries are held until :meth:`release` (the group's wait)."""
        kind = "resolve" if change == "resolved" else "trigger"
        if change not in ("new", "resolved"):
            return 0
        queued = 0
        now = self.clock()
        held = False
        for name, sink in self.sinks.items():
            if kind == "resolve" and not sink.resolves:
                continue
            if not sink.config.routes(alert):
                continue
            if self.grouping is not None and sink.groups:
                held = True  # queued by :meth:`release` once the group's wait is over
                continue
            queued += self.store.enqueue(alert.id, name, kind, now, self._due(sink.config, alert, now))
        if self.grouping is not None:
            gid = group_id(alert, self.grouping)
            at = datetime.fromtimestamp(0, UTC) if not alert.events else release_at(alert, self.grouping)
            self.store.add(GROUP_MEMBERS + gid, alert.id, at)
            if held:
                self.store.add(HELD, f"{kind}\x1f{alert.id}", at, payload={"group": gid})
        return queued

    @staticmethod
    def _due(config: SinkConfig, alert: Alert, now: float) -> float:
        """Now, or the end of the current digest interval for alerts the sink collects in a digest."""
        size = config.digest_minutes * 60
        if size <= 0 or alert.severity.rank > config.digest_severity.rank:
            return now
        return (now // size + 1) * size

    def backoff(self, attempts: int, hint: float | None) -> float:
        """Exponential with full jitter, capped; a Retry-After hint wins when it is longer."""
        p = self.policy
        delay = min(p.max_delay_seconds, p.base_delay_seconds * (2 ** max(0, attempts - 1)))
        delay = self.rng.uniform(delay / 2, delay)
        return max(delay, hint or 0.0)

    def lease_seconds(self, sink: LoadedSink, parts: int = 1) -> float:
        """How long a claim on one unit lasts: the longest its send can take under the policy.

        Every try makes at most :data:`REQUESTS_PER_SEND` requests, plus one per further part of a
        payload rendered in ``parts`` (a Splunk or Sentinel batch split by size, syslog messages),
        each within the sink's ``timeout_seconds``; there are ``retries_in_run + 1`` tries; the waits
        between them end before ``run_deadline_seconds`` after the sink's run began; plus
        ``lease_margin_seconds``. Defaults (10 s timeout, one part): 60 + 3 x 4 x 10 + 30 = 210 s.
        A deliverer that dies holds its unit that long (less on its own host: :func:`claimant_gone`)."""
        p = self.policy
        requests = (p.retries_in_run + 1) * (REQUESTS_PER_SEND + max(0, parts - 1))
        return p.run_deadline_seconds + requests * sink.config.timeout_seconds + p.lease_margin_seconds

    def warnings(self) -> list[str]:
        """Start-up warnings of the sinks (e.g. Opsgenie's API shutdown date)."""
        out = []
        for name, sink in self.sinks.items():
            warn = getattr(sink.module, "startup_warning", None)
            message = warn(sink.config) if callable(warn) else None
            if message:
                out.append(f"sink {name}: {message}")
        return out

    def run(self, only: str | None = None) -> Outcome:
        outcome = Outcome()
        for name, sink in self.sinks.items():
            if only is None or name == only:
                self._run_sink(name, sink, outcome)
        if self.policy.alert_on_dead_letters and outcome.dead:
            # Dead letters alert in their own right, through the sinks that still work.
            for name, n in sorted(outcome.dead.items()):
                alert = self._dead_letter_alert(name, n)
                if self.store.merge_alert(alert) != "unchanged":
                    for other, sink in self.sinks.items():
                        if other != name and sink.config.routes(alert):
                            self.store.enqueue(alert.id, other, "trigger", self.clock())
            for other, sink in self.sinks.items():
                if other not in outcome.dead and (only is None or other == only):
                    self._run_sink(other, sink, outcome)
        self.store.commit()
        return outcome

    def _dead_letter_alert(self, sink: str, count: int) -> Alert:
        now = self.clock()
        day = datetime.fromtimestamp(now // 86400 * 86400, UTC)
        when = iso(datetime.fromtimestamp(now, UTC))
        return Alert(
            id=alert_id(DEAD_LETTERS, sink, iso(day)),
            detector=DEAD_LETTERS,
            severity=Severity.HIGH,
            title=f"Alerts could not be delivered to sink {sink!r}: dead letters",
            summary="A sink refused or kept failing deliveries; the alerts are kept as dead letters.",
            runbook=(
                "Fix the sink (key, URL, permissions, payload), then 'pimwatch outbox list --status dead' "
                "and 'pimwatch outbox retry' to re-send them."
            ),
            mitre=[],
            principal={"id": None, "upn": None, "name": sink},
            context={"sink": sink, "dead_letters_in_run": count},
            events=[(when, f"{sink}:{now:.6f}")],
        )

    def _run_sink(self, name: str, sink: LoadedSink, outcome: Outcome) -> None:
        started = self.clock()
        # Unclaimed, or the lease expired, or its claimant is gone: another live run's are left alone.
        due = [
            d for d in self.store.due(name, started) if d.lease_until <= started or claimant_gone(d.holder)
        ]
        if not due:
            return
        pairs: list[tuple[Delivery, Alert]] = []
        for d in due:
            alert = self.store.get_alert(d.alert_id)
            if alert is None:
                continue
            # A trigger still owed goes out as a trigger even if the alert has resolved since
            # (its resolve delivery follows): the page is never skipped.
            if d.kind == "trigger" and alert.status != "open":
                alert = replace(alert, status="open", resolved_at=None)
            pairs.append((d, with_group(alert, self.grouping) if self.grouping is not None else alert))
        grouped = self.grouping is not None and sink.groups
        if sink.batch:
            units = [pairs]
        elif grouped:
            # One notification per group and kind: every due alert of the group in one unit.
            by_group: dict[tuple[str, str], list[tuple[Delivery, Alert]]] = {}
            for d, alert in pairs:
                by_group.setdefault((alert.group, d.kind), []).append((d, alert))
            units = list(by_group.values())
        else:
            units = [[pair] for pair in pairs]
        for alerts in units:
            lease = self.lease_seconds(sink, _parts(sink, [a for _, a in alerts]))
            holder, claimed = self._claim(name, [d for d, _ in alerts], lease)
            if not claimed:
                continue
            won = {(d.alert_id, d.kind) for d in claimed}
            mine = [a for d, a in alerts if (d.alert_id, d.kind) in won]
            notices = self._groups(sink, mine) if grouped else None
            self._attempt(name, sink, claimed, mine, started, outcome, holder, notices)

    def _groups(self, sink: LoadedSink, alerts: Sequence[Alert]) -> list[Alert]:
        """The group notifications for ``alerts`` (claimed in one unit): per group, in order, one
        :func:`~pimwatch.delivery.grouping.group_alert` over every member this sink routes. Members
        not in the unit are listed as sent before (an update); this unit's are new."""
        assert self.grouping is not None
        mine: dict[str, dict[str, Alert]] = {}
        for alert in alerts:
            mine.setdefault(alert.group, {})[alert.id] = alert
        out = []
        for gid, now in mine.items():
            members = dict(now)
            for m in self.store.members(GROUP_MEMBERS + gid, _EPOCH, _FAR):
                if m.member in members:
                    continue
                other = self.store.get_alert(m.member)
                if other is not None and sink.config.routes(other) and group_id(other, self.grouping) == gid:
                    members[other.id] = with_group(other, self.grouping)
            earlier = [aid for aid in members if aid not in now]
            out.append(group_alert(gid, list(members.values()), earlier))
        return out

    def release(self, clock: datetime | None, *, urgent: Sequence[str] = ()) -> int:
        """Queue the held alerts of every group whose wait is over at the tick clock ``clock`` (None:
        the end of the input, every group) for the grouping sinks; returns the deliveries queued.
        ``urgent``: alert ids whose groups go now, whatever the clock (``delivery.at_once``).

        A group goes out whole: when one held member is ripe, the group's other held members go
        with it (so one notification lists them all)."""
        if self.grouping is None:
            return 0
        held = self.store.members(HELD, _EPOCH, _FAR)
        if not held:
            return 0
        limit = None if clock is None else clock.timestamp()
        ripe = {
            str((m.payload or {}).get("group"))
            for m in held
            if (limit is None and not urgent) or (limit is not None and m.at <= limit)
        }
        for aid in urgent:
            alert = self.store.get_alert(aid)
            if alert is not None:
                ripe.add(group_id(alert, self.grouping))
        queued = 0
        now = self.clock()
        for m in held:
            if str((m.payload or {}).get("group")) not in ripe:
                continue
            kind, aid = m.member.split("\x1f", 1)
            alert = self.store.get_alert(aid)
            if alert is not None:
                for name, sink in self.sinks.items():
                    if not sink.groups or (kind == "resolve" and not sink.resolves):
                        continue
                    if sink.config.routes(alert):
                        queued += self.store.enqueue(aid, name, kind, now, self._due(sink.config, alert, now))
            self.store.remove(HELD, m.member)
        return queued

    def _claim(self, name: str, unit: list[Delivery], lease: float) -> tuple[str, list[Delivery]]:
        """Lease what of ``unit`` no other deliverer holds, and commit the leases before the send:
        (the holder token, the deliveries won, in order)."""
        holder = new_holder()
        won = []
        for d in unit:
            now = self.clock()
            takeover = d.holder if d.lease_until > now else ""  # still live: its claimant is gone
            if takeover:
                log.info(
                    "sink %s: taking over %s's claim on %s (that process is gone)", name, takeover, d.alert_id
                )
            if self.store.lease(
                d.alert_id, name, d.kind, holder=holder, now=now, until=now + lease, takeover=takeover
            ):
                won.append(d)
        # Visible to every other deliverer before anything is sent (and, in SQLite, the write lock a
        # refused claim took is let go at once).
        self.store.commit()
        return holder, won

    def _attempt(
        self,
        name: str,
        sink: LoadedSink,
        unit: list[Delivery],
        alerts: list[Alert],
        started: float,
        outcome: Outcome,
        holder: str,
        notices: Sequence[Alert] | None = None,
    ) -> None:
        """Send ``unit`` (of ``alerts``); ``notices``: what is rendered instead (group notifications)."""
        p = self.policy
        tries = 0
        while True:
            tries += 1
            try:
                answer = sink.send(sink.render(alerts if notices is None else notices), self.http)
            except PermanentError as exc:
                self._fail(name, unit, str(exc), dead=True, outcome=outcome, alerts=alerts, holder=holder)
                return
            except TransientError as exc:
                attempts = unit[0].attempts + tries
                wait = self.backoff(attempts, exc.retry_after)
                now = self.clock()
                if tries <= p.retries_in_run and now + wait - started <= p.run_deadline_seconds:
                    log.info("%s; retrying in %.1f s", exc, wait)
                    self.sleep(wait)
                    continue
                too_old = now - unit[0].first_at > p.max_age_hours * 3600
                dead = attempts >= p.max_attempts or too_old
                self._fail(
                    name,
                    unit,
                    str(exc),
                    dead=dead,
                    outcome=outcome,
                    next_at=now + wait,
                    alerts=alerts,
                    holder=holder,
                )
                return
            except Exception as exc:  # a bug in a sink: kept for retry, logged, never lost
                log.exception("%s: unexpected error", sink.label)
                self._fail(
                    name,
                    unit,
                    sink.named(type(exc).__name__),
                    dead=False,
                    outcome=outcome,
                    next_at=self.clock() + self.backoff(unit[0].attempts + 1, None),
                    holder=holder,
                )
                return
            now = self.clock()
            marked = sum(
                self.store.mark_sent(d.alert_id, name, d.kind, answer, now, holder=holder) for d in unit
            )
            self.store.commit()  # durable at once: a crash after this never sends it again
            self._lost(name, len(unit) - marked, outcome)
            outcome.count(outcome.sent, name, marked)
            outcome.answers[name] = answer
            return

    def _lost(self, name: str, n: int, outcome: Outcome) -> None:
        if n:
            outcome.count(outcome.lost, name, n)
            log.warning(
                "sink %s: %d deliveries outlasted their lease and were taken over by another run: "
                "this run's result is dropped (the lease is too short for this sink's sends)",
                name,
                n,
            )

    def _fail(
        self,
        name: str,
        unit: list[Delivery],
        error: str,
        *,
        dead: bool,
        outcome: Outcome,
        next_at: float = 0.0,
        alerts: Sequence[Alert] = (),
        holder: str = "",
    ) -> None:
        now = self.clock()
        if dead and self.archive is not None and not self._archive_dead(name, unit, alerts, error, now):
            dead, next_at = False, now + self.backoff(unit[0].attempts + 1, None)
        marked = sum(
            self.store.mark_failed(
                d.alert_id, name, d.kind, dead=dead, next_at=next_at, error=error, now=now, holder=holder
            )
            for d in unit
        )
        self.store.commit()
        self._lost(name, len(unit) - marked, outcome)
        outcome.count(outcome.dead if dead else outcome.pending, name, marked)
        outcome.answers[name] = error
        (log.error if dead else log.warning)("%s (%s)", error, "dead letter" if dead else "will retry")

    def _archive_dead(
        self, name: str, unit: list[Delivery], alerts: Sequence[Alert], error: str, now: float
    ) -> bool:
        """Write the dead letters to the archive before the store marks them dead. When the archive
        cannot be written they stay pending instead (retried, and archived when they die again)."""
        assert self.archive is not None
        by_id = {a.id: a for a in alerts}
        dead_at = iso(datetime.fromtimestamp(now, UTC))
        try:
            for d in unit:
                alert = by_id.get(d.alert_id)
                self.archive.append(
                    {
                        "alert": alert.to_dict() if alert is not None else {"id": d.alert_id},
                        "sink": name,
                        "kind": d.kind,
                        "attempts": d.attempts + 1,  # the outbox's count once this failure is noted
                        "error": error,
                        "dead_at": dead_at,
                    }
                )
            self.archive.flush()
        except StoreError as exc:
            self.archive.discard()
            log.error("%s: dead letters not archived, kept pending for a retry: %s", name, exc)
            return False
        return True
