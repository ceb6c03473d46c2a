"""Deliveries are claimed before they are sent (a lease), so two deliverers at once send each (alert,
sink) exactly once: two `pimwatch deliver` processes on one SQLite state file, two deliverers on two
Azure Table connections (Azurite). A claimant that dies keeps its lease until it expires and the next
run after that sends the delivery, once; a claimant whose lease was taken over cannot overwrite the
new holder's result.

Real parts: SQLite files, Azurite, the `webhook` and `file` sinks, a loopback HTTP server standing in
for the endpoints. The interleavings are forced, never hoped for: a barrier after both deliverers have
read the due rows, answers the server holds until the test releases them, and a clock the test sets
past a lease instead of sleeping until it expires.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pimwatch.cli import main
from pimwatch.config import load
from pimwatch.delivery import deliverer as delivery
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Outcome, Policy
from pimwatch.delivery.sink import Http, SinkConfig
from pimwatch.detection.alerts import Alert
from pimwatch.detection.detector import Plugin
from pimwatch.state.sqlite import SCHEMA_VERSION, SqliteStore
from pimwatch.state.tables import TableStore
from pimwatch.testing.harness import run_records
from sinks import webhook
from tests.loopback import Answer, Request, serve
from tests.streams import CONFIG, mixed_stream
from tests.test_delivery_faults import stream_and_config

AnyStore = SqliteStore | TableStore
Key = tuple[str, str]  # (alert id, "trigger" | "resolve")
WAIT = 120.0  # the bound on waiting for something that must happen: reaching it fails the test
T = 1_900_000_000.0  # the controllable clock's start (epoch seconds)


def _until(done: Callable[[], bool], what: str) -> None:
    """Wait for a condition that must come (a request arriving, a process at a given point)."""
    deadline = time.monotonic() + WAIT
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what} after {WAIT:g} s")
        time.sleep(0.005)


def _hooked(requests: Sequence[Request]) -> list[Key]:
    """What the webhook sink delivered, in arrival order: its ``webhook-id`` is the alert id, with
    ``_resolved`` appended for a resolve."""
    out = []
    for r in requests:
        msg = r.headers["webhook-id"]
        out.append((msg.removesuffix("_resolved"), "resolve" if msg.endswith("_resolved") else "trigger"))
    return out


def _exactly_once(got: Sequence[Key], owed: set[Key]) -> None:
    twice = sorted(k for k, n in Counter(got).items() if n > 1)
    assert twice == [], f"delivered more than once: {twice[:5]}"
    assert set(got) == owed, (
        f"missing {sorted(owed - set(got))[:5]}, unexpected {sorted(set(got) - owed)[:5]}"
    )
    for aid, kind in got:  # an alert's trigger before its resolve
        if kind == "resolve":
            assert got.index((aid, "trigger")) < got.index((aid, "resolve")), aid


class BatchHook:
    """A ``BATCH`` sink module with the real contract that posts its batch, through the one Http
    client, to a loopback server: ``[[alert id, kind], ...]``."""

    BATCH = True
    RESOLVES = True

    def __init__(self, url: str) -> None:
        self.url = url

    def render(self, alerts: Sequence[Alert], config: SinkConfig) -> list[list[str]]:
        return [[a.id, "resolve" if a.status == "resolved" else "trigger"] for a in alerts]

    def send(self, rendered: list[list[str]], config: SinkConfig, http: Http) -> str:
        http.post("batch", self.url, json=rendered, timeout=config.timeout_seconds)
        return f"posted {len(rendered)}"


def _batched(requests: Sequence[Request]) -> list[Key]:
    return [(aid, kind) for r in requests for aid, kind in json.loads(r.body)]


def _hook(url: str, timeout: float = 600.0) -> LoadedSink:
    return LoadedSink("hook", webhook.Config(type="webhook", url=url, timeout_seconds=timeout), webhook)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def alerts(plugins: list[Plugin]) -> list[Alert]:
    """Real alerts of the mixed stream: every resolved one and the first 24 open ones."""
    found, _ = run_records(mixed_stream(), plugins, CONFIG)
    resolved = [a for a in found if a.status == "resolved"]
    assert len(resolved) >= 5
    return resolved + [a for a in found if a.status == "open"][:24]


def _queue(store: AnyStore, deliverer: Deliverer, alerts: Sequence[Alert]) -> set[tuple[str, str, str]]:
    """The alerts in the outbox, queued for the deliverer's sinks: the (alert, sink, kind) owed."""
    for a in alerts:
        store.merge_alert(a)
        deliverer.enqueue(a, "new")
        if a.status == "resolved":
            deliverer.enqueue(a, "resolved")
    store.commit()
    return {(d.alert_id, d.sink, d.kind) for d in store.deliveries()}


