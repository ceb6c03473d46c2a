"""Sentinel sink (Logs Ingestion API): golden rows per severity, the row schema against the documented
table and sample DCR, bounds on attacker text, batching under the 1 MB call limit, config validation,
and ``send`` through the real Azure SDK against a real TLS server on loopback (exact path, gzip JSON
rows, status classification)."""

from __future__ import annotations

import gzip
import ipaddress
import json
import os
import re
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("azure.monitor.ingestion", reason="pip install azure-monitor-ingestion azure-identity")
pytest.importorskip("azure.identity", reason="pip install azure-monitor-ingestion azure-identity")

from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

import detectors.activation_denied as activation_denied
import detectors.activation_repeated_failure as activation_repeated_failure
import detectors.activation_too_frequent as activation_too_frequent
import detectors.approval_overdue as approval_overdue
import detectors.breakglass_signin as breakglass_signin
from pimwatch.config import ConfigError, build
from pimwatch.delivery.sink import TRUNCATED, Http, PermanentError, SinkError, TransientError
from pimwatch.detection.alerts import Alert, Severity
from pimwatch.detection.detector import discover
from pimwatch.testing.harness import run_records
from pimwatch.testing.sinks import case_alerts, strings
from sinks import sentinel
from tests.conftest import REPO
from tests.loopback import Answer, Server
from tests.sinks.conftest import StaticToken

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "sinks" / "sentinel"
DCR_JSON = REPO / "docs" / "sentinel-dcr.json"
DOC_MD = REPO / "docs" / "sentinel.md"
RULE = "dcr-0123456789abcdef0123456789abcdef"
TOKEN = "eyJ0eXAi.tok-SECRET-4f1d"
SECRET = "cl13nt~s3cret.VALUE_9z"
JUNK = (
    "[x](http://evil) <script>alert(1)</script> <at>admin</at> CEF|pipe\\slash=eq\r\n"
    'ünïcødé 日本語 🚨 𝕏 "quoted" {"TimeGenerated":"forged"}\u202e'
)
PLUGINS = discover()


def config(endpoint: str = "https://pimwatch-dce.westeurope-1.ingest.monitor.azure.com", **extra: Any) -> Any:
    values: dict[str, Any] = {"timeout_seconds": 0.5, **extra}
    return sentinel.Config(type="sentinel", endpoint=endpoint, rule_id=RULE, **values)


def pipeline_alert() -> Alert:
    [alert] = case_alerts(breakglass_signin.CASES[0])
    return alert


# A real pipeline alert per severity: (detector module, case index, config overrides).
GOLDEN_CASES: dict[Severity, tuple[Any, int, dict[str, Any]]] = {
    Severity.CRITICAL: (breakglass_signin, 1, {}),
    Severity.HIGH: (activation_repeated_failure, 0, {}),
    Severity.MEDIUM: (activation_too_frequent, 0, {}),
    Severity.LOW: (activation_denied, 0, {}),
    Severity.INFO: (approval_overdue, 0, {"detectors": {"approval.overdue": {"severity": "info"}}}),
}


def golden_alert(severity: Severity) -> Alert:
    module, index, overrides = GOLDEN_CASES[severity]
    case = module.CASES[index]
    alerts, _ = run_records(case.records, PLUGINS, {**(case.config or {}), **overrides})
    (found,) = [a for a in alerts if a.severity == severity]
    return found


def alert(i: int = 0, **changes: Any) -> Alert:
    fields: dict[str, Any] = {
        "id": f"{i:032x}",
        "detector": "activation.simultaneous",
        "severity": Severity.HIGH,
        "title": "t",
        "summary": "s",
        "runbook": "r",
        "mitre": [],
        "principal": {"id": None, "upn": "x@contoso.com", "name": None},
        "context": {"k": "v"},
        "events": [("2026-03-10T10:00:00.000000Z", "e1")],
    }
    fields.update(changes)
    return Alert(**fields)


def injection(i: int = 0) -> Alert:
    big = (JUNK + "A" * 100_000)[:100_000]
    return alert(
        i,
        severity=Severity.CRITICAL,
        title="Role activated " + big,
        summary=big,
        principal={"id": "\ud800" + big, "upn": "<at>admin</at>@evil|x=y\n" + big, "name": big},
        context={
            "justification": big,
            "nested": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": big}}}}}}}},
            "many": [f"{JUNK}{n}" for n in range(500)],
            "wide": {f"k{n}": big[:5000] for n in range(300)},
            big: "a 100 KB key",
        },
        events=[(f"2026-03-10T02:{n % 60:02d}:00.000000Z", f"rec-{n}-{big[:300]}") for n in range(2000)],
    )


