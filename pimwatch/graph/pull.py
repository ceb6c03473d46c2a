"""The Graph pull, for tenants without Event Hub: ``auditLogs/directoryAudits`` and
``auditLogs/signIns`` read through Microsoft Graph into the same pipeline as every other host.

* **What is read.** directoryAudits: the PIM service's records, the ``RoleManagement`` and
  ``GroupManagement`` categories, every record initiated by or targeting a break-glass account, and
  the extra queries of ``graph.pull.audit_filters``; signIns (interactive, v1.0) of the watched
  principals: the break-glass accounts and the privileged principals the pipeline has learned (read
  from the store after the audit records are in). One query per clause (Graph's audit ``$filter``
  takes ``eq``/``ge`` clauses joined by ``and``); a record two queries return is fed once.
* **The same pipeline.** An endpoint's records, sorted oldest first (:func:`read_endpoint`), go in
  :data:`CHUNK` at a time as one message body through
  :meth:`Pipeline.messages <pimwatch.detection.pipeline.Pipeline.messages>` — the reader and the
  normalization of a Graph export file — and one :class:`~pimwatch.hosting.driver.Driver` batch (the
  CLI) or :meth:`Runtime.handle <pimwatch.hosting.runtime.Runtime.handle>` (the Functions timer).
* **The cursor** per endpoint, in the store's key-value role (``graph:pull:cursor:<endpoint>``): the
  newest record time seen. A pull asks for records from that time minus ``graph.pull.overlap_minutes``
  (15): Graph lists records minutes (sign-ins: at times hours) after they happened, so the overlap
  reads again the records a previous pull may have missed. What it reads twice counts once: the
  engine folds records by id into each alert (a record seen before leaves the alert unchanged).
  The cursor is written only after every query of its endpoint has been read and fed (committed):
  a pull that fails part-way is read again from the old cursor next time. It never moves back, nor
  past the pull's own time (a record stamped ahead of the host's clock is read again).
* **The clock** of the clock-driven detectors: a pull notes the partition ``graph:pull`` as read up
  to the pull's time minus the overlap (:mod:`pimwatch.state.progress`), so ``approval.overdue``
  does not decide that a decision is missing while it may still arrive inside the overlap.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Protocol, TypeVar

import orjson

from pimwatch.config import Config
from pimwatch.detection.contract import Store
from pimwatch.detection.principals import IDS
from pimwatch.detection.timeutil import iso, parse_time
from pimwatch.graph.client import GraphClient, GraphError, PermissionDenied, Sleep
from pimwatch.graph.settings import PullSettings
from pimwatch.hosting.azure_settings import SettingsError
from pimwatch.hosting.consume_settings import starting_position
from pimwatch.hosting.driver import BatchResult, Change, Driver

T = TypeVar("T")
PARTITION = "graph:pull"  # the progress partition the pull notes (pimwatch/state/progress.py)
CURSOR = "graph:pull:cursor:"  # + endpoint name: {"newest": <iso>, "pulled": <iso>}
PERMISSION = "AuditLog.Read.All"
CHUNK = 500  # records per batch (one unit of work)
AUDITS, SIGNINS = "directoryAudits", "signIns"
TIME_FIELD = {AUDITS: "activityDateTime", SIGNINS: "createdDateTime"}
AUDIT_QUERIES = ("loggedByService eq 'PIM'", "category eq 'RoleManagement'", "category eq 'GroupManagement'")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Host(Protocol):
    """Where the pulled pages go: the CLI's driver (:class:`DriverHost`) or the Functions runtime
    (:class:`RuntimeHost`)."""

    def read(self, work: Callable[[Store], T]) -> T:
        """``work`` with the state store (the cursor, the learned principals)."""
        ...

    def feed(self, body: bytes, source: str, now: datetime, clock: datetime) -> None:
        """Records (a Graph collection body) as one batch; ``clock``: the endpoint is read up to here."""
        ...

    def finish(self, now: datetime, write: Callable[[Store], None]) -> None:
        """The end of a pull: ``write`` (the cursors) in one unit of work with a timer tick."""
        ...


@dataclass
class StreamResult:
    """One endpoint of one pull."""

    endpoint: str
    start: datetime  # records from here were asked for
    queries: int = 0
    pages: int = 0
    records: int = 0  # distinct records read (those of the overlap included)
    newest: datetime | None = None  # the newest record time read by this pull
    cursor: datetime | None = None  # the stored cursor after the pull
    error: str | None = None  # the reason the endpoint could not be read whole (its cursor is kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "endpoint",
            "endpoint": self.endpoint,
            "start": iso(self.start),
            "queries": self.queries,
            "pages": self.pages,
            "records": self.records,
            "newest": iso(self.newest) if self.newest else None,
            "cursor": iso(self.cursor) if self.cursor else None,
            "error": self.error,
        }


@dataclass
class PullResult:
    endpoints: list[StreamResult] = field(default_factory=list)
    requests: int = 0  # HTTP requests made (retries included)

    @property
    def complete(self) -> bool:
        return all(s.error is None for s in self.endpoints)


# --- what to ask ---------------------------------------------------------------------------------
def audit_filters(config: Config) -> list[str]:
    """The directoryAudits ``$filter`` clauses (each its own query, besides the time)."""
    s = config.settings
    clauses = list(AUDIT_QUERIES)
    for oid in sorted(s.break_glass_ids):
        clauses += [
            f"initiatedBy/user/id eq '{_quote(oid)}'",
            f"targetResources/any(t:t/id eq '{_quote(oid)}')",
        ]
    for upn in sorted(s.break_glass_upns):
        clauses.append(f"initiatedBy/user/userPrincipalName eq '{_quote(upn)}'")
    clauses += [c for c in config.graph.pull.audit_filters if c not in clauses]
    return clauses


def watched(store: Store, config: Config) -> tuple[list[str], list[str]]:
    """The principals whose sign-ins are pulled: (object ids, UPNs) — the break-glass accounts and
    the privileged principals learned so far (pimwatch/detection/principals.py); UPNs only for
    break-glass accounts configured by UPN (a learned principal is asked for by its id)."""
    s = config.settings
    ids = set(s.break_glass_ids) | {m.member for m in store.members(IDS, _EPOCH, _EPOCH)}
    return sorted(ids), sorted(s.break_glass_upns)


def signin_filters(ids: Sequence[str], upns: Sequence[str]) -> list[str]:
    return [f"userId eq '{_quote(i)}'" for i in ids] + [f"userPrincipalName eq '{_quote(u)}'" for u in upns]


def _quote(value: str) -> str:
    return value.replace("'", "''")  # OData string literal


def since_time(value: str, now: datetime) -> datetime:
    """``--since``: an ISO 8601 time, or a look-back from now (``30m``, ``6h``, ``7d``), as
    ``pimwatch consume --start`` reads them. ValueError names the option."""
    try:
        at = starting_position(value, now, "--since")
    except SettingsError as exc:
        raise ValueError(str(exc).replace("latest, earliest, ", "")) from None
    if not isinstance(at, datetime):
        raise ValueError(f"--since must be an ISO-8601 UTC time or a look-back like 6h or 7d, not {value!r}")
    return at


def read_cursor(store: Store, endpoint: str) -> datetime | None:
    doc = store.get(CURSOR + endpoint)
    return parse_time(doc.get("newest")) if isinstance(doc, dict) else None


def start_of(cursor: datetime | None, pull: PullSettings, now: datetime, since: datetime | None) -> datetime:
    """Where a pull starts: ``since`` if given, else the cursor minus the overlap, else the lookback."""
    if since is not None:
        return since
    if cursor is not None:
        return cursor - timedelta(minutes=pull.overlap_minutes)
    return now - timedelta(hours=pull.lookback_hours)


def _literal(at: datetime) -> str:
    """A DateTimeOffset literal, floored to the second (asking a little earlier is safe)."""
    return at.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


# --- reading -------------------------------------------------------------------------------------
async def read_endpoint(
    client: GraphClient,
    host: Host,
    endpoint: str,
    clauses: Sequence[str],
    start: datetime,
    now: datetime,
    clock: datetime,
    max_pages: int,
) -> StreamResult:
    """Every query of ``endpoint`` from ``start``; then the records (each id once) fed to ``host``
    oldest first, :data:`CHUNK` to a batch. Graph lists them newest first and pages cut anywhere:
    sorted, what the detectors see — and where the clock-driven ones tick — does not depend on the
    queries, their order or the page size. Sets ``error`` instead of raising (nothing is fed then:
    the cursor stays, the next pull reads it all again)."""
    result = StreamResult(endpoint, start)
    field_ = TIME_FIELD[endpoint]
    records: dict[str, dict[str, Any]] = {}
    unnamed: list[dict[str, Any]] = []  # no id: not deduplicated here (the pipeline quarantines it)
    try:
        for clause in clauses:
            result.queries += 1
            params = {"$filter": f"{field_} ge {_literal(start)} and {clause}"}
            async for page in client.pages(f"auditLogs/{endpoint}", params, max_pages=max_pages):
                result.pages += 1
                for rec in page:
                    rid = rec.get("id")
                    if isinstance(rid, str) and rid:
                        records.setdefault(rid, rec)
                    else:
                        unnamed.append(rec)
    except PermissionDenied as exc:
        result.error = f"pimwatch pull needs {PERMISSION} ({exc})"
        return result
    except GraphError as exc:
        result.error = str(exc)
        return result
    timed = [(parse_time(r.get(field_)) or _EPOCH, rid, r) for rid, r in records.items()]
    timed.sort(key=lambda x: (x[0], x[1]))
    ordered = [r for _, _, r in timed] + unnamed
    result.records = len(ordered)
    result.newest = max((t for t, _, _ in timed if t > _EPOCH), default=None)
    for n, i in enumerate(range(0, len(ordered), CHUNK), 1):
        source = f"graph:{endpoint}@{_literal(now)}#{n}"
        host.feed(orjson.dumps({"value": ordered[i : i + CHUNK]}), source, now, clock)
    return result


async def pull_once(
    config: Config, host: Host, client: GraphClient, now: datetime, since: datetime | None = None
) -> PullResult:
    """One pull of both endpoints into ``host``; the cursors are written at the end (see the module)."""
    settings = config.graph.pull
    clock = now - timedelta(minutes=settings.overlap_minutes)
    out = PullResult()
    calls_before = len(client.calls)
    endpoints = [AUDITS, SIGNINS] if settings.signins else [AUDITS]
    for endpoint in endpoints:
        cursor = host.read(partial(read_cursor, endpoint=endpoint))
        start = start_of(cursor, settings, now, since)
        if endpoint == AUDITS:
            clauses = audit_filters(config)
        else:
            clauses = signin_filters(*host.read(lambda store: watched(store, config)))
        r = await read_endpoint(client, host, endpoint, clauses, start, now, clock, settings.max_pages)
        r.cursor = cursor
        newest = min(r.newest, now) if r.newest is not None else None  # never ahead of the pull
        if r.error is None and newest is not None and (cursor is None or newest > cursor):
            r.cursor = newest
        out.endpoints.append(r)
    moved = {r.endpoint: r.cursor for r in out.endpoints if r.error is None and r.cursor is not None}

    def write(store: Store) -> None:
        for endpoint, newest in moved.items():
            store.put(CURSOR + endpoint, {"newest": iso(newest), "pulled": iso(now)})

    host.finish(now, write)
    out.requests = len(client.calls) - calls_before
    return out


def pull(
    config: Config,
    host: Host,
    now: datetime,
    *,
    since: datetime | None = None,
    client: GraphClient | None = None,
    sleep: Sleep | None = None,
) -> PullResult:
    """:func:`pull_once` with a Graph client of its own (closed at the end)."""
    graph = client or GraphClient(config.graph, sleep=sleep or asyncio.sleep)

    async def go() -> PullResult:
        try:
            return await pull_once(config, host, graph, now, since)
        finally:
            await graph.close()

    return asyncio.run(go())


# --- the hosts -----------------------------------------------------------------------------------
class DriverHost:
    """``pimwatch pull``: the pipeline driven by a :class:`Driver` (with :class:`ProgressTick`)."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.changes: dict[str, str] = {}  # alert id -> what this pull did to it ("new" wins)
        self.queued = 0

    def read(self, work: Callable[[Store], T]) -> T:
        return work(self.driver.store)

    def feed(self, body: bytes, source: str, now: datetime, clock: datetime) -> None:
        items = self.driver.pipeline.messages([body], [source])
        self._note(self.driver.batch(items, now, partition=PARTITION, enqueued=[clock]))

    def finish(self, now: datetime, write: Callable[[Store], None]) -> None:
        def also() -> list[Change]:
            write(self.driver.store)
            return []

        self._note(self.driver.timer(now, also=also))

    def _note(self, result: BatchResult) -> None:
        for aid, change in result.summary().items():
            if self.changes.get(aid) != "new":
                self.changes[aid] = change
        self.queued += result.queued


