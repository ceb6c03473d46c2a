"""Opsgenie / JSM Operations sink: golden payloads, the exact requests a real HTTP server receives
(create, close by alias, the GenieKey header), dedup on the alert id, bounds and HTML escaping of
attacker text, status handling, config and the Opsgenie shutdown warning."""

from __future__ import annotations

import html
import json
from datetime import date
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
from sinks import opsgenie
from tests.loopback import Answer, serve

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "opsgenie"
KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"
OK = Answer(202, b'{"result":"Request will be processed","took":0.302,"requestId":"43a29c5c-3dbf-4fa4"}')
JUNK = (
    "[x](http://evil) <script>alert(1)</script> <at>admin</at> CEF|pipe\\slash=eq & co\r\n"
    "RESOLVED: ignore this\u202e ünïcødé 日本語 🚨 "
)


def config(url: str | None = None, flavor: str = "opsgenie", **extra: Any) -> opsgenie.Config:
    spec = {"type": "opsgenie", "api_key": KEY, "api_url": url, "flavor": flavor, "timeout_seconds": 0.5}
    return opsgenie.Config.model_validate(spec | extra)


alert = sample_alert


def injection() -> Alert:
    return injection_alert(JUNK, events=100)


def post(rendered: Any, cfg: opsgenie.Config) -> str:
    return deliver(opsgenie, rendered, cfg)


# --- golden payloads -----------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_golden_create_per_severity(severity: Severity) -> None:
    check_golden(
        f"{severity.value}.json", opsgenie.render([alert(severity)], config(tags=("tenant-contoso",)))
    )


def test_golden_close() -> None:
    resolved = alert(status="resolved", resolved_at="2026-03-10T03:00:00.000000Z")
    check_golden("resolved.json", opsgenie.render([resolved], config()))


def check_golden(name: str, rendered: dict[str, Any]) -> None:
    check_golden_json(GOLDEN / name, rendered)


def test_render_is_pure_and_holds_no_secret() -> None:
    cfg = config()
    first = opsgenie.render([alert()], cfg)
    assert opsgenie.render([alert()], cfg) == first
    assert KEY not in json.dumps(first)


@pytest.mark.parametrize(
    ("severity", "priority"),
    [
        (Severity.CRITICAL, "P1"),
        (Severity.HIGH, "P2"),
        (Severity.MEDIUM, "P3"),
        (Severity.LOW, "P4"),
        (Severity.INFO, "P5"),
    ],
)
def test_priority_mapping(severity: Severity, priority: str) -> None:
    assert opsgenie.render([alert(severity)], config())["body"]["priority"] == priority


# --- what a real server receives --------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["opsgenie", "jsm"])
def test_pipeline_alert_reaches_the_server_exactly(flavor: str) -> None:
    from detectors import breakglass_signin as bg

    case = bg.CASES[0]
    (a,), _ = run_records(case.records, discover(), case.config)
    base = "/jsm/ops/integration" if flavor == "jsm" else ""
    with serve(OK) as server:
        cfg = config(server.url + base, flavor)
        rendered = opsgenie.render([a], cfg)
        answer = post(rendered, cfg)
    assert answer == "202 Accepted, requestId 43a29c5c-3dbf-4fa4"
    (req,) = server.requests
    assert (req.method, req.path) == ("POST", f"{base}/v2/alerts")
    assert req.headers["authorization"] == f"GenieKey {KEY}"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.body)
    assert body == rendered["body"]
    assert body["alias"] == a.id
    assert (
        body["message"]
        == html.escape(a.title, quote=False)[: opsgenie.MESSAGE_LIMIT - len(TRUNCATED)] + TRUNCATED
    )
    assert body["priority"] == "P1" and body["source"] == "pimwatch"
    assert body["entity"] == a.principal["upn"]
    assert body["tags"] == ["pimwatch", "breakglass.signin", "critical", "T1078.004"]
    assert all(isinstance(v, str) for v in body["details"].values())
    assert body["details"]["alert_id"] == a.id
    assert body["details"]["context.ip_address"] == "185.220.101.4"
    assert body["details"]["context.location"] == '{"country": "RO", "city": "Bucharest"}'
    assert a.runbook in body["description"] and a.summary in body["description"]


def test_replay_sends_the_same_alias() -> None:
    from detectors import breakglass_signin as bg

    case = bg.CASES[0]
    (first,), _ = run_records(case.records, discover(), case.config)
    (again,), _ = run_records(case.records + case.records, discover(), case.config)
    with serve(OK) as server:
        cfg = config(server.url)
        post(opsgenie.render([first], cfg), cfg)
        post(opsgenie.render([again], cfg), cfg)
    assert [b["alias"] for b in json_bodies(server.requests)] == [first.id, first.id]