# ------------------------------------------------------------------------------------------- render


@pytest.mark.parametrize("severity", list(Severity), ids=str)
def test_golden_rows_per_severity(severity: Severity) -> None:
    rendered = sentinel.render([golden_alert(severity)], config())
    text = json.dumps(rendered, indent=2, ensure_ascii=False) + "\n"
    path = GOLDEN / f"{severity.value}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"{path} differs (UPDATE_GOLDEN=1 to regenerate)"
    assert len(rendered) == 1 and len(rendered[0]) == 1
    assert rendered[0][0]["Severity"] == severity.value


def _documented_columns() -> list[tuple[str, str]]:
    dcr = json.loads(DCR_JSON.read_text(encoding="utf-8"))
    props = dcr["properties"]
    assert list(props["streamDeclarations"]) == [sentinel.DEFAULT_STREAM]
    (flow,) = props["dataFlows"]
    assert flow["streams"] == [sentinel.DEFAULT_STREAM]
    assert flow["outputStream"] == "Custom-PimwatchAlerts_CL"
    assert flow["transformKql"] == "source"
    assert flow["destinations"] == [d["name"] for d in props["destinations"]["logAnalytics"]]
    columns = props["streamDeclarations"][sentinel.DEFAULT_STREAM]["columns"]
    return [(c["name"], c["type"]) for c in columns]


def _is(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool) and -(2**31) <= value < 2**31
    if kind == "dynamic":
        return isinstance(value, (list, dict))
    if kind == "datetime":
        return isinstance(value, str) and datetime.fromisoformat(value).tzinfo is not None
    raise AssertionError(f"undocumented type {kind}")


def test_rows_match_the_documented_table_and_dcr_exactly() -> None:
    documented = _documented_columns()
    assert documented == list(sentinel.COLUMNS)
    # docs/sentinel.md lists the same columns, same order, same types
    table = re.findall(r"^\| `(\w+)` \| (\w+) \|", DOC_MD.read_text(encoding="utf-8"), re.MULTILINE)
    assert table == documented
    for name, _ in documented:
        assert len(name) <= 45 and name not in {"TenantId", "Type", "_ResourceId"}
    resolved = replace(pipeline_alert(), status="resolved", resolved_at="2026-03-10T03:00:00.000000Z")
    for a in (pipeline_alert(), injection(), resolved, alert(principal={})):
        (row,) = sentinel.render([a], config())[0]
        assert list(row) == [n for n, _ in documented]
        for name, kind in documented:
            assert _is(kind, row[name]), (name, kind, row[name])


def test_row_content_from_a_pipeline_alert() -> None:
    a = pipeline_alert()
    (row,) = sentinel.render([a], config())[0]
    assert row["TimeGenerated"] == a.last_seen == row["LastSeen"]
    assert row["FirstSeen"] == a.first_seen
    assert row["AlertId"] == a.id and row["Detector"] == "breakglass.signin"
    assert row["PrincipalId"] == "c0ffee00-0000-4000-8000-00000000b001"
    assert row["PrincipalUpn"] == "bg-admin01@contoso.onmicrosoft.com"
    assert row["Count"] == 1 and row["EventIds"] == [eid for _, eid in a.events]
    assert row["Context"] == a.context and row["Status"] == "open" and row["SchemaVersion"] == 1


def test_render_is_pure() -> None:
    a = injection()
    before = a.to_dict()
    first = sentinel.render([a], config())
    assert sentinel.render([a], config()) == first
    assert a.to_dict() == before


def test_injection_alert_is_bounded_marked_and_inert() -> None:
    a = injection()
    (row,) = sentinel.render([a], config())[0]
    size = len(json.dumps(row))
    assert size <= sentinel.MAX_ROW_BYTES
    for name in ("Title", "Summary", "PrincipalId", "PrincipalUpn", "PrincipalName"):
        assert row[name].endswith(TRUNCATED), name
        assert len(row[name]) < 5000
    # verbatim (a SIEM keeps the evidence), only cut: the text survives as data, not markup
    assert row["Title"].startswith("Role activated [x](http://evil) <script>alert(1)</script> <at>admin</at>")
    assert row["PrincipalUpn"].startswith("<at>admin</at>@evil|x=y\n")
    assert row["PrincipalId"].startswith("\ufffd")  # the lone surrogate would poison the whole batch
    assert not any(re.search(r"[\ud800-\udfff]", s) for s in strings(row))
    assert row["Count"] == 2000
    assert row["EventIds"][-1].startswith(sentinel.MARK) and len(row["EventIds"]) <= 101
    assert all(len(s) <= 4096 for s in strings(row["Context"]))
    assert any(s.endswith(TRUNCATED) for s in strings(row["Context"]))
    assert json.loads(json.dumps(row)) == row
    # Title keeps as much as the row allows: the first level of limits fits this alert
    assert len(row["Title"]) == 1024