class RuntimeHost:
    """The Functions ``pull`` timer: pages through :meth:`Runtime.handle` (the Event Hub path's
    reader, unit of work, queueing and delivery), the cursors through :meth:`Runtime.apply`."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.alerts: dict[str, int] = {}
        self.queued = 0

    def read(self, work: Callable[[Store], T]) -> T:
        result: T = self.runtime.with_store(work)
        return result

    def feed(self, body: bytes, source: str, now: datetime, clock: datetime) -> None:
        self._add(self.runtime.handle([body], [source], partition=PARTITION, enqueued=[clock]))

    def finish(self, now: datetime, write: Callable[[Store], None]) -> None:
        def changes(store: Store) -> list[Change]:
            write(store)
            return []

        self._add(self.runtime.apply(now, changes))

    def _add(self, report: Any) -> None:
        for k, n in report.alerts.items():
            self.alerts[k] = self.alerts.get(k, 0) + n
        self.queued += report.queued


def timer(runtime: Any, now: datetime) -> dict[str, Any]:
    """The Functions ``pull`` timer (function_app.py): nothing unless ``graph.pull.enabled``."""
    config: Config = runtime.config
    if not config.graph.pull.enabled:
        return {"skipped": "graph.pull.enabled is false"}
    host = RuntimeHost(runtime)
    result = pull(config, host, now)
    return {
        "endpoints": [r.to_dict() for r in result.endpoints],
        "requests": result.requests,
        "alerts": host.alerts,
        "queued": host.queued,
    }