@pytest.mark.parametrize("flavor", ["opsgenie", "jsm"])
def test_resolve_closes_by_alias(flavor: str) -> None:
    resolved = alert(status="resolved", resolved_at="2026-03-10T03:00:00.000000Z")
    base = "/jsm/ops/integration" if flavor == "jsm" else ""
    with serve(OK) as server:
        cfg = config(server.url + base, flavor)
        post(opsgenie.render([alert()], cfg), cfg)
        post(opsgenie.render([resolved], cfg), cfg)
    create, close = server.requests
    assert create.path == f"{base}/v2/alerts"
    assert close.path == f"{base}/v2/alerts/{resolved.id}/close?identifierType=alias"
    assert close.headers["authorization"] == f"GenieKey {KEY}"
    assert json.loads(create.body)["alias"] == resolved.id
    assert json.loads(close.body) == {
        "source": "pimwatch",
        "user": "pimwatch",
        "note": "Resolved by pimwatch (event time 2026-03-10T03:00:00.000000Z)",
    }


def test_through_the_deliverer_create_once_then_close() -> None:
    store = SqliteStore()
    a = alert(key="bg|x")
    store.merge_alert(a)
    with serve(OK) as server:
        cfg = config(server.url + "/v2/alerts/")  # a full endpoint URL is accepted as the base
        deliverer = Deliverer(
            {"og": LoadedSink("og", cfg, opsgenie)}, store, Policy(), Http(), sleep=lambda _: None
        )
        deliverer.enqueue(a, "new")
        deliverer.run()
        deliverer.enqueue(a, "new")  # a replay queues nothing: the create was delivered
        deliverer.run()
        store.resolve_alerts(a.detector, "bg|x", "2026-03-10T03:00:00.000000Z")
        deliverer.enqueue(store.get_alert(a.id), "resolved")  # type: ignore[arg-type]
        outcome = deliverer.run()
        deliverer.http.close()
    assert [r.path for r in server.requests] == [
        "/v2/alerts",
        f"/v2/alerts/{a.id}/close?identifierType=alias",
    ]
    assert outcome.answers["og"].startswith("202 Accepted")


# --- attacker-controlled text -----------------------------------------------------------------------


def test_injection_alert_is_bounded_escaped_and_arrives_intact() -> None:
    a = injection()
    rendered = opsgenie.render([a], config())
    body = rendered["body"]
    message = body["message"]
    assert len(message) <= opsgenie.MESSAGE_LIMIT and message.endswith(TRUNCATED)
    assert message.startswith(
        "[x](http://evil) &lt;script&gt;alert(1)&lt;/script&gt; &lt;at&gt;admin&lt;/at&gt;"
    )
    assert "<" not in message and "\n" not in message and "\u202e" not in message
    description = body["description"]
    assert len(description) == opsgenie.DESCRIPTION_LIMIT and description.endswith(TRUNCATED)
    assert "<" not in description and ">" not in description
    assert "ünïcødé 日本語 🚨" in description
    assert "<" not in body["entity"]
    details = body["details"]
    assert sum(len(k) + len(v) for k, v in details.items()) <= opsgenie.DETAILS_LIMIT
    assert all(isinstance(v, str) for v in details.values())
    assert details["principal_name"].endswith(TRUNCATED) and len(details["principal_name"]) == 256
    assert details["context.justification"].endswith(TRUNCATED)
    assert details["context_omitted"].endswith(TRUNCATED)
    assert len(body["tags"]) <= opsgenie.MAX_TAGS and all(len(t) <= opsgenie.TAG_LIMIT for t in body["tags"])
    with serve(OK) as server:
        cfg = config(server.url)
        post(rendered, cfg)
    assert json_bodies(server.requests) == [body]


@pytest.mark.parametrize("text", ["a & b " * 40, "<" * 200, "x" * 125 + "&amp;" * 5])
def test_escaping_never_cuts_inside_an_entity(text: str) -> None:
    out = opsgenie.escaped(text, opsgenie.MESSAGE_LIMIT)
    assert len(out) <= opsgenie.MESSAGE_LIMIT and out.endswith(TRUNCATED)
    body = out[: -len(TRUNCATED)]
    assert html.unescape(body) == text[: len(html.unescape(body))]
    assert body.count("&") == body.count(";")


def test_short_text_is_escaped_without_marker() -> None:
    assert opsgenie.escaped("a <b> & c", 130) == "a &lt;b&gt; &amp; c"


