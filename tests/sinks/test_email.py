"""The e-mail sink against REAL servers in this process: aiosmtpd (plain, STARTTLS, implicit TLS,
AUTH PLAIN/LOGIN, a custom XOAUTH2 mechanism) and the loopback HTTP server for Graph ``sendMail``.
Every message received is parsed back with the stdlib ``email`` parser and checked."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult

from detectors import breakglass_signin
from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, Policy
from pimwatch.delivery.sink import TRUNCATED, Http, PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert, Severity, alert_id
from pimwatch.detection.detector import Plugin
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing.harness import run_records
from pimwatch.testing.sinks import BREAKGLASS
from sinks import email as sink
from tests.conftest import REPO
from tests.loopback import Answer, serve
from tests.sinks.conftest import Received, Recorder, free_port, password_authenticator, smtp_server
from tests.sinks.private_ca import PrivateCA

GOLDEN = REPO / "tests" / "golden" / "sinks" / "email"
SENDER = "pim-alerts@contoso.com"
TO = ["soc@contoso.com", "oncall@contoso.com"]
USER = "pim-alerts@contoso.com"
PASSWORD = "Pa55-w0rd-never-in-errors"
TOKEN = "eyJ0eXAi.static-test-token.never-in-errors"
BIG = "A" * 100_000  # 100 KB of attacker text
HTTP = Http()  # one client for the module (SMTP sends ignore it)


# --- alerts ----------------------------------------------------------------------------------------


def _alert(severity: Severity, detector: str, key: str, title: str, **kw: Any) -> Alert:
    defaults: dict[str, Any] = {
        **copy.deepcopy({k: BREAKGLASS[k] for k in ("summary", "runbook", "mitre", "principal")}),
        "context": {"ip_address": "185.220.101.4", "location": {"country": "RO", "city": "Bucharest"}},
        "events": [("2026-03-10T02:17:00.000000Z", "rec-0001")],
    }
    defaults.update(kw)
    return Alert(
        id=alert_id(detector, key, "2026-03-10T02:00"),
        detector=detector,
        severity=severity,
        title=title,
        key=key,
        **defaults,
    )


def golden_alerts() -> dict[Severity, Alert]:
    return {
        Severity.CRITICAL: _alert(
            Severity.CRITICAL,
            "breakglass.signin",
            "bg-admin01",
            "Break-glass account bg-admin01@contoso.onmicrosoft.com signed in (interactive) from "
            "185.220.101.4, Bucharest, RO — single-factor, password, no Conditional Access",
            context={
                "sign_in": "interactive",
                "succeeded": True,
                "single_factor": True,
                "error_code": None,
                "authentication_methods": ["Password"],
                "ip_address": "185.220.101.4",
                "location": {"country": "RO", "city": "Bucharest"},
            },
        ),
        Severity.HIGH: _alert(
            Severity.HIGH,
            "assignment.outside_pim",
            "alice|Global Administrator",
            "Global Administrator assigned to alice@contoso.com outside PIM by bob@contoso.com",
            summary="A privileged role was assigned directly, bypassing PIM.",
            runbook="Ask the initiator why PIM was bypassed; remove the assignment if unplanned.",
            mitre=["T1098.003"],
            principal={
                "id": "a11ce000-0000-4000-8000-000000000001",
                "upn": "alice@contoso.com",
                "name": "Alice",
            },
            context={"role": "Global Administrator", "initiated_by": "bob@contoso.com"},
            events=[("2026-03-10T09:00:00.000000Z", "rec-0002"), ("2026-03-10T09:05:00.000000Z", "rec-0003")],
        ),
        Severity.MEDIUM: _alert(
            Severity.MEDIUM,
            "activation.off_hours",
            "carol|Security Administrator",
            "Carol activated Security Administrator at 03:12 Europe/Paris (outside 07:00-20:00)",
            summary="A privileged role was activated outside working hours.",
            runbook="Check the justification with the user.",
            mitre=[],
            principal={"id": None, "upn": "carol@contoso.com", "name": "Carol"},
            context={"role": "Security Administrator", "justification": "ticket INC-4711", "hour": 3},
            events=[("2026-03-10T02:12:00.000000Z", "rec-0004")],
        ),
        Severity.LOW: _alert(
            Severity.LOW,
            "activation.first_time",
            "dave|Exchange Administrator",
            "Dave activated Exchange Administrator for the first time",
            summary="A user activated a role for the first time.",
            runbook="",
            mitre=[],
            principal={"id": None, "upn": "dave@contoso.com", "name": None},
            context={"role": "Exchange Administrator"},
            events=[("2026-03-10T11:00:00.000000Z", "rec-0005")],
        ),
        Severity.INFO: _alert(
            Severity.INFO,
            "pim.builtin_alert",
            "tenant",
            "PIM built-in alert: Roles don't require multifactor authentication for activation",
            summary="Microsoft's own PIM alert fired.",
            runbook="Review the alert in the PIM blade.",
            mitre=[],
            principal={"id": None, "upn": None, "name": None},
            context={},
            events=[("2026-03-10T12:00:00.000000Z", "rec-0006")],
        ),
    }


def injection_alert() -> Alert:
    nasty = (
        "Zoë 管理者 [click here](http://evil.example/reset) <script>alert(1)</script> <at>admin</at> "
        "CEF|sep\\ key=value\r\nSeverity: info\u202eevil"
    )
    return _alert(
        Severity.HIGH,
        "assignment.self",
        "mallory",
        f"Self-assignment by {nasty} " + BIG,
        principal={"id": "<b>id</b>", "upn": "mallory@contoso.com\r\nBcc: x@evil.example", "name": nasty},
        context={
            "justification": BIG,
            "app": "[x](http://evil) <img src=x onerror=alert(1)>",
            "<script>key": "value & more",
            "nested": {"html": "<i>i</i>", "list": ["a|b", "c=d"]},
        },
        events=[("2026-03-10T05:00:00.000000Z", "rec-<evil>")],
    )


def config(**over: Any) -> sink.Config:
    base: dict[str, Any] = {
        "type": "email",
        "sender": SENDER,
        "to": TO,
        "smtp_host": "127.0.0.1",
        "tls": "none",
        "timeout_seconds": 2.0,
    }
    base.update(over)
    return sink.Config.model_validate(base)


def static(token: str = TOKEN, calls: list[str] | None = None) -> sink.TokenProvider:
    def provide(scope: str) -> str:
        if calls is not None:
            calls.append(scope)
        return token

    return provide


# --- real servers ------------------------------------------------------------------------------------


@dataclass
class OAuthRecorder(Recorder):
    """Adds ``AUTH XOAUTH2`` (aiosmtpd finds ``auth_<MECHANISM>`` methods on the handler)."""

    token: str = TOKEN
    responses: list[bytes] = field(default_factory=list)

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        raw = base64.b64decode(args[1]) if len(args) == 2 else b""
        self.responses.append(raw)
        if raw == f"user={USER}\x01auth=Bearer {self.token}\x01\x01".encode():
            return AuthResult(success=True, auth_data=raw)
        # The XOAUTH2 failure dance: a 334 with a JSON error, the client answers empty, then 535.
        error = {"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"}
        await server.challenge_auth(json.dumps(error))
        return AuthResult(success=False, handled=False)


@dataclass(frozen=True)
class Cert:
    cert: str
    key: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


@pytest.fixture(scope="session")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Cert:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl command to make a self-signed certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return Cert(str(cert), str(key))


authenticator = password_authenticator(USER, PASSWORD)


@contextmanager
def raw_server(greeting: bytes | None) -> Iterator[int]:
    """A TCP server that sends ``greeting`` (or nothing) to one client and hangs up."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve_one() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            if greeting is not None:
                conn.sendall(greeting)

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(timeout=2)


