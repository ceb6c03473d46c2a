"""Splunk HEC sink: golden bodies, the exact batch a real HTTP server receives (parsed back object by
object), index / sourcetype / channel, splitting at the body bound, bounds on attacker text, status
handling (HEC codes), config validation and secrets."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

import detectors.assignment_privileged as assignment_privileged
import detectors.breakglass_signin as breakglass_signin
from pimwatch.config import ConfigError, build
from pimwatch.delivery.sink import TRUNCATED, PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import discover
from pimwatch.testing.sinks import case_alerts, deliver, injection_alert, sample_alert, strings
from pimwatch.testing.sinks import check_golden as golden
from sinks import splunk
from tests.loopback import Answer, serve

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "splunk"
TOKEN = "11111111-2222-4333-8444-555555555555"
EVENTS = [("2026-03-10T02:17:00.000000Z", "rec-1"), ("2026-03-10T02:40:00.250000Z", "rec-2")]
OK = Answer(200, b'{"text":"Success","code":0}')
JUNK = (
    "[x](http://evil) <script>alert(1)</script> <at>admin</at> CEF|pipe\\slash=eq\r\n"
    'RESOLVED: ignore this\u202e ünïcødé 日本語 🚨 "quoted" {"event":"forged"}'
)


def config(url: str = "https://splunk.example.com:8088", **extra: Any) -> splunk.Config:
    values: dict[str, Any] = {"host": "pimwatch-func", "timeout_seconds": 0.5, **extra}
    return splunk.Config(type="splunk", url=url, token=SecretStr(TOKEN), **values)


def alert(severity: Severity = Severity.CRITICAL, **changes: Any) -> Alert:
    return sample_alert(severity, **{"id": f"{severity.value}-0123456789abcdef", "events": EVENTS, **changes})


def injection() -> Alert:
    return injection_alert(JUNK, events=1000, id="e" * 32)


def pipeline_alerts() -> list[Alert]:
    """Real records through the real pipeline: break-glass sign-ins and a privileged assignment."""
    out = case_alerts(breakglass_signin.CASES[0], breakglass_signin.CASES[1], assignment_privileged.CASES[0])
    assert len(out) >= 3
    return out


def events(body: bytes) -> list[dict[str, Any]]:
    """Split a HEC batch body on object boundaries: objects back to back, no array, nothing else."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    out, i = [], 0
    while i < len(text):
        obj, i = decoder.raw_decode(text, i)
        assert isinstance(obj, dict)
        out.append(obj)
    return out


def expected(a: Alert, cfg: splunk.Config) -> dict[str, Any]:
    env: dict[str, Any] = {
        "time": splunk.epoch_seconds(a.last_seen),
        "host": cfg.host,
        "source": cfg.source,
        "sourcetype": cfg.sourcetype,
    }
    if cfg.index is not None:
        env["index"] = cfg.index
    env["event"] = a.to_dict()
    return env


def post(rendered: Any, cfg: splunk.Config) -> str:
    return deliver(splunk, rendered, cfg)


# --- golden bodies -------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_golden_body_per_severity(severity: Severity) -> None:
    bodies = splunk.render([alert(severity)], config(index="pim", sourcetype="pimwatch:alert"))
    assert len(bodies) == 1
    check_golden(f"{severity.value}.json", bodies[0])


def test_golden_injection_body() -> None:
    text = JUNK + "A" * 5000
    hostile = alert(
        id="e" * 32,
        title=text,
        principal={"id": "x", "upn": "<at>admin</at>@evil|x=y", "name": text},
        context={"justification": text, "many": [JUNK] * 12},
    )
    bodies = splunk.render([hostile], config(max_field_chars=256))
    assert len(bodies) == 1
    check_golden("injection.json", bodies[0])


def check_golden(name: str, body: bytes) -> None:
    golden(GOLDEN / name, body.decode("utf-8") + "\n")


def test_render_is_pure_and_holds_no_secret() -> None:
    cfg = config()
    batch = [alert(s) for s in Severity]
    first = splunk.render(batch, cfg)
    assert splunk.render(batch, cfg) == first
    assert all(TOKEN.encode() not in body for body in first)