def test_a_row_that_cannot_fit_is_cut_harder_and_keeps_its_identity() -> None:
    astral = "𝕏" * 4096  # 12 bytes each once JSON-escaped: the worst case
    wide = {f"k{n}": [astral] * 100 for n in range(100)}
    a = alert(
        7,
        title=astral,
        summary=astral,
        principal={"id": astral, "upn": astral, "name": astral},
        context={"wide": wide, "deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": astral}}}}}}}},
        events=[("2026-03-10T10:00:00.000000Z", astral + str(n)) for n in range(5000)],
    )
    (row,) = sentinel.render([a], config())[0]
    assert len(json.dumps(row)) <= sentinel.MAX_ROW_BYTES
    assert row["AlertId"] == a.id and row["Count"] == 5000 and row["Severity"] == "high"
    assert row["Title"].endswith(TRUNCATED) and len(row["Title"]) < 1024  # a tighter level was used
    assert isinstance(row["Context"], dict) and row["EventIds"][-1].startswith(sentinel.MARK)


def test_last_resort_context_is_its_json_text_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sentinel, "MAX_ROW_BYTES", 1500)  # no level fits: the safety net is used
    (row,) = sentinel.render([injection()], config())[0]
    assert list(row["Context"]) == ["_truncated"]
    text = row["Context"]["_truncated"]
    assert text.startswith('{"justification":"[x](http://evil) <script>') and len(text) <= 1024
    assert sentinel.MARK in text


def test_batches_stay_under_the_call_limit_in_order() -> None:
    alerts = [injection(i) for i in range(40)]
    batches = sentinel.render(alerts, config())
    assert len(batches) > 1
    for batch in batches:
        assert len(json.dumps(batch)) <= sentinel.MAX_CALL_BYTES
    assert [r["AlertId"] for b in batches for r in b] == [a.id for a in alerts]
    # small alerts share one batch
    assert len(sentinel.render([alert(i) for i in range(500)], config())) == 1
    assert sentinel.render([], config()) == []


# ------------------------------------------------------------------------------------------- config


def _build(spec: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return build({"sinks": {"x": spec}}, PLUGINS, "t", env=env or {})


BASE = {
    "type": "sentinel",
    "endpoint": "https://pimwatch-dce.westeurope-1.ingest.monitor.azure.com/",
    "rule_id": RULE,
}


def test_config_builds_with_secret_from_env() -> None:
    spec = {
        **BASE,
        "tenant_id": "${AZURE_TENANT_ID}",
        "client_id": "11111111-2222-4333-8444-555555555555",
        "client_secret": "${SENTINEL_SECRET}",
        "min_severity": "medium",
    }
    cfg = _build(spec, {"SENTINEL_SECRET": SECRET, "AZURE_TENANT_ID": "contoso.onmicrosoft.com"})
    sink = cfg.sinks["x"]
    assert sink.batch and not sink.resolves
    c = sink.config
    assert c.endpoint == "https://pimwatch-dce.westeurope-1.ingest.monitor.azure.com"
    assert c.stream_name == "Custom-PimwatchAlerts" and c.tenant_id == "contoso.onmicrosoft.com"
    assert c.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(c) and SECRET not in str(c)
    # managed identity: no secret at all
    assert _build(BASE).sinks["x"].config.client_secret is None


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"workspace_key": "k"}, "sinks.x.workspace_key: unknown key"),
        (
            {"stream_name": "PimwatchAlerts"},
            "sinks.x.stream_name: Value error, expected the DCR input stream",
        ),
        ({"stream_name": "Microsoft-Syslog"}, "sinks.x.stream_name: Value error, expected"),
        (
            {"endpoint": "http://dce.ingest.monitor.azure.com"},
            "sinks.x.endpoint: Value error, expected an https",
        ),
        ({"endpoint": "https://x.ods.opinsights.azure.com/api/logs"}, "sinks.x.endpoint: Value error"),
        ({"rule_id": "pimwatch-alerts"}, "sinks.x.rule_id: Value error, expected the DCR immutable id"),
        (
            {"client_secret": "s"},
            "sinks.x.client_secret: Value error, client_secret needs tenant_id and client_id",
        ),
        ({"audience": "monitor.azure.us"}, "sinks.x.audience: Value error"),
    ],
)
def test_config_problems_name_the_key(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        _build({**BASE, **extra})
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems
    assert "s3cret" not in str(info.value)


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(ConfigError) as info:
        _build({"type": "sentinel"})
    assert {p.split(":")[0] for p in info.value.problems} == {"sinks.x.endpoint", "sinks.x.rule_id"}


def test_missing_sdk_is_a_config_error_not_a_failure_at_the_first_alert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sentinel, "_installed", lambda module: module != "azure.identity")
    with pytest.raises(ConfigError) as info:
        _build(BASE)
    assert info.value.problems == [
        "sinks.x.type: Value error, the sentinel sink needs azure-identity (pip install azure-identity)"
    ]


