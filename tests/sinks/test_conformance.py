"""One conformance suite, run for every sink module that discovery finds (``pkgutil.iter_modules`` over
the ``sinks`` package, as :func:`pimwatch.config._sinks` finds a ``type``), after Alertmanager's
notify/test/test.go. Against real servers: HTTPS on loopback with a private CA (tests/loopback.py),
aiosmtpd for e-mail, a TLS listener for syslog.

What every sink passes:

* **status table** (:data:`pimwatch.testing.sinks.STATUS_TABLE`): 2xx delivered, 429 and 5xx transient,
  other statuses permanent; an untrusted certificate permanent; a refused connection transient;
* **no secret in any error**: a secret-looking config value (key, token, password, signed URL) never
  appears in a raised error, its chained exceptions, the logs, a config error or what ``render`` makes;
* **pure render**: the same input gives the same bytes, the alert is not changed, no socket, process or
  file write is touched (an audit hook fails the test);
* **empty batch**: a ``BATCH`` sink given no alerts sends nothing and contacts no one; a one-alert sink
  refuses anything but one alert with a ValueError naming itself;
* **100 KB injection**: inert (escaped per target: Markdown for Teams, HTML for Opsgenie and e-mail,
  CEF for syslog, JSON escapes for the JSON sinks, no raw line or bidi characters where they could forge
  a line or a field) and bounded (each request or message under the target's limit, the cut marked).

The subset that applies where there is no HTTP: ``email`` runs the status table on its Graph transport
and the SMTP replies (2xx delivered, 4xx transient, 5xx permanent) on aiosmtpd; ``syslog`` has no
answers and no secrets (TLS and connection failures only); ``console`` and ``file`` have neither a
network nor a secret: pure render, empty batch and injection only. ``file`` writes the alert record
verbatim (the same as ``--format jsonl``: the evidence, one JSON line per alert): inert, not cut.
"""

from __future__ import annotations

import json
import logging
import pkgutil
import re
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from pimwatch.config import ConfigError, build, sink_module, sinks_package
from pimwatch.delivery.sink import MARK, Http, PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert
from pimwatch.detection.detector import discover
from pimwatch.testing.sinks import STATUS_TABLE, deliver, injection_alert, leaked, sample_alert, strings
from tests.loopback import Answer, Server
from tests.sinks.conftest import Recorder, StaticToken, password_authenticator, smtp_server
from tests.sinks.private_ca import PrivateCA, serve_https
from tests.sinks.test_syslog import closed_port, stream_listener

SINK_TYPES = sorted(m.name for m in pkgutil.iter_modules(sinks_package().__path__))

SECRET = "s3cr3t-K3Y-0f-the-c0nf0rmance-suite-9f8e7d"  # a secret-looking config value
WHSEC = "whsec_c2VjcmV0LWtleS1mb3ItdGhlLWNvbmZvcm1hbmNlLXN1aXRl"  # a Standard Webhooks secret
SPLUNK_TOKEN = "5ec2e7a1-0c0f-4b1d-9e5e-c0nf0rmance42"
GUID = "7d1c7a44-2b7e-4f0e-9d51-7c2a3d9e8b10"
USER = "pim-alerts@contoso.com"


# --- the I/O guard: render must not touch the network, processes or files ----------------------------

_GUARD: list[bool] = [False]
_IO_EVENTS = (
    "socket.connect",
    "socket.bind",
    "socket.sendto",
    "socket.sendmsg",
    "subprocess.Popen",
    "os.system",
)


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _GUARD[0]:
        return
    writing = (
        event == "open" and len(args) > 1 and isinstance(args[1], str) and any(c in args[1] for c in "wax+")
    )
    if event in _IO_EVENTS or writing:
        _GUARD[0] = False
        raise AssertionError(f"render did I/O: {event}")


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only acts inside no_io()


@contextmanager
def no_io() -> Iterator[None]:
    _GUARD[0] = True
    try:
        yield
    finally:
        _GUARD[0] = False


