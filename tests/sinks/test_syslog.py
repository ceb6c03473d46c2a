"""CEF over syslog sink: golden messages, real UDP / TCP / TLS listeners in the test process, every
message parsed back with a strict RFC 5424 + CEF parser that honours the escaping, framing, the size
bound with its marker, and transport errors (closed port, timeout, certificate verification)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import detectors.assignment_privileged as assignment_privileged
import detectors.breakglass_signin as breakglass_signin
from pimwatch import __version__
from pimwatch.config import ConfigError, build
from pimwatch.delivery.sink import TRUNCATED, PermanentError, TransientError, json_text
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import discover
from pimwatch.testing.sinks import case_alerts, sample_alert
from pimwatch.testing.sinks import check_golden as golden
from pimwatch.testing.sinks import deliver as kit_deliver
from sinks import syslog

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "syslog"
EVENTS = [("2026-03-10T02:17:00.000000Z", "rec-1"), ("2026-03-10T02:40:00.250000Z", "rec-2")]
HOSTILE = "a|b\\c=d\ne\rf [x](http://evil) <script>alert(1)</script> <at>admin</at> Zoë 管理者 🚨 x = y \\n"


def config(port: int = 514, **extra: Any) -> syslog.Config:
    values: dict[str, Any] = {"hostname": "collector01", "timeout_seconds": 1.0, **extra}
    return syslog.Config(type="syslog", host="127.0.0.1", port=port, **values)


BG = {
    "type": "account",
    "aadUserId": "c0ffee00-0000-4000-8000-00000000b001",
    "upn": "bg-admin01@contoso.onmicrosoft.com",
}
ENTITIES = [
    BG,
    {"type": "cloud-application", "appId": "c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "name": "Azure Portal"},
    {"type": "ip", "address": "185.220.101.4"},
]


def alert(severity: Severity = Severity.CRITICAL, **changes: Any) -> Alert:
    fields = {
        "id": f"{severity.value}-0123456789abcdef",
        "mitre": ["T1078.004", "T1098"],
        "tactics": ["InitialAccess", "PrivilegeEscalation"],
        "entities": ENTITIES,
        "events": EVENTS,
    }
    return sample_alert(severity, **{**fields, **changes})


def hostile() -> Alert:
    """Every CEF separator, line breaks, markup and non-ASCII, small enough to arrive uncut."""
    return alert(
        id="h" * 32,
        title=HOSTILE,
        summary="summary " + HOSTILE,
        principal={"id": "id|=\\", "upn": "evil|user\\=x\n@contoso.com", "name": "n"},
        context={"justification": HOSTILE, "actor": {"upn": "mallory=1|2\\3@evil.test"}, "k=|\\": [1, "é"]},
        entities=[
            {"type": "account", "aadUserId": HOSTILE, "upn": HOSTILE},
            {"type": "ip", "address": "192.0.2.1 src=6.6.6.6"},  # not an address: no src
            {"type": "ip", "address": "2001:db8::1"},
        ],
        tactics=[HOSTILE],
    )


def huge() -> Alert:
    big = HOSTILE + "A" * 100_000
    return alert(
        id="b" * 32,
        title=big,
        summary=big,
        runbook=big,
        principal={"id": "x", "upn": big, "name": big},
        context={"justification": big, "many": [HOSTILE] * 500},
    )


def pipeline_alerts() -> list[Alert]:
    """Real records through the real pipeline: break-glass sign-ins and a privileged assignment."""
    out = case_alerts(breakglass_signin.CASES[0], breakglass_signin.CASES[1], assignment_privileged.CASES[0])
    assert len(out) >= 3
    return out


def deliver(rendered: list[bytes], cfg: syslog.Config) -> str:
    return kit_deliver(syslog, rendered, cfg)


# --- a strict parser: RFC 5424 header, CEF header and extension with their escaping -----------------

SYSLOG = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-) (.*)\Z", re.DOTALL)
EXT_KEY = re.compile(r"(?:^| )([A-Za-z0-9_]+)=")
EXT_UNESCAPE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}


@dataclass
class Parsed:
    pri: int
    timestamp: str
    hostname: str
    app: str
    header: list[str]  # version, vendor, product, device version, signature id, name, severity
    ext: dict[str, str] = field(default_factory=dict)


def parse(raw: bytes) -> Parsed:
    text = raw.decode("utf-8")  # strict: the message is valid UTF-8
    assert "\n" not in text and "\r" not in text, "a message is one line"
    m = SYSLOG.match(text)
    assert m, text[:200]
    pri, timestamp, hostname, app, procid, msgid, _sd, msg = m.groups()
    assert (procid, msgid) == ("-", "-")
    assert msg.startswith("CEF:"), msg[:40]
    header: list[str] = []
    current: list[str] = []
    i = 4
    while len(header) < 7:
        c = msg[i]
        if c == "\\":
            assert msg[i + 1] in "\\|", f"bad header escape {msg[i : i + 2]!r}"
            current.append(msg[i + 1])
            i += 2
        elif c == "|":
            header.append("".join(current))
            current = []
            i += 1
        else:
            current.append(c)
            i += 1
    return Parsed(int(pri), timestamp, hostname, app, header, parse_extension(msg[i:]))


def parse_extension(text: str) -> dict[str, str]:
    keys = list(EXT_KEY.finditer(text))
    assert not text or (keys and keys[0].start() == 0), text[:80]
    out: dict[str, str] = {}
    for n, key in enumerate(keys):
        end = keys[n + 1].start() if n + 1 < len(keys) else len(text)
        assert key.group(1) not in out, f"duplicate key {key.group(1)}"
        out[key.group(1)] = unescape(text[key.end() : end])
    return out


def unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            assert value[i + 1] in EXT_UNESCAPE, f"bad extension escape {value[i : i + 2]!r}"
            out.append(EXT_UNESCAPE[value[i + 1]])
            i += 2
        else:
            assert c != "=", "an unescaped '=' inside an extension value"
            out.append(c)
            i += 1
    return "".join(out)


def octet_frames(stream: bytes) -> list[bytes]:
    """RFC 6587 octet counting: ``<len> <msg>`` back to back, consumed exactly."""
    frames, i = [], 0
    while i < len(stream):
        space = stream.index(b" ", i)
        digits = stream[i:space]
        assert digits.isdigit() and not digits.startswith(b"0"), digits
        length = int(digits)
        frames.append(stream[space + 1 : space + 1 + length])
        assert len(frames[-1]) == length
        i = space + 1 + length
    return frames


def check_alert(p: Parsed, a: Alert) -> None:
    """A message parsed back carries the alert's fields exactly (for alerts too small to be cut)."""
    assert p.header[:5] == ["0", "pimwatch", "pimwatch", __version__, a.detector]
    assert p.header[5] == a.title.replace("\r", " ").replace("\n", " ")
    assert p.header[6] == str(syslog.CEF_SEVERITY[a.severity])
    assert p.app == "pimwatch" and p.hostname == "collector01"
    assert p.pri == 20 * 8 + syslog.SYSLOG_SEVERITY[a.severity]
    assert p.ext["msg"] == a.title
    assert p.ext["reason"] == a.summary
    assert p.ext["cnt"] == str(a.count)
    assert p.ext["rt"] == p.ext["end"] == syslog.epoch_ms(a.last_seen)
    assert p.ext["start"] == syslog.epoch_ms(a.first_seen)
    assert p.ext["duser"] == a.principal["upn"]
    assert p.ext["duid"] == a.principal["id"]
    assert (p.ext["cs1Label"], p.ext["cs1"]) == ("alertId", a.id)
    assert (p.ext["cs2Label"], p.ext["cs2"]) == ("detector", a.detector)
    assert p.ext["cs3Label"] == "context"
    assert json.loads(p.ext["cs3"]) == a.context
    assert (p.ext["cs4Label"], p.ext["cs4"]) == ("mitre", ",".join(a.mitre))
    assert (p.ext["cs5Label"], p.ext["cs5"]) == ("runbook", a.runbook)
    assert (p.ext["cs6Label"], p.ext["cs6"]) == ("status", a.status)