def _secret_free(exc: BaseException, *extra: str) -> None:
    text = f"{exc!s} {exc!r}"
    for secret in (PASSWORD, TOKEN, *extra):
        assert secret not in text


# --- config --------------------------------------------------------------------------------------------


def test_config_from_yaml_shape_with_env_secrets(plugins: list[Plugin]) -> None:
    cfg = build(
        {
            "sinks": {
                "mail": {
                    "type": "email",
                    "sender": SENDER,
                    "to": TO,
                    "smtp_host": "smtp.office365.com",
                    "auth": "password",
                    "username": USER,
                    "password": "${SMTP_PASSWORD}",
                    "min_severity": "high",
                },
                "graph": {
                    "type": "email",
                    "transport": "graph",
                    "sender": SENDER,
                    "to": ["soc@contoso.com"],
                    "tenant_id": "t",
                    "client_id": "c",
                    "client_secret": "${GRAPH_SECRET}",
                },
            }
        },
        plugins,
        "t",
        env={"SMTP_PASSWORD": PASSWORD, "GRAPH_SECRET": "graph-secret-value"},
    )
    mail = cfg.sinks["mail"].config
    assert isinstance(mail, sink.Config)
    assert cfg.sinks["mail"].batch and not cfg.sinks["mail"].resolves
    assert mail.password is not None and mail.password.get_secret_value() == PASSWORD
    assert mail.port == 587 and mail.tls == "starttls"
    graph = cfg.sinks["graph"].config
    assert isinstance(graph, sink.Config) and graph.graph_url == sink.GRAPH_URL and graph.smtp_host is None
    for text in (repr(mail), str(mail), repr(graph), str(graph), repr(cfg.sinks)):
        assert PASSWORD not in text and "graph-secret-value" not in text


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"bogus": 1}, "sinks.x.bogus: unknown key"),
        ({"to": ["soc@contoso.com", "not an address"]}, "sinks.x.to:"),
        ({"to": []}, "sinks.x.to:"),
        ({"to": ["a@contoso.com\r\nBcc: x@evil.example"]}, "sinks.x.to:"),
        ({"sender": "Alerts <alerts@contoso.com>"}, "sinks.x.sender:"),
        ({"smtp_host": None}, "sinks.x.smtp_host:"),
        ({"auth": "password", "tls": "starttls", "username": USER}, "sinks.x.password:"),
        ({"auth": "password", "password": "${SMTP_PASSWORD}"}, "sinks.x.username:"),
        (
            {"auth": "password", "tls": "none", "username": USER, "password": "${SMTP_PASSWORD}"},
            "sinks.x.auth:",
        ),
        ({"tls": "sometimes"}, "sinks.x.tls:"),
        ({"smtp_port": 70000}, "sinks.x.smtp_port:"),
        (
            {"transport": "graph", "graph_url": f"http://graph.example/v1.0?key={PASSWORD}"},
            "sinks.x.graph_url:",
        ),
        ({"client_secret": "${SMTP_PASSWORD}"}, "sinks.x.client_secret:"),
        ({"subject_prefix": "[pim]\r\nBcc: x@evil.example"}, "sinks.x.subject_prefix:"),
    ],
)
def test_config_errors_name_the_key_path_and_never_echo_secrets(
    plugins: list[Plugin], spec: dict[str, Any], problem: str
) -> None:
    base: dict[str, Any] = {"type": "email", "sender": SENDER, "to": TO, "smtp_host": "smtp.contoso.com"}
    base.update(spec)
    base = {k: v for k, v in base.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        build({"sinks": {"x": base}}, plugins, "t", env={"SMTP_PASSWORD": PASSWORD})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems
    assert PASSWORD not in str(info.value)


# --- render (pure, golden) -------------------------------------------------------------------------------


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())
    assert path.exists(), f"{path} missing: run with UPDATE_GOLDEN=1"
    assert path.read_bytes().decode() == text, f"{name} differs from the golden file (UPDATE_GOLDEN=1)"