# --- one target per sink ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """How the suite configures, reaches and checks one sink type."""

    kind: str  # "https" (a loopback HTTPS server), "smtp", "syslog" or "local"
    spec: Callable[[str, str | None], dict[str, Any]]  # (server URL or port, CA file or None) -> config
    secrets: tuple[str, ...] = ()
    bad: dict[str, Any] = field(default_factory=dict)  # a secret-holding value the config must refuse
    max_bytes: int | None = None  # the bound on one request / message (None: not cut, said why above)
    inert: Callable[[Any, list[bytes]], None] = lambda rendered, wire: None
    send_kwargs: Callable[[], dict[str, Any]] = dict


def _unescaped(text: str) -> str:
    return re.sub(r"\\.", "", text, flags=re.S)


def _teams_inert(rendered: Any, wire: list[bytes]) -> None:
    for text in strings(rendered["attachments"][0]["content"]["body"]):
        bare = _unescaped(text)
        assert "](" not in bare and "<" not in bare and "**" not in bare and "`" not in bare, text[:120]
        assert "\u202e" not in text
    assert not any("\u202e".encode() in body for body in wire)


def _json_inert(rendered: Any, wire: list[bytes]) -> None:
    """JSON bodies: parseable, no raw bidi or line characters (escaped), the forged key only as text."""
    for body in wire:
        assert "\u202e".encode() not in body and b"\n" not in body and b"\r" not in body
        decoder, text, i = json.JSONDecoder(), body.decode(), 0
        while i < len(text):  # Splunk HEC: objects back to back
            doc, i = decoder.raw_decode(text, i)
            assert "forged" not in json.dumps(list(_keys(doc)))


