"""The SQLite implementation of the state store contract (the embedded default); the contract
itself, its role protocols and rows, is :mod:`pimwatch.detection.contract`.
"""

from __future__ import annotations

import sqlite3
import time
import zlib
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime, timedelta
from typing import Any

import orjson

from pimwatch.detection.alerts import Alert, Shown, fold, incoming_values, record_member, records
from pimwatch.detection.contract import Delivery, Member, MergeResult, StoreError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL, expires REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    wkey TEXT NOT NULL, member TEXT NOT NULL, at REAL NOT NULL, value TEXT NOT NULL, payload BLOB,
    PRIMARY KEY (wkey, member)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_time ON members (wkey, at);
CREATE TABLE IF NOT EXISTS claims (k TEXT PRIMARY KEY, at REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, detector TEXT NOT NULL, severity TEXT NOT NULL, first_seen TEXT NOT NULL,
    last_seen TEXT NOT NULL, count INTEGER NOT NULL, doc BLOB NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL,
    akey TEXT NOT NULL, status TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_by_key ON outbox (detector, akey, status);
CREATE TABLE IF NOT EXISTS alert_members (
    alert_id TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY (alert_id, member)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL, sink TEXT NOT NULL, kind TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, next_at REAL NOT NULL, first_at REAL NOT NULL, updated REAL NOT NULL,
    last_error TEXT NOT NULL, answer TEXT NOT NULL,
    holder TEXT NOT NULL DEFAULT '', lease_until REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (alert_id, sink, kind)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, status, next_at);
CREATE TABLE IF NOT EXISTS ledger (
    day TEXT NOT NULL, id TEXT NOT NULL, ord TEXT NOT NULL, row BLOB NOT NULL,
    PRIMARY KEY (day, id)) WITHOUT ROWID;
"""
SCHEMA_VERSION = "4"
# The deliveries' columns, in the order _delivery reads them (never ``SELECT *``: a state file made
# before the claims had its lease columns added at the end by _add_lease_columns).
_DELIVERY_COLUMNS = (
    "alert_id, sink, kind, status, attempts, next_at, first_at, updated, last_error, answer,"
    " holder, lease_until"
)
KV_CACHE_SIZE = 4096
HOT_ALERTS = 256  # alerts kept decoded between folds (see _folding)
KNOWN_MEMBERS = 65536  # alert memberships known to be stored (see _member)


class SqliteStore:
    """SQLite state: a file (the CLI default) or ``:memory:`` (tests). One writer at a time."""

    def __init__(self, path: str = ":memory:") -> None:
        self.path = path
        self._kv_cache: dict[str, tuple[bytes | None, float | None]] = {}
        self._hot: dict[str, tuple[int, float, Alert]] = {}
        # Write-behind: ids of hot alerts folded since their row was last written. A busy alert (a
        # spray) is written once per commit, not once per record; every read of the outbox and
        # every commit writes them first (_flush), a rollback forgets them.
        self._dirty: set[str] = set()
        # (alert id, member) pairs known to be in alert_members in this transaction's view.
        self._known: set[tuple[str, str]] = set()
        self._depth = 0  # open transactions (nested ones join the outermost)
        try:
            self._db = sqlite3.connect(path, isolation_level="DEFERRED")
            self._db.execute(
                "PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY"
            )
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            _add_lease_columns(self._db)
            row = self._db.execute("SELECT v FROM meta WHERE k='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != SCHEMA_VERSION:
                raise StoreError(
                    f"state file {path} has schema {row[0]}, this pimwatch expects {SCHEMA_VERSION}"
                )
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open state file {path}: {exc}") from exc

    # key/value -----------------------------------------------------------------------------
    def get(self, key: str) -> Any | None:
        # A read-through cache of the serialized values: this process is the only writer of the
        # file, and a fresh copy is decoded on every get so callers may change what they got.
        hit = self._kv_cache.get(key)
        if hit is None:
            row = self._db.execute("SELECT v, expires FROM kv WHERE k=?", (key,)).fetchone()
            hit = (row[0], row[1]) if row is not None else (None, None)
            self._cache_kv(key, hit)
        blob, expires = hit
        if blob is None or (expires is not None and expires < time.time()):
            return None
        return orjson.loads(blob)

    def put(self, key: str, value: Any, *, ttl: timedelta | None = None) -> None:
        expires = time.time() + ttl.total_seconds() if ttl is not None else None
        blob = orjson.dumps(value)
        self._db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, blob, expires))
        self._cache_kv(key, (blob, expires))

    def _cache_kv(self, key: str, entry: tuple[bytes | None, float | None]) -> None:
        if len(self._kv_cache) >= KV_CACHE_SIZE:
            self._kv_cache.clear()  # bounded memory; the next reads refill it
        self._kv_cache[key] = entry

    # windows -------------------------------------------------------------------------------
    def add(
        self, key: str, member: str, at: datetime, value: str = "", payload: dict[str, Any] | None = None
    ) -> bool:
        blob = orjson.dumps(payload) if payload is not None else None
        cur = self._db.execute(
            "INSERT OR IGNORE INTO members VALUES (?, ?, ?, ?, ?)", (key, member, at.timestamp(), value, blob)
        )
        return cur.rowcount == 1

    def members(self, key: str, start: datetime, end: datetime) -> list[Member]:
        rows = self._db.execute(
            "SELECT member, at, value, payload FROM members"
            " WHERE wkey=? AND at BETWEEN ? AND ? ORDER BY at, member",
            (key, start.timestamp(), end.timestamp()),
        ).fetchall()
        return [Member(m, at, v, orjson.loads(p) if p is not None else None) for m, at, v, p in rows]

    def remove(self, key: str, member: str) -> None:
        self._db.execute("DELETE FROM members WHERE wkey=? AND member=?", (key, member))

    def claim(self, key: str) -> bool:
        cur = self._db.execute("INSERT OR IGNORE INTO claims VALUES (?, ?)", (key, time.time()))
        return cur.rowcount == 1

    # outbox --------------------------------------------------------------------------------
    def merge_alert(self, alert: Alert) -> MergeResult:
        """Fold ``alert`` in: its records and values not counted before (insert-if-absent into
        ``alert_members``), then one bounded read and write of the stored alert, whatever its count."""
        now = time.time()
        fresh_events = [(t, rid) for t, rid in records(alert) if self._member(alert.id, record_member(rid))]
        existing = self._hot[alert.id][2] if alert.id in self._dirty else self._folding(alert.id)
        new_values: dict[str, int] = {}
        shown = Shown(existing) if existing is not None else None
        for name, member, value in incoming_values(alert):
            if shown is not None and shown(name, value):
                continue  # shown, so counted already
            if self._member(alert.id, member):
                new_values[name] = new_values.get(name, 0) + 1
        if not fresh_events and not new_values:
            return "unchanged"
        self._hot.pop(alert.id, None)  # folded in place below: cached again once written
        folded = fold(existing, alert, fresh_events, new_values)
        if existing is None:
            doc = orjson.dumps(folded.to_store())
            first, last = folded.first_seen, folded.last_seen
            self._db.execute(
                "INSERT INTO outbox VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    *(folded.id, folded.detector, folded.severity.value, first, last, folded.count),
                    *(doc, now, now, folded.key, folded.status),
                ),
            )
            self._dirty.discard(folded.id)
        else:
            self._dirty.add(folded.id)  # written by _flush
        if len(self._hot) >= HOT_ALERTS:
            self._flush()
            self._hot.clear()
        self._hot[folded.id] = (folded.count, now, folded)
        return "new" if existing is None else "updated"

    def _flush(self) -> None:
        """Write the hot alerts folded since their rows were last written (see ``_dirty``)."""
        for alert_id in sorted(self._dirty):
            _count, now, folded = self._hot[alert_id]
            self._db.execute(
                "UPDATE outbox SET severity=?, first_seen=?, last_seen=?, count=?, doc=?, updated=?"
                " WHERE id=?",
                (
                    *(folded.severity.value, folded.first_seen, folded.last_seen, folded.count),
                    *(orjson.dumps(folded.to_store()), now, alert_id),
                ),
            )
        self._dirty.clear()

    def _folding(self, alert_id: str) -> Alert | None:
        """The stored alert, to fold into: the copy this process last wrote while the row's (count,
        updated) still match it (a rolled-back or other write changes them), else read and decoded."""
        row = self._db.execute("SELECT count, updated FROM outbox WHERE id=?", (alert_id,)).fetchone()
        if row is None:
            return None
        hot = self._hot.get(alert_id)
        if hot is not None and (hot[0], hot[1]) == (row[0], row[1]):
            return hot[2]
        return self.get_alert(alert_id)

    def _member(self, alert_id: str, member: str) -> bool:
        """Insert-if-absent into the alert's membership: True when it was not there. A pair seen
        before in this transaction's view is there (a spray's 500 addresses: 500 inserts, not one
        per record); a rollback forgets them all."""
        pair = (alert_id, member)
        if pair in self._known:
            return False
        cur = self._db.execute("INSERT OR IGNORE INTO alert_members VALUES (?, ?)", pair)
        if len(self._known) >= KNOWN_MEMBERS:
            self._known.clear()
        self._known.add(pair)
        return cur.rowcount == 1

    def resolve_alerts(self, detector: str, key: str, at: str) -> list[str]:
        # The key itself, or the key plus the record id the engine appends when suppress_minutes
        # is 0; and only alerts that began before the closing record.
        # Two index range lookups on (detector, akey): the exact key, and keys in [key|, key}) —
        # '}' follows '|' in byte order — with no further '|' after the record id.
        # An alert is resolved at the EARLIEST closing record at or after its start, whatever the
        # order they are read in: one resolved already by a later record moves to this one (it is
        # not resolved anew: its resolve was queued the first time).
        self._flush()
        rows = self._db.execute(
            "SELECT doc FROM outbox WHERE detector=? AND akey=? AND status IN ('open', 'resolved')"
            " AND first_seen <= ?"
            " UNION ALL"
            " SELECT doc FROM outbox WHERE detector=? AND akey >= ? AND akey < ?"
            " AND status IN ('open', 'resolved') AND first_seen <= ? AND instr(substr(akey, ?), '|') = 0",
            (detector, key, at, detector, key + "|", key + "}", at, len(key) + 2),
        ).fetchall()
        done = []
        for (doc,) in rows:
            alert = Alert.from_store(orjson.loads(doc))
            if alert.status == "resolved":
                if alert.resolved_at is not None and alert.resolved_at > at:
                    alert.resolved_at = at
                    self._db.execute(
                        "UPDATE outbox SET doc=?, updated=? WHERE id=?",
                        (orjson.dumps(alert.to_store()), time.time(), alert.id),
                    )
                continue
            alert.status, alert.resolved_at = "resolved", at
            self._db.execute(
                "UPDATE outbox SET status='resolved', doc=?, updated=? WHERE id=?",
                (orjson.dumps(alert.to_store()), time.time(), alert.id),
            )
            done.append(alert.id)
        return done

    def mark_queued(self, alert_id: str, kind: str) -> None:
        """Nothing to do: the delivery rows are committed in the same transaction as the alert."""

    def get_alert(self, alert_id: str) -> Alert | None:
        self._flush()
        row = self._db.execute("SELECT doc FROM outbox WHERE id=?", (alert_id,)).fetchone()
        return Alert.from_store(orjson.loads(row[0])) if row else None

    def alerts(self) -> Iterator[Alert]:
        self._flush()
        for (doc,) in self._db.execute("SELECT doc FROM outbox ORDER BY first_seen, id"):
            yield Alert.from_store(orjson.loads(doc))

    # deliveries (per alert, per sink: the outbox's delivery state) -----------------------------
    def enqueue(self, alert_id: str, sink: str, kind: str, now: float, due: float | None = None) -> bool:
        cur = self._db.execute(
            f"INSERT OR IGNORE INTO deliveries ({_DELIVERY_COLUMNS})"
            " VALUES (?, ?, ?, 'pending', 0, ?, ?, ?, '', '', '', 0)",
            (alert_id, sink, kind, now if due is None else due, now, now),
        )
        return cur.rowcount == 1

    def due(self, sink: str, now: float, limit: int = 500) -> list[Delivery]:
        """Pending and due, claimed or not (``holder``, ``lease_until``: the deliverer decides)."""
        rows = self._db.execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM deliveries"
            " WHERE sink=? AND status='pending' AND next_at <= ?"
            " ORDER BY first_at, alert_id, kind = 'resolve' LIMIT ?",  # an alert's trigger first
            (sink, now, limit),
        ).fetchall()
        return [_delivery(r) for r in rows]

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
        """Claim the delivery for ``holder`` until ``until``: one conditional UPDATE (still pending,
        due, unclaimed or its lease expired or held by ``takeover``, a claimant known to be gone; a
        resolve not while another holder's live lease is on its trigger). The caller commits before
        sending, so other processes see the claim."""
        cur = self._db.execute(
            "UPDATE deliveries SET holder=?, lease_until=?"
            " WHERE alert_id=? AND sink=? AND kind=? AND status='pending' AND next_at <= ?"
            " AND (lease_until <= ? OR (? != '' AND holder = ?))"
            " AND NOT (kind = 'resolve' AND EXISTS (SELECT 1 FROM deliveries t WHERE t.alert_id=?"
            " AND t.sink=? AND t.kind='trigger' AND t.status='pending' AND t.holder NOT IN ('', ?, ?)"
            " AND t.lease_until > ?))",
            (
                holder,
                until,
                alert_id,
                sink,
                kind,
                now,
                now,
                takeover,
                takeover,
                alert_id,
                sink,
                holder,
                takeover,
                now,
            ),
        )
        return cur.rowcount == 1

    def mark_sent(
        self, alert_id: str, sink: str, kind: str, answer: str, now: float, *, holder: str = ""
    ) -> bool:
        """Only for the claim's ``holder`` ("": unclaimed); a claimant whose lease was taken over
        gets False and changes nothing."""
        cur = self._db.execute(
            "UPDATE deliveries SET status='sent', attempts=attempts+1, updated=?, answer=?, last_error='',"
            " holder='', lease_until=0 WHERE alert_id=? AND sink=? AND kind=? AND holder=?",
            (now, answer[:500], alert_id, sink, kind, holder),
        )
        return cur.rowcount == 1

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
        cur = self._db.execute(
            "UPDATE deliveries SET status=?, attempts=attempts+1, next_at=?, updated=?, last_error=?,"
            " holder='', lease_until=0 WHERE alert_id=? AND sink=? AND kind=? AND holder=?",
            ("dead" if dead else "pending", next_at, now, error[:500], alert_id, sink, kind, holder),
        )
        return cur.rowcount == 1

    def deliveries(self, status: str | None = None) -> list[Delivery]:
        if status is None:
            rows = self._db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries ORDER BY first_at, alert_id, sink"
            ).fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM deliveries WHERE status=?"
                " ORDER BY first_at, alert_id, sink",
                (status,),
            ).fetchall()
        return [_delivery(r) for r in rows]

    def requeue(self, status: str = "dead", sink: str | None = None, now: float = 0.0) -> int:
        """Dead letters (or another status) back to pending, due at ``now``, attempts reset, unclaimed."""
        query = (
            "UPDATE deliveries SET status='pending', attempts=0, next_at=?, updated=?,"
            " holder='', lease_until=0 WHERE status=?"
        )
        args: tuple[Any, ...] = (now, now, status)
        if sink is not None:
            query += " AND sink=?"
            args += (sink,)
        return self._db.execute(query, args).rowcount

    def purge(self, status: str, before: float) -> int:
        return self._db.execute(
            "DELETE FROM deliveries WHERE status=? AND updated < ?", (status, before)
        ).rowcount

    def prune(self, before: datetime, *, limit: int | None = None, keep: Collection[str] = ()) -> int:
        """Forget window members older than ``before`` (event time), except those of the ``keep``
        window keys, and expired keys; at most ``limit`` of each (None: all). Returns how many
        window members went."""
        cap = -1 if limit is None else limit  # LIMIT -1: no limit
        spared = tuple(keep)
        where = "at < ?" + (f" AND wkey NOT IN ({','.join('?' * len(spared))})" if spared else "")
        cur = self._db.execute(
            "DELETE FROM members WHERE (wkey, member) IN"
            f" (SELECT wkey, member FROM members WHERE {where} LIMIT ?)",
            (before.timestamp(), *spared, cap),
        )
        self._db.execute(
            "DELETE FROM kv WHERE k IN (SELECT k FROM kv WHERE expires IS NOT NULL AND expires < ? LIMIT ?)",
            (time.time(), cap),
        )
        self._kv_cache.clear()
        return cur.rowcount

    # ledger ---------------------------------------------------------------------------------
    def ledger_add(self, day: str, record_id: str, order: str, row: dict[str, Any]) -> None:
        """One row per (day, record id); of two with the same id the least ``order`` stays. Rows are
        kept zlib-compressed (a PIM record's row is ~1.9 KB of JSON, ~0.7 KB compressed)."""
        self._db.execute(
            "INSERT INTO ledger VALUES (?, ?, ?, ?) ON CONFLICT (day, id) DO UPDATE"
            " SET ord=excluded.ord, row=excluded.row WHERE excluded.ord < ledger.ord",
            (day, record_id, order, zlib.compress(orjson.dumps(row), 6)),
        )

    def ledger_rows(self, first: str, last: str) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT row FROM ledger WHERE day BETWEEN ? AND ? ORDER BY day, id", (first, last)
        ).fetchall()
        return [orjson.loads(zlib.decompress(r[0])) for r in rows]

    def ledger_prune(self, day: str, *, limit: int | None = None) -> int:
        cur = self._db.execute(
            "DELETE FROM ledger WHERE (day, id) IN (SELECT day, id FROM ledger WHERE day < ? LIMIT ?)",
            (day, -1 if limit is None else limit),
        )
        return cur.rowcount

    @contextmanager
    def transaction(self, *, rollback: bool = False) -> Iterator[None]:
        """One SQLite transaction: committed at the end, rolled back (and the key cache dropped) if
        the block raises or ``rollback`` is set. ``commit()`` inside it is held; nested ones join it."""
        self._depth += 1
        try:
            yield
        except BaseException:
            if self._depth == 1:
                with suppress(StoreError):  # the block's own error is the one to report
                    self._rollback()
            raise
        else:
            if self._depth == 1:
                if rollback:
                    self._rollback()
                else:
                    self._commit()
        finally:
            self._depth -= 1

    def _rollback(self) -> None:
        self._kv_cache.clear()
        self._known.clear()
        for alert_id in self._dirty:  # folded in memory only: the row keeps what was committed
            self._hot.pop(alert_id, None)
        self._dirty.clear()
        try:
            self._db.rollback()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot roll back state in {self.path}: {exc}") from exc

    def commit(self) -> None:
        if self._depth == 0:
            self._commit()

    def _commit(self) -> None:
        try:
            self._flush()
            self._db.commit()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot commit state to {self.path}: {exc}") from exc

    def close(self) -> None:
        if self._depth == 0:
            self._flush()
            self._db.commit()
        else:
            self._rollback()  # closed inside a transaction that did not finish: nothing of it is kept
        self._db.close()


def _delivery(row: tuple[Any, ...]) -> Delivery:
    alert_id, sink, kind, status, attempts, next_at, first_at, _updated, error, answer, holder, until = row
    return Delivery(alert_id, sink, kind, status, attempts, next_at, first_at, error, answer, holder, until)


def _add_lease_columns(db: sqlite3.Connection) -> None:
    """A state file from before delivery claims gets the two lease columns (additive, so the schema
    version stays: an unclaimed row is ``holder=''``, ``lease_until=0``)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(deliveries)")}
    if "holder" not in columns:
        db.execute("ALTER TABLE deliveries ADD COLUMN holder TEXT NOT NULL DEFAULT ''")
    if "lease_until" not in columns:
        db.execute("ALTER TABLE deliveries ADD COLUMN lease_until REAL NOT NULL DEFAULT 0")