# --- listeners ----------------------------------------------------------------------------------


class UdpListener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(2.0)
        self.port = self.sock.getsockname()[1]

    def receive(self, n: int) -> list[bytes]:
        return [self.sock.recv(65535) for _ in range(n)]

    def close(self) -> None:
        self.sock.close()


@contextmanager
def udp_listener() -> Iterator[UdpListener]:
    listener = UdpListener()
    try:
        yield listener
    finally:
        listener.close()


class StreamListener:
    """A TCP (or TLS) server: each accepted connection is read to EOF and stored as one bytes."""

    def __init__(self, tls: ssl.SSLContext | None = None, *, silent: bool = False):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(3.0)
        self.port = self.server.getsockname()[1]
        self.tls = tls
        self.silent = silent  # accept, then never read nor answer (a stuck peer)
        self.connections: list[bytes] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        with conn:
            if self.silent:
                self.stop.wait(3.0)
                return
            conn.settimeout(3.0)
            try:
                sock = self.tls.wrap_socket(conn, server_side=True) if self.tls else conn
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                self.connections.append(b"".join(chunks))
            except (OSError, ssl.SSLError) as exc:
                self.errors.append(type(exc).__name__)

    def received(self) -> bytes:
        self.thread.join(3.0)
        assert len(self.connections) == 1, (self.connections, self.errors)
        return self.connections[0]

    def close(self) -> None:
        self.stop.set()
        self.server.close()
        self.thread.join(3.0)