def test_secret_env_value_never_echoed_in_config_errors() -> None:
    spec = {**BASE, "client_secret": "${SENTINEL_SECRET}", "stream_name": "bad"}
    with pytest.raises(ConfigError) as info:
        _build(spec, {"SENTINEL_SECRET": SECRET})
    assert SECRET not in str(info.value)


# --------------------------------------------------------------------------------------------- send


class FailingToken:
    def __init__(self, error: Exception):
        self.error = error

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise self.error


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    """A self-signed certificate for 127.0.0.1: the server context and the CA file for the client."""
    pytest.importorskip("cryptography", reason="cryptography is needed to make a test certificate")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    return ctx, str(cert_file)


@contextmanager
def serve_tls(tls: tuple[ssl.SSLContext, str], *answers: Answer) -> Iterator[Server]:
    """tests.loopback's real server, its listening socket wrapped in TLS (the SDK's bearer-token policy
    refuses plain http)."""
    server = Server(list(answers) or None)
    server.httpd.socket = tls[0].wrap_socket(server.httpd.socket, server_side=True)
    server.url = f"https://127.0.0.1:{server.httpd.server_address[1]}"
    thread = threading.Thread(target=server.httpd.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def deliver(
    tls: tuple[ssl.SSLContext, str],
    server: Server,
    alerts: list[Alert],
    credential: Any = None,
    **extra: Any,
) -> str:
    cfg = config(server.url, **extra)
    return sentinel.send(
        sentinel.render(alerts, cfg),
        cfg,
        Http(),
        credential=credential or StaticToken(TOKEN),
        connection_verify=tls[1],
    )


def rows(body: bytes) -> Any:
    return json.loads(gzip.decompress(body))


def test_upload_reaches_the_ingestion_path_as_gzip_json_rows(tls: tuple[ssl.SSLContext, str]) -> None:
    a, b = pipeline_alert(), injection()
    cred = StaticToken(TOKEN)
    with serve_tls(tls, Answer(204)) as server:
        answer = deliver(tls, server, [a, b], cred)
    assert answer == "204 No Content: 2 row(s) in 1 call(s)"
    (req,) = server.requests
    assert req.method == "POST"
    assert req.path == f"/dataCollectionRules/{RULE}/streams/Custom-PimwatchAlerts?api-version=2023-01-01"
    assert req.headers["authorization"] == f"Bearer {TOKEN}"
    assert req.headers["content-encoding"] == "gzip"
    assert req.headers["content-type"] == "application/json"
    assert rows(req.body) == sentinel.render([a, b], config())[0]
    assert cred.scopes and set(cred.scopes) == {("https://monitor.azure.com/.default",)}


def test_sovereign_audience_and_custom_stream(tls: tuple[ssl.SSLContext, str]) -> None:
    cred = StaticToken(TOKEN)
    with serve_tls(tls, Answer(204)) as server:
        deliver(tls, server, [alert()], cred, audience="https://monitor.azure.us", stream_name="Custom-Pim_2")
    assert server.requests[0].path.startswith(f"/dataCollectionRules/{RULE}/streams/Custom-Pim_2?")
    assert set(cred.scopes) == {("https://monitor.azure.us/.default",)}


def test_each_batch_is_one_request_in_order(tls: tuple[ssl.SSLContext, str]) -> None:
    alerts = [injection(i) for i in range(40)]
    batches = sentinel.render(alerts, config())
    with serve_tls(tls, Answer(204)) as server:
        answer = deliver(tls, server, alerts)
    assert answer == f"204 No Content: 40 row(s) in {len(batches)} call(s)"
    assert [rows(r.body) for r in server.requests] == batches
    assert all(len(r.body) <= sentinel.MAX_CALL_BYTES for r in server.requests)


def test_empty_render_sends_nothing(tls: tuple[ssl.SSLContext, str]) -> None:
    with serve_tls(tls, Answer(204)) as server:
        answer = sentinel.send([], config(server.url), Http(), credential=StaticToken(TOKEN))
        assert answer == "nothing to send"
    assert server.requests == []


ERROR_BODY = b'{"error":{"code":"InvalidStream","message":"stream Custom-X of dcr-... not found"}}'


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (
            Answer(400, ERROR_BODY, {"Content-Type": "application/json"}),
            PermanentError,
            "HTTP 400 Bad Request (InvalidStream)",
        ),
        (Answer(401), PermanentError, "HTTP 401"),
        (Answer(403), PermanentError, "HTTP 403 Forbidden"),
        (Answer(404), PermanentError, "HTTP 404 Not Found"),
        (Answer(413), PermanentError, "HTTP 413"),
        (Answer(429, headers={"Retry-After": "7"}), TransientError, "HTTP 429 Too Many Requests"),
        (Answer(500), TransientError, "HTTP 500 Internal Server Error"),
        (Answer(503), TransientError, "HTTP 503"),
    ],
    ids=lambda v: str(getattr(v, "status", "")) if isinstance(v, Answer) else None,
)
def test_statuses_are_classified(
    tls: tuple[ssl.SSLContext, str], answer: Answer, error: type[SinkError], text: str
) -> None:
    with serve_tls(tls, answer) as server, pytest.raises(SinkError) as info:
        deliver(tls, server, [pipeline_alert()])
    assert type(info.value) is error
    assert str(info.value).startswith(f"sentinel: {text}")
    assert len(server.requests) == 1  # the SDK's own retries are off: delivery retries
    _no_secret(info.value, server.url)


