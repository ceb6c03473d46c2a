"""The state store on Azure Table Storage: the same contract as SQLite (:mod:`pimwatch.detection.contract`),
shared safely by several processes and instances (every write is durable when the call returns).

Layout — seven tables, ``<prefix><concern>`` (alphanumeric): ``kv``, ``members``, ``claims``,
``outbox``, ``outboxkeys``, ``deliveries``, ``meta``.

========== ======================= ========================= ==========================================
table      PartitionKey            RowKey                    properties
========== ======================= ========================= ==========================================
kv         key                     ``v``                     ``value_*`` (JSON), ``expires`` (epoch s)
members    window key              member                    ``member``, ``at``, ``value``, ``payload_*``
claims     key                     ``c``                     ``at``
outbox     alert id                ``a``                     ``detector``, ``akey``, ``status``,
                                                             ``first_seen``, ``count``, ``doc_*`` …
outbox     alert id                ``m`` + member            ``member``: a record or value counted
outboxkeys detector ``~`` key      alert id                  ``id``: what ``resolve_alerts`` looks up
deliveries sink                    alert id ``~`` kind       as :class:`pimwatch.detection.contract.Delivery`
                                                             (``holder``, ``lease_until``: its claim)
meta       name                    ``v``                     ``v``
========== ======================= ========================= ==========================================

**Keys** are encoded with :func:`table_key`: ``k`` followed by the string with ``/ \\ # ? ' % ~ !``
and control characters (C0, DEL, C1) escaped as ``!`` and two hex digits (``a/b`` → ``ka!2Fb``;
``!``, not ``%``, so a key never depends on how a client or proxy URL-decodes it) — readable in Storage
Explorer, injective, never empty, never containing ``~`` (the separator of composite row keys). A
key whose encoding is longer than 400 characters keeps its first 300 and ends with ``!!`` and the
hex SHA-256 of the whole key (Azure's limit is 1 KiB; ``!!`` never occurs in a short encoding).

**Idempotency** is insert-if-absent (``create_entity``; 409 ``ResourceExistsError`` means "already
there"): ``add``, ``claim``, ``enqueue``, and in ``merge_alert`` the alert's membership rows.

**Folding an alert** (``merge_alert``) is O(1) whatever its count: the alert's partition holds its
bounded entity (row ``a``: count, a sample of event ids, bounded context lists, see
:mod:`pimwatch.detection.alerts`) and one membership row per record and accumulated value it has counted.
The rows of the records and values not counted yet and the alert (inserted, or replaced under its
ETag) go in one entity-group transaction: all or nothing, so a crash between them cannot lose or
double a count, and a retried batch finds its rows and changes nothing. A row that exists fails the
transaction at its index (it is dropped and the rest retried); more than two candidates are first
looked up in one query. Cost per fold: read, transaction (+1 per already-known value or conflict).

**Read-modify-write** (folding an alert, resolving, delivery state) reads the entity with its ETag
and writes it back with ``match_condition=IfNotModified``; a 412 (``ResourceModifiedError``: another
writer got there first) re-reads and retries, up to :data:`MAX_RETRIES` times with a short jittered
backoff, then raises :class:`StoreError`. No update is ever lost.

**Deliveries are claimed** before they are sent: ``lease`` sets ``holder`` and ``lease_until`` under
the ETag of the row it read (a 412 re-reads and decides again), so of two deliverers exactly one
wins; ``mark_sent``/``mark_failed`` change the row only for its holder. A row written before claims
existed has neither property and counts as unclaimed.

**Large values** (key/value documents, window payloads): JSON bytes are stored as
binary properties ``<name>_0 … <name>_<n-1>`` of at most 64 000 bytes each (Azure's limit is 64 KiB
per property) with ``<name>_n`` = n, zlib-compressed (``<name>_z``) when longer than one chunk; at
most 14 chunks (896 000 bytes, under the 1 MiB entity limit). An alert is bounded, so it never
grows past that with its count; one whose own context is that large refuses with :class:`StoreError`.

**Resolving** must not scan the outbox: before an alert is written, ``outboxkeys`` gets a row under
its (detector, key) and one under (detector, key without its last ``|segment``) — the two keys whose
``resolve_alerts`` must find it (write-once upserts, so a crash in between leaves at most a row
pointing at nothing, which is skipped). ``resolve_alerts`` reads that one partition, then each alert
by its key, and resolves it under its ETag; the index rows of a resolved alert are deleted once its
resolve is queued (a resolved alert stays resolved).

**Queueing is never lost** (the Store contract): an alert carries ``tq`` and ``rq``, whether its
trigger and resolve deliveries have been queued. ``merge_alert`` answers "new" while ``tq`` is false
and ``resolve_alerts`` returns a resolved alert while ``rq`` is false, until ``mark_queued`` sets
them: a process that dies between writing an alert and queueing it leaves the work to the retry.

**Entity-group transactions** batch the clean-up deletes (``purge``, ``prune``: up to 100 entities of
one partition per round trip). Outside a unit of work every call is durable when it returns:
``add``/``claim``/``enqueue`` one round trip; ``merge_alert`` 2 (read, transaction) + 1–2 index
upserts for an id this process has not indexed yet, + 1 per already-known value (or a lookup query)
and + 2 per 412.

**The per-batch unit of work** (:meth:`TableStore.unit`, opened by the driver around each Event Hub
batch; :mod:`pimwatch.state.tableunit`): the reads the batch is expected to make are fetched first,
concurrently (:meth:`TableStore.prefetch`, foreseen by :mod:`pimwatch.hosting.prefetch`); reads are then
answered from what the unit read or wrote (an alert just written is never read back, a delivery row's
ETag from ``due``/``lease`` makes ``mark_sent`` a single conditional merge); writes are buffered and
committed in four waves of concurrent requests — window members, key/values and index rows (one
transaction per partition), a check of the windows the batch both read and added to (another
instance's member there raises :class:`~pimwatch.state.tableunit.UnitConflict` before any alert is
written: the runtime runs the batch again outside a unit), the alerts (one transaction each: new
membership rows and the alert under its ETag; a transaction that loses a race is replayed call by call)
and delivery rows (one transaction per sink), then the ``tq``/``rq`` marks. ``bench/functions.py``:
6 round trips per 500-record batch (median) instead of 110.

Failures of the service itself (network, 5xx after the SDK's retries, auth) raise
:class:`StoreError`, so the runtime stalls the partition instead of losing the batch.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import random
import re
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar

import orjson
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, TableServiceClient, TableTransactionError, UpdateMode

from pimwatch.detection.alerts import Alert, Shown, fold, incoming_values, portion, record_member, records
from pimwatch.detection.contract import Delivery, Member, MergeResult, Store, StoreError
from pimwatch.state.tableunit import AlertState, Reads, Unit, UnitConflict, Waves, Window, chunks

SCHEMA_VERSION = "2"
TABLES = ("kv", "members", "claims", "outbox", "outboxkeys", "deliveries", "meta", "ledger")
INDEX_CACHE_SIZE = 65_536
MAX_RETRIES = 50  # ETag conflicts on one entity before giving up
CHUNK_BYTES = 64_000
MAX_CHUNKS = 14
BATCH_LIMIT = 100  # operations per entity-group transaction
PAGE_SIZE = 1000  # entities per query page (the service's maximum)
_KEY_LIMIT = 400
_UNSAFE = frozenset("%/\\#?'~!")
_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9]{0,52}")

log = logging.getLogger("pimwatch.tablestore")
P = ParamSpec("P")
R = TypeVar("R")


def table_key(s: str) -> str:
    """An Azure Table PartitionKey/RowKey for any string (see the module docstring)."""
    out = "k" + "".join(
        f"!{ord(c):02X}" if c in _UNSAFE or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in s
    )
    if len(out) > _KEY_LIMIT:
        out = out[:300] + "!!" + hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest()
    return out


def _index_key(detector: str, key: str) -> str:
    return table_key(detector) + "~" + table_key(key)


def _index_keys(detector: str, akey: str) -> list[str]:
    """The ``outboxkeys`` partitions of an alert: its key, and its key less the last ``|segment``."""
    keys = [_index_key(detector, akey)]
    if "|" in akey:
        keys.append(_index_key(detector, akey[: akey.rindex("|")]))
    return keys


def _guard(method: Callable[P, R]) -> Callable[P, R]:
    """Azure errors not handled inside a method are failures of the store: :class:`StoreError`."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except StoreError:
            raise
        except AzureError as exc:
            raise StoreError(f"table store: {method.__name__} failed: {exc}") from exc

    return wrapper