def _owed(rows: set[tuple[str, str, str]], sink: str) -> set[Key]:
    return {(aid, kind) for aid, s, kind in rows if s == sink}


@pytest.fixture(params=["sqlite", "table"])
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., AnyStore]]:
    """Opens another connection to one store: a SQLite file, or one table prefix on Azurite; closed
    at the end unless ``own`` (a thread that uses it closes it: SQLite's objects stay in their thread)."""
    opened: list[AnyStore] = []
    prefix = "c" + uuid.uuid4().hex[:16]
    conn = request.getfixturevalue("azurite_tables") if request.param == "table" else ""

    def open_one(own: bool = False) -> AnyStore:
        s: AnyStore = SqliteStore(str(tmp_path / "state.db")) if not conn else TableStore(conn, prefix=prefix)
        if not own:
            opened.append(s)
        return s

    yield open_one
    for s in opened:
        s.close()


# the store's claim contract (both stores) -----------------------------------------------------------
def _take(
    s: AnyStore, aid: str, kind: str, holder: str, now: float, until: float, takeover: str = ""
) -> bool:
    """A claim attempt, committed at once as the deliverer does (a refused one too: in SQLite its
    write transaction must not keep the other connection waiting)."""
    won = s.lease(aid, "hook", kind, holder=holder, now=now, until=until, takeover=takeover)
    s.commit()
    return won


def _sent(s: AnyStore, aid: str, answer: str, now: float, holder: str = "") -> bool:
    done = s.mark_sent(aid, "hook", "trigger", answer, now, holder=holder)
    s.commit()
    return done


def _failed(s: AnyStore, aid: str, *, dead: bool, next_at: float, now: float, holder: str) -> bool:
    done = s.mark_failed(
        aid, "hook", "trigger", dead=dead, next_at=next_at, error=holder, now=now, holder=holder
    )
    s.commit()
    return done


def test_a_lease_is_won_once_and_only_its_holder_marks_the_result(connect: Callable[..., AnyStore]) -> None:
    a, b = connect(), connect()
    for aid in ("x", "y"):
        a.enqueue(aid, "hook", "trigger", T)
    a.enqueue("x", "hook", "resolve", T)
    a.commit()
    assert _take(a, "x", "trigger", "A", T, T + 100)
    assert not _take(b, "x", "trigger", "B", T, T + 100)  # A holds it
    due = [(d.alert_id, d.kind, d.holder, d.lease_until) for d in b.due("hook", T + 99)]
    assert due == [("x", "trigger", "A", T + 100), ("x", "resolve", "", 0.0), ("y", "trigger", "", 0.0)]
    # the trigger first: no one else takes its resolve while A's lease is on the trigger; A may
    assert not _take(b, "x", "resolve", "B", T, T + 100)
    assert _take(a, "x", "resolve", "A", T, T + 100)
    [held] = [d for d in b.deliveries() if (d.alert_id, d.kind) == ("x", "trigger")]
    assert (held.status, held.holder, held.lease_until) == ("pending", "A", T + 100)
    # only the holder's result counts
    assert not _sent(b, "x", "202 B", T + 1, holder="B")
    assert not _sent(b, "x", "202 unclaimed", T + 1)
    assert _sent(a, "x", "202 A", T + 1, holder="A")
    [sent] = b.deliveries("sent")
    assert (sent.alert_id, sent.answer, sent.attempts, sent.holder) == ("x", "202 A", 1, "")
    assert sent.lease_until == 0.0
    assert not _take(b, "x", "trigger", "B", T + 500, T + 600)  # sent: never again