def test_429_carries_retry_after(tls: tuple[ssl.SSLContext, str]) -> None:
    with serve_tls(tls, Answer(429, headers={"Retry-After": "7"})) as server:
        with pytest.raises(TransientError) as info:
            deliver(tls, server, [alert()])
        assert info.value.retry_after == 7.0
        server.script(Answer(429, headers={"retry-after-ms": "1500"}))
        with pytest.raises(TransientError) as info:
            deliver(tls, server, [alert()])
        assert info.value.retry_after == 1.5


def test_slow_server_times_out_as_transient(tls: tuple[ssl.SSLContext, str]) -> None:
    with serve_tls(tls, Answer(204, delay=1.0)) as server, pytest.raises(TransientError) as info:
        deliver(tls, server, [alert()], timeout_seconds=0.3)
    assert str(info.value) == "sentinel: timed out after 0.3 s"


def test_dropped_connection_is_transient(tls: tuple[ssl.SSLContext, str]) -> None:
    with serve_tls(tls, Answer(drop=True)) as server, pytest.raises(TransientError) as info:
        deliver(tls, server, [alert()])
    assert str(info.value).startswith("sentinel: connection failed")
    _no_secret(info.value, server.url)


def test_untrusted_certificate_is_permanent_as_for_every_sink(tls: tuple[ssl.SSLContext, str]) -> None:
    """The SDK wraps the verification failure (azure-core, requests, urllib3); it is found and classified
    as Http, e-mail and syslog classify it: permanent (waiting does not make a certificate trusted)."""
    with serve_tls(tls, Answer(204)) as server, pytest.raises(PermanentError) as info:
        cfg = config(server.url)  # default verification: the self-signed certificate is refused
        sentinel.send(sentinel.render([alert()], cfg), cfg, Http(), credential=StaticToken(TOKEN))
    assert str(info.value).startswith("sentinel: TLS certificate verification failed (")
    assert str(info.value).endswith("; set tls_ca_file for a private CA")
    assert server.requests == []


def test_a_failing_later_batch_says_what_was_accepted(tls: tuple[ssl.SSLContext, str]) -> None:
    alerts = [injection(i) for i in range(40)]
    n = len(sentinel.render(alerts, config()))
    with serve_tls(tls, Answer(204), Answer(500)) as server, pytest.raises(TransientError) as info:
        deliver(tls, server, alerts)
    assert len(server.requests) == 2
    assert str(info.value) == (
        f"sentinel: HTTP 500 Internal Server Error after 1 of {n} batch(es) were accepted"
        " (their rows may repeat)"
    )


