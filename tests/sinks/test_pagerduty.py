"""PagerDuty Events API v2 sink: golden payloads, the exact events a real HTTP server receives,
dedup on the alert id (trigger, replay, resolve), bounds on attacker text, status handling, config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.sink import TRUNCATED, Http, PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import Plugin, discover
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing.harness import run_records
from pimwatch.testing.sinks import check_golden_json, deliver, injection_alert, json_bodies, sample_alert
from sinks import pagerduty
from tests.loopback import Answer, serve

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "pagerduty"
KEY = "R0UT1NGK3Y0000000000000000000042"
OK = Answer(202, b'{"status":"success","message":"Event processed","dedup_key":"x"}')
JUNK = (
    "[x](http://evil) <script>alert(1)</script> <at>admin</at> CEF|pipe\\slash=eq\r\n"
    "RESOLVED: ignore this\u202e ünïcødé 日本語 🚨 "
)


def config(url: str = pagerduty.DEFAULT_URL, **extra: Any) -> pagerduty.Config:
    spec = {"type": "pagerduty", "routing_key": KEY, "url": url, "timeout_seconds": 0.5}
    return pagerduty.Config.model_validate(spec | extra)


alert = sample_alert


def injection() -> Alert:
    return injection_alert(JUNK, events=100)


def post(rendered: Any, cfg: pagerduty.Config) -> str:
    return deliver(pagerduty, rendered, cfg)


# --- golden payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_golden_trigger_per_severity(severity: Severity) -> None:
    cfg = config(link_url="https://entra.microsoft.com/#view/Microsoft_Azure_PIMCommon")
    check_golden(f"{severity.value}.json", pagerduty.render([alert(severity)], cfg))


def test_golden_resolve() -> None:
    resolved = alert(status="resolved", resolved_at="2026-03-10T03:00:00.000000Z")
    check_golden("resolved.json", pagerduty.render([resolved], config()))


def check_golden(name: str, rendered: dict[str, Any]) -> None:
    check_golden_json(GOLDEN / name, rendered)


def test_render_is_pure_and_holds_no_secret() -> None:
    cfg = config()
    a = alert()
    first = pagerduty.render([a], cfg)
    assert pagerduty.render([a], cfg) == first
    assert KEY not in json.dumps(first)
    assert "routing_key" not in first


@pytest.mark.parametrize(
    ("severity", "expected"),
    [
        (Severity.CRITICAL, "critical"),
        (Severity.HIGH, "error"),
        (Severity.MEDIUM, "warning"),
        (Severity.LOW, "info"),
        (Severity.INFO, "info"),
    ],
)
def test_severity_mapping(severity: Severity, expected: str) -> None:
    assert pagerduty.render([alert(severity)], config())["payload"]["severity"] == expected


# --- what a real server receives --------------------------------------------------------------------


def test_pipeline_alert_reaches_the_server_exactly() -> None:
    from detectors import breakglass_signin as bg

    case = bg.CASES[0]
    (a,), _ = run_records(case.records, discover(), case.config)
    with serve(OK) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        rendered = pagerduty.render([a], cfg)
        answer = post(rendered, cfg)
    assert answer == "202 Accepted, dedup_key x"
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", "/v2/enqueue")
    assert req.headers["content-type"] == "application/json"
    (body,) = json_bodies(server.requests)
    assert body == {"routing_key": KEY, **rendered}
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == a.id
    p = body["payload"]
    assert p["summary"] == a.title
    assert (p["source"], p["severity"], p["timestamp"]) == ("pimwatch", "critical", a.first_seen)
    assert (p["component"], p["group"], p["class"]) == ("breakglass", "entra-id", "breakglass.signin")
    details = p["custom_details"]
    assert details["principal"] == a.principal
    assert details["context"] == json.loads(json.dumps(a.context))
    assert details["event_ids"] == [eid for _, eid in a.events]
    assert "links" not in body


def test_replay_sends_the_same_dedup_key() -> None:
    from detectors import breakglass_signin as bg

    case = bg.CASES[0]
    (first,), _ = run_records(case.records, discover(), case.config)
    (again,), _ = run_records(case.records + case.records, discover(), case.config)
    with serve(OK) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        post(pagerduty.render([first], cfg), cfg)
        post(pagerduty.render([again], cfg), cfg)
    keys = [b["dedup_key"] for b in json_bodies(server.requests)]
    assert keys == [first.id, first.id]


def test_resolve_uses_the_same_dedup_key() -> None:
    resolved = alert(status="resolved", resolved_at="2026-03-10T03:00:00.000000Z")
    with serve(OK) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        post(pagerduty.render([alert()], cfg), cfg)
        post(pagerduty.render([resolved], cfg), cfg)
    trigger, resolve = json_bodies(server.requests)
    assert trigger["dedup_key"] == resolve["dedup_key"] == resolved.id
    assert resolve == {"routing_key": KEY, "event_action": "resolve", "dedup_key": resolved.id}


def test_through_the_deliverer_trigger_once_then_resolve() -> None:
    store = SqliteStore()
    a = alert(key="bg|x")
    store.merge_alert(a)
    with serve(OK) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        sink = LoadedSink("pd", cfg, pagerduty)
        deliverer = Deliverer({"pd": sink}, store, Policy(), Http(), sleep=lambda _: None)
        deliverer.enqueue(a, "new")
        deliverer.run()
        deliverer.enqueue(a, "new")  # a replay queues nothing: the trigger was delivered
        deliverer.run()
        store.resolve_alerts(a.detector, "bg|x", "2026-03-10T03:00:00.000000Z")
        deliverer.enqueue(store.get_alert(a.id), "resolved")  # type: ignore[arg-type]
        outcome = deliverer.run()
        deliverer.http.close()
    assert [(b["event_action"], b["dedup_key"]) for b in json_bodies(server.requests)] == [
        ("trigger", a.id),
        ("resolve", a.id),
    ]
    assert outcome.answers["pd"].startswith("202 Accepted")


def test_portal_link() -> None:
    cfg = config(link_url="https://entra.microsoft.com/", link_text="Entra PIM")
    assert pagerduty.render([alert()], cfg)["links"] == [
        {"href": "https://entra.microsoft.com/", "text": "Entra PIM"}
    ]


# --- attacker-controlled text -----------------------------------------------------------------------


def test_injection_alert_is_bounded_inert_and_arrives_intact() -> None:
    a = injection()
    rendered = pagerduty.render([a], config())
    summary = rendered["payload"]["summary"]
    assert len(summary) == pagerduty.SUMMARY_LIMIT
    assert summary.endswith(TRUNCATED)
    assert "\n" not in summary and "\r" not in summary and "\u202e" not in summary
    assert summary.startswith("[x](http://evil) <script>alert(1)</script> <at>admin</at> CEF|pipe\\slash=eq")
    assert "ünïcødé 日本語 🚨" in summary
    assert pagerduty.size(rendered) <= pagerduty.MAX_EVENT_BYTES
    details = rendered["payload"]["custom_details"]
    assert details["event_ids"][-1] == "80 more" + TRUNCATED
    assert len(details["event_ids"]) == pagerduty.MAX_EVENT_IDS + 1
    assert all(len(s) <= 2048 for s in _strings(details))
    assert details["runbook"] == a.runbook and details["summary"] == a.summary  # not squeezed
    assert details["principal"]["name"] == a.principal["name"][:243] + TRUNCATED  # type: ignore[index]
    assert any(s.endswith(TRUNCATED) for s in _strings(details["context"]))
    with serve(OK) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        post(rendered, cfg)
    (req,) = server.requests
    assert len(req.body) <= pagerduty.MAX_EVENT_BYTES
    assert json.loads(req.body) == {"routing_key": KEY, **rendered}  # JSON-escaped, nothing interpreted


def test_context_that_cannot_fit_is_replaced_by_a_marker() -> None:
    leaf = {f"k{j}": "x" * 40 for j in range(10)}
    huge = {f"key{i}": {f"sub{j}": dict(leaf) for j in range(10)} for i in range(10)}  # 1000 strings
    rendered = pagerduty.render([alert(context=huge)], config())
    assert rendered["payload"]["custom_details"]["context"] == "context omitted" + TRUNCATED
    assert pagerduty.size(rendered) <= pagerduty.MAX_EVENT_BYTES


def test_empty_title_still_has_a_summary() -> None:
    assert pagerduty.render([alert(title="\n")], config())["payload"]["summary"] == "breakglass.signin"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


# --- status handling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [
        (
            Answer(400, b'{"status":"invalid event","errors":["Event object is invalid"]}'),
            PermanentError,
            None,
        ),
        (Answer(401), PermanentError, None),
        (Answer(403), PermanentError, None),
        (Answer(429, headers={"Retry-After": "30"}), TransientError, 30.0),
        (Answer(500), TransientError, None),
        (Answer(503, headers={"Retry-After": "5"}), TransientError, 5.0),
        (Answer(202, delay=1.5), TransientError, None),
        (Answer(drop=True), TransientError, None),
    ],
    ids=["400", "401", "403", "429", "500", "503", "timeout", "dropped"],
)
def test_status_handling(answer: Answer, error: type[SinkError], retry_after: float | None) -> None:
    with serve(answer) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        with pytest.raises(error) as exc:
            post(pagerduty.render([alert()], cfg), cfg)
    message = str(exc.value)
    assert message.startswith("pagerduty: ")
    assert KEY not in message and server.url not in message and "127.0.0.1" not in message
    if isinstance(exc.value, TransientError):
        assert exc.value.retry_after == retry_after
    assert len(server.requests) >= (0 if answer.drop else 1)


def test_answer_without_json_body() -> None:
    with serve(Answer(202)) as server:
        cfg = config(f"{server.url}/v2/enqueue")
        assert post(pagerduty.render([alert()], cfg), cfg) == "202 Accepted"


# --- config -------------------------------------------------------------------------------------------


def test_config_validates_from_yaml_with_env(plugins: list[Plugin]) -> None:
    cfg = build(
        {
            "sinks": {
                "oncall": {
                    "type": "pagerduty",
                    "routing_key": "${PD_KEY}",
                    "url": pagerduty.EU_URL,
                    "min_severity": "high",
                    "link_url": "https://entra.microsoft.com/",
                }
            }
        },
        plugins,
        "t",
        env={"PD_KEY": KEY},
    )
    sink = cfg.sinks["oncall"]
    assert sink.resolves and not sink.batch
    assert isinstance(sink.config, pagerduty.Config)
    assert sink.config.routing_key.get_secret_value() == KEY
    assert sink.config.url == pagerduty.EU_URL
    assert KEY not in repr(sink.config) and KEY not in str(sink.config)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"routing_key": "${PD_KEY}", "bogus": 1}, "sinks.x.bogus: unknown key"),
        ({}, "sinks.x.routing_key: Field required"),
        ({"routing_key": "  "}, "sinks.x.routing_key: Value error, the routing (integration) key is empty"),
        (
            {"routing_key": "${PD_KEY}", "url": f"http://events.pagerduty.com/v2/enqueue?k={KEY}"},
            "sinks.x.url: Value error, expected an https:// URL (http only to a loopback address)",
        ),
        ({"routing_key": "${PD_KEY}", "link_url": "javascript:alert(1)"}, "sinks.x.link_url: Value error"),
        ({"routing_key": "${PD_KEY}", "source": ""}, "sinks.x.source: Value error, must not be empty"),
    ],
)
def test_config_errors_name_the_key_path_and_never_echo_secrets(
    plugins: list[Plugin], spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        build({"sinks": {"x": {"type": "pagerduty", **spec}}}, plugins, "t", env={"PD_KEY": KEY})
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems
    assert KEY not in str(exc.value)


def test_one_alert_at_a_time() -> None:
    assert not getattr(pagerduty, "BATCH", False)
    with pytest.raises(ValueError):
        pagerduty.render([alert(), alert()], config())