def _golden_set(name: str, email: sink.Email) -> None:
    check_golden(f"{name}.subject.txt", email.subject + "\n")
    check_golden(f"{name}.txt", email.text)
    check_golden(f"{name}.html", email.html)


@pytest.mark.parametrize("severity", list(Severity))
def test_golden_per_severity(severity: Severity) -> None:
    email = sink.render([golden_alerts()[severity]], config())
    _golden_set(severity.value, email)
    assert email.subject.startswith(f"[pimwatch] {severity.value.upper()}: ")


def test_golden_digest_and_injection() -> None:
    alerts = list(golden_alerts().values())
    digest = sink.render(alerts, config(subject_prefix="[PIM]"))
    _golden_set("digest", digest)
    assert digest.subject.startswith("[PIM] 5 alerts, highest CRITICAL: Break-glass account")
    assert digest.subject.endswith("(+4 more)")
    _golden_set("injection", sink.render([injection_alert()], config()))


def test_render_is_pure_order_independent_and_most_severe_first() -> None:
    alerts = list(golden_alerts().values())
    a, b = sink.render(alerts, config()), sink.render(list(reversed(alerts)), config())
    assert a == b
    assert [Severity(s) for s in ["critical", "high", "medium", "low", "info"]] == [
        next(x.severity for x in alerts if x.id == i) for i in a.alert_ids
    ]
    assert a.message_id == sink.message_id([x.id for x in alerts], SENDER)
    assert a.message_id.startswith("<pimwatch.") and a.message_id.endswith("@contoso.com>")
    assert sink.render(alerts[:2], config()).message_id != a.message_id
    assert sink.render([], config()).alert_ids == ()  # nothing to send (the conformance suite sends it)