def test_token_failures_are_classified_before_any_upload(tls: tuple[ssl.SSLContext, str]) -> None:
    rejected = ClientAuthenticationError(message=f"AADSTS7000215: Invalid client secret provided {SECRET}")
    rejected.status_code = 401
    unavailable = ClientAuthenticationError(message=f"DefaultAzureCredential failed {SECRET}")
    with serve_tls(tls, Answer(204)) as server:
        with pytest.raises(PermanentError) as info:
            deliver(tls, server, [alert()], FailingToken(rejected))
        assert str(info.value) == (
            "sentinel: token request rejected (HTTP 401); check tenant_id, client_id, client_secret"
        )
        _no_secret(info.value, server.url)
        with pytest.raises(TransientError) as info2:
            deliver(tls, server, [alert()], FailingToken(unavailable))
        assert "could not get a token (ClientAuthenticationError)" in str(info2.value)
        _no_secret(info2.value, server.url)
    assert server.requests == []


def test_credential_choice() -> None:
    from azure.identity import ClientSecretCredential, DefaultAzureCredential

    app = config(
        tenant_id="contoso.onmicrosoft.com",
        client_id="11111111-2222-4333-8444-555555555555",
        client_secret=SECRET,
    )
    cred = sentinel._credential(app)
    assert isinstance(cred, ClientSecretCredential)
    assert sentinel._credential(app) is cred  # one per identity: its token cache is reused
    assert isinstance(
        sentinel._credential(config(client_id="22222222-2222-4333-8444-555555555555")), DefaultAzureCredential
    )


def _no_secret(exc: BaseException, url: str) -> None:
    text = f"{exc} {exc!r}"
    for secret in (TOKEN, SECRET, url, "127.0.0.1", "dataCollectionRules", "Custom-X of dcr"):
        assert secret not in text, secret
    assert exc.__cause__ is None and exc.__suppress_context__


def test_a_busy_alert_says_how_many_event_ids_its_sample_leaves_out() -> None:
    # A folded alert keeps a sample of its event ids (the first and the most recent), not all.
    events = [(f"2026-03-10T02:{n % 60:02d}:00.000000Z", f"rec-{n:05d}") for n in range(20)]
    (row,) = sentinel.render([alert(events=events, count=5000)], config())[0]
    assert row["Count"] == 5000
    assert row["EventIds"][:20] == [eid for _, eid in events]
    assert row["EventIds"][20:] == [f"{sentinel.MARK} 4980 more"]


def test_entities_tactics_and_techniques_are_columns_bounded_with_a_count_of_the_rest() -> None:
    """The alert's entities go out as objects (the analytic rule maps them); those the alert left out
    (entities_omitted) and those a tighter row level cuts are counted in one last marker item."""
    ents = [{"type": "ip", "address": f"192.0.2.{i:03d}"} for i in range(20)]
    (row,) = sentinel.render(
        [alert(entities=ents, entities_omitted=7, tactics=["PrivilegeEscalation"], mitre=["T1098"])], config()
    )[0]
    assert row["Entities"] == [*ents, f"{TRUNCATED.strip()} 7 more"]
    assert (row["Tactics"], row["Techniques"]) == (["PrivilegeEscalation"], ["T1098"])
    (plain,) = sentinel.render([alert()], config())[0]
    assert (plain["Entities"], plain["Tactics"], plain["Techniques"]) == ([], [], [])
    # hostile and huge: every identifier cut with the marker, the row under the service's limit
    big = "<script>x</script>\ud800" + "A" * 100_000
    hostile = [{"type": "account", "aadUserId": big, "upn": big, "displayName": big, big: big}] * 20
    (cut,) = sentinel.render([replace(injection(), entities=hostile, entities_omitted=3)], config())[0]
    kept = [e for e in cut["Entities"] if isinstance(e, dict)]
    assert kept and all(len(v) <= 256 and len(k) <= 32 for e in kept for k, v in e.items())
    assert cut["Entities"][-1] == f"{TRUNCATED.strip()} {20 - len(kept) + 3} more"
    assert len(json.dumps(cut)) <= sentinel.MAX_ROW_BYTES
    assert not any(re.search(r"[\ud800-\udfff]", s) for s in strings(cut))