def test_an_expired_lease_is_taken_over_and_the_stale_claimant_cannot_overwrite_it(
    connect: Callable[..., AnyStore],
) -> None:
    a, b = connect(), connect()
    a.enqueue("x", "hook", "trigger", T)
    a.commit()
    assert _take(a, "x", "trigger", "A", T, T + 10)
    assert not _take(b, "x", "trigger", "B", T + 9.9, T + 20)
    assert not _take(b, "x", "trigger", "B", T + 5, T + 20, takeover="someone else")
    assert _take(b, "x", "trigger", "B", T + 10, T + 20)  # expired
    # A comes back late: neither its success nor its failure touches B's claim
    assert not _sent(a, "x", "202 A", T + 11, holder="A")
    assert not _failed(a, "x", dead=True, next_at=0.0, now=T + 11, holder="A")
    [row] = b.deliveries()
    assert (row.status, row.holder, row.attempts, row.last_error) == ("pending", "B", 0, "")
    assert _failed(b, "x", dead=False, next_at=T + 50, now=T + 12, holder="B")
    [row] = a.deliveries()
    assert (row.status, row.holder, row.attempts, row.next_at, row.last_error) == (
        "pending",
        "",
        1,
        T + 50,
        "B",
    )
    assert not _take(a, "x", "trigger", "A", T + 49, T + 60)  # its retry is not due yet
    assert _take(a, "x", "trigger", "A", T + 50, T + 60)
    # a claimant known to be gone (pimwatch.delivery.deliverer.claimant_gone) is taken over before its expiry
    assert _take(b, "x", "trigger", "B", T + 51, T + 70, takeover="A")
    assert not _sent(a, "x", "202 A", T + 52, holder="A")


