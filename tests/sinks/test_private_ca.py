"""Per-sink TLS trust (``tls_ca_file`` / ``tls_ca_pem``) over REAL TLS on loopback: a throwaway CA signs
the servers' certificates (tests/sinks/private_ca.py); HTTPS through :class:`Http` (webhook, Splunk
HEC) and syslog over TLS, each through the Deliverer as in production. Trusting the CA delivers; not
trusting it is a permanent error (a dead letter) that names the sink and says what to set."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from pimwatch.config import ConfigError, build
from pimwatch.delivery.deliverer import Deliverer, LoadedSink, Policy
from pimwatch.delivery.sink import Http, PermanentError, SinkConfig
from pimwatch.detection.detector import discover
from pimwatch.state.sqlite import SqliteStore
from tests.loopback import Answer
from tests.sinks.private_ca import PrivateCA, serve_https
from tests.sinks.test_syslog import alert, octet_frames, stream_listener

PLUGINS = discover()
SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
HEC_TOKEN = "00000000-1111-2222-3333-444444444444"


def sinks(specs: dict[str, dict[str, Any]]) -> dict[str, LoadedSink]:
    return dict(build({"sinks": specs}, PLUGINS, "t.yaml", env={}).sinks)


def problems(spec: dict[str, Any], name: str = "x") -> list[str]:
    with pytest.raises(ConfigError) as raised:
        build({"sinks": {name: spec}}, PLUGINS, "t.yaml", env={})
    return raised.value.problems


def deliver(loaded: dict[str, LoadedSink]) -> SqliteStore:
    """One alert queued for every sink, one delivery run, no retries in the run."""
    store = SqliteStore()
    store.merge_alert(alert())
    http = Http()
    deliverer = Deliverer(loaded, store, Policy(retries_in_run=0, alert_on_dead_letters=False), http)
    try:
        deliverer.enqueue(alert(), "new")
        deliverer.run()
    finally:
        http.close()
    return store


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "webhook", "url": url + "/hooks/pimwatch", "secret": SECRET, **extra}


def splunk(url: str, **extra: Any) -> dict[str, Any]:
    return {"type": "splunk", "url": url, "token": HEC_TOKEN, **extra}


# --- HTTPS through Http ---------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "ok"), [(webhook, b""), (splunk, b'{"text":"Success","code":0}')])
@pytest.mark.parametrize("how", ["tls_ca_file", "tls_ca_pem"])
def test_https_sink_trusting_the_private_ca_delivers(
    private_ca: PrivateCA, make: Any, ok: bytes, how: str
) -> None:
    trust = str(private_ca.ca_file) if how == "tls_ca_file" else private_ca.ca_pem
    with serve_https(private_ca, Answer(200, ok)) as server:
        store = deliver(sinks({"hook": make(server.url, **{how: trust})}))
    assert len(server.requests) == 1
    [row] = store.deliveries()
    assert (row.status, row.last_error) == ("sent", "")


@pytest.mark.parametrize("make", [webhook, splunk])
def test_https_sink_without_the_ca_is_a_named_permanent_certificate_error(
    private_ca: PrivateCA, other_ca: PrivateCA, make: Any
) -> None:
    with serve_https(private_ca) as server:
        store = deliver(
            sinks({"soar": make(server.url), "wrong-ca": make(server.url, tls_ca_file=str(other_ca.ca_file))})
        )
    assert server.requests == []  # the handshake failed: nothing was sent
    rows = {row.sink: row for row in store.deliveries()}
    kind = make.__name__
    for name in ("soar", "wrong-ca"):
        assert rows[name].status == "dead" and rows[name].attempts == 1  # permanent: not retried
        assert rows[name].last_error.startswith(f"{name} ({kind}): TLS certificate verification failed (")
        assert rows[name].last_error.endswith("; set tls_ca_file for a private CA")
        assert "127.0.0.1" not in rows[name].last_error and HEC_TOKEN not in rows[name].last_error
    assert "certificate verify failed" not in rows["soar"].last_error  # OpenSSL's reason, not the raw text
    assert "unable to get local issuer certificate" in rows["soar"].last_error


def test_http_keeps_one_client_per_distinct_ca_bundle(private_ca: PrivateCA, other_ca: PrivateCA) -> None:
    def cfg(**trust: str) -> SinkConfig:
        return SinkConfig(type="webhook", **trust)

    http = Http()
    try:
        default = http.for_sink(cfg())
        assert default is http
        same = [http.for_sink(cfg(tls_ca_file=str(private_ca.ca_file))) for _ in range(2)]
        inline = http.for_sink(cfg(tls_ca_pem=private_ca.ca_pem))
        other = http.for_sink(cfg(tls_ca_file=str(other_ca.ca_file)))
        clients = {v.client for v in (default, *same, inline, other)}
        assert same[0].client is same[1].client
        assert len(clients) == 4  # default, the private CA's file, its inline PEM, the other CA
    finally:
        http.close()
    assert all(client.is_closed for client in clients)  # the views' clients close with the parent


# --- syslog over TLS ------------------------------------------------------------------------------


def syslog(port: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "syslog",
        "host": "127.0.0.1",
        "port": port,
        "transport": "tls",
        "timeout_seconds": 2,
        **extra,
    }


@pytest.mark.parametrize("how", ["tls_ca_file", "tls_ca_pem", "ca_file"])
def test_syslog_tls_trusting_the_private_ca_delivers(private_ca: PrivateCA, how: str) -> None:
    trust = private_ca.ca_pem if how == "tls_ca_pem" else str(private_ca.ca_file)
    with stream_listener(private_ca.server_context()) as listener:
        loaded = sinks({"cef": syslog(listener.port, **{how: trust})})
        store = deliver(loaded)
        frames = octet_frames(listener.received())
    assert frames == loaded["cef"].render([alert()])
    assert [row.status for row in store.deliveries()] == ["sent"]


def test_syslog_tls_without_the_ca_is_a_named_dead_letter(private_ca: PrivateCA) -> None:
    with stream_listener(private_ca.server_context()) as listener:
        store = deliver(sinks({"cef": syslog(listener.port)}))
    assert listener.connections == []
    [row] = store.deliveries()
    assert row.status == "dead"
    assert row.last_error.startswith("cef (syslog): TLS certificate verification failed (")


# --- config time ----------------------------------------------------------------------------------


def test_ca_problems_are_config_errors_naming_the_key(tmp_path: Path, private_ca: PrivateCA) -> None:
    key_only = tmp_path / "key.pem"
    key_only.write_bytes(private_ca.key_file.read_bytes())
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    url = "https://soar.contoso.com"
    cases: list[tuple[dict[str, Any], str]] = [
        (webhook(url, tls_ca_file=str(tmp_path / "missing.pem")), "sinks.x.tls_ca_file: "),
        (webhook(url, tls_ca_file=str(key_only)), "sinks.x.tls_ca_file: "),
        (webhook(url, tls_ca_file=str(garbage)), "sinks.x.tls_ca_file: "),
        (webhook(url, tls_ca_file=str(tmp_path)), "sinks.x.tls_ca_file: "),  # a folder
        (webhook(url, tls_ca_pem="not a certificate"), "sinks.x.tls_ca_pem: "),
        (
            webhook(url, tls_ca_file=str(private_ca.ca_file), tls_ca_pem=private_ca.ca_pem),
            "sinks.x.tls_ca_pem: ",
        ),
        (syslog(6514, transport="tcp", tls_ca_file=str(private_ca.ca_file)), "sinks.x.transport: "),
        (syslog(6514, ca_file=str(private_ca.ca_file), tls_ca_file=str(private_ca.ca_file)), "sinks.x"),
        (
            splunk(url, ca_file=str(private_ca.ca_file)),
            "sinks.x.ca_file: unknown key",
        ),  # the old name: syslog, email
    ]
    for spec, expected in cases:
        found = problems(spec)
        assert len(found) == 1 and found[0].startswith(expected), (spec, found)
        assert "not base64" not in found[0] and "PRIVATE KEY" not in found[0]
    sentinel = {
        "type": "sentinel",
        "endpoint": "https://dce.westeurope-1.ingest.monitor.azure.com",
        "rule_id": "dcr-" + "0" * 32,
        "tls_ca_pem": private_ca.ca_pem,
    }
    assert problems(sentinel)[0].startswith("sinks.x.tls_ca_pem: ")
    assert "file" in problems(sentinel)[0]


def test_a_ca_file_removed_after_start_is_permanent(tmp_path: Path, private_ca: PrivateCA) -> None:
    moved = tmp_path / "ca.pem"
    moved.write_bytes(private_ca.ca_file.read_bytes())
    loaded = sinks({"soar": webhook("https://127.0.0.1:9", tls_ca_file=str(moved))})
    moved.unlink()
    with pytest.raises(PermanentError, match=r"^soar \(webhook\): cannot load tls_ca_file / tls_ca_pem"):
        loaded["soar"].send(loaded["soar"].render([alert()]), Http())