def test_injection_is_inert_in_both_bodies_and_the_subject() -> None:
    email = sink.render([injection_alert()], config())
    assert (
        "\n" not in email.subject and "\r" not in email.subject and len(email.subject) <= sink.SUBJECT_LIMIT
    )
    for body in (email.text, email.html, email.subject):
        assert "http://evil" not in body and "http[:]//evil" in body  # no client auto-links it
        assert "\u202e" not in body
        assert "A" * 600 not in body  # 100 KB cut to the field limits
    assert "<script>" not in email.html and "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    assert "<at>" not in email.html and "&lt;at&gt;admin&lt;/at&gt;" in email.html
    assert "<img" not in email.html and "<b>" not in email.html and "<i>" not in email.html
    assert "&lt;script&gt;key" in email.html and "value &amp; more" in email.html
    assert email.text.count(TRUNCATED) >= 2 and email.html.count(TRUNCATED) >= 2
    assert "Zoë 管理者" in email.text and "Zoë 管理者" in email.html
    # No forged line: the CR/LF in audit text never starts a line of its own in the text part.
    assert not any(line.startswith("Severity: info") for line in email.text.splitlines())
    assert not any(line.startswith("Bcc:") for line in email.text.splitlines())
    assert len(email.text) < 20_000 and len(email.html) < 40_000


def test_digest_bounds_with_many_alerts() -> None:
    base = golden_alerts()[Severity.LOW]
    alerts = [
        Alert(
            **{**base.__dict__, "id": f"{i:032x}", "events": [(f"2026-03-10T{i % 24:02d}:00:00Z", f"r{i}")]}
        )
        for i in range(600)
    ]
    email = sink.render(alerts, config())
    assert email.subject.startswith("[pimwatch] 600 alerts, highest LOW: ")
    assert email.text.count("==== [") == 25  # 25 in full
    assert "==== 500 more alerts (not shown in full)" in email.text
    assert "... and 75 more alerts not listed here" in email.text
    header = sink.header_ids(email.alert_ids)
    assert header.count(",") == 100 and header.endswith("(+500 more)")
    assert len(email.html.encode()) <= sink.MAX_BODY_BYTES


def test_bodies_shrink_to_fit_the_byte_budget() -> None:
    context = {f"k{i}": "<&>" * 300 for i in range(30)}  # escapes to ~4x in HTML
    alerts = [
        _alert(Severity.MEDIUM, "activation.off_hours", f"u{i}", f"title {i}", context=context)
        for i in range(25)
    ]
    email = sink.render(alerts, config())
    assert len(email.html.encode()) <= sink.MAX_BODY_BYTES and len(email.text.encode()) <= sink.MAX_BODY_BYTES
    shown = email.text.count("==== [")
    assert 0 < shown < 25 and f"==== {25 - shown} more alerts" in email.text


def test_mime_and_graph_payload_shapes() -> None:
    email = sink.render(list(golden_alerts().values()), config())
    msg = sink.mime(email, config(), "Tue, 10 Mar 2026 02:20:00 GMT")
    raw = msg.as_bytes()
    assert raw.isascii() and b"\r\n" in raw and max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert sink.graph_payload(email, config()) == {
        "message": {
            "subject": email.subject,
            "body": {"contentType": "HTML", "content": email.html},
            "toRecipients": [{"emailAddress": {"address": a}} for a in TO],
            "internetMessageHeaders": [{"name": "X-Pimwatch-Alert-Ids", "value": ", ".join(email.alert_ids)}],
        },
        "saveToSentItems": False,
    }


# --- SMTP against aiosmtpd -------------------------------------------------------------------------------


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _check_message(received: Received, email: sink.Email, cfg: sink.Config) -> EmailMessage:
    assert received.mail_from == cfg.sender
    assert received.rcpt_tos == cfg.to
    msg = received.parsed()
    assert msg["From"] == cfg.sender
    assert [a.addr_spec for a in msg["To"].addresses] == cfg.to
    assert msg["Subject"] == email.subject
    assert msg["Message-ID"] == email.message_id
    assert msg["X-Pimwatch-Alert-Ids"] == ", ".join(email.alert_ids)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None and msg["Date"].datetime is not None
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain is not None and html is not None
    assert _lf(plain.get_content()) == email.text + "\n"  # set_content ends the part with a newline
    assert _lf(html.get_content()) == email.html + "\n"
    return msg


