"""The Graph client (msgraph-sdk's adapter) against a real HTTP server on loopback (pimwatch/graph/fake.py):
paging, 429 with a fractional Retry-After, 5xx retried, 403 naming the permission, config validation,
and that the Event Hub path never imports msgraph. Waits are recorded, never slept."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pimwatch.config import ConfigError, build
from pimwatch.detection.detector import discover
from pimwatch.graph.client import (
    GraphClient,
    GraphError,
    PermissionDenied,
    backoff,
    build_credential,
    retry_after,
)
from pimwatch.graph.fake import Fault, serve
from pimwatch.graph.settings import GraphSettings
from pimwatch.graph.tenants import compliant

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
PLUGINS = discover()


def _client(url: str, waits: list[float], **kw: object) -> GraphClient:
    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    return GraphClient(GraphSettings(endpoint=url, credential="none", **kw), sleep=sleep)  # type: ignore[arg-type]


def _run(client: GraphClient, path: str, **kw: object) -> list[dict[str, object]]:
    async def go() -> list[dict[str, object]]:
        try:
            return await client.get_all(path, **kw)  # type: ignore[arg-type]
        finally:
            await client.close()

    return asyncio.run(go())


def test_paging_follows_the_whole_next_link_across_pages() -> None:
    tenant = compliant(NOW).copy()
    rows = tenant["roleEligibilityScheduleInstances"]
    assert len(rows) > 5
    with serve(tenant, page_size=2) as g:
        got = _run(
            _client(g.url, []),
            "roleManagement/directory/roleEligibilityScheduleInstances",
            params={"$expand": "principal"},
        )
        assert [r["id"] for r in got] == [r["id"] for r in rows]
        assert all(r["principal"]["id"] == r["principalId"] for r in got)
        pages = -(-len(rows) // 2)
        assert len(g.requests) == pages
        # every page after the first is the nextLink as served: the original query plus $skiptoken
        assert all("%24expand=principal" in r or "$expand=principal" in r for r in g.requests)
        assert [("$skiptoken=" in r) for r in g.requests] == [False] + [True] * (pages - 1)


def test_429_with_a_fractional_retry_after_waits_exactly_that() -> None:
    with serve(compliant(NOW).copy()) as g:
        g.faults.append(Fault("roleDefinitions", 429, "TooManyRequests", {"Retry-After": "2.128"}, times=2))
        waits: list[float] = []
        client = _client(g.url, waits)
        got = _run(client, "roleManagement/directory/roleDefinitions")
        assert len(got) == 14
        assert waits == [2.128, 2.128]
        assert [c.status for c in client.calls] == [429, 429, 200]


def test_5xx_is_retried_with_backoff_and_gives_up_naming_the_request() -> None:
    with serve(compliant(NOW).copy()) as g:
        g.faults += [
            Fault("subscribedSkus", 503, "serviceNotAvailable"),
            Fault("subscribedSkus", 500, "generalException"),
        ]
        waits: list[float] = []
        assert len(_run(_client(g.url, waits), "subscribedSkus")) == 1
        assert waits == [backoff(0), backoff(1)] == [1.0, 2.0]
        g.faults.append(Fault("subscribedSkus", 502, "badGateway", times=10))
        waits.clear()
        with pytest.raises(GraphError, match=r"GET /subscribedSkus: 502 badGateway.*after 2 retries"):
            _run(_client(g.url, waits, max_retries=2), "subscribedSkus")
        assert waits == [1.0, 2.0]


def test_a_retry_after_over_the_limit_fails_instead_of_waiting() -> None:
    with serve(compliant(NOW).copy()) as g:
        g.faults.append(Fault("subscribedSkus", 429, "TooManyRequests", {"Retry-After": "600"}))
        waits: list[float] = []
        with pytest.raises(GraphError, match=r"Retry-After 600 s is over graph\.max_wait_seconds"):
            _run(_client(g.url, waits), "subscribedSkus")
        assert waits == []


def test_403_is_permission_denied_with_the_graph_error_code() -> None:
    with serve(compliant(NOW).copy()) as g:
        g.faults.append(
            Fault(
                "roleDefinitions",
                403,
                "Authorization_RequestDenied",
                message="Insufficient privileges to complete the operation.",
            )
        )
        with pytest.raises(PermissionDenied) as caught:
            _run(_client(g.url, []), "roleManagement/directory/roleDefinitions")
        assert caught.value.status == 403 and caught.value.code == "Authorization_RequestDenied"
        assert "Insufficient privileges" in str(caught.value)
        assert len(g.requests) == 1  # not retried


def test_retry_after_reads_seconds_fractions_and_http_dates() -> None:
    assert retry_after("2.128") == 2.128
    assert retry_after("7") == 7.0
    assert retry_after("Mon, 02 Mar 2026 12:00:30 GMT", NOW) == 30.0
    assert retry_after("soon") is None and retry_after(None) is None


def _config(graph: dict[str, object]) -> object:
    return build({"graph": graph}, PLUGINS, "test config")


def test_graph_config_is_validated_with_the_key_path() -> None:
    with pytest.raises(ConfigError, match=r"graph\.credential: .*'none' .* only with a loopback"):
        _config({"credential": "none"})
    with pytest.raises(ConfigError, match=r"graph\.endpoint: .*plain http is accepted only for a loopback"):
        _config({"endpoint": "http://graph.example.com"})
    with pytest.raises(ConfigError, match=r"graph\.endpoint: .*without a version"):
        _config({"endpoint": "https://graph.microsoft.com/v1.0"})
    with pytest.raises(ConfigError, match=r"graph: .*client_secret needs graph\.tenant_id, graph\.client_id"):
        _config({"credential": "client_secret"})
    with pytest.raises(ConfigError, match=r"graph\.credential: Input should be"):
        _config({"credential": "password"})
    ok = _config({"endpoint": "http://127.0.0.1:9/", "credential": "none"})
    assert ok.graph.endpoint == "http://127.0.0.1:9"  # type: ignore[attr-defined]
    assert _config({}).graph.authority == "login.microsoftonline.com"  # type: ignore[attr-defined]
    us = _config({"endpoint": "https://graph.microsoft.us"})
    assert us.graph.authority == "login.microsoftonline.us"  # type: ignore[attr-defined]


def test_a_client_secret_comes_from_the_named_variable_and_is_never_echoed() -> None:
    s = GraphSettings(credential="client_secret", tenant_id="t", client_id="c", client_secret_env="MY_SECRET")
    with pytest.raises(GraphError, match="environment variable MY_SECRET is not set"):
        build_credential(s, {})
    cred = build_credential(s, {"MY_SECRET": "s3cr3t-value"})
    assert type(cred).__name__ == "ClientSecretCredential"
    asyncio.run(cred.close())


def test_the_event_hub_path_never_imports_msgraph() -> None:
    """function_app, the runtime and a whole Event Hub batch (config with a graph: section) load no
    msgraph, kiota or Graph client module."""
    code = f"""