def test_only_a_claimant_provably_gone_is_taken_over_before_its_lease_expires() -> None:
    if delivery.HOST is None:
        pytest.skip("no boot id on this system: claims are only taken over at expiry")
    me = delivery.new_holder()
    host, pid, incarnation, _ = me.split(":")
    assert (host, pid) == (delivery.HOST, str(os.getpid()))
    finished = subprocess.run([sys.executable, "-c", "pass"], check=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert finished.returncode == 0
    assert not delivery.claimant_gone(me)  # this process
    assert delivery.claimant_gone(f"{host}:{pid}:{'0' * 8}:x")  # an earlier process with this pid
    assert delivery.claimant_gone(f"{host}:{dead.pid}:{incarnation}:x")  # exited
    assert not delivery.claimant_gone(f"{host}:{os.getppid()}:{incarnation}:x")  # running
    assert not delivery.claimant_gone(f"elsewhere/00000000:{dead.pid}:{incarnation}:x")  # another host
    assert not delivery.claimant_gone("gone:1:x")
    assert not delivery.claimant_gone("")


def test_the_lease_outlasts_the_longest_send_the_policy_allows() -> None:
    policy = Policy(run_deadline_seconds=60, retries_in_run=2, lease_margin_seconds=30)
    d = Deliverer({}, SqliteStore(), policy)
    hook = _hook("http://127.0.0.1:9/h", timeout=10)
    assert d.lease_seconds(hook) == 60 + 3 * 4 * 10 + 30  # docs/sinks.md: 210 s
    assert d.lease_seconds(hook, parts=5) == 60 + 3 * (4 + 4) * 10 + 30  # a batch sent in 5 requests
    assert (
        Deliverer({}, SqliteStore(), policy.model_copy(update={"retries_in_run": 0})).lease_seconds(hook)
        == 130
    )


# deliverers at once ------------------------------------------------------------------------------
def test_a_lease_left_unreleased_is_sent_once_by_the_first_run_after_it_expires(
    connect: Callable[..., AnyStore], alerts: list[Alert]
) -> None:
    """An instance claimed a delivery and died (its lease is never released): runs before the expiry
    leave it alone; the first run after it sends it, once."""
    store, clock = connect(), [T]
    with serve(Answer(202)) as hook:
        d = Deliverer({"hook": _hook(hook.url + "/h")}, store, Policy(), clock=lambda: clock[0])
        owed = _owed(_queue(store, d, alerts[:3]), "hook")
        gone = alerts[0].id
        assert store.lease(gone, "hook", "trigger", holder="gone:1:x", now=T, until=T + 100)
        store.commit()
        clock[0] = T + 99.9
        d.run()
        assert (gone, "trigger") not in _hooked(hook.requests)
        assert (gone, "resolve") not in _hooked(hook.requests)  # its trigger first
        clock[0] = T + 100
        d.run()
        d.run()
        _exactly_once(_hooked(hook.requests), owed)
    assert {x.status for x in store.deliveries()} == {"sent"}


def test_a_claimant_whose_lease_was_taken_over_cannot_overwrite_the_new_holders_result(
    connect: Callable[..., AnyStore], alerts: list[Alert]
) -> None:
    """A's send outlasts its lease (the server holds it); B takes the delivery over after the expiry
    and sends it; A's late failure is refused and counted as lost, B's result stays."""
    gate = threading.Event()
    b_store = connect()
    clock = [T]
    policy = Policy(retries_in_run=0)
    with serve(Answer(500, hold=gate), Answer(202, b"B")) as hook:
        sinks = {"hook": _hook(hook.url + "/h")}
        b = Deliverer(sinks, b_store, policy, clock=lambda: clock[0])
        _queue(b_store, b, alerts[-1:])  # one open alert: one delivery
        outcome: list[Outcome] = []

        def run_a() -> None:  # A's clock stays at T
            a_store = connect(own=True)
            try:
                outcome.append(Deliverer(sinks, a_store, policy, clock=lambda: T).run())
            finally:
                a_store.close()

        runner = threading.Thread(target=run_a)
        runner.start()
        try:
            _until(lambda: len(hook.requests) == 1, "A's request")
            clock[0] = T + b.lease_seconds(sinks["hook"])  # A's lease has just expired
            assert b.run().sent == {"hook": 1}
        finally:
            gate.set()
            runner.join(WAIT)
        assert _hooked(hook.requests) == [(alerts[-1].id, "trigger")] * 2  # the price of a too short lease
    [a_outcome] = outcome
    assert (a_outcome.lost, a_outcome.pending, a_outcome.sent) == ({"hook": 1}, {}, {})
    [row] = b_store.deliveries()
    assert (row.status, row.attempts, row.holder, row.last_error) == ("sent", 1, "", "")


class _Racing(TableStore):
    """The real table store; ``due`` waits at a barrier after reading, so both deliverers hold the same
    due rows before either claims one (the interleaving that used to send everything twice)."""

    barrier: threading.Barrier
    read: list[int]

    def due(self, sink: str, now: float, limit: int = 500) -> list[Any]:
        rows = super().due(sink, now, limit)
        self.read.append(len(rows))
        self.barrier.wait(WAIT)
        return rows


def test_two_deliverers_on_two_table_connections_send_each_alert_exactly_once(
    azurite_tables: str, alerts: list[Alert]
) -> None:
    prefix = "r" + uuid.uuid4().hex[:16]
    barrier = threading.Barrier(2)
    stores = [_Racing(azurite_tables, prefix=prefix) for _ in range(2)]
    for s in stores:
        s.barrier, s.read = barrier, []
    with serve(Answer(202)) as hook, serve(Answer(200)) as batch:
        sinks = {
            "hook": _hook(hook.url + "/h"),
            "batch": LoadedSink(
                "batch", SinkConfig(type="batch", timeout_seconds=60), BatchHook(batch.url + "/b")
            ),  # type: ignore[arg-type]
        }
        deliverers = [Deliverer(sinks, s, Policy()) for s in stores]
        owed = _queue(stores[0], deliverers[0], alerts)
        outcomes: list[Outcome] = []
        errors: list[BaseException] = []

        def run(d: Deliverer) -> None:
            try:
                outcomes.append(d.run())
            except BaseException as exc:  # re-raised below, in the test's thread
                errors.append(exc)
                barrier.abort()

        threads = [threading.Thread(target=run, args=(d,)) for d in deliverers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
        assert errors == []
        _exactly_once(_hooked(hook.requests), _owed(owed, "hook"))
        _exactly_once(_batched(batch.requests), _owed(owed, "batch"))
    # both read every due row before claiming; together they sent each once
    assert [s.read for s in stores] == [[len(_owed(owed, "hook")), len(_owed(owed, "batch"))]] * 2
    for sink in sinks:
        assert sum(o.sent.get(sink, 0) for o in outcomes) == len(_owed(owed, sink))
    assert {(d.status, d.holder) for d in stores[0].deliveries()} == {("sent", "")}
    for s in stores:
        s.close()


# two `pimwatch deliver` processes on one SQLite state file ------------------------------------------
def _state(tmp_path: Path, hook_url: str, timeout: float) -> tuple[str, str, Path, set[tuple[str, str, str]]]:
    """A state file with the mixed stream's alerts queued (a dry-run replay) for the webhook sink and
    the file sink (BATCH); the config, the state, the file sink's output and the deliveries owed."""
    hook = f"{{type: webhook, url: '{hook_url}', timeout_seconds: {timeout}}}"
    stream, cfg, archive = stream_and_config(tmp_path, "{retries_in_run: 0}", hook=hook)
    state = str(tmp_path / "state.db")
    assert main(["replay", "--config", str(cfg), "--state", state, str(stream)]) == 0
    store = SqliteStore(state)
    owed = {(d.alert_id, d.sink, d.kind) for d in store.deliveries()}
    store.close()
    return str(cfg), state, archive, owed


def _archived(archive: Path) -> list[Key]:
    lines = [json.loads(x) for x in archive.read_text().splitlines()]
    return [(a["id"], "resolve" if a["status"] == "resolved" else "trigger") for a in lines]


def _deliver(cfg: str, state: str, log: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "pimwatch"
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(exe), "deliver", "--config", cfg, "--state", state], stdout=out, stderr=out
        )


def test_two_deliver_processes_on_one_state_file_send_each_alert_exactly_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A's first send is held by the server; B starts then and its first send is held too: both are
    mid-run with a claim each, and both read the due rows; then both run on at once."""
    gate = threading.Event()
    with serve(Answer(202, hold=gate), Answer(202, hold=gate), Answer(202)) as hook:
        cfg, state, archive, owed = _state(tmp_path, hook.url + "/h", 60)
        capsys.readouterr()
        procs = []
        try:
            procs.append(_deliver(cfg, state, tmp_path / "a.log"))
            _until(lambda: len(hook.requests) == 1, "A's first send")
            procs.append(_deliver(cfg, state, tmp_path / "b.log"))
            _until(lambda: len(hook.requests) == 2, "B's first send")
            first_a, first_b = _hooked(hook.requests)
            assert first_a != first_b  # B skipped what A had claimed
        finally:
            gate.set()
            for p in procs:
                p.wait(WAIT)
        for p, name in zip(procs, "ab", strict=True):
            assert p.returncode == 0, (tmp_path / f"{name}.log").read_text()
        _exactly_once(_hooked(hook.requests), _owed(owed, "hook"))
    _exactly_once(_archived(archive), _owed(owed, "archive"))
    store = SqliteStore(state)
    assert {(d.status, d.holder) for d in store.deliveries()} == {("sent", "")}
    store.close()


@pytest.mark.parametrize("next_run", ["on another host", "on its host"])
def test_a_deliver_process_killed_mid_send_loses_its_claim_and_the_delivery_goes_once(
    next_run: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    plugins: list[Plugin],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim of a process killed while its sink blocks: a run on another host waits out the lease,
    and the first run after it sends the delivery; a run on the same host sees the process is gone and
    sends it at once. Either way: once (after the request that was in flight at the kill)."""
    if next_run == "on its host" and delivery.HOST is None:
        pytest.skip("no boot id on this system: claims are only taken over at expiry")
    never = threading.Event()
    with serve(Answer(202, hold=never), Answer(202)) as hook:
        cfg, state, archive, owed = _state(tmp_path, hook.url + "/h", 600)
        try:
            proc = _deliver(cfg, state, tmp_path / "a.log")
            _until(lambda: len(hook.requests) == 1, "the first send")
            os.kill(proc.pid, signal.SIGKILL)  # while the sink blocks
            proc.wait(WAIT)
            [in_flight] = _hooked(hook.requests)
            store = SqliteStore(state)
            [claimed] = [d for d in store.deliveries() if d.holder]
            assert (claimed.alert_id, claimed.kind, claimed.status) == (*in_flight, "pending")
            assert f":{proc.pid}:" in claimed.holder and claimed.lease_until > time.time()
            capsys.readouterr()
            assert main(["outbox", "list", "--state", state, "--status", "pending"]) == 0
            listing = capsys.readouterr().out
            assert listing.count("claimed  hook") == 1 and f"claimed by {claimed.holder} until " in listing
            config = load(cfg, plugins)
            if next_run == "on another host":
                monkeypatch.setattr(delivery, "HOST", "elsewhere/00000000")
                # before the lease expires: everything but the claimed delivery
                Deliverer(config.sinks, store, config.delivery).run()
                assert in_flight not in _hooked(hook.requests[1:])
                assert [d.holder for d in store.deliveries() if d.status != "sent"] == [claimed.holder]
                # the first run after it expires: that one
                late = Deliverer(config.sinks, store, config.delivery, clock=lambda: claimed.lease_until)
                assert late.run().sent == {"hook": 1}
            else:
                Deliverer(config.sinks, store, config.delivery).run()
            assert {d.status for d in store.deliveries()} == {"sent"}
            assert Deliverer(config.sinks, store, config.delivery).run().sent == {}
            store.close()
        finally:
            never.set()
        _exactly_once(_hooked(hook.requests[1:]), _owed(owed, "hook"))
    _exactly_once(_archived(archive), _owed(owed, "archive"))
    capsys.readouterr()


def test_a_state_file_from_before_claims_gets_its_lease_columns(tmp_path: Path) -> None:
    """A file of this schema version written before claims existed (the columns are additive)."""
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;"
        f"INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}');"
        "CREATE TABLE deliveries (alert_id TEXT NOT NULL, sink TEXT NOT NULL, kind TEXT NOT NULL,"
        " status TEXT NOT NULL, attempts INTEGER NOT NULL, next_at REAL NOT NULL, first_at REAL NOT NULL,"
        " updated REAL NOT NULL, last_error TEXT NOT NULL, answer TEXT NOT NULL,"
        " PRIMARY KEY (alert_id, sink, kind)) WITHOUT ROWID;"
        "INSERT INTO deliveries VALUES ('x', 'hook', 'trigger', 'pending', 2, 5, 1, 1, 'HTTP 500', '');"
    )
    db.commit()
    db.close()
    store = SqliteStore(str(path))
    [row] = store.due("hook", 10.0)
    assert (row.alert_id, row.attempts, row.last_error, row.holder, row.lease_until) == (
        "x",
        2,
        "HTTP 500",
        "",
        0.0,
    )
    assert store.lease("x", "hook", "trigger", holder="A", now=10.0, until=20.0)
    assert store.enqueue("y", "hook", "trigger", 10.0)
    assert store.mark_sent("x", "hook", "trigger", "202", 11.0, holder="A")
    assert [(d.alert_id, d.status) for d in store.deliveries()] == [("x", "sent"), ("y", "pending")]
    store.close()