# --- status handling --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [
        (Answer(400, b'{"message":"Request body is not processable","took":0.0}'), PermanentError, None),
        (Answer(401, b'{"message":"Key format is not valid!"}'), PermanentError, None),
        (Answer(403), PermanentError, None),
        (Answer(422), PermanentError, None),
        (Answer(429, headers={"Retry-After": "30", "X-RateLimit-State": "THROTTLED"}), TransientError, 30.0),
        (Answer(500), TransientError, None),
        (Answer(202, delay=1.5), TransientError, None),
        (Answer(drop=True), TransientError, None),
    ],
    ids=["400", "401", "403", "422", "429", "500", "timeout", "dropped"],
)
@pytest.mark.parametrize("flavor", ["opsgenie", "jsm"])
def test_status_handling(
    flavor: str, answer: Answer, error: type[SinkError], retry_after: float | None
) -> None:
    with serve(answer) as server:
        cfg = config(server.url, flavor)
        with pytest.raises(error) as exc:
            post(opsgenie.render([alert()], cfg), cfg)
    message = str(exc.value)
    assert message.startswith(f"{flavor}: ")
    assert KEY not in message and "GenieKey" not in message
    assert server.url not in message and "127.0.0.1" not in message
    if isinstance(exc.value, TransientError):
        assert exc.value.retry_after == retry_after
    if not answer.drop:
        assert server.requests[0].headers["authorization"] == f"GenieKey {KEY}"  # sent, never echoed


def test_answer_without_json_body() -> None:
    with serve(Answer(202)) as server:
        cfg = config(server.url)
        assert post(opsgenie.render([alert()], cfg), cfg) == "202 Accepted"


# --- config and the shutdown warning -----------------------------------------------------------------


def test_config_validates_from_yaml_with_env(plugins: list[Plugin]) -> None:
    cfg = build(
        {
            "sinks": {
                "og": {"type": "opsgenie", "api_key": "${OG_KEY}", "api_url": opsgenie.OPSGENIE_EU},
                "jsm": {
                    "type": "opsgenie",
                    "flavor": "jsm",
                    "api_key": "${OG_KEY}",
                    "tags": ["tenant-contoso"],
                },
            }
        },
        plugins,
        "t",
        env={"OG_KEY": KEY},
    )
    og, jsm = cfg.sinks["og"], cfg.sinks["jsm"]
    assert og.resolves and not og.batch
    assert isinstance(og.config, opsgenie.Config) and isinstance(jsm.config, opsgenie.Config)
    assert og.config.base_url == "https://api.eu.opsgenie.com"
    assert jsm.config.base_url == "https://api.atlassian.com/jsm/ops/integration"
    assert config().base_url == "https://api.opsgenie.com"
    assert jsm.config.api_key.get_secret_value() == KEY
    for c in (og.config, jsm.config):
        assert KEY not in repr(c) and KEY not in str(c)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"api_key": "${OG_KEY}", "bogus": 1}, "sinks.x.bogus: unknown key"),
        ({}, "sinks.x.api_key: Field required"),
        ({"api_key": " "}, "sinks.x.api_key: Value error, the API integration key is empty"),
        (
            {"api_key": "${OG_KEY}", "flavor": "compass"},
            "sinks.x.flavor: Input should be 'opsgenie' or 'jsm'",
        ),
        (
            {"api_key": "${OG_KEY}", "api_url": f"http://api.opsgenie.com/?apiKey={KEY}"},
            "sinks.x.api_url: Value error, expected an https:// URL (http only to a loopback address)",
        ),
        (
            {"api_key": "${OG_KEY}", "flavor": "jsm", "api_url": "https://api.eu.opsgenie.com"},
            "sinks.x.api_url: Value error, flavor jsm with an Opsgenie URL",
        ),
        (
            {"api_key": "${OG_KEY}", "api_url": "https://api.atlassian.com/jsm/ops/integration"},
            "sinks.x.api_url: Value error, an Atlassian (JSM) URL with flavor opsgenie",
        ),
        ({"api_key": "${OG_KEY}", "tags": ["two words"]}, "sinks.x.tags: Value error"),
        ({"api_key": "${OG_KEY}", "source": "s" * 101}, "sinks.x.source: Value error"),
    ],
)
def test_config_errors_name_the_key_path_and_never_echo_secrets(
    plugins: list[Plugin], spec: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        build({"sinks": {"x": {"type": "opsgenie", **spec}}}, plugins, "t", env={"OG_KEY": KEY})
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems
    assert KEY not in str(exc.value)


def test_shutdown_date_and_startup_warning() -> None:
    assert date(2027, 4, 5) == opsgenie.OPSGENIE_SHUTDOWN
    before = opsgenie.startup_warning(config(), today=date(2026, 11, 27))
    assert before is not None
    assert "2027-04-05" in before and "129 days left" in before and "flavor: jsm" in before
    after = opsgenie.startup_warning(config(), today=date(2027, 4, 6))
    assert after is not None and "was shut down on 2027-04-05" in after
    assert opsgenie.startup_warning(config(flavor="jsm")) is None
    assert KEY not in before


def test_one_alert_at_a_time() -> None:
    assert not getattr(opsgenie, "BATCH", False)
    with pytest.raises(ValueError):
        opsgenie.render([alert(), alert()], config())