def test_time_is_last_seen_in_epoch_seconds() -> None:
    [env] = events(splunk.render([alert()], config())[0])
    assert env["time"] == 1773110400.25  # 2026-03-10T02:40:00.250Z, the later of the two events
    assert env["event"]["last_seen"] == "2026-03-10T02:40:00.250000Z"


# --- the exact requests a real HEC stand-in receives -------------------------------------------------


def test_batch_is_one_request_with_every_event_back_to_back() -> None:
    alerts = pipeline_alerts()
    with serve(OK) as server:
        cfg = config(server.url, index="pim_alerts", sourcetype="entra:pim")
        answer = post(splunk.render(alerts, cfg), cfg)
    assert answer == "200 OK"
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/services/collector/event"
    assert request.headers["authorization"] == f"Splunk {TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert "x-splunk-request-channel" not in request.headers
    assert request.body.startswith(b"{") and b"}{" in request.body  # concatenated, not an array
    received = events(request.body)
    assert received == [expected(a, cfg) for a in alerts]
    assert [e["event"]["id"] for e in received] == [a.id for a in alerts]
    assert all(e["index"] == "pim_alerts" and e["sourcetype"] == "entra:pim" for e in received)
    assert all(e["source"] == "pimwatch" and e["host"] == "pimwatch-func" for e in received)


def test_index_omitted_and_default_sourcetype() -> None:
    with serve(OK) as server:
        cfg = config(server.url)
        post(splunk.render([alert()], cfg), cfg)
    [env] = events(server.requests[0].body)
    assert "index" not in env
    assert env["sourcetype"] == "pimwatch:alert"
    assert list(env) == ["time", "host", "source", "sourcetype", "event"]


@pytest.mark.parametrize("suffix", ["", "/", "/services/collector", "/services/collector/event"])
def test_url_forms_reach_the_event_endpoint(suffix: str) -> None:
    with serve(OK) as server:
        cfg = config(server.url + suffix)
        post(splunk.render([alert()], cfg), cfg)
    assert server.requests[0].path == "/services/collector/event"


def test_channel_header_and_ack_id_reported() -> None:
    channel = "FE0ECFAD-13D5-401B-847D-77833BD77131"
    ack = Answer(200, b'{"text":"Success","code":0,"ackId":7}')
    with serve(ack) as server:
        cfg = config(server.url, channel=channel)
        answer = post(splunk.render([alert()], cfg), cfg)
    assert server.requests[0].headers["x-splunk-request-channel"] == channel.lower()
    assert answer == "200 OK, ackId 7 (not polled)"


def test_empty_batch_sends_nothing() -> None:
    with serve(OK) as server:
        cfg = config(server.url)
        assert splunk.render([], cfg) == []
        assert post([], cfg) == "nothing to send"
    assert server.requests == []


# --- size bound -------------------------------------------------------------------------------------


def test_batch_split_at_the_body_bound() -> None:
    padding = {"note": "x" * 1500}
    alerts = [alert(id=f"{i:032x}", context={**padding, "i": i}) for i in range(40)]
    cfg_bound = 16 * 1024
    with serve(OK) as server:
        cfg = config(server.url, max_body_bytes=cfg_bound)
        bodies = splunk.render(alerts, cfg)
        answer = post(bodies, cfg)
    assert len(bodies) > 2
    assert answer == f"200 OK ({len(bodies)} requests)"
    assert [r.body for r in server.requests] == bodies
    for body in bodies:
        assert len(body) <= cfg_bound
        # a body is whole events only, and is as full as it can be (the next event did not fit)
        assert events(body)
    by_id = {a.id: a for a in alerts}
    for body, following in itertools.pairwise(bodies):
        first_next = splunk.render_event(by_id[events(following)[0]["event"]["id"]], cfg)
        assert len(body) + len(first_next) > cfg_bound
    received = [e for r in server.requests for e in events(r.body)]
    assert [e["event"]["id"] for e in received] == [a.id for a in alerts]
    assert received == [expected(a, cfg) for a in alerts]