def test_smtp_plain_delivers_one_digest_of_real_pipeline_alerts(plugins: list[Plugin]) -> None:
    case = breakglass_signin.CASES[0]
    alerts, _ = run_records(case.records, plugins, case.config)
    assert alerts
    alerts.append(injection_alert())
    handler = Recorder()
    with smtp_server(handler) as port:
        cfg = config(smtp_port=port)
        email = sink.render(alerts, cfg)
        answer = sink.send(email, cfg, HTTP)
    assert answer == "250 2.0.0 OK queued as T1"
    assert len(handler.received) == 1
    msg = _check_message(handler.received[0], email, cfg)
    assert msg["Subject"].startswith(
        f"[pimwatch] {len(alerts)} alerts, highest CRITICAL: Break-glass account"
    )
    html = msg.get_body(("html",))
    plain = msg.get_body(("plain",))
    assert html is not None and plain is not None
    html_text, plain_text = html.get_content(), plain.get_content()
    assert "<script>" not in html_text and "&lt;script&gt;alert(1)&lt;/script&gt;" in html_text
    assert "[click here](http[:]//evil.example/reset)" in plain_text
    assert TRUNCATED in plain_text and TRUNCATED in html_text
    assert "A" * 600 not in plain_text and "A" * 600 not in html_text
    assert "Zoë 管理者" in plain_text and "bg-admin01@contoso.onmicrosoft.com" in plain_text


def test_smtp_delivery_run_sends_one_message_for_all_due_alerts(plugins: list[Plugin]) -> None:
    handler = Recorder()
    store = SqliteStore()
    alerts = list(golden_alerts().values())
    with smtp_server(handler) as port:
        cfg = build(
            {"sinks": {"mail": {"type": "email", "sender": SENDER, "to": TO, "smtp_host": "127.0.0.1",
                                "smtp_port": port, "tls": "none", "timeout_seconds": 2}}},
            plugins,
        )  # fmt: skip
        deliverer = Deliverer(cfg.sinks, store, Policy(), HTTP, sleep=lambda s: None)
        for alert in alerts:
            store.merge_alert(alert)
            deliverer.enqueue(alert, "new")
        outcome = deliverer.run()
        assert deliverer.run().sent == {}  # nothing due any more
    assert outcome.sent == {"mail": 5} and outcome.answers["mail"].startswith("250")
    assert len(handler.received) == 1
    assert handler.received[0].parsed()["Subject"].startswith("[pimwatch] 5 alerts, highest CRITICAL")


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_starttls_with_password_auth(cert: Cert, mechanism: str) -> None:
    handler = Recorder()
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    with smtp_server(
        handler,
        tls_context=cert.server_context(),
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        auth_exclude_mechanism=[other],
    ) as port:
        cfg = config(
            smtp_port=port,
            tls="starttls",
            auth="password",
            username=USER,
            password=PASSWORD,
            tls_ca_file=cert.cert,
        )
        email = sink.render([golden_alerts()[Severity.HIGH]], cfg)
        assert sink.send(email, cfg, HTTP).startswith("250 ")
    assert handler.received[0].login == USER.encode()
    _check_message(handler.received[0], email, cfg)


def test_smtp_implicit_tls(cert: Cert) -> None:
    handler = Recorder()
    with smtp_server(handler, ssl_context=cert.server_context()) as port:
        cfg = config(smtp_port=port, tls="implicit", ca_file=cert.cert)
        email = sink.render([golden_alerts()[Severity.INFO]], cfg)
        assert sink.send(email, cfg, HTTP).startswith("250 ")
    _check_message(handler.received[0], email, cfg)


def test_smtp_wrong_password_is_permanent_and_never_echoed(cert: Cert) -> None:
    handler = Recorder()
    with smtp_server(
        handler, tls_context=cert.server_context(), authenticator=authenticator, auth_required=True
    ) as port:
        wrong = PASSWORD + "-wrong"
        cfg = config(
            smtp_port=port,
            tls="starttls",
            auth="password",
            username=USER,
            password=wrong,
            tls_ca_file=cert.cert,
        )
        with pytest.raises(PermanentError) as info:
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    assert "authentication failed (535" in str(info.value)
    _secret_free(info.value, wrong)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert handler.received == []


