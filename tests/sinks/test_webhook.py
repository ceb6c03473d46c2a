"""sinks/webhook.py: Standard Webhooks signing checked by an independent verifier, the stable id, the
truncation of every string, the answers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

import detectors.breakglass_signin as breakglass
from pimwatch import SCHEMA_VERSION
from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.sink import TRUNCATED, Http, PermanentError
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import discover
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import sinks as kit
from sinks import webhook
from tests.loopback import Answer, Request, serve

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "webhook"
KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
OLD_KEY = bytes(range(100, 132))
OLD_SECRET = "whsec_" + base64.b64encode(OLD_KEY).decode()
URL_TOKEN = "tok-SECRET-9f8e7d6c5b4a"
PATH = f"/hooks/pim?token={URL_TOKEN}"
NOW = 1_773_108_000  # 2026-03-10T02:00:00Z


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook, "now", lambda: NOW + 0.75)


def config(url: str = f"https://soar.example.com{PATH}", **extra: Any) -> webhook.Config:
    extra.setdefault("secret", SECRET)
    return webhook.Config.model_validate({"type": "webhook", "url": url, **extra})


def alert(severity: Severity, **fields: Any) -> Alert:
    context = {"role": "Global Administrator", "justification": "INC0042"}
    return kit.sample_alert(severity, kit.OFF_HOURS, **{"context": context, **fields})


def golden_alerts() -> dict[str, Alert]:
    return {
        "critical": alert(
            Severity.CRITICAL,
            **kit.BREAKGLASS_SIGNIN,
            context={"ip_addresses": ["185.220.101.4"], "location": {"country": "RO", "city": "Bucharest"}},
            events=[("2026-03-10T02:17:00.000000Z", "s1"), ("2026-03-10T02:40:00.000000Z", "s2")],
        ),
        "high": alert(
            Severity.HIGH,
            **kit.OUTSIDE_PIM,
            context={"role": "Global Administrator", "permanent": True, "justification": None},
        ),
        "medium": alert(Severity.MEDIUM),
        "low": alert(Severity.LOW, detector="activation.simultaneous", context={"roles": ["A", "B"]}),
        "info": alert(
            Severity.INFO,
            **kit.PIM_BUILTIN,
        ),
    }


EVIL = (
    "[x](http://evil.example) <script>alert(1)</script> <at>admin</at> "
    "CEF|sep\\back=eq\nnext line\r\n\u202egnp.exe Zoë 日本 🙂 "
)
BIG = (EVIL * (100_000 // len(EVIL) + 1))[:100_000]


def injection_alert() -> Alert:
    return alert(
        Severity.CRITICAL,
        title=EVIL + BIG,
        principal={"id": BIG, "upn": EVIL, "name": BIG},
        context={"justification": BIG, BIG: "a key that long", "nested": {"deep": [BIG, {"k": BIG}]}, "n": 7},
    )


def verify(secret: str, request: Request, now: int, tolerance: int = 300) -> bool:
    """A receiver's check, written from the Standard Webhooks spec (not with the sink's code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    msg_id = request.headers["webhook-id"]
    timestamp = request.headers["webhook-timestamp"]
    if abs(now - int(timestamp)) > tolerance:
        return False
    content = f"{msg_id}.{timestamp}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for entry in request.headers.get("webhook-signature", "").split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1" and hmac.compare_digest(signature, expected):
            return True
    return False


def post(rendered: Any, cfg: webhook.Config) -> str:
    return kit.deliver(webhook, rendered, cfg)


# --- render -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*(s.value for s in Severity), "resolved"])
def test_golden(name: str) -> None:
    if name == "resolved":
        a = golden_alerts()["high"]
        a.status, a.resolved_at = "resolved", "2026-03-14T06:00:00.000000Z"
    else:
        a = golden_alerts()[name]
    kit.check_golden_json(GOLDEN / f"{name}.json", webhook.render([a], config()))


def test_payload_is_the_alert_under_type_timestamp_data() -> None:
    a = golden_alerts()["critical"]
    rendered = webhook.render([a], config())
    assert rendered["webhook_id"] == a.id
    assert rendered["payload"] == {
        "type": "pimwatch.alert",
        "timestamp": "2026-03-10T02:40:00.000000Z",  # last_seen: when the event occurred
        "data": a.to_dict(),
    }
    assert rendered["payload"]["data"]["schema_version"] == SCHEMA_VERSION


def test_resolved_alert_has_its_own_type_time_and_id() -> None:
    a = golden_alerts()["medium"]
    a.status, a.resolved_at = "resolved", "2026-03-14T06:00:00.000000Z"
    rendered = webhook.render([a], config())
    assert rendered["payload"]["type"] == "pimwatch.alert.resolved"
    assert rendered["payload"]["timestamp"] == "2026-03-14T06:00:00.000000Z"
    assert rendered["payload"]["data"]["status"] == "resolved"
    assert rendered["webhook_id"] == f"{a.id}_resolved"  # not deduped away as the trigger's repeat
    assert "." not in rendered["webhook_id"]
    assert webhook.RESOLVES is True