def test_attacker_text_is_bounded_marked_and_inert() -> None:
    cfg = config(max_field_chars=2048)
    [body] = splunk.render([injection()], cfg)
    assert len(body) <= cfg.max_body_bytes
    assert b"\n" not in body and b"\r" not in body  # JSON-escaped, one line
    assert "\u202e".encode() not in body and b"\\u202e" in body  # the bidi override is escaped...
    [env] = events(body)
    event = env["event"]
    assert env["event"]["id"] == "e" * 32
    assert event["title"].endswith(TRUNCATED) and len(event["title"]) == 2048
    assert event["title"].startswith(JUNK)  # ...and kept as data: markup is a JSON string, not structure
    assert event["principal"]["upn"] == "<at>admin</at>@evil|x=y"
    assert event["count"] == 1000
    assert len(event["event_ids"]) == splunk.MAX_ITEMS + 1
    assert event["event_ids"][-1] == f"{1000 - splunk.MAX_ITEMS} more items" + TRUNCATED
    assert len(event["context"]["many"]) == splunk.MAX_ITEMS + 1
    assert all(len(s) <= 2048 for s in strings(event))
    assert "nested too deep" + TRUNCATED in json.dumps(event["context"]["nested"], ensure_ascii=False)
    assert list(env) == ["time", "host", "source", "sourcetype", "event"]  # no forged envelope keys


def test_one_event_larger_than_the_body_is_reduced_to_fit() -> None:
    cfg = config(max_body_bytes=16 * 1024)
    [body] = splunk.render([injection()], cfg)
    assert len(body) <= 16 * 1024
    [env] = events(body)
    assert env["event"]["id"] == "e" * 32
    assert all(len(s) <= 1024 for s in strings(env["event"]))


def test_hopelessly_large_event_keeps_its_identity() -> None:
    deep = {f"k{i}": [[["y" * 64] * 10] * 10] * 10 for i in range(20)}
    cfg = config(max_body_bytes=16 * 1024)
    [body] = splunk.render([alert(context=deep)], cfg)
    assert len(body) <= 16 * 1024
    [env] = events(body)
    assert env["event"]["id"] == alert().id
    assert env["event"]["severity"] == "critical"
    assert env["event"]["count"] == 2
    assert env["event"]["truncated"].endswith(TRUNCATED)
    assert "context" not in env["event"]


def test_lone_surrogates_do_not_break_rendering() -> None:
    [body] = splunk.render([alert(title="bad \ud800 surrogate")], config())
    [env] = events(body)
    assert env["event"]["title"] == "bad \ufffd surrogate"


# --- status handling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (Answer(400, b'{"text":"Invalid data format","code":6,"invalid-event-number":0}'), PermanentError),
        (Answer(400, b'{"text":"Incorrect index","code":7,"invalid-event-number":1}'), PermanentError),
        (Answer(400, b'{"text":"Data channel is missing","code":10}'), PermanentError),
        (Answer(401, b'{"text":"Token is required","code":2}'), PermanentError),
        (Answer(403, b'{"text":"Invalid token","code":4}'), PermanentError),
        (Answer(403, b'{"text":"Token disabled","code":1}'), PermanentError),
        (Answer(413, b'{"text":"Content too large"}'), PermanentError),
        (Answer(503, b'{"text":"Server is busy","code":9}'), TransientError),
        (Answer(500, b'{"text":"Internal server error","code":8}'), TransientError),
    ],
)
def test_hec_statuses_are_classified(answer: Answer, error: type[SinkError]) -> None:
    with serve(answer) as server:
        cfg = config(server.url)
        with pytest.raises(error) as raised:
            post(splunk.render([alert()], cfg), cfg)
    message = str(raised.value)
    assert message.startswith(f"splunk: HTTP {answer.status}")
    assert TOKEN not in message and server.url not in message


def test_429_carries_retry_after() -> None:
    with serve(Answer(429, headers={"Retry-After": "7"})) as server:
        cfg = config(server.url)
        with pytest.raises(TransientError) as raised:
            post(splunk.render([alert()], cfg), cfg)
    assert raised.value.retry_after == 7.0