def test_smtp_untrusted_certificate_is_permanent(cert: Cert) -> None:
    with smtp_server(Recorder(), tls_context=cert.server_context()) as port:
        cfg = config(smtp_port=port, tls="starttls", auth="password", username=USER, password=PASSWORD)
        with pytest.raises(PermanentError, match="certificate verification failed") as info:
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    _secret_free(info.value)


def test_smtp_starttls_not_offered_is_permanent() -> None:
    with smtp_server(Recorder()) as port:
        cfg = config(smtp_port=port, tls="starttls")
        with pytest.raises(PermanentError, match="does not support"):
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)


def test_xoauth2_initial_response_format() -> None:
    raw = sink.xoauth2_string("user@contoso.com", "tok")
    assert raw == "user=user@contoso.com\x01auth=Bearer tok\x01\x01"
    # what goes on the wire after "AUTH XOAUTH2 " (the example of Microsoft's OAuth-for-SMTP page)
    assert base64.b64encode(raw.encode()).decode() == "dXNlcj11c2VyQGNvbnRvc28uY29tAWF1dGg9QmVhcmVyIHRvawEB"


def test_smtp_xoauth2_with_an_injected_token_provider(cert: Cert) -> None:
    handler = OAuthRecorder()
    scopes: list[str] = []
    with smtp_server(handler, tls_context=cert.server_context(), auth_required=True) as port:
        cfg = config(smtp_port=port, tls="starttls", auth="xoauth2", tls_ca_file=cert.cert)
        email = sink.render([golden_alerts()[Severity.CRITICAL]], cfg)
        assert sink.send(email, cfg, HTTP, token_provider=static(calls=scopes)).startswith("250 ")
    assert scopes == [sink.SMTP_SCOPE]
    assert handler.responses == [f"user={USER}\x01auth=Bearer {TOKEN}\x01\x01".encode()]
    _check_message(handler.received[0], email, cfg)


def test_smtp_xoauth2_rejected_token_is_permanent_and_never_echoed(cert: Cert) -> None:
    handler = OAuthRecorder(token="the-right-token")
    with smtp_server(handler, tls_context=cert.server_context(), auth_required=True) as port:
        cfg = config(smtp_port=port, tls="starttls", auth="xoauth2", username=USER, tls_ca_file=cert.cert)
        with pytest.raises(PermanentError, match=r"authentication failed \(535") as info:
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP, token_provider=static())
    _secret_free(info.value)
    assert len(handler.responses) == 1 and handler.received == []


def test_smtp_xoauth2_not_offered_is_permanent(cert: Cert) -> None:
    with smtp_server(Recorder(), tls_context=cert.server_context()) as port:
        cfg = config(smtp_port=port, tls="starttls", auth="xoauth2", tls_ca_file=cert.cert)
        with pytest.raises(PermanentError, match="does not offer AUTH XOAUTH2"):
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP, token_provider=static())


@pytest.mark.parametrize(
    ("handler", "error", "text"),
    [
        (Recorder(data_reply="451 4.3.0 Try again later"), TransientError, "message refused (451"),
        (Recorder(data_reply="554 5.6.0 Message rejected"), PermanentError, "message refused (554"),
        (
            Recorder(rcpt_replies={a: "550 5.1.1 User unknown" for a in TO}),
            PermanentError,
            "recipient(s) refused (550",
        ),
        (
            Recorder(rcpt_replies={a: "450 4.2.0 Greylisted" for a in TO}),
            TransientError,
            "recipient(s) refused (450",
        ),
    ],
)
def test_smtp_replies_are_classified(handler: Recorder, error: type[SinkError], text: str) -> None:
    with smtp_server(handler) as port:
        cfg = config(smtp_port=port)
        with pytest.raises(error) as info:
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    assert type(info.value) is error and text in str(info.value)


def test_smtp_some_recipients_refused_is_a_success_that_says_so() -> None:
    handler = Recorder(rcpt_replies={TO[1]: "550 5.1.1 User unknown"})
    with smtp_server(handler) as port:
        cfg = config(smtp_port=port)
        answer = sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    assert answer.endswith("; 1 of 2 recipients refused")
    assert handler.received[0].rcpt_tos == [TO[0]]