def test_every_string_is_truncated_with_the_marker() -> None:
    rendered = webhook.render([injection_alert()], config(max_field_chars=1000))
    data = rendered["payload"]["data"]
    assert all(len(s) <= 1000 for s in kit.strings(data))
    assert data["title"].endswith(TRUNCATED) and data["title"].startswith(EVIL)
    assert data["principal"]["name"].endswith(TRUNCATED)
    assert data["context"]["justification"].endswith(TRUNCATED)
    assert data["context"]["nested"]["deep"][0].endswith(TRUNCATED)
    assert data["context"]["nested"]["deep"][1]["k"].endswith(TRUNCATED)
    assert any(k.endswith(TRUNCATED) for k in data["context"])  # keys too
    assert data["context"]["n"] == 7 and data["count"] == 1  # non-strings untouched
    assert data["principal"]["upn"] == EVIL  # short strings are kept byte for byte, nothing escaped


def test_default_limit_is_8_kb() -> None:
    assert (
        webhook.Config.model_validate({"type": "webhook", "url": "https://x.example"}).max_field_chars == 8192
    )
    data = webhook.render([injection_alert()], config())["payload"]["data"]
    assert max(len(s) for s in kit.strings(data)) == 8192


def test_render_is_pure_and_takes_one_alert() -> None:
    a = golden_alerts()["high"]
    assert webhook.render([a], config()) == webhook.render([a], config())
    with pytest.raises(ValueError):
        webhook.render([a, a], config())


# --- signing ----------------------------------------------------------------------------------------