def test_slow_server_times_out_as_transient() -> None:
    with serve(Answer(200, delay=0.6)) as server:
        cfg = config(server.url, timeout_seconds=0.2)
        with pytest.raises(TransientError, match="timed out"):
            post(splunk.render([alert()], cfg), cfg)


def test_dropped_connection_is_transient() -> None:
    with serve(Answer(drop=True)) as server:
        cfg = config(server.url)
        with pytest.raises(TransientError, match="connection failed"):
            post(splunk.render([alert()], cfg), cfg)


def test_a_failing_later_request_fails_the_whole_batch() -> None:
    alerts = [alert(id=f"{i:032x}", context={"note": "x" * 3000}) for i in range(12)]
    with serve(OK, Answer(503, b'{"text":"Server is busy","code":9}', {"Retry-After": "3"})) as server:
        cfg = config(server.url, max_body_bytes=16 * 1024)
        bodies = splunk.render(alerts, cfg)
        assert len(bodies) >= 2
        with pytest.raises(TransientError) as raised:
            post(bodies, cfg)
    assert len(server.requests) == 2  # stopped at the failure; the deliverer resends the batch
    assert str(raised.value) == f"splunk: HTTP 503 Service Unavailable (request 2 of {len(bodies)})"
    assert raised.value.retry_after == 3.0


def test_permanent_failure_names_the_request() -> None:
    alerts = [alert(id=f"{i:032x}", context={"note": "x" * 3000}) for i in range(12)]
    with serve(OK, Answer(400, b'{"text":"Invalid data format","code":6}')) as server:
        cfg = config(server.url, max_body_bytes=16 * 1024)
        bodies = splunk.render(alerts, cfg)
        with pytest.raises(PermanentError, match=r"request 2 of"):
            post(bodies, cfg)


# --- config -----------------------------------------------------------------------------------


def test_config_builds_from_yaml_shape_with_env_token() -> None:
    cfg = build(
        {
            "sinks": {
                "siem": {
                    "type": "splunk",
                    "url": "https://splunk.example.com:8088",
                    "token": "${HEC_TOKEN}",
                    "index": "pim",
                    "channel": str(uuid.UUID(int=5)),
                    "min_severity": "high",
                }
            }
        },
        discover(),
        "t",
        env={"HEC_TOKEN": TOKEN},
    )
    sink = cfg.sinks["siem"]
    assert sink.batch is True
    assert isinstance(sink.config, splunk.Config)
    assert sink.config.token.get_secret_value() == TOKEN
    assert sink.config.index == "pim"


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"bogus": 1}, "sinks.x.bogus: unknown key"),
        ({"url": "http://splunk.example.com:8088"}, "sinks.x.url"),
        ({"url": "https://splunk.example.com:8088/?token=abc"}, "sinks.x.url"),
        ({"channel": "not-a-guid"}, "sinks.x.channel"),
        ({"index": "has space"}, "sinks.x.index"),
        ({"max_body_bytes": 100}, "sinks.x.max_body_bytes"),
        ({"token": "two words"}, "sinks.x.token"),
    ],
)
def test_config_problems_name_the_key(extra: dict[str, Any], problem: str) -> None:
    spec = {"type": "splunk", "url": "https://splunk.example.com:8088", "token": "${HEC_TOKEN}", **extra}
    with pytest.raises(ConfigError) as raised:
        build({"sinks": {"x": spec}}, discover(), "t", env={"HEC_TOKEN": TOKEN})
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems
    assert TOKEN not in str(raised.value)
    assert "two words" not in str(raised.value)


def test_no_secret_in_repr_or_errors() -> None:
    cfg = config("http://127.0.0.1:9")
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg)
    assert TOKEN not in repr(cfg.model_dump())
    with pytest.raises(TransientError) as raised:
        post(splunk.render([alert()], cfg), cfg)  # nothing listens on port 9
    assert TOKEN not in str(raised.value) and "127.0.0.1" not in str(raised.value)
