"""Sink errors name the configured sink, not only its type: with two webhook sinks an operator can
tell which one failed — in the outbox's ``last_error``, the run's answers, the log and the archived
dead letters. Real webhook / PagerDuty sinks against loopback HTTP servers."""

from __future__ import annotations

import base64
import json
import logging
import random
from pathlib import Path
from typing import Any

import pytest

from pimwatch.config import build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.sink import Http, TransientError
from pimwatch.detection.alerts import Alert
from pimwatch.detection.detector import discover
from pimwatch.state.archive import FileArchive
from pimwatch.state.sqlite import SqliteStore
from sinks import file as file_sink
from tests.loopback import Answer, serve
from tests.test_delivery import _alert as alert

SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
ROUTING_KEY = "R0UTINGKEY0123456789abcdefABCDEF"


def webhook(url: str) -> dict[str, Any]:
    return {"type": "webhook", "url": url + "/hooks/secret-path", "secret": SECRET}


def test_errors_name_the_sink_instance_everywhere(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with (
        serve(Answer(500)) as soar,
        serve(Answer(400)) as itsm,
        serve(Answer(503)) as pd,
    ):
        specs = {
            "soar": webhook(soar.url),
            "itsm": webhook(itsm.url),
            "pagerduty": {"type": "pagerduty", "routing_key": ROUTING_KEY, "url": pd.url + "/v2/enqueue"},
        }
        sinks = build({"sinks": specs}, discover(), "t.yaml", env={}).sinks
        store = SqliteStore()
        store.merge_alert(alert())
        archive = FileArchive(tmp_path, "dead.jsonl")
        policy = Policy(retries_in_run=1, alert_on_dead_letters=False)
        deliverer = Deliverer(sinks, store, policy, Http(), sleep=lambda s: None, archive=archive)
        deliverer.enqueue(alert(), "new")
        with caplog.at_level(logging.INFO, logger="pimwatch.delivery"):
            outcome = deliverer.run()
        deliverer.http.close()
    errors = {row.sink: row.last_error for row in store.deliveries()}
    assert errors == {
        "soar": "soar (webhook): HTTP 500 Internal Server Error",
        "itsm": "itsm (webhook): HTTP 400 Bad Request",
        "pagerduty": "pagerduty: HTTP 503 Service Unavailable",  # named like its type: said once
    }
    assert outcome.answers == errors
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("soar (webhook): HTTP 500 Internal Server Error; retrying in ") for m in logged)
    assert "soar (webhook): HTTP 500 Internal Server Error (will retry)" in logged
    assert "itsm (webhook): HTTP 400 Bad Request (dead letter)" in logged
    [dead] = [json.loads(line) for line in archive.path.read_text().splitlines()]
    assert (dead["sink"], dead["error"]) == ("itsm", "itsm (webhook): HTTP 400 Bad Request")
    everything = "\n".join([*logged, *errors.values(), archive.path.read_text()])
    for secret in ("127.0.0.1", "secret-path", "/v2/enqueue", ROUTING_KEY, SECRET):
        assert secret not in everything


def test_a_renamed_transient_error_keeps_its_retry_after() -> None:
    with serve(Answer(429, headers={"Retry-After": "7"})) as server:
        soar = build({"sinks": {"soar": webhook(server.url)}}, discover(), "t.yaml", env={}).sinks["soar"]
        http = Http()
        with pytest.raises(TransientError) as raised:
            soar.send(soar.render([alert()]), http)
        http.close()
    assert str(raised.value) == "soar (webhook): HTTP 429 Too Many Requests"
    assert raised.value.retry_after == 7.0


class Broken:
    """A sink module with a bug: its error is not a SinkError."""

    def render(self, alerts: list[Alert], config: Any) -> list[str]:
        return [a.id for a in alerts]

    def send(self, rendered: list[str], config: Any, http: Any) -> str:
        raise KeyError("oops")


def test_an_unexpected_sink_error_names_the_sink(tmp_path: Path) -> None:
    sink = LoadedSink("audit-copy", file_sink.Config(type="file", path=str(tmp_path / "x")), Broken())  # type: ignore[arg-type]
    store = SqliteStore()
    store.merge_alert(alert())
    deliverer = Deliverer({"audit-copy": sink}, store, Policy(), Http(), rng=random.Random(1))
    deliverer.enqueue(alert(), "new")
    deliverer.run()
    [row] = store.deliveries()
    assert (row.status, row.last_error) == ("pending", "audit-copy (file): KeyError")