@pytest.mark.parametrize(
    ("greeting", "error", "text"),
    [
        (None, TransientError, "closed the connection"),
        (b"421 4.3.2 Service not available\r\n", TransientError, "(421"),
        (b"554 5.7.1 Go away\r\n", PermanentError, "(554"),
    ],
)
def test_smtp_greeting_failures(greeting: bytes | None, error: type[SinkError], text: str) -> None:
    with raw_server(greeting) as port:
        cfg = config(smtp_port=port)
        with pytest.raises(error) as info:
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    assert type(info.value) is error and text in str(info.value)


def test_smtp_timeout_and_refused_connection_are_transient() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts (backlog), never greets
        cfg = config(smtp_port=silent.getsockname()[1], timeout_seconds=0.3)
        with pytest.raises(TransientError, match=r"timed out after 0\.3 s"):
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    cfg = config(smtp_port=free_port())
    with pytest.raises(TransientError, match=r"connection failed \(ConnectionRefusedError\)"):
        sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)


def test_smtp_missing_ca_file_is_a_config_error(tmp_path: Path, plugins: list[Plugin]) -> None:
    for key in ("tls_ca_file", "ca_file"):  # ca_file: the old name, read as tls_ca_file
        spec = {"type": "email", "sender": SENDER, "to": TO, "smtp_host": "h", key: str(tmp_path / "no.pem")}
        with pytest.raises(ConfigError) as raised:
            build({"sinks": {"relay": spec}}, plugins, "t.yaml", env={})
        assert raised.value.problems == [
            "sinks.relay.tls_ca_file: Value error, cannot read the CA file (FileNotFoundError)"
        ]


@pytest.mark.parametrize(("tls", "how"), [("starttls", "tls_ca_file"), ("implicit", "tls_ca_pem")])
def test_smtp_trusting_a_private_ca_delivers(private_ca: PrivateCA, tls: str, how: str) -> None:
    """A relay whose certificate chains to a private CA (not self-signed): trusted through the
    sink's tls_ca_file / tls_ca_pem, delivered through the Deliverer under the sink's name."""
    handler = Recorder()
    context = {"tls_context" if tls == "starttls" else "ssl_context": private_ca.server_context()}
    trust = str(private_ca.ca_file) if how == "tls_ca_file" else private_ca.ca_pem
    with smtp_server(handler, **context) as port:
        spec = {"type": "email", "sender": SENDER, "to": TO, "smtp_host": "127.0.0.1", "smtp_port": port,
                "tls": tls, "timeout_seconds": 2, how: trust}  # fmt: skip
        store = SqliteStore()
        loaded = build({"sinks": {"relay": spec}}, [], "t.yaml", env={}).sinks
        deliverer = Deliverer(loaded, store, Policy(), HTTP, sleep=lambda s: None)
        store.merge_alert(golden_alerts()[Severity.HIGH])
        deliverer.enqueue(golden_alerts()[Severity.HIGH], "new")
        outcome = deliverer.run()
    assert outcome.sent == {"relay": 1} and len(handler.received) == 1


def test_smtp_without_the_private_ca_is_a_named_permanent_error(private_ca: PrivateCA) -> None:
    with smtp_server(Recorder(), tls_context=private_ca.server_context()) as port:
        spec = {"type": "email", "sender": SENDER, "to": TO, "smtp_host": "127.0.0.1", "smtp_port": port,
                "tls": "starttls", "timeout_seconds": 2}  # fmt: skip
        relay = build({"sinks": {"relay": spec}}, [], "t.yaml", env={}).sinks["relay"]
        with pytest.raises(PermanentError) as raised:
            relay.send(relay.render([golden_alerts()[Severity.LOW]]), HTTP)
    assert str(raised.value).startswith("relay (email): TLS certificate verification failed (")
    assert str(raised.value).endswith("; set tls_ca_file for a private CA")


# --- tokens ------------------------------------------------------------------------------------------------


def test_token_provider_failures() -> None:
    def broken(scope: str) -> str:
        raise RuntimeError(f"AADSTS7000215 invalid client secret {PASSWORD}")

    def refuses(scope: str) -> str:
        raise PermanentError("email: no credential configured")

    cfg = config(transport="graph", graph_url="http://127.0.0.1:9/v1.0")
    email = sink.render([golden_alerts()[Severity.LOW]], cfg)
    with pytest.raises(TransientError, match=r"could not get an access token \(RuntimeError\)") as info:
        sink.send(email, cfg, HTTP, token_provider=broken)
    _secret_free(info.value)
    with pytest.raises(PermanentError, match="no credential configured"):
        sink.send(email, cfg, HTTP, token_provider=refuses)
    with pytest.raises(PermanentError, match="no usable token"):
        sink.send(email, cfg, HTTP, token_provider=static("bad\r\ntoken"))