def _keys(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield k
            yield from _keys(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _keys(v)


def _opsgenie_inert(rendered: Any, wire: list[bytes]) -> None:
    _json_inert(rendered, wire)
    body = rendered["body"]
    for name in ("message", "description", "entity"):
        assert "<script" not in body[name] and "<at>" not in body[name], name


def _sentinel_inert(rendered: Any, wire: list[bytes]) -> None:
    from sinks import sentinel

    for row in (row for batch in rendered for row in batch):
        assert list(row) == [name for name, _ in sentinel.COLUMNS]
        assert not any(re.search(r"[\ud800-\udfff]", s) for s in strings(row))


def _email_inert(rendered: Any, wire: list[bytes]) -> None:
    assert "<script" not in rendered.html and "<at>" not in rendered.html
    assert "\r" not in rendered.subject and "\n" not in rendered.subject
    assert "[x](http[:]//evil)" in rendered.text  # the title's planted URL is defanged: no link
    assert "\u202e" not in rendered.text + rendered.html + rendered.subject


def _syslog_inert(rendered: Any, wire: list[bytes]) -> None:
    for msg in rendered:
        assert b"\n" not in msg and b"\r" not in msg
        cef = msg.decode().split(" - - - ", 1)[1]
        header = re.split(r"(?<!\\)\|", cef, maxsplit=7)
        assert header[0] == "CEF:0" and header[6] == "10", header[:7]  # no forged header field


def _console_inert(rendered: Any, wire: list[bytes]) -> None:
    assert rendered.count("\n") == 1 and rendered.endswith("\n")
    assert not re.search(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", rendered)


def _file_inert(rendered: Any, wire: list[bytes]) -> None:
    assert rendered.count(b"\n") == 1 and rendered.endswith(b"\n")  # one line: no forged record


TARGETS: dict[str, Target] = {
    "teams": Target(
        "https",
        lambda url, ca: {
            "webhook_url": f"{url}/workflows/x/invoke?api-version=1&sig={SECRET}",
            "tls_ca_file": ca,
        },
        secrets=(SECRET,),
        bad={"webhook_url": f"http://prod.logic.azure.com/invoke?sig={SECRET}"},
        max_bytes=20_000,
        inert=_teams_inert,
    ),
    "webhook": Target(
        "https",
        lambda url, ca: {"url": f"{url}/hook?token={SECRET}", "secret": WHSEC, "tls_ca_file": ca},
        secrets=(SECRET, WHSEC),
        bad={"url": f"ftp://soar.example.com/{SECRET}", "secret": WHSEC + "!"},
        max_bytes=256 * 1024,
        inert=_json_inert,
    ),
    "pagerduty": Target(
        "https",
        lambda url, ca: {"routing_key": SECRET, "url": f"{url}/v2/enqueue", "tls_ca_file": ca},
        secrets=(SECRET,),
        bad={"url": f"http://events.example.com/{SECRET}"},
        max_bytes=16 * 1024,
        inert=_json_inert,
    ),
    "opsgenie": Target(
        "https",
        lambda url, ca: {"api_key": SECRET, "api_url": url, "tls_ca_file": ca},
        secrets=(SECRET,),
        bad={"api_url": f"http://api.example.com/{SECRET}"},
        max_bytes=32 * 1024,  # description 15,000 + details 8,000 characters + the short fields
        inert=_opsgenie_inert,
    ),
    "splunk": Target(
        "https",
        lambda url, ca: {"url": url, "token": SPLUNK_TOKEN, "host": "pimwatch", "tls_ca_file": ca},
        secrets=(SPLUNK_TOKEN,),
        bad={"token": SPLUNK_TOKEN + " and a space"},
        max_bytes=1_000_000,
        inert=_json_inert,
    ),
    "sentinel": Target(
        "https",
        lambda url, ca: {
            "endpoint": url,
            "rule_id": "dcr-0123456789abcdef0123456789abcdef",
            "tenant_id": GUID,
            "client_id": GUID,
            "client_secret": SECRET,
            "tls_ca_file": ca,
        },
        secrets=(SECRET, "eyJ0eXAi.conformance-" + SECRET),
        bad={"endpoint": f"https://dce.example.com/{SECRET}"},
        max_bytes=1_000_000,  # per call; each row is also under MAX_ROW_BYTES (checked by inert)
        inert=_sentinel_inert,
        send_kwargs=lambda: {"credential": StaticToken("eyJ0eXAi.conformance-" + SECRET)},
    ),
    "email": Target(
        "smtp",
        lambda port, ca: {
            "sender": USER,
            "to": ["soc@contoso.com"],
            "smtp_host": "127.0.0.1",
            "smtp_port": int(port),
            "tls": "implicit",
            "auth": "password",
            "username": USER,
            "password": SECRET,
            "tls_ca_file": ca,
        },
        secrets=(SECRET,),
        bad={"graph_url": f"http://graph.example.com/{SECRET}"},
        max_bytes=2_000_000,  # text and HTML bodies, each at most 1 MB
        inert=_email_inert,
    ),
    "syslog": Target(
        "syslog",
        lambda port, ca: {"host": "127.0.0.1", "port": int(port), "transport": "tls", "tls_ca_file": ca},
        max_bytes=8192,
        inert=_syslog_inert,
    ),
    "console": Target("local", lambda _, ca: {"max_title_chars": 300}, max_bytes=1024, inert=_console_inert),
    "file": Target("local", lambda path, ca: {"path": path}, inert=_file_inert),
}


def module(sink_type: str) -> ModuleType:
    found = sink_module(sink_type)
    assert found is not None
    return found


OFFLINE = {
    "https": "https://127.0.0.1:9",
    "smtp": "9",
    "syslog": "9",
    "local": "pimwatch-never-written.jsonl",
}


def make(sink_type: str, where: str | None = None, ca: str | None = None, **extra: Any) -> Any:
    """The sink's config for a server at ``where`` (None: an address render never contacts)."""
    where = OFFLINE[TARGETS[sink_type].kind] if where is None else where
    spec = {"type": sink_type, "timeout_seconds": 2, **TARGETS[sink_type].spec(where, ca), **extra}
    if ca is None:
        spec.pop("tls_ca_file", None)
    return module(sink_type).Config.model_validate(spec)


def send(sink_type: str, alerts: list[Alert], cfg: Any) -> str:
    sink = module(sink_type)
    return deliver(sink, sink.render(alerts, cfg), cfg, **TARGETS[sink_type].send_kwargs())


def assert_secret_free(target: Target, error: BaseException, logs: str) -> None:
    chained = error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    assert chained, "a chained exception would print the client's own message (URLs, headers)"
    assert leaked(target.secrets, str(error), repr(error), error.args, logs) == []


def wire_bodies(server: Server, sink_type: str) -> list[bytes]:
    import gzip

    bodies = [r.body for r in server.requests]
    return [gzip.decompress(b) for b in bodies] if sink_type == "sentinel" else bodies


HTTPS = [t for t in SINK_TYPES if t in TARGETS and TARGETS[t].kind == "https"]
SECRETS = [t for t in SINK_TYPES if t in TARGETS and TARGETS[t].secrets]


# --- discovery --------------------------------------------------------------------------------------------


def test_every_discovered_sink_has_a_conformance_target() -> None:
    """A new sink module is checked too: it needs its Target above (how to configure and reach it)."""
    assert SINK_TYPES, "discovery found no sink module"
    missing = [t for t in SINK_TYPES if t not in TARGETS]
    assert missing == [], f"add a Target for {missing} to tests/sinks/test_conformance.py"
    assert sorted(TARGETS) == SINK_TYPES, "a Target for a sink that discovery does not find"


# --- status table ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sink_type", HTTPS)
def test_status_table(sink_type: str, private_ca: PrivateCA, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    target, alert = TARGETS[sink_type], sample_alert()
    with serve_https(private_ca) as server:
        cfg = make(sink_type, server.url, str(private_ca.ca_file))
        for status, expected in STATUS_TABLE:
            server.script(Answer(status, headers={"Retry-After": "7"} if status == 429 else {}))
            before = len(server.requests)
            if expected is None:
                assert send(sink_type, [alert], cfg), status
            else:
                with pytest.raises(SinkError) as info:
                    send(sink_type, [alert], cfg)
                assert type(info.value) is expected, (status, info.value)
                assert f"HTTP {status}" in str(info.value)
                assert_secret_free(target, info.value, caplog.text)
                if status == 429:
                    assert isinstance(info.value, TransientError) and info.value.retry_after == 7
            assert len(server.requests) == before + 1, f"{status}: one request, no retry inside the sink"


@pytest.mark.parametrize("sink_type", HTTPS)
def test_untrusted_certificate_is_permanent(sink_type: str, private_ca: PrivateCA) -> None:
    with serve_https(private_ca) as server:
        cfg = make(sink_type, server.url, None)  # the system store does not know the private CA
        with pytest.raises(PermanentError, match="TLS certificate verification failed") as info:
            send(sink_type, [sample_alert()], cfg)
    assert server.requests == []
    assert_secret_free(TARGETS[sink_type], info.value, "")


@pytest.mark.parametrize("sink_type", HTTPS)
@pytest.mark.parametrize("how", ["timeout", "dropped"])
def test_no_answer_is_transient(sink_type: str, how: str, private_ca: PrivateCA) -> None:
    """A server that never answers within timeout_seconds (it waits for the test, not for a clock), or
    closes the connection without answering. The dropped case gets a long timeout: the drop must be
    what fails the send, whatever the machine's load (a short one would race the TLS handshake)."""
    release = threading.Event()
    answer = Answer(hold=release) if how == "timeout" else Answer(drop=True)
    timeout = 0.3 if how == "timeout" else 30.0
    try:
        with serve_https(private_ca, answer) as server, pytest.raises(TransientError) as info:
            send(
                sink_type,
                [sample_alert()],
                make(sink_type, server.url, str(private_ca.ca_file), timeout_seconds=timeout),
            )
            release.set()
    finally:
        release.set()
    expected = "timed out after 0.3 s" if how == "timeout" else "connection failed"
    assert expected in str(info.value), info.value
    assert_secret_free(TARGETS[sink_type], info.value, "")


@pytest.mark.parametrize("sink_type", HTTPS)
def test_refused_connection_is_transient(sink_type: str) -> None:
    sock, port = closed_port()
    with sock, pytest.raises(TransientError) as info:
        send(sink_type, [sample_alert()], make(sink_type, f"https://127.0.0.1:{port}"))
    assert "connection failed" in str(info.value)
    assert_secret_free(TARGETS[sink_type], info.value, "")


def test_email_graph_follows_the_status_table(private_ca: PrivateCA) -> None:
    """E-mail's HTTP transport (Graph sendMail) through the same table; the token never leaks."""
    from sinks import email

    token = "eyJ0eXAi.graph-" + SECRET
    with serve_https(private_ca) as server:
        graph = {"transport": "graph", "graph_url": server.url, "auth": "none"}
        cfg = make("email", "25", str(private_ca.ca_file), **graph)
        for status, expected in STATUS_TABLE:
            server.script(Answer(status))
            rendered = email.render([sample_alert()], cfg)
            if expected is None:
                assert deliver(email, rendered, cfg, token_provider=lambda _: token).startswith(str(status))
                continue
            with pytest.raises(SinkError) as info:
                deliver(email, rendered, cfg, token_provider=lambda _: token)
            assert type(info.value) is expected, (status, info.value)
            assert leaked([token], str(info.value)) == []


@pytest.mark.parametrize(
    ("reply", "expected"),
    [("250 OK", None), ("451 4.3.0 Try later", TransientError), ("554 5.6.0 No", PermanentError)],
)
def test_email_smtp_replies(reply: str, expected: type[SinkError] | None, private_ca: PrivateCA) -> None:
    handler = Recorder(data_reply=reply)
    kwargs = {
        "ssl_context": private_ca.server_context(),
        "authenticator": password_authenticator(USER, SECRET),
        "auth_require_tls": False,  # implicit TLS: aiosmtpd does not count it as TLS
    }
    with smtp_server(handler, **kwargs) as port:
        cfg = make("email", str(port), str(private_ca.ca_file))
        if expected is None:
            assert send("email", [sample_alert()], cfg).startswith("250")
            assert len(handler.received) == 1
            return
        with pytest.raises(SinkError) as info:
            send("email", [sample_alert()], cfg)
    assert type(info.value) is expected
    assert_secret_free(TARGETS["email"], info.value, "")


def test_email_untrusted_certificate_and_wrong_password_are_permanent(private_ca: PrivateCA) -> None:
    kwargs = {
        "ssl_context": private_ca.server_context(),
        "authenticator": password_authenticator(USER, "other"),
        "auth_require_tls": False,
    }
    with smtp_server(Recorder(), **kwargs) as port:
        with pytest.raises(PermanentError, match="TLS certificate verification failed") as untrusted:
            send("email", [sample_alert()], make("email", str(port), None))
        with pytest.raises(PermanentError, match="authentication failed") as refused:
            send("email", [sample_alert()], make("email", str(port), str(private_ca.ca_file)))
    for error in (untrusted.value, refused.value):
        assert_secret_free(TARGETS["email"], error, "")


def test_syslog_untrusted_certificate_is_permanent_and_refused_is_transient(private_ca: PrivateCA) -> None:
    untrusted = pytest.raises(PermanentError, match="TLS certificate verification failed")
    with stream_listener(private_ca.server_context()) as listener, untrusted:
        send("syslog", [sample_alert()], make("syslog", str(listener.port), None))
    sock, port = closed_port()
    with sock, pytest.raises(TransientError, match="connection failed"):
        send("syslog", [sample_alert()], make("syslog", str(port), None))


# --- secrets -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sink_type", SECRETS)
def test_no_secret_in_config_errors_or_rendered_payloads(sink_type: str) -> None:
    target = TARGETS[sink_type]
    spec = {"type": sink_type, **target.spec(OFFLINE[target.kind], None), **target.bad}
    spec.pop("tls_ca_file", None)
    with pytest.raises(ConfigError) as info:
        build({"sinks": {"x": spec}}, discover(), "t", env={})
    assert info.value.problems and all(p.startswith("sinks.x.") for p in info.value.problems)
    assert leaked(target.secrets, str(info.value), *info.value.problems) == []
    from pimwatch.delivery.sink import preview

    rendered = module(sink_type).render([sample_alert()], make(sink_type))
    assert leaked(target.secrets, preview(rendered)) == [], "render output goes to goldens and previews"


# --- pure render ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sink_type", SINK_TYPES)
def test_render_is_pure(sink_type: str, tmp_path: Path) -> None:
    from pimwatch.delivery.sink import preview

    sink = module(sink_type)
    cfg = make(sink_type, str(tmp_path / "alerts.jsonl") if sink_type == "file" else None)
    alerts = [sample_alert(), injection_alert(events=30)]
    before = [a.to_dict() for a in alerts]
    batch = alerts if getattr(sink, "BATCH", False) else alerts[:1]
    with no_io():
        first = sink.render(batch, cfg)
        second = sink.render(batch, cfg)
    assert preview(first) == preview(second) and first == second
    assert [a.to_dict() for a in alerts] == before, "render changed its input"
    assert not (tmp_path / "alerts.jsonl").exists()


# --- empty batch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sink_type", SINK_TYPES)
def test_empty_batch(sink_type: str, tmp_path: Path, private_ca: PrivateCA) -> None:
    sink = module(sink_type)
    if not getattr(sink, "BATCH", False):
        with pytest.raises(ValueError, match=sink_type):
            sink.render([], make(sink_type))
        with pytest.raises(ValueError, match=sink_type):
            sink.render([sample_alert(), sample_alert()], make(sink_type))
        return
    with serve_https(private_ca) as server:
        where = {"https": server.url, "smtp": "9", "syslog": "9", "local": str(tmp_path / "out.jsonl")}
        cfg = make(sink_type, where[TARGETS[sink_type].kind], str(private_ca.ca_file))
        with no_io():
            rendered = sink.render([], cfg)
            answer = sink.send(rendered, cfg, Http(), **TARGETS[sink_type].send_kwargs())
    assert server.requests == [] and isinstance(answer, str) and answer
    assert not (tmp_path / "out.jsonl").exists()


# --- a 100 KB injection: inert and bounded --------------------------------------------------------------


@pytest.mark.parametrize("sink_type", SINK_TYPES)
def test_injection_is_inert_and_bounded(sink_type: str, private_ca: PrivateCA, tmp_path: Path) -> None:
    from pimwatch.delivery.sink import preview

    target, sink = TARGETS[sink_type], module(sink_type)
    alert = injection_alert()
    wire: list[bytes] = []
    if target.kind == "https":
        with serve_https(private_ca) as server:
            cfg = make(sink_type, server.url, str(private_ca.ca_file))
            rendered = sink.render([alert], cfg)
            send(sink_type, [alert], cfg)
            wire = wire_bodies(server, sink_type)
        assert wire, "nothing reached the server"
    else:
        cfg = make(sink_type, str(tmp_path / "a.jsonl") if sink_type == "file" else None)
        rendered = sink.render([alert], cfg)
        if isinstance(rendered, list):
            wire = [r if isinstance(r, bytes) else r.encode() for r in rendered]
        else:
            wire = [preview(rendered).encode()]
    target.inert(rendered, wire)
    if target.max_bytes is None:
        return  # file: the verbatim record (see the module docstring)
    shown = preview(rendered).replace("\\", "")  # Teams escapes the marker: …\[truncated\]
    assert MARK in shown, "a cut without the visible marker"
    sizes = [len(b) for b in wire]
    assert max(sizes) <= target.max_bytes, (sizes, target.max_bytes)