def test_sign_matches_the_published_standard_webhooks_vector() -> None:
    from pydantic import SecretStr

    key = webhook.signing_key(SecretStr("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert webhook.sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", body) == expected


def test_send_signs_what_it_sends_and_the_receiver_verifies_it() -> None:
    [a] = kit.case_alerts(breakglass.CASES[0])  # a real break-glass sign-in alert
    with serve(Answer(204)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        rendered = webhook.render([a], cfg)
        answer = post(rendered, cfg)
        post(rendered, cfg)  # a retry: same id, same body
    assert answer == "204 No Content"
    first, retry = server.requests
    assert first.method == "POST" and first.path == PATH
    assert first.headers["content-type"] == "application/json"
    assert first.headers["webhook-id"] == a.id
    assert first.headers["webhook-timestamp"] == str(NOW)
    assert first.headers["webhook-signature"].startswith("v1,")
    assert verify(SECRET, first, NOW)
    assert json.loads(first.body) == {"type": "pimwatch.alert", "timestamp": a.last_seen, "data": a.to_dict()}
    assert first.body == webhook.encode(rendered["payload"])
    assert retry.headers["webhook-id"] == first.headers["webhook-id"] and retry.body == first.body
    # A tampered body, id or timestamp, a wrong key or a stale timestamp all fail verification.
    assert not verify(SECRET, Request("POST", PATH, first.headers, first.body + b" "), NOW)
    assert not verify(
        SECRET, Request("POST", PATH, {**first.headers, "webhook-id": "other"}, first.body), NOW
    )
    moved = {**first.headers, "webhook-timestamp": str(NOW - 1)}
    assert not verify(SECRET, Request("POST", PATH, moved, first.body), NOW)
    assert not verify(OLD_SECRET, first, NOW)
    assert not verify(SECRET, first, NOW + 3600)


def test_timestamp_is_the_attempt_time_from_the_injected_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered = webhook.render([golden_alerts()["high"]], config())
    with serve(Answer(200)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        post(rendered, cfg)
        monkeypatch.setattr(webhook, "now", lambda: NOW + 600.2)
        post(rendered, cfg)
    early, late = server.requests
    assert (early.headers["webhook-timestamp"], late.headers["webhook-timestamp"]) == (
        str(NOW),
        str(NOW + 600),
    )
    assert early.body == late.body and early.headers["webhook-id"] == late.headers["webhook-id"]
    assert early.headers["webhook-signature"] != late.headers["webhook-signature"]
    assert verify(SECRET, early, NOW) and verify(SECRET, late, NOW + 600)


def test_rotation_sends_both_signatures() -> None:
    with serve(Answer(200)) as server:
        cfg = config(server.url + PATH, previous_secret=OLD_SECRET)
        post(webhook.render([golden_alerts()["low"]], cfg), cfg)
    request = server.requests[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    assert verify(SECRET, request, NOW) and verify(OLD_SECRET, request, NOW)


def test_without_a_secret_the_message_is_unsigned() -> None:
    with serve(Answer(200)) as server:
        cfg = config(server.url + PATH, secret=None)
        post(webhook.render([golden_alerts()["low"]], cfg), cfg)
    headers = server.requests[0].headers
    assert "webhook-signature" not in headers
    assert headers["webhook-id"] == golden_alerts()["low"].id and headers["webhook-timestamp"] == str(NOW)


def test_injection_alert_arrives_verified_and_bounded() -> None:
    with serve(Answer(202)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        rendered = webhook.render([injection_alert()], cfg)
        post(rendered, cfg)
    request = server.requests[0]
    assert verify(SECRET, request, NOW)
    received = json.loads(request.body)
    assert received == rendered["payload"]
    assert all(len(s) <= 8192 for s in kit.strings(received))
    assert "\u202e" in received["data"]["title"]  # JSON carries the text as is; the receiver escapes
    assert len(request.body) < 100_000


@pytest.mark.parametrize(
    "answer",
    [  # the status table every sink follows is in test_conformance.py; these are the webhook's own
        Answer(301, headers={"Location": "https://elsewhere.example/"}),  # not followed: update the URL
        Answer(410),  # Gone: the receiver asks to stop
    ],
    ids=["301", "410"],
)
def test_redirect_and_gone_are_dead_letters(answer: Answer) -> None:
    with serve(answer) as server, pytest.raises(PermanentError) as caught:
        cfg = config(server.url + PATH)
        post(webhook.render([golden_alerts()["high"]], cfg), cfg)
    assert len(server.requests) == 1
    assert str(caught.value) == f"webhook: HTTP {answer.status} {HTTPStatus(answer.status).phrase}"


# --- config -----------------------------------------------------------------------------------------


def test_config_validates_through_the_loader() -> None:
    url = f"https://soar.example.com{PATH}"
    cfg = build(
        {
            "sinks": {
                "x": {
                    "type": "webhook",
                    "url": "${HOOK_URL}",
                    "secret": "${HOOK_SECRET}",
                    "max_field_chars": 2000,
                }
            }
        },
        discover(),
        "t",
        env={"HOOK_URL": url, "HOOK_SECRET": SECRET},
    )
    sink = cfg.sinks["x"]
    assert isinstance(sink.config, webhook.Config)
    assert sink.config.url.get_secret_value() == url and sink.config.max_field_chars == 2000
    assert sink.resolves
    for text in (repr(sink.config), str(sink.config)):
        assert URL_TOKEN not in text and SECRET not in text and SECRET.removeprefix("whsec_") not in text


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"sekret": SECRET}, "sinks.x.sekret: unknown key"),
        ({"max_field_chars": 10}, "sinks.x.max_field_chars:"),
        (
            {"secret": "whsec_" + base64.b64encode(b"short").decode()},
            "sinks.x.secret: Value error, the secret is 5 bytes",
        ),
        ({"secret": "whsec_not base64!" + URL_TOKEN}, "sinks.x.secret: Value error, expected whsec_"),
        ({"url": f"http://soar.example.com{PATH}"}, "sinks.x.url: Value error, expected an https:// URL"),
    ],
)
def test_config_problems_name_the_key_and_never_the_secret(spec: dict[str, Any], problem: str) -> None:
    raw = {"type": "webhook", "url": "${HOOK_URL}", "secret": "${HOOK_SECRET}", **spec}
    env = {"HOOK_URL": f"https://soar.example.com{PATH}", "HOOK_SECRET": SECRET}
    with pytest.raises(ConfigError) as caught:
        build({"sinks": {"x": raw}}, discover(), "t", env=env)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    for secret in (URL_TOKEN, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in str(caught.value)
    with pytest.raises(ValueError) as direct:  # pydantic's own message hides the input too
        webhook.Config.model_validate(
            {k: env.get(v[2:-1], v) if isinstance(v, str) else v for k, v in raw.items()}
        )
    assert URL_TOKEN not in str(direct.value) and SECRET not in str(direct.value)


def test_through_the_deliverer_trigger_once_then_resolve() -> None:
    store = SqliteStore()
    a = alert(Severity.HIGH, key="k")
    store.merge_alert(a)
    with serve(Answer(200)) as server:
        cfg = config(server.url + PATH, timeout_seconds=2)
        deliverer = Deliverer(
            {"hook": LoadedSink("hook", cfg, webhook)}, store, Policy(), Http(), sleep=lambda _: None
        )
        deliverer.enqueue(a, "new")
        deliverer.run()
        deliverer.enqueue(a, "new")  # already delivered: nothing queued
        deliverer.run()
        store.resolve_alerts(a.detector, "k", "2026-03-14T06:00:00.000000Z")
        resolved = store.get_alert(a.id)
        assert resolved is not None and resolved.status == "resolved"
        deliverer.enqueue(resolved, "resolved")
        outcome = deliverer.run()
        deliverer.http.close()
    assert [(r.headers["webhook-id"], json.loads(r.body)["type"]) for r in server.requests] == [
        (a.id, "pimwatch.alert"),
        (f"{a.id}_resolved", "pimwatch.alert.resolved"),
    ]
    assert all(verify(SECRET, r, NOW) for r in server.requests)
    assert outcome.answers["hook"] == "200 OK"