class TooLarge(StoreError):
    """A value over what one Azure Table entity can hold."""


def _pack(entity: dict[str, Any], name: str, blob: bytes) -> None:
    """``blob`` as binary properties ``<name>_0..``; zlib-compressed (``<name>_z``) beyond one chunk."""
    if len(blob) > CHUNK_BYTES:
        blob = zlib.compress(blob, 6)
        entity[f"{name}_z"] = True
    n = max(1, -(-len(blob) // CHUNK_BYTES))
    if n > MAX_CHUNKS:
        raise TooLarge(
            f"table store: {name} is {len(blob)} bytes compressed, over the {MAX_CHUNKS * CHUNK_BYTES}"
            " bytes an Azure Table entity can hold"
        )
    entity[f"{name}_n"] = n
    for i in range(n):
        entity[f"{name}_{i}"] = blob[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES]


def _unpack(entity: dict[str, Any], name: str) -> bytes | None:
    n = entity.get(f"{name}_n")
    if n is None:
        return None
    blob = b"".join(bytes(entity[f"{name}_{i}"]) for i in range(int(n)))
    return zlib.decompress(blob) if entity.get(f"{name}_z") else blob


def _member_of(e: dict[str, Any]) -> Member:
    blob = _unpack(e, "payload")
    return Member(e["member"], float(e["at"]), e["value"], orjson.loads(blob) if blob is not None else None)


def _backoff(attempt: int) -> None:
    time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** min(attempt, 6))))


def _etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


def _held_by_other(delivery: TableEntity, holders: tuple[str, str], now: float) -> bool:
    """Under a live claim of someone other than ``holders``."""
    owner = str(delivery.get("holder") or "")
    return owner not in ("", *holders) and float(delivery.get("lease_until") or 0.0) > now