def test_default_token_provider_explains_a_missing_azure_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity", None)  # import fails as if not installed
    sink._credential.cache_clear()
    cfg = config(transport="graph", graph_url="http://127.0.0.1:9/v1.0", tenant_id="t", client_id="c",
                 client_secret="graph-secret-value")  # fmt: skip
    try:
        with pytest.raises(PermanentError, match="pip install azure-identity") as info:
            sink.send(sink.render([golden_alerts()[Severity.LOW]], cfg), cfg, HTTP)
    finally:
        sink._credential.cache_clear()
    _secret_free(info.value, "graph-secret-value")


def test_default_token_provider_picks_the_credential() -> None:
    identity = pytest.importorskip("azure.identity", reason="azure-identity is an optional dependency")
    sink._credential.cache_clear()
    try:
        assert isinstance(sink._credential("tenant", "client", "secret"), identity.ClientSecretCredential)
        assert isinstance(sink._credential(None, "client", None), identity.ManagedIdentityCredential)
        assert sink._credential("tenant", "client", "secret") is sink._credential(
            "tenant", "client", "secret"
        )
    finally:
        sink._credential.cache_clear()


# --- Graph sendMail against the loopback server ---------------------------------------------------------


def test_graph_sends_the_exact_request() -> None:
    scopes: list[str] = []
    with serve(Answer(202)) as server:
        cfg = config(transport="graph", graph_url=f"{server.url}/v1.0/", smtp_host=None, tls="starttls")
        email = sink.render([golden_alerts()[Severity.CRITICAL], injection_alert()], cfg)
        answer = sink.send(email, cfg, HTTP, token_provider=static(calls=scopes))
    assert answer == "202 Accepted"
    assert scopes == [f"{server.url}/.default"]
    assert len(server.requests) == 1
    req = server.requests[0]
    assert req.method == "POST" and req.path == f"/v1.0/users/{SENDER}/sendMail"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["content-type"] == "application/json"
    body = json.loads(req.body)
    assert body == sink.graph_payload(email, cfg)
    assert body["message"]["toRecipients"] == [{"emailAddress": {"address": a}} for a in TO]
    assert body["saveToSentItems"] is False
    content = body["message"]["body"]["content"]
    assert "<script>" not in content and "&lt;script&gt;" in content and TRUNCATED in content
    assert "http://evil" not in req.body.decode()


def test_graph_default_scope() -> None:
    assert sink.graph_scope(sink.GRAPH_URL) == "https://graph.microsoft.com/.default"


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [
        (Answer(400, b'{"error":{"code":"ErrorInvalidRecipients"}}'), PermanentError, None),
        (Answer(401, b'{"error":{"code":"InvalidAuthenticationToken"}}'), PermanentError, None),
        (Answer(403, b'{"error":{"code":"ErrorAccessDenied"}}'), PermanentError, None),
        (Answer(429, headers={"Retry-After": "7"}), TransientError, 7.0),
        (Answer(500), TransientError, None),
        (Answer(503, headers={"Retry-After": "2"}), TransientError, 2.0),
        (Answer(202, delay=1.0), TransientError, None),
        (Answer(202, drop=True), TransientError, None),
    ],
)
def test_graph_answers_are_classified(
    answer: Answer, error: type[SinkError], retry_after: float | None
) -> None:
    with serve(answer) as server:
        # A short timeout only where the server delays: elsewhere the machine's load never decides.
        timeout = 0.3 if answer.delay else 10.0
        cfg = config(transport="graph", graph_url=f"{server.url}/v1.0", timeout_seconds=timeout)
        email = sink.render([golden_alerts()[Severity.HIGH]], cfg)
        with pytest.raises(error) as info:
            sink.send(email, cfg, HTTP, token_provider=static())
    assert type(info.value) is error and str(info.value).startswith("email: ")
    if isinstance(info.value, TransientError):
        assert info.value.retry_after == retry_after
    _secret_free(info.value, server.url, "127.0.0.1", SENDER)