@contextmanager
def stream_listener(tls: ssl.SSLContext | None = None, *, silent: bool = False) -> Iterator[StreamListener]:
    listener = StreamListener(tls, silent=silent)
    try:
        yield listener
    finally:
        listener.close()


def closed_port() -> tuple[socket.socket, int]:
    """A port bound but not listening: connections are refused, and nobody else can take it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]


# --- golden messages --------------------------------------------------------------------------------


@pytest.mark.parametrize("severity", list(Severity))
def test_golden_message_per_severity(severity: Severity) -> None:
    [msg] = syslog.render([alert(severity)], config())
    check_golden(f"{severity.value}.txt", msg)


def test_entities_fill_suser_suid_and_src_where_they_fit() -> None:
    """Who acted: the context's actor, else the first account of the entities that is not the
    principal; src: the first entity IP that parses as an address, never other text."""
    actor = {"type": "account", "aadUserId": "a1", "upn": "adm-eve@contoso.com", "displayName": "Eve"}
    ips = [{"type": "ip", "address": "10.0.0.1 cs1=forged"}, {"type": "ip", "address": "203.0.113.9"}]
    [msg] = syslog.render([alert(context={}, entities=[BG, actor, *ips])], config())
    ext = msg.decode().split("|", 7)[7]
    assert " suser=adm-eve@contoso.com suid=a1 src=203.0.113.9 " in f" {ext} "
    assert "forged" not in ext and "duser=bg-admin01@contoso.onmicrosoft.com" in ext
    [alone] = syslog.render([alert(context={}, entities=[BG], tactics=[])], config())
    assert b"suser=" not in alone and b"src=" not in alone and b"flexString1" not in alone


def test_golden_hostile_message() -> None:
    [msg] = syslog.render([hostile()], config())
    check_golden("hostile.txt", msg)


def test_golden_truncated_udp_message() -> None:
    [msg] = syslog.render([huge()], config(transport="udp"))
    check_golden("truncated-udp.txt", msg)


def check_golden(name: str, msg: bytes) -> None:
    golden(GOLDEN / name, msg.decode("utf-8") + "\n")


def test_render_is_pure() -> None:
    batch = [alert(s) for s in Severity] + [hostile()]
    assert syslog.render(batch, config()) == syslog.render(batch, config())


@pytest.mark.parametrize(
    ("severity", "cef", "syslog_severity"),
    [
        (Severity.CRITICAL, "10", 2),
        (Severity.HIGH, "8", 3),
        (Severity.MEDIUM, "5", 4),
        (Severity.LOW, "3", 5),
        (Severity.INFO, "1", 6),
    ],
)
def test_severity_mapping_and_pri(severity: Severity, cef: str, syslog_severity: int) -> None:
    [msg] = syslog.render([alert(severity)], config(facility="local0"))
    p = parse(msg)
    assert p.header[6] == cef
    assert p.pri == 16 * 8 + syslog_severity
    [msg] = syslog.render([alert(severity)], config(facility=4))
    assert parse(msg).pri == 4 * 8 + syslog_severity


def test_timestamp_is_last_seen_in_rfc3339_utc() -> None:
    p = parse(syslog.render([alert()], config())[0])
    assert p.timestamp == "2026-03-10T02:40:00.250Z"
    assert p.ext["rt"] == "1773110400250"
    assert p.ext["start"] == "1773109020000"  # 23 minutes earlier


def test_resolved_status_and_actor() -> None:
    a = alert(status="resolved", resolved_at="2026-03-10T03:00:00Z", context={"actor": {"upn": "admin@x"}})
    p = parse(syslog.render([a], config())[0])
    assert p.ext["cs6"] == "resolved at 2026-03-10T03:00:00Z"
    assert p.ext["suser"] == "admin@x"
    assert "suser" not in parse(syslog.render([alert()], config())[0]).ext  # no actor, no key


# --- escaping ------------------------------------------------------------------------------------


def test_separators_newlines_and_non_ascii_round_trip() -> None:
    a = hostile()
    [msg] = syslog.render([a], config())
    assert b"\n" not in msg and b"\r" not in msg
    p = parse(msg)
    check_alert(p, a)
    assert p.header[5] == HOSTILE.replace("\n", " ").replace("\r", " ")  # header: no line breaks
    assert p.ext["msg"] == HOSTILE  # extension: newline and CR escaped, so kept exactly
    assert p.ext["duser"] == "evil|user\\=x\n@contoso.com"
    assert p.ext["duid"] == "id|=\\"
    assert p.ext["suser"] == "mallory=1|2\\3@evil.test"
    assert json.loads(p.ext["cs3"])["k=|\\"] == [1, "é"]
    assert "Zoë 管理者 🚨" in p.ext["msg"]
    # and on the wire, the escapes the CEF spec asks for
    assert b"CEF:0|pimwatch|pimwatch|" in msg
    assert b"|a\\|b\\\\c=d e f " in msg  # header: \| and \\, '=' as is
    assert b"msg=a|b\\\\c\\=d\\ne\\rf " in msg  # extension: \\ \= \n \r, '|' as is


def test_control_characters_become_spaces() -> None:
    a = alert(title="tab\there\x00nul\x1besc\u2028ls\u0085nel\x7fdel", summary="ok")
    p = parse(syslog.render([a], config())[0])
    assert p.header[5] == "tab here nul esc ls nel del"
    assert p.ext["msg"] == "tab here nul esc ls nel del"


def test_lone_surrogate_does_not_break_rendering() -> None:
    p = parse(syslog.render([alert(title="bad \ud800 surrogate")], config())[0])
    assert p.ext["msg"] == "bad \ufffd surrogate"


# --- size bound -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "limit"),
    [({"transport": "udp"}, 2048), ({"transport": "tcp"}, 8192), ({"transport": "tls"}, 8192),
     ({"transport": "tcp", "max_bytes": 1024}, 1024), ({"transport": "udp", "max_bytes": 4000}, 4000)],
)  # fmt: skip
def test_every_message_fits_its_bound_with_a_marker(extra: dict[str, Any], limit: int) -> None:
    [msg] = syslog.render([huge()], config(**extra))
    assert limit * 0.9 <= len(msg) <= limit  # filled up to (near) the bound, never over
    p = parse(msg)
    assert p.ext["cs1"] == "b" * 32 and p.header[4] == "breakglass.signin"
    cut = [v for v in [p.header[5], *p.ext.values()] if v.endswith(TRUNCATED)]
    assert cut, "the shortened fields carry the marker"
    assert p.ext["msg"].endswith(TRUNCATED) and p.ext["msg"].startswith("a|b\\c=d\ne\rf")


def test_the_longest_field_is_cut_first() -> None:
    a = alert(context={"justification": "J" * 50_000})
    p = parse(syslog.render([a], config(transport="udp"))[0])
    assert p.ext["cs3"].endswith(TRUNCATED)
    assert p.ext["msg"] == a.title and p.ext["reason"] == a.summary and p.ext["duser"] == a.principal["upn"]


def test_normal_alerts_are_not_cut_even_over_udp() -> None:
    for a in pipeline_alerts():
        [msg] = syslog.render([a], config(transport="udp"))
        assert len(msg) <= 2048
        p = parse(msg)
        if len(json_text(a.context, sort_keys=True)) < 600:
            check_alert(p, a)


# --- real transports ------------------------------------------------------------------------------


def test_udp_one_datagram_per_alert() -> None:
    alerts = [*pipeline_alerts(), hostile(), huge()]
    with udp_listener() as listener:
        cfg = config(listener.port, transport="udp")
        answer = deliver(syslog.render(alerts, cfg), cfg)
        datagrams = listener.receive(len(alerts))
    assert answer == f"{len(alerts)} messages sent (udp)"
    assert datagrams == syslog.render(alerts, cfg)
    parsed = [parse(d) for d in datagrams]
    assert [p.ext["cs1"] for p in parsed] == [a.id for a in alerts]
    assert all(len(d) <= 2048 for d in datagrams)
    check_alert(parsed[len(alerts) - 2], hostile())


def test_tcp_octet_counting_one_connection() -> None:
    alerts = [*pipeline_alerts(), hostile(), huge()]
    with stream_listener() as listener:
        cfg = config(listener.port, transport="tcp")
        rendered = syslog.render(alerts, cfg)
        answer = deliver(rendered, cfg)
        stream = listener.received()
    assert answer == f"{len(alerts)} messages sent (tcp)"
    frames = octet_frames(stream)
    assert frames == rendered
    assert [parse(f).ext["cs1"] for f in frames] == [a.id for a in alerts]
    assert stream.startswith(str(len(rendered[0])).encode() + b" <")
    check_alert(parse(frames[-2]), hostile())
    assert all(len(f) <= 8192 for f in frames)


def test_tcp_lf_framing_one_line_per_alert() -> None:
    alerts = [*pipeline_alerts(), hostile(), huge()]
    with stream_listener() as listener:
        cfg = config(listener.port, transport="tcp", framing="lf")
        rendered = syslog.render(alerts, cfg)
        deliver(rendered, cfg)
        stream = listener.received()
    lines = stream.split(b"\n")
    assert lines[-1] == b"" and lines[:-1] == rendered  # the escaping keeps every message on one line


def test_closed_tcp_port_is_transient() -> None:
    sock, port = closed_port()
    with sock:
        cfg = config(port, transport="tcp")
        with pytest.raises(TransientError) as raised:
            deliver(syslog.render([alert()], cfg), cfg)
    assert str(raised.value) == "syslog: connection failed (ConnectionRefusedError)"


def test_udp_to_a_closed_port_is_never_worse_than_transient() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    cfg = config(port, transport="udp")
    try:  # fire and forget: the ICMP refusal may or may not surface on a later datagram
        deliver(syslog.render([alert(), alert(), alert()], cfg), cfg)
    except TransientError as exc:
        assert "connection failed" in str(exc)


def test_empty_batch_opens_no_connection() -> None:
    assert deliver([], config(1, transport="tcp")) == "nothing to send"


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_unresolvable_host_is_transient(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:  # a DNS failure, without waiting on a resolver
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    cfg = syslog.Config(type="syslog", host="siem.invalid", transport=transport, timeout_seconds=1.0)
    with pytest.raises(TransientError) as raised:
        deliver(syslog.render([alert()], cfg), cfg)
    assert str(raised.value) == "syslog: connection failed (gaierror)"


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost / 127.0.0.1, made with the openssl command line."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS tests need the openssl command to make a self-signed certificate; not on PATH")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = [
        openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"openssl could not make a self-signed certificate: {done.stderr.strip()[:200]}")
    return cert, key


def server_context(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return ctx


def test_tls_with_private_ca_file(certificate: tuple[Path, Path]) -> None:
    alerts = [*pipeline_alerts(), hostile(), huge()]
    with stream_listener(server_context(certificate)) as listener:
        cfg = config(listener.port, transport="tls", ca_file=str(certificate[0]))
        rendered = syslog.render(alerts, cfg)
        answer = deliver(rendered, cfg)
        stream = listener.received()
    assert answer == f"{len(alerts)} messages sent (tls)"
    frames = octet_frames(stream)
    assert frames == rendered
    check_alert(parse(frames[-2]), hostile())


def test_tls_server_name_is_checked(certificate: tuple[Path, Path]) -> None:
    with stream_listener(server_context(certificate)) as listener:
        cfg = config(listener.port, transport="tls", ca_file=str(certificate[0]), server_name="localhost")
        deliver(syslog.render([alert()], cfg), cfg)
        assert octet_frames(listener.received()) == syslog.render([alert()], cfg)
    with stream_listener(server_context(certificate)) as listener:
        cfg = config(listener.port, transport="tls", ca_file=str(certificate[0]), server_name="siem.example")
        with pytest.raises(PermanentError, match="certificate verification failed"):
            deliver(syslog.render([alert()], cfg), cfg)


def test_tls_untrusted_certificate_is_permanent(certificate: tuple[Path, Path]) -> None:
    with stream_listener(server_context(certificate)) as listener:
        cfg = config(listener.port, transport="tls")  # the system store does not know our CA
        with pytest.raises(PermanentError) as raised:
            deliver(syslog.render([alert()], cfg), cfg)
    assert str(raised.value).startswith("syslog: TLS certificate verification failed (")
    assert listener.connections == []


def test_tls_without_verification_delivers(certificate: tuple[Path, Path]) -> None:
    with stream_listener(server_context(certificate)) as listener:
        cfg = config(listener.port, transport="tls", verify=False)
        deliver(syslog.render([alert()], cfg), cfg)
        assert octet_frames(listener.received()) == syslog.render([alert()], cfg)


def test_tls_ca_file_removed_after_start_is_permanent(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    """A missing file is a config error (tests/sinks/test_private_ca.py); gone since start: permanent."""
    moved = tmp_path / "ca.pem"
    moved.write_bytes(certificate[0].read_bytes())
    cfg = config(1, transport="tls", tls_ca_file=str(moved))
    moved.unlink()
    with pytest.raises(PermanentError, match=r"cannot load tls_ca_file / tls_ca_pem \(FileNotFoundError\)"):
        deliver(syslog.render([alert()], cfg), cfg)


def test_tls_handshake_timeout_is_transient() -> None:
    with stream_listener(silent=True) as listener:
        cfg = config(listener.port, transport="tls", verify=False, timeout_seconds=0.3)
        with pytest.raises(TransientError, match=r"timed out after 0.3 s"):
            deliver(syslog.render([alert()], cfg), cfg)


def test_closed_tls_port_is_transient() -> None:
    sock, port = closed_port()
    with sock:
        cfg = config(port, transport="tls", verify=False)
        with pytest.raises(TransientError, match="ConnectionRefusedError"):
            deliver(syslog.render([alert()], cfg), cfg)


# --- config ---------------------------------------------------------------------------------------


def test_config_builds_with_defaults() -> None:
    cfg = build(
        {"sinks": {"cef": {"type": "syslog", "host": "forwarder.contoso.local", "transport": "tls"}}},
        discover(),
        "t",
        env={},
    )
    sink = cfg.sinks["cef"]
    assert sink.batch is True
    assert isinstance(sink.config, syslog.Config)
    assert sink.config.port_number == 6514
    assert sink.config.message_limit == 8192
    assert sink.config.facility_code == 20  # local4
    assert sink.config.verify is True
    udp = syslog.Config(type="syslog", host="h", transport="udp", facility="LOCAL7")
    assert (udp.port_number, udp.message_limit, udp.facility_code) == (514, 2048, 23)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"bogus": 1}, "sinks.x.bogus: unknown key"),
        ({"transport": "http"}, "sinks.x.transport"),
        ({"facility": "local9"}, "sinks.x.facility"),
        ({"facility": 24}, "sinks.x.facility"),
        ({"ca_file": "/etc/no-such-ca.pem", "transport": "tls"}, "sinks.x.tls_ca_file"),  # its old name
        ({"tls_ca_file": "/etc/no-such-ca.pem", "transport": "tls"}, "sinks.x.tls_ca_file"),
        ({"server_name": "x"}, "sinks.x.server_name"),
        ({"transport": "udp", "max_bytes": 70000}, "sinks.x.max_bytes"),
        ({"max_bytes": 100}, "sinks.x.max_bytes"),
        ({"port": 0}, "sinks.x.port"),
        ({"hostname": "has space"}, "sinks.x.hostname"),
        ({"host": ""}, "sinks.x.host"),
        ({"framing": "nul"}, "sinks.x.framing"),
    ],
)
def test_config_problems_name_the_key(extra: dict[str, Any], problem: str) -> None:
    spec = {"type": "syslog", "host": "forwarder.contoso.local", **extra}
    with pytest.raises(ConfigError) as raised:
        build({"sinks": {"x": spec}}, discover(), "t", env={})
    assert any(p.startswith(problem) for p in raised.value.problems), raised.value.problems


def test_errors_name_no_address() -> None:
    sock, port = closed_port()
    with sock:
        cfg = config(port, transport="tcp")
        with pytest.raises(TransientError) as raised:
            deliver(syslog.render([alert()], cfg), cfg)
    assert "127.0.0.1" not in str(raised.value) and str(port) not in str(raised.value)