class TableStore:
    """State in Azure Table Storage (or Azurite). Safe for many processes and instances at once."""

    def __init__(
        self,
        connection_string: str | None = None,
        prefix: str = "pimwatch",
        *,
        endpoint: str | None = None,
        credential: Any = None,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        """A connection string (Azurite, a key-based account), or a table service ``endpoint``
        (``https://<account>.table.core.windows.net``) with an azure-identity ``credential``.
        ``client_options`` go to the SDK client (e.g. ``retry_total``, ``connection_timeout``)."""
        if not _PREFIX_RE.fullmatch(prefix):
            raise StoreError(f"table prefix {prefix!r} must be a letter then up to 52 letters or digits")
        self.prefix = prefix
        self._waves = Waves()  # requests and round trips (the benchmark's cost measures)
        self._unit: Unit | None = None  # the open unit of work (see :mod:`pimwatch.state.tableunit`)
        self._indexed: set[str] = set()  # alert ids this process has written to outboxkeys
        self._due_read: dict[tuple[str, str], TableEntity] = {}  # the last ``due`` rows, with ETags
        options: dict[str, Any] = {"raw_response_hook": self._count, **(client_options or {})}
        try:
            if connection_string is not None:
                self._service = TableServiceClient.from_connection_string(connection_string, **options)
            elif endpoint is not None:
                self._service = TableServiceClient(endpoint=endpoint, credential=credential, **options)
            else:
                raise StoreError("table store: neither a connection string nor an endpoint was given")
            self._t: dict[str, TableClient] = {
                name: self._service.create_table_if_not_exists(prefix + name) for name in TABLES
            }
            self._check_schema()
        except (AzureError, ValueError) as exc:
            where = endpoint or "the connection string's account"
            raise StoreError(f"cannot open the table store ({where}, prefix {prefix}): {exc}") from exc

    def _count(self, response: Any) -> None:
        self._waves.answered()

    @property
    def requests(self) -> int:
        """HTTP requests answered so far."""
        return self._waves.requests

    @property
    def round_trips(self) -> int:
        """Round trips waited for so far: requests made concurrently count once (their longest chain)."""
        return self._waves.round_trips

    def _check_schema(self) -> None:
        meta = self._t["meta"]
        try:
            meta.create_entity({"PartitionKey": "schema", "RowKey": "v", "v": SCHEMA_VERSION})
        except ResourceExistsError:
            found = meta.get_entity("schema", "v")["v"]
            if found != SCHEMA_VERSION:
                raise StoreError(
                    f"tables {self.prefix}* have schema {found}, this pimwatch expects {SCHEMA_VERSION}"
                ) from None

    # key/value -----------------------------------------------------------------------------
    @_guard
    def get(self, key: str) -> Any | None:
        pk, u = table_key(key), self._unit
        if u is not None and pk in u.kv:
            entity = u.kv[pk]
        else:
            entity = self._read_kv(pk)
            if u is not None:
                u.kv[pk] = entity
        if entity is None:
            return None
        expires = entity.get("expires")
        blob = _unpack(entity, "value")
        if blob is None or (expires is not None and float(expires) < time.time()):
            return None
        return orjson.loads(blob)

    @_guard
    def put(self, key: str, value: Any, *, ttl: timedelta | None = None) -> None:
        entity: dict[str, Any] = {"PartitionKey": table_key(key), "RowKey": "v", "key": key}
        if ttl is not None:
            entity["expires"] = time.time() + ttl.total_seconds()
        _pack(entity, "value", orjson.dumps(value))
        if self._unit is not None:  # written at commit; read back from the unit until then
            self._unit.kv[entity["PartitionKey"]] = self._unit.kv_put[entity["PartitionKey"]] = entity
            return
        self._t["kv"].upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _read_kv(self, pk: str) -> TableEntity | None:
        try:
            return self._t["kv"].get_entity(pk, "v")
        except ResourceNotFoundError:
            return None

    # windows -------------------------------------------------------------------------------
    @_guard
    def add(
        self, key: str, member: str, at: datetime, value: str = "", payload: dict[str, Any] | None = None
    ) -> bool:
        entity: dict[str, Any] = {
            "PartitionKey": table_key(key),
            "RowKey": table_key(member),
            "member": member,
            "at": float(at.timestamp()),
            "value": value,
        }
        if payload is not None:
            _pack(entity, "payload", orjson.dumps(payload))
        u = self._unit
        if u is not None:
            added = u.adds.setdefault(key, {})
            window = u.windows.get(key)
            if member in added or (window is not None and member in window.rows):
                return False
            t = entity["at"]
            added[member] = entity  # written at commit (an upsert: a member's row is deterministic)
            if window is None or not window.covers(t, t):
                # Not known: assumed new. A caller that uses the answer reads the window next (the
                # engine); if the member is there after all, that read stops the unit.
                u.assumed.setdefault(key, set()).add(member)
            return True
        try:
            self._t["members"].create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    @_guard
    def members(self, key: str, start: datetime, end: datetime) -> list[Member]:
        s, e = float(start.timestamp()), float(end.timestamp())
        u = self._unit
        if u is None:
            out = self._query_members(key, s, e)
        else:
            window = u.windows.get(key)
            if window is None or not window.covers(s, e):
                self._read_window(u, key, s, e)
                window = u.windows[key]
            u.read_windows.add(key)  # decided on: checked at commit if this unit adds to it
            found = dict(window.rows)
            for member, row in u.adds.get(key, {}).items():
                found.setdefault(member, _member_of(row))
            out = [m for m in found.values() if s <= m.at <= e]
        out.sort(key=lambda m: (m.at, m.member))
        return out

    def _query_members(self, key: str, start: float, end: float) -> list[Member]:
        rows = self._t["members"].query_entities(
            "PartitionKey eq @pk and at ge @start and at le @end",
            parameters={"pk": table_key(key), "start": start, "end": end},
        )
        return [_member_of(e) for e in rows]

    def _read_window(self, u: Unit, key: str, start: float, end: float) -> None:
        rows = self._query_members(key, start, end)
        wrong = u.assumed.get(key, set()) & {m.member for m in rows}
        if wrong:
            raise UnitConflict(f"table store: window {key!r} had {min(wrong)!r}, answered as new")
        window = u.windows.setdefault(key, Window())
        window.rows.update((m.member, m) for m in rows)
        window.covered.append((start, end))

    @_guard
    def remove(self, key: str, member: str) -> None:
        u = self._unit
        if u is not None:
            u.adds.get(key, {}).pop(member, None)
            if key in u.windows:
                u.windows[key].rows.pop(member, None)
        self._t["members"].delete_entity(table_key(key), table_key(member))

    @_guard
    def claim(self, key: str) -> bool:
        try:
            self._t["claims"].create_entity(
                {"PartitionKey": table_key(key), "RowKey": "c", "at": time.time()}
            )
        except ResourceExistsError:
            return False
        return True

    # outbox --------------------------------------------------------------------------------
    @staticmethod
    def _alert_entity(
        alert: Alert, created: float, updated: float, *, tq: bool = False, rq: bool = False
    ) -> dict[str, Any]:
        """``tq``/``rq``: the trigger/resolve deliveries have been queued (``mark_queued``)."""
        entity: dict[str, Any] = {
            "PartitionKey": table_key(alert.id),
            "RowKey": "a",
            "id": alert.id,
            "detector": alert.detector,
            "severity": alert.severity.value,
            "first_seen": alert.first_seen,
            "last_seen": alert.last_seen,
            "count": alert.count,
            "akey": alert.key,
            "status": alert.status,
            "created": created,
            "updated": updated,
            "tq": tq,
            "rq": rq,
        }
        _pack(entity, "doc", orjson.dumps(alert.to_store()))
        return entity

    @staticmethod
    def _alert_of(entity: dict[str, Any]) -> Alert:
        blob = _unpack(entity, "doc")
        if blob is None:
            raise StoreError(f"table store: outbox entity {entity.get('id')!r} has no document")
        return Alert.from_store(orjson.loads(blob))

    @_guard
    def merge_alert(self, alert: Alert) -> MergeResult:
        """Fold ``alert`` in with entity-group transactions in the alert's own partition: the
        membership rows of its records and values not counted before (inserts: one that exists
        fails the transaction at its index, and is then known) and the bounded alert entity
        (insert, or replace under its ETag) commit together or not at all, so a crash or a
        retried batch can neither lose nor double a count. O(1) whatever the alert's count.
        In a unit of work the fold is computed now and written at commit (:meth:`_merge_in_unit`)."""
        if self._unit is not None:
            return self._merge_in_unit(self._unit, alert)
        return self._merge_now(alert)

    def _merge_now(self, alert: Alert) -> MergeResult:
        pk = table_key(alert.id)
        if alert.id not in self._indexed:  # before the alert itself: resolve_alerts must find it
            for ipk in _index_keys(alert.detector, alert.key):
                self._t["outboxkeys"].upsert_entity(
                    {"PartitionKey": ipk, "RowKey": pk, "id": alert.id}, mode=UpdateMode.REPLACE
                )
            if len(self._indexed) >= INDEX_CACHE_SIZE:
                self._indexed.clear()
            self._indexed.add(alert.id)
        todo = [(record_member(rid), (t, rid)) for t, rid in records(alert)]
        values = [(member, (name, item)) for name, member, item in incoming_values(alert)]
        result: MergeResult = "unchanged"
        stored = self._stored(pk)
        if stored is not None and len(todo) + len(values) > 2:  # many: learn which exist, in one query
            known = self._existing_members(pk, [m for m, _ in (*todo, *values)])
            todo = [x for x in todo if x[0] not in known]
            values = [x for x in values if x[0] not in known]
        conflicts = 0
        while conflicts < MAX_RETRIES:
            existing = self._alert_of(stored) if stored is not None else None
            queued = stored is not None and stored.get("tq") is not False
            if existing is not None:  # what it shows is counted already
                sampled = {record_member(rid) for _, rid in existing.events}
                todo = [x for x in todo if x[0] not in sampled]
                shown = Shown(existing)
                values = [v for v in values if not shown(v[1][0], v[1][1])]
            if not todo and not values:
                return result if result != "unchanged" or queued or stored is None else "new"
            room = BATCH_LIMIT - 1
            rows, vals = todo[:room], values[: room - len(todo[:room])]
            part = portion(alert, vals, (m for m, _ in values[len(vals) :]))
            folded = fold(existing, part, [e for _, e in rows], Counter(n for _, (n, _i) in vals))
            now = time.time()
            created = now if stored is None else float(stored.get("created", now))
            rq = stored is not None and bool(stored.get("rq"))
            entity = self._alert_entity(folded, created, now, tq=queued, rq=rq)
            ops: list[Any] = [("create", self._member_row(pk, m)) for m, _ in (*rows, *vals)]
            if stored is None:
                ops.append(("create", entity))
            else:
                cond = {"mode": UpdateMode.REPLACE, "etag": _etag(stored)}
                ops.append(("update", entity, {**cond, "match_condition": MatchConditions.IfNotModified}))
            try:
                self._t["outbox"].submit_transaction(ops)
            except TableTransactionError as exc:
                if exc.index < len(ops) - 1 and getattr(exc, "error_code", None) == "EntityAlreadyExists":
                    known_one = ops[exc.index][1]["member"]  # counted before: drop it, try the rest
                    todo = [x for x in todo if x[0] != known_one]
                    values = [x for x in values if x[0] != known_one]
                    continue
                conflicts += 1
                _backoff(conflicts)  # another writer folded or created it first: read, fold again
                stored = self._stored(pk)
                continue
            todo, values = todo[len(rows) :], values[len(vals) :]
            result = "updated" if queued else "new"
            if not todo and not values:
                return result
            stored = self._stored(pk)  # more than one transaction's worth: go on from the new state
        raise StoreError(f"table store: alert {alert.id} still conflicting after {MAX_RETRIES} attempts")

    def _alert_state(self, u: Unit, pk: str) -> AlertState:
        state = u.alerts.get(pk)
        if state is None:
            stored = self._stored(pk)
            state = u.alerts[pk] = AlertState(stored, _etag(stored) if stored is not None else None)
        return state

    def _merge_in_unit(self, u: Unit, alert: Alert) -> MergeResult:
        """The fold of :meth:`_merge_now`, against the alert as this unit knows it, written at commit
        (its index rows first). Too many new rows for one transaction: written now, one by one."""
        pk = table_key(alert.id)
        state = self._alert_state(u, pk)
        if alert.id not in self._indexed:
            for ipk in _index_keys(alert.detector, alert.key):
                u.index_put[(ipk, pk)] = {"PartitionKey": ipk, "RowKey": pk, "id": alert.id}
        current = state.current
        existing = self._alert_of(current) if current is not None else None
        queued = current is not None and current.get("tq") is not False
        pending = set(state.rows)
        todo = [(record_member(rid), (t, rid)) for t, rid in records(alert)]
        values = [(member, (name, item)) for name, member, item in incoming_values(alert)]
        todo = [x for x in todo if x[0] not in pending]
        values = [x for x in values if x[0] not in pending]
        if existing is not None:  # what it shows is counted already
            sampled = {record_member(rid) for _, rid in existing.events}
            todo = [x for x in todo if x[0] not in sampled]
            shown = Shown(existing)
            values = [v for v in values if not shown(v[1][0], v[1][1])]
        if state.stored is not None and len(todo) + len(values) > 2:  # many: which exist, in one query
            known = self._existing_members(pk, [m for m, _ in (*todo, *values)])
            todo = [x for x in todo if x[0] not in known]
            values = [x for x in values if x[0] not in known]
        if not todo and not values:
            return "unchanged" if queued or current is None else "new"
        if len(state.rows) + len(todo) + len(values) >= BATCH_LIMIT:
            self._settle(u, pk)
            return self._merge_now(alert)
        part = portion(alert, values, ())
        folded = fold(existing, part, [e for _, e in todo], Counter(n for _, (n, _i) in values))
        now = time.time()
        created = now if current is None else float(current.get("created", now))
        rq = current is not None and bool(current.get("rq"))
        state.entity = self._alert_entity(folded, created, now, tq=queued, rq=rq)
        state.rows += [m for m, _ in (*todo, *values)]
        state.ops.append(("merge", alert))
        return "updated" if queued else "new"

    def _settle(self, u: Unit, pk: str) -> None:
        """Write one alert's pending state now (its index rows first) and forget it."""
        self._waves.run(
            [functools.partial(self._put_index, ipk, rows) for ipk, rows in self._index_groups(u)]
        )
        u.index_put.clear()
        state = u.alerts.pop(pk, None)
        if state is not None and state.entity is not None:
            self._write_alert(pk, state)

    def _write_alert(self, pk: str, state: AlertState) -> None:
        """One entity-group transaction: the new membership rows and the alert (inserted, or replaced
        under the ETag it was read with). If it fails (another writer was first), replay the unit's
        calls on it one request at a time, which is exact under concurrency."""
        assert state.entity is not None
        ops: list[Any] = [("create", self._member_row(pk, m)) for m in state.rows]
        if state.stored is None:
            ops.append(("create", state.entity))
        else:
            cond = {"mode": UpdateMode.REPLACE, "etag": state.etag}
            ops.append(("update", state.entity, {**cond, "match_condition": MatchConditions.IfNotModified}))
        try:
            answers = self._t["outbox"].submit_transaction(ops)
        except (TableTransactionError, ResourceExistsError, ResourceModifiedError):
            log.debug("alert %s changed meanwhile: replaying its folds one by one", state.entity.get("id"))
            replay, state.stored, state.etag = state.ops, None, None
            state.entity, state.rows, state.ops = None, [], []
            self._replay(replay)
            state.stored = self._stored(pk)
            state.etag = _etag(state.stored) if state.stored is not None else None
            return
        state.stored, state.etag = state.entity, str(answers[-1].get("etag"))
        state.entity, state.rows, state.ops = None, [], []

    def _replay(self, ops: list[tuple[Any, ...]]) -> None:
        for op in ops:
            if op[0] == "merge":
                self._merge_now(op[1])
            elif op[0] == "resolve":
                _, aid, detector, at = op
                with contextlib.suppress(ResourceNotFoundError):
                    self._resolve_one(self._t["outbox"].get_entity(table_key(aid), "a"), detector, at)
            else:  # ("mark", alert id, kind)
                self._mark_now(op[1], op[2])

    def _existing_members(self, pk: str, members: list[str]) -> set[str]:
        """Which of an alert's ``members`` it has counted already (one query per 50)."""
        found: set[str] = set()
        for i in range(0, len(members), 50):
            chunk = members[i : i + 50]
            params = {"pk": pk, **{f"r{j}": "m" + table_key(m) for j, m in enumerate(chunk)}}
            rows = " or ".join(f"RowKey eq @r{j}" for j in range(len(chunk)))
            query = f"PartitionKey eq @pk and ( {rows} )"
            found |= {str(e["member"]) for e in self._t["outbox"].query_entities(query, parameters=params)}
        return found

    def _stored(self, pk: str) -> TableEntity | None:
        try:
            return self._t["outbox"].get_entity(pk, "a")
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _member_row(pk: str, member: str) -> dict[str, Any]:
        """A record or value an alert has counted: in the alert's partition, beside its ``a`` row."""
        return {"PartitionKey": pk, "RowKey": "m" + table_key(member), "member": member}

    @_guard
    def resolve_alerts(self, detector: str, key: str, at: str) -> list[str]:
        # The key itself, or the key plus one record id ("key|record", no further '|'), open and
        # begun no later than ``at``: exactly the alerts indexed under (detector, key).
        if self._unit is not None:
            return self._resolve_in_unit(self._unit, detector, key, at)
        index = self._t["outboxkeys"]
        pk = _index_key(detector, key)
        rows = index.query_entities("PartitionKey eq @pk", parameters={"pk": pk}, select=["RowKey", "id"])
        done = []
        for aid in sorted({str(r["id"]) for r in rows}):
            try:
                row = self._t["outbox"].get_entity(table_key(aid), "a")
            except ResourceNotFoundError:
                continue  # indexed, then never written (a crash in between): nothing to resolve
            akey = str(row["akey"])
            if not (akey == key or (akey.startswith(key + "|") and "|" not in akey[len(key) + 1 :])):
                continue
            outcome = self._resolve_one(row, detector, at)
            if outcome == "resolved":
                done.append(aid)  # its index rows go when its resolve is queued (mark_queued)
            elif outcome == "final":  # resolved and queued for good: no resolve needs to find it again
                self._unindex(detector, akey, aid)
        return done

    def _read_index(self, ipk: str) -> dict[str, str]:
        rows = self._t["outboxkeys"].query_entities(
            "PartitionKey eq @pk", parameters={"pk": ipk}, select=["RowKey", "id"]
        )
        return {str(r["RowKey"]): str(r["id"]) for r in rows}

    def _resolve_in_unit(self, u: Unit, detector: str, key: str, at: str) -> list[str]:
        """:meth:`resolve_alerts` against what this unit knows; the resolves are written at commit."""
        ipk = _index_key(detector, key)
        if ipk not in u.index_read:
            u.index_read[ipk] = self._read_index(ipk)
        ids = {aid for rk, aid in u.index_read[ipk].items() if (ipk, rk) not in u.index_delete}
        ids |= {str(row["id"]) for (p, _), row in u.index_put.items() if p == ipk}
        done = []
        for aid in sorted(ids):
            pk = table_key(aid)
            state = self._alert_state(u, pk)
            row = state.current
            if row is None:
                continue  # indexed, then never written (a crash in between): nothing to resolve
            akey = str(row["akey"])
            if not (akey == key or (akey.startswith(key + "|") and "|" not in akey[len(key) + 1 :])):
                continue
            if row.get("status") != "open":
                if row.get("status") == "resolved" and row.get("rq") is False:
                    done.append(aid)
                else:
                    self._unindex_later(u, detector, akey, pk)
                continue
            if row.get("detector") != detector or str(row["first_seen"]) > at:
                continue
            alert = self._alert_of(row)
            alert.status, alert.resolved_at = "resolved", at
            tq = row.get("tq") is not False
            created = float(row.get("created", 0.0))
            state.entity = self._alert_entity(alert, created, time.time(), tq=tq, rq=False)
            state.ops.append(("resolve", aid, detector, at))
            done.append(aid)
        return done

    @staticmethod
    def _unindex_later(u: Unit, detector: str, akey: str, pk: str) -> None:
        for ipk in _index_keys(detector, akey):
            u.index_delete.add((ipk, pk))
            u.index_put.pop((ipk, pk), None)

    def _unindex(self, detector: str, akey: str, aid: str) -> None:
        for ipk in _index_keys(detector, akey):
            self._t["outboxkeys"].delete_entity(ipk, table_key(aid))  # a missing row is no error

    def _resolve_one(self, row: TableEntity, detector: str, at: str) -> Literal["resolved", "final", "skip"]:
        """Resolve one alert under its ETag: "resolved" (now, or earlier without its resolve queued
        yet), "final" (resolved and queued, or gone: its index rows can go), or "skip" (another
        detector, or begun after ``at``: still open)."""
        table = self._t["outbox"]
        for attempt in range(MAX_RETRIES):
            if row.get("status") != "open":
                return "resolved" if row.get("status") == "resolved" and row.get("rq") is False else "final"
            if row.get("detector") != detector or str(row["first_seen"]) > at:
                return "skip"
            alert = self._alert_of(row)
            alert.status, alert.resolved_at = "resolved", at
            tq = row.get("tq") is not False
            entity = self._alert_entity(alert, float(row.get("created", 0.0)), time.time(), tq=tq, rq=False)
            try:
                table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=_etag(row),
                    match_condition=MatchConditions.IfNotModified,
                )
                return "resolved"
            except ResourceModifiedError:
                _backoff(attempt)  # folded or resolved meanwhile: read it again and decide again
            except ResourceNotFoundError:
                return "final"
            try:
                row = table.get_entity(row["PartitionKey"], row["RowKey"])
            except ResourceNotFoundError:
                return "final"
        raise StoreError(
            f"table store: resolving {row.get('id')} still conflicting after {MAX_RETRIES} attempts"
        )

    @_guard
    def mark_queued(self, alert_id: str, kind: str) -> None:
        """Record that the alert's ``kind`` ("trigger" or "resolve") deliveries are queued: for a
        trigger one blind merge (the flag only ever goes from false to true); for a resolve also the
        alert's index rows go, so its entity is read first. In a unit of work: set on the alert
        written at commit, or a blind merge after the unit's other writes."""
        if self._unit is not None:
            self._mark_in_unit(self._unit, alert_id, kind)
            return
        self._mark_now(alert_id, kind)

    def _mark_in_unit(self, u: Unit, alert_id: str, kind: str) -> None:
        pk = table_key(alert_id)
        flag = "rq" if kind == "resolve" else "tq"
        state = u.alerts.get(pk)
        if kind == "resolve" and state is None:
            state = self._alert_state(u, pk)  # its index rows go too: which are they
        if state is not None and state.entity is not None and not u.deliveries:
            state.entity[flag] = True  # written with the alert (no delivery rows to come first)
            state.ops.append(("mark", alert_id, kind))
        else:  # after the delivery rows (and the alert): the last wave of the commit
            u.marks.setdefault(pk, {"PartitionKey": pk, "RowKey": "a"})[flag] = True
            if state is not None and state.stored is not None and state.entity is None:
                state.stored = {**state.stored, flag: True}
        current = state.current if state is not None else None
        if kind == "resolve" and current is not None:
            self._unindex_later(u, str(current["detector"]), str(current["akey"]), pk)

    def _mark_now(self, alert_id: str, kind: str) -> None:
        pk = table_key(alert_id)
        if kind != "resolve":
            with contextlib.suppress(ResourceNotFoundError):  # never written: nothing to mark
                self._t["outbox"].update_entity(
                    {"PartitionKey": pk, "RowKey": "a", "tq": True}, mode=UpdateMode.MERGE
                )
            return
        found: dict[str, Any] = {}

        def change(e: TableEntity) -> dict[str, Any] | None:
            found.update(detector=e["detector"], akey=e["akey"])
            return None if e.get("rq") is True else {"rq": True}

        self._modify(self._t["outbox"], pk, "a", change)
        if found:
            self._unindex(str(found["detector"]), str(found["akey"]), alert_id)

    @_guard
    def get_alert(self, alert_id: str) -> Alert | None:
        u = self._unit
        if u is not None:  # what the unit read or wrote: never read again
            current = self._alert_state(u, table_key(alert_id)).current
            return self._alert_of(current) if current is not None else None
        try:
            entity = self._t["outbox"].get_entity(table_key(alert_id), "a")
        except ResourceNotFoundError:
            return None
        return self._alert_of(entity)

    def alerts(self) -> Iterator[Alert]:
        return iter(self._all_alerts())

    @_guard
    def _all_alerts(self) -> list[Alert]:
        alerts = self._t["outbox"].query_entities("RowKey eq 'a'")  # not the membership rows
        rows = sorted(alerts, key=lambda e: (str(e["first_seen"]), str(e["id"])))
        return [self._alert_of(e) for e in rows]

    # deliveries ----------------------------------------------------------------------------
    @staticmethod
    def _delivery_keys(alert_id: str, sink: str, kind: str) -> tuple[str, str]:
        return table_key(sink), table_key(alert_id) + "~" + table_key(kind)

    @staticmethod
    def _delivery(e: TableEntity) -> Delivery:
        return Delivery(
            alert_id=e["alert_id"],
            sink=e["sink"],
            kind=e["kind"],
            status=e["status"],
            attempts=int(e["attempts"]),
            next_at=float(e["next_at"]),
            first_at=float(e["first_at"]),
            last_error=e["last_error"],
            answer=e["answer"],
            holder=str(e.get("holder") or ""),
            lease_until=float(e.get("lease_until") or 0.0),
        )

    @_guard
    def enqueue(self, alert_id: str, sink: str, kind: str, now: float, due: float | None = None) -> bool:
        pk, rk = self._delivery_keys(alert_id, sink, kind)
        entity = {
            "PartitionKey": pk,
            "RowKey": rk,
            "alert_id": alert_id,
            "sink": sink,
            "kind": kind,
            "status": "pending",
            "attempts": 0,
            "next_at": float(now if due is None else due),
            "first_at": float(now),
            "updated": float(now),
            "last_error": "",
            "answer": "",
            "holder": "",
            "lease_until": 0.0,
        }
        if self._unit is not None:  # inserted at commit, if absent (True: not queued by this unit)
            return self._unit.deliveries.setdefault((pk, rk), entity) is entity
        try:
            self._t["deliveries"].create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    @_guard
    def due(self, sink: str, now: float, limit: int = 500) -> list[Delivery]:
        rows = self._t["deliveries"].query_entities(
            "PartitionKey eq @pk and status eq @pending and next_at le @now",
            parameters={"pk": table_key(sink), "pending": "pending", "now": float(now)},
        )
        read = list(rows)  # claimed or not (``holder``, ``lease_until``: the deliverer decides)
        # What was read, with its ETag: ``lease`` claims under it without reading the row again.
        self._due_read = {(e["PartitionKey"], e["RowKey"]): e for e in read}
        found = sorted(  # an alert's trigger before its resolve
            (self._delivery(e) for e in read), key=lambda d: (d.first_at, d.alert_id, d.kind == "resolve")
        )
        return found[:limit]

    @_guard
    def lease(
        self,
        alert_id: str,
        sink: str,
        kind: str,
        *,
        holder: str,
        now: float,
        until: float,
        takeover: str = "",
    ) -> bool:
        """Claim the delivery for ``holder`` until ``until`` (ETag-conditional: of two claimants one
        wins): still pending, due, unclaimed or its lease expired or held by ``takeover`` (a claimant
        known to be gone); a resolve not while another holder's live lease is on its trigger (the
        trigger goes first)."""
        table = self._t["deliveries"]
        pk, rk = self._delivery_keys(alert_id, sink, kind)
        if kind == "resolve":
            try:
                trigger = table.get_entity(*self._delivery_keys(alert_id, sink, "trigger"))
            except ResourceNotFoundError:
                pass
            else:
                if trigger["status"] == "pending" and _held_by_other(trigger, (holder, takeover), now):
                    return False

        def change(e: TableEntity) -> dict[str, Any] | None:
            owner = str(e.get("holder") or "")
            free = float(e.get("lease_until") or 0.0) <= now or (takeover != "" and owner == takeover)
            if e["status"] != "pending" or float(e["next_at"]) > now or not free:
                return None
            return {"holder": holder, "lease_until": float(until)}

        return self._modify(table, pk, rk, change, self._due_read.pop((pk, rk), None))

    def _modify(
        self,
        table: TableClient,
        pk: str,
        rk: str,
        change: Callable[[TableEntity], dict[str, Any] | None],
        current: TableEntity | None = None,
    ) -> bool:
        """Read, ``change`` (None: leave it), merge back under the ETag; retry on a conflict.
        True when it was changed. ``current``: the row as last seen (no read; if ``change`` declines
        it, the row is read to decide again)."""
        remembered = current is not None
        for attempt in range(MAX_RETRIES):
            if current is None:
                try:
                    current = table.get_entity(pk, rk)
                except ResourceNotFoundError:
                    return False
            patch = change(current)
            if patch is None and remembered:
                current, remembered = None, False
                continue
            if patch is None:
                return False
            try:
                answer = table.update_entity(
                    {"PartitionKey": pk, "RowKey": rk, **patch},
                    mode=UpdateMode.MERGE,
                    etag=_etag(current),
                    match_condition=MatchConditions.IfNotModified,
                )
                if table is self._t["deliveries"] and answer.get("etag"):
                    # the row as it is now, with its new ETag: mark_sent/mark_failed need no read
                    after = TableEntity({**current, **patch})
                    after._metadata = {"etag": answer["etag"], "timestamp": None}
                    self._due_read[(pk, rk)] = after
                return True
            except ResourceNotFoundError:
                return False
            except ResourceModifiedError:
                current, remembered = None, False
                if attempt:
                    _backoff(attempt)
        raise StoreError(
            f"table store: {table.table_name} {pk}/{rk} still conflicting after {MAX_RETRIES} tries"
        )

    @_guard
    def mark_sent(
        self, alert_id: str, sink: str, kind: str, answer: str, now: float, *, holder: str = ""
    ) -> bool:
        """Only for the claim's ``holder`` ("": unclaimed); a claimant whose lease was taken over
        gets False and changes nothing."""
        pk, rk = self._delivery_keys(alert_id, sink, kind)
        return self._modify(
            self._t["deliveries"],
            pk,
            rk,
            current=self._due_read.pop((pk, rk), None),  # as this process last read or wrote it
            change=lambda e: (
                None
                if (e.get("holder") or "") != holder
                else {
                    "status": "sent",
                    "attempts": int(e["attempts"]) + 1,
                    "updated": float(now),
                    "answer": answer[:500],
                    "last_error": "",
                    "holder": "",
                    "lease_until": 0.0,
                }
            ),
        )

    @_guard
    def mark_failed(
        self,
        alert_id: str,
        sink: str,
        kind: str,
        *,
        dead: bool,
        next_at: float,
        error: str,
        now: float,
        holder: str = "",
    ) -> bool:
        """Only for the claim's ``holder``, as :meth:`mark_sent`."""
        pk, rk = self._delivery_keys(alert_id, sink, kind)
        return self._modify(
            self._t["deliveries"],
            pk,
            rk,
            current=self._due_read.pop((pk, rk), None),  # as this process last read or wrote it
            change=lambda e: (
                None
                if (e.get("holder") or "") != holder
                else {
                    "status": "dead" if dead else "pending",
                    "attempts": int(e["attempts"]) + 1,
                    "next_at": float(next_at),
                    "updated": float(now),
                    "last_error": error[:500],
                    "holder": "",
                    "lease_until": 0.0,
                }
            ),
        )

    @_guard
    def deliveries(self, status: str | None = None) -> list[Delivery]:
        table = self._t["deliveries"]
        rows: Iterable[TableEntity] = (
            table.list_entities()
            if status is None
            else table.query_entities("status eq @s", parameters={"s": status})
        )
        return sorted(
            (self._delivery(e) for e in rows), key=lambda d: (d.first_at, d.alert_id, d.sink, d.kind)
        )

    @_guard
    def requeue(self, status: str = "dead", sink: str | None = None, now: float = 0.0) -> int:
        """Dead letters (or another status) back to pending, due at ``now``, attempts reset."""
        table = self._t["deliveries"]
        query, params = "status eq @s", {"s": status}
        if sink is not None:
            query += " and PartitionKey eq @pk"
            params["pk"] = table_key(sink)

        def change(e: TableEntity) -> dict[str, Any] | None:
            if e["status"] != status:
                return None
            return {
                "status": "pending",
                "attempts": 0,
                "next_at": float(now),
                "updated": float(now),
                "holder": "",
                "lease_until": 0.0,
            }

        rows = list(table.query_entities(query, parameters=params))
        return sum(self._modify(table, e["PartitionKey"], e["RowKey"], change, e) for e in rows)

    @_guard
    def purge(self, status: str, before: float) -> int:
        rows = self._t["deliveries"].query_entities(
            "status eq @s and updated lt @b", parameters={"s": status, "b": float(before)}
        )
        return self._delete_all(self._t["deliveries"], list(rows))

    @_guard
    def prune(self, before: datetime, *, limit: int | None = None, keep: Collection[str] = ()) -> int:
        """Forget window members older than ``before`` (event time), except those of the ``keep``
        window keys, and expired keys (TTL clean-up); at most ``limit`` of each (None: all). Returns
        how many window members went.

        Both are cross-partition queries (``at``/``expires`` are not keys): the service scans the
        table, which stays small because this keeps it so. They are read a page at a time and each page
        is deleted before the next is read (memory stays at one page however large the backlog), with
        ETag conditions: a key written again since it was read (a fresh value, a new TTL) stays."""
        query = "at lt @b"
        params: dict[str, Any] = {"b": float(before.timestamp())}
        for i, key in enumerate(sorted(set(keep))):
            query += f" and PartitionKey ne @k{i}"
            params[f"k{i}"] = table_key(key)
        gone = self._delete_pages(self._t["members"], query, params, limit)
        self._delete_pages(self._t["kv"], "expires lt @now", {"now": time.time()}, limit)
        return gone

    def _delete_pages(self, table: TableClient, query: str, params: dict[str, Any], limit: int | None) -> int:
        """Delete what ``query`` finds, page by page, at most ``limit`` entities; how many went."""
        pages = table.query_entities(
            query, parameters=params, select=["PartitionKey", "RowKey"], results_per_page=PAGE_SIZE
        ).by_page()
        done = seen = 0
        for page in pages:
            rows = list(page)
            if limit is not None:
                rows = rows[: limit - seen]
            seen += len(rows)
            done += self._delete_all(table, rows)
            if limit is not None and seen >= limit:
                break
        return done

    def _delete_all(self, table: TableClient, rows: list[TableEntity]) -> int:
        """Delete ``rows`` as they were read (ETag-conditional), in entity-group transactions of up to
        100 per partition; a transaction that conflicts falls back to one delete at a time, skipping
        the entities changed (or gone) since they were read. Returns how many went."""
        by_partition: dict[str, list[TableEntity]] = defaultdict(list)
        for e in rows:
            by_partition[e["PartitionKey"]].append(e)
        done = 0
        for group in by_partition.values():
            for i in range(0, len(group), BATCH_LIMIT):
                chunk = group[i : i + BATCH_LIMIT]
                ops: list[Any] = [
                    ("delete", e, {"etag": _etag(e), "match_condition": MatchConditions.IfNotModified})
                    for e in chunk
                ]
                try:
                    table.submit_transaction(ops)
                    done += len(chunk)
                    continue
                except TableTransactionError:
                    pass
                for e in chunk:
                    try:
                        table.delete_entity(
                            e["PartitionKey"],
                            e["RowKey"],
                            etag=_etag(e),
                            match_condition=MatchConditions.IfNotModified,
                        )
                        done += 1
                    except (ResourceModifiedError, ResourceNotFoundError):
                        pass
        return done

    # ledger ---------------------------------------------------------------------------------
    @_guard
    def ledger_add(self, day: str, record_id: str, order: str, row: dict[str, Any]) -> None:
        """One entity per (day, record id); in a unit of work written with its first wave."""
        entity: dict[str, Any] = {"PartitionKey": day, "RowKey": table_key(record_id), "ord": order}
        _pack(entity, "row", zlib.compress(orjson.dumps(row), 6))
        u = self._unit
        if u is not None:
            old = u.ledger.get((day, entity["RowKey"]))
            if old is None or order < old["ord"]:
                u.ledger[(day, entity["RowKey"])] = entity
            return
        self._t["ledger"].upsert_entity(entity, mode=UpdateMode.REPLACE)

    def _ledger_wave(self, u: Unit) -> list[Callable[[], Any]]:
        by_day: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (pk, _), entity in sorted(u.ledger.items()):
            by_day[pk].append(entity)
        table = self._t["ledger"]
        return [
            functools.partial(self._upsert_all, table, chunk)
            for group in by_day.values()
            for chunk in chunks(group, BATCH_LIMIT)
        ]

    @_guard
    def ledger_rows(self, first: str, last: str) -> list[dict[str, Any]]:
        found = self._t["ledger"].query_entities(
            "PartitionKey ge @a and PartitionKey le @b", parameters={"a": first, "b": last}
        )
        rows = sorted(((e["PartitionKey"], e["RowKey"]), _unpack(e, "row")) for e in found)
        return [orjson.loads(zlib.decompress(blob)) for _, blob in rows if blob is not None]

    @_guard
    def ledger_prune(self, day: str, *, limit: int | None = None) -> int:
        return self._delete_pages(self._t["ledger"], "PartitionKey lt @d", {"d": day}, limit)

    @contextlib.contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[None]:
        """Outside :meth:`unit`, scopes a unit of work only: every write is durable when its call
        returns, so there is nothing to commit or roll back (the Store contract says why nothing is
        lost all the same). Inside one, its end commits what the unit buffered."""
        if rollback:
            raise StoreError("Azure Tables cannot roll back: a dry run needs a SQLite state file")
        yield
        self.commit()

    @contextlib.contextmanager
    def unit(self) -> Iterator[None]:
        """A unit of work (:mod:`pimwatch.state.tableunit`): reads answered from what it read or wrote,
        writes buffered until :meth:`commit` (and the end). A store failure drops what was not written
        (as a crash would); any other error writes what was done first (as outside a unit)."""
        if self._unit is not None:
            yield
            return
        self._unit = Unit()
        try:
            yield
            self.commit()
        except StoreError:
            raise
        except BaseException:
            with contextlib.suppress(StoreError):
                self.commit()
            raise
        finally:
            self._unit = None

    @_guard
    def prefetch(self, reads: Reads) -> None:
        """Read what a unit of work is expected to read, concurrently: key/values, windows, alerts
        and resolve indexes; then the alerts the indexes name."""
        u = self._unit
        if u is None or not reads:
            return

        def kv(pk: str) -> None:
            u.kv[pk] = self._read_kv(pk)

        def alert(pk: str) -> None:
            self._alert_state(u, pk)

        def index(ipk: str) -> None:
            u.index_read[ipk] = self._read_index(ipk)

        calls: list[Callable[[], None]] = []
        calls += [
            functools.partial(kv, pk) for pk in sorted({table_key(k) for k in reads.kv}) if pk not in u.kv
        ]
        for key, (start, end) in sorted(reads.windows.items()):
            window = u.windows.get(key)
            if window is None or not window.covers(start, end):
                calls.append(functools.partial(self._read_window, u, key, start, end))
        calls += [functools.partial(alert, pk) for pk in sorted({table_key(a) for a in reads.alerts})]
        ipks = sorted({_index_key(d, k) for d, k in reads.index} - set(u.index_read))
        calls += [functools.partial(index, ipk) for ipk in ipks]
        self._waves.run(calls)
        named = {table_key(aid) for ipk in ipks for aid in u.index_read.get(ipk, {}).values()}
        self._waves.run([functools.partial(alert, pk) for pk in sorted(named - set(u.alerts))])

    @_guard
    def commit(self) -> None:
        """Outside a unit of work nothing to do: every write is durable when its call returns. In
        one: write what it buffered, in the waves :mod:`pimwatch.state.tableunit` describes."""
        u = self._unit
        if u is None or not u.dirty():
            return
        run = self._waves.run
        wave: list[Callable[[], Any]] = []
        for _pk, entity in sorted(u.kv_put.items()):
            wave.append(functools.partial(self._t["kv"].upsert_entity, entity, mode=UpdateMode.REPLACE))
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for key, added in sorted(u.adds.items()):
            rows[table_key(key)] += [added[m] for m in sorted(added)]
        for group in rows.values():
            for chunk in chunks(group, BATCH_LIMIT):
                wave.append(functools.partial(self._upsert_all, self._t["members"], chunk))
        wave += [functools.partial(self._put_index, ipk, group) for ipk, group in self._index_groups(u)]
        wave += self._ledger_wave(u)
        run(wave)
        u.kv_put.clear()
        u.ledger.clear()
        for (_ipk, _), row in u.index_put.items():
            self._indexed.add(str(row["id"]))
        if len(self._indexed) >= INDEX_CACHE_SIZE:
            self._indexed.clear()
        for (ipk, rk), row in u.index_put.items():
            u.index_read.setdefault(ipk, {})[rk] = str(row["id"])
        u.index_put.clear()
        # Did another instance add to a window this unit read and added to? Then it decided without
        # that member: nothing of its alerts is written, the batch is run again.
        checked = sorted(key for key, added in u.adds.items() if added and key in u.read_windows)
        run([functools.partial(self._check_window, u, key) for key in checked])
        for key, added in u.adds.items():
            window = u.windows.setdefault(key, Window())
            window.rows.update((m, _member_of(row)) for m, row in added.items())
        u.adds.clear()
        wave = [
            functools.partial(self._write_alert, pk, state)
            for pk, state in sorted(u.alerts.items())
            if state.entity is not None
        ]
        deliveries: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (pk, _), entity in sorted(u.deliveries.items()):
            deliveries[pk].append(entity)
        for group in deliveries.values():
            wave += [functools.partial(self._create_all, chunk) for chunk in chunks(group, BATCH_LIMIT)]
        run(wave)
        u.deliveries.clear()
        wave = [functools.partial(self._blind_merge, entity) for _, entity in sorted(u.marks.items())]
        wave += [
            functools.partial(self._t["outboxkeys"].delete_entity, ipk, rk)
            for ipk, rk in sorted(u.index_delete)
        ]
        run(wave)
        u.marks.clear()
        for ipk, rk in u.index_delete:
            u.index_read.get(ipk, {}).pop(rk, None)
        u.index_delete.clear()

    def _check_window(self, u: Unit, key: str) -> None:
        window = u.windows[key]
        start = min(a for a, _ in window.covered)
        end = max(b for _, b in window.covered)
        mine = set(window.rows) | set(u.adds.get(key, {}))
        for m in self._query_members(key, start, end):
            if m.member not in mine and window.covers(m.at, m.at):
                raise UnitConflict(f"table store: window {key!r} changed by another writer during the batch")

    @staticmethod
    def _index_groups(u: Unit) -> list[tuple[str, list[dict[str, Any]]]]:
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (ipk, _), row in sorted(u.index_put.items()):
            groups[ipk].append(row)
        return sorted(groups.items())

    def _put_index(self, ipk: str, rows: list[dict[str, Any]]) -> None:
        for chunk in chunks(rows, BATCH_LIMIT):
            self._upsert_all(self._t["outboxkeys"], chunk)

    @staticmethod
    def _upsert_all(table: TableClient, rows: list[dict[str, Any]]) -> None:
        """Upserts of one partition: one request (a transaction when there are several)."""
        if len(rows) == 1:
            table.upsert_entity(rows[0], mode=UpdateMode.REPLACE)
        else:
            table.submit_transaction([("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows])

    def _create_all(self, rows: list[dict[str, Any]]) -> None:
        """Delivery rows of one sink, inserted if absent: one transaction; if one exists already (a
        retried batch), one insert each, the existing ones left as they are."""
        table = self._t["deliveries"]
        if len(rows) > 1:
            try:
                table.submit_transaction([("create", row) for row in rows])
                return
            except TableTransactionError:
                pass
        for row in rows:
            with contextlib.suppress(ResourceExistsError):
                table.create_entity(row)

    def _blind_merge(self, patch: dict[str, Any]) -> None:
        with contextlib.suppress(ResourceNotFoundError):  # never written: nothing to mark
            self._t["outbox"].update_entity(patch, mode=UpdateMode.MERGE)

    def close(self) -> None:
        self._waves.close()
        for table in self._t.values():
            table.close()
        self._service.close()


def _conforms(store: TableStore) -> Store:
    return store  # mypy checks here that TableStore implements the Store protocol