import sys, tempfile, os
sys.path.insert(0, {str(ROOT)!r})
import function_app
from pimwatch.config import build
from pimwatch.detection.detector import discover
from pimwatch.state.quarantine import Quarantine
from pimwatch.hosting.runtime import Runtime
from pimwatch.state.sqlite import SqliteStore
from pimwatch.testing import pim, user
d = tempfile.mkdtemp()
plugins = discover()
cfg = build({{"graph": {{"credential": "managed_identity"}}, "posture": {{"checks": {{}}}}}}, plugins)
q = Quarantine(os.path.join(d, "q.jsonl"))
rt = Runtime(cfg, plugins, lambda: SqliteStore(os.path.join(d, "s.db")), q)
import orjson
record = pim("Update role setting in PIM", "2026-03-02T12:00:00Z", user("admin"))
report = rt.handle([orjson.dumps({{"records": [record]}})])
assert report.records == 1, report
rt.close()
sdk = ("msgraph", "msgraph_core", "kiota_abstractions", "kiota_http")
ours = ("pimwatch.graph.client", "pimwatch.graph.posture", "posture")
bad = sorted(m for m in sys.modules if m.split(".")[0] in sdk or m.startswith(ours))
print(bad)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_token_fails_every_check_once_with_the_credential_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``developer`` (AzureCliCredential) with no ``az`` on PATH: the real credential fails at once."""
    from pimwatch.graph.run import check_tenant

    monkeypatch.setenv("PATH", str(tmp_path))
    with serve(compliant(NOW).copy()) as g:
        config = build({"graph": {"endpoint": g.url, "credential": "developer"}}, PLUGINS, "test")
        outcome, client = check_tenant(config, NOW)
        assert g.requests == []  # nothing was sent without a token
    assert {c.status for c in outcome.checks} == {"error"}
    reasons = {c.reason for c in outcome.checks}
    assert all("no token from graph.credential developer (CredentialUnavailableError" in r for r in reasons)
    assert len(client.calls) == 0
