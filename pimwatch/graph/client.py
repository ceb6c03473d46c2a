"""The Graph client: ``msgraph-sdk``'s request adapter and ``azure-identity`` credentials, with paging,
throttling and errors that say what to do.

``msgraph`` and ``azure.identity`` are imported when a client is built (:meth:`GraphClient.open`),
never at module import: the Event Hub path never loads them (tests/test_graph_client.py).

Requests go through ``GraphRequestAdapter`` (the SDK's auth provider, middleware and ``ODataError``
mapping) as raw ``GET``\\ s of full URLs, and the JSON is read as is: the posture checks compare policy
rules field by field and quote them as evidence, several endpoints are beta only (not in the v1.0 SDK),
and ``@odata.nextLink`` is followed whole, as Graph asks.

**Retries are ours, not the SDK middleware's**, which is switched off per request: kiota-http 1.16.0
reads ``Retry-After`` with ``int()`` and falls back to a random exponential backoff for a fractional
value such as Graph's documented ``Retry-After: 2.128``; it does not retry 500/502; and its wait is a
real ``asyncio.sleep``. Here 429, 500, 502, 503, 504 and connection failures are retried up to
``graph.max_retries`` times, waiting ``Retry-After`` (seconds, fractional, or an HTTP date) or else
1, 2, 4 ... 60 s (no jitter: the same answers give the same waits); the wait is injectable
(``sleep``) so tests never sleep for real.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

from pimwatch.graph.settings import GraphSettings

Sleep = Callable[[float], Awaitable[None]]
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
DENIED = frozenset({"Authorization_RequestDenied", "accessDenied", "Forbidden"})
MAX_BACKOFF = 60.0


class GraphError(RuntimeError):
    """A Graph request failed for good (after its retries). Never carries a token or a secret."""

    def __init__(self, message: str, *, path: str = "", status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.path, self.status, self.code = path, status, code


class PermissionDenied(GraphError):
    """403: the app lacks a permission (or a license gates the API): the caller names which."""


class NotLicensed(GraphError):
    """The tenant's license does not include the API (PIM without Entra ID P2 / ID Governance)."""


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: seconds (fractional too) or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff(attempt: int) -> float:
    return min(MAX_BACKOFF, float(2**attempt))


def url_for(endpoint: str, version: str, path: str, params: Mapping[str, str] | None = None) -> str:
    """The full URL; query values are percent-encoded (spaces as %20, as Graph's own links do)."""
    url = f"{endpoint}/{version}/{path.lstrip('/')}"
    if params:
        url += "?" + "&".join(f"{k}={quote(v, safe=chr(39) + '(),=/:')}" for k, v in params.items())
    return url


@dataclass
class Call:
    """One HTTP request made (for the run's report and for tests that count requests)."""

    url: str
    status: int


@dataclass
class GraphClient:
    settings: GraphSettings
    sleep: Sleep = asyncio.sleep
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    calls: list[Call] = field(default_factory=list)
    _adapter: Any = None
    _credential: Any = None
    _no_token: GraphError | None = None  # the credential failed: every later request fails the same

    # --- building --------------------------------------------------------------------------------
    def open(self) -> None:
        """Build the SDK's adapter and the credential (imports ``msgraph`` and ``azure.identity``)."""
        if self._adapter is not None:
            return
        from kiota_abstractions.authentication import AnonymousAuthenticationProvider
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )
        from msgraph.graph_request_adapter import GraphRequestAdapter
        from msgraph.graph_service_client import GraphServiceClient
        from msgraph_core import GraphClientFactory

        s = self.settings
        if s.credential == "none":
            auth: Any = AnonymousAuthenticationProvider()
        else:
            self._credential = build_credential(s, self.env)
            host = urlsplit(s.endpoint).hostname or ""
            auth = AzureIdentityAuthenticationProvider(
                self._credential, scopes=[f"{s.endpoint}/.default"], allowed_hosts=[host]
            )
        import httpx

        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=httpx.Timeout(s.timeout_seconds), follow_redirects=False)
        )
        adapter = GraphRequestAdapter(auth, client=http)
        GraphServiceClient(request_adapter=adapter)  # registers the JSON (de)serialisers ODataError needs
        self._adapter = adapter

    async def close(self) -> None:
        if self._credential is not None and hasattr(self._credential, "close"):
            await self._credential.close()
        self._credential = None
        self._adapter = None

    # --- requests --------------------------------------------------------------------------------
    async def get(self, path: str, params: Mapping[str, str] | None = None, version: str = "v1.0") -> Any:
        """One GET of ``path`` (under ``/{version}/``): the decoded JSON body."""
        return await self._get(url_for(self.settings.endpoint, version, path, params), path)

    async def get_all(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        version: str = "v1.0",
        *,
        max_pages: int = 500,
    ) -> list[dict[str, Any]]:
        """Every item of a collection, following ``@odata.nextLink`` (the whole URL, as Graph asks)."""
        items: list[dict[str, Any]] = []
        async for page in self.pages(path, params, version, max_pages=max_pages):
            items.extend(page)
        return items

    async def pages(
        self,
        path: str,
        params: Mapping[str, str] | None = None,
        version: str = "v1.0",
        *,
        max_pages: int = 500,
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """A collection page by page (the items of each), following ``@odata.nextLink`` whole."""
        url: str | None = url_for(self.settings.endpoint, version, path, params)
        pages = 0
        while url is not None:
            body = await self._get(url, path)
            value = body.get("value") if isinstance(body, dict) else None
            if not isinstance(value, list):
                raise GraphError(
                    f"GET /{path}: expected a collection ('value' list) in the answer", path=path
                )
            yield [v for v in value if isinstance(v, dict)]
            link = body.get("@odata.nextLink")
            url = link if isinstance(link, str) and link else None
            pages += 1
            if pages >= max_pages and url is not None:
                raise GraphError(f"GET /{path}: more than {max_pages} pages, stopped", path=path)

    async def _get(self, url: str, path: str) -> Any:
        self.open()
        if self._no_token is not None:
            raise self._no_token
        import httpx
        from azure.core.exceptions import ClientAuthenticationError
        from kiota_abstractions.api_error import APIError
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation
        from kiota_http.middleware.options import RetryHandlerOption
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError

        s = self.settings
        for attempt in range(s.max_retries + 1):
            info = RequestInformation(Method.GET)
            info.url = url
            info.headers.try_add("Accept", "application/json")
            info.add_request_options([RetryHandlerOption(max_retries=0, should_retry=False)])
            wait: float | None
            try:
                body = await self._adapter.send_primitive_async(info, "bytes", {"XXX": ODataError})
            except APIError as exc:
                status = int(exc.response_status_code or 0)
                self.calls.append(Call(url, status))
                headers = exc.response_headers or {}
                code, message = _odata(exc)
                if status not in RETRY_STATUS or attempt == s.max_retries:
                    raise _failure(path, status, code, message, attempt) from None
                wait = retry_after(_header(headers, "retry-after"))
                if wait is None:
                    wait = backoff(attempt)
                if wait > s.max_wait_seconds:
                    raise GraphError(
                        f"GET /{path}: throttled ({status}), Retry-After {wait:g} s is over "
                        f"graph.max_wait_seconds ({s.max_wait_seconds:g})",
                        path=path,
                        status=status,
                        code=code,
                    ) from None
            except ClientAuthenticationError as exc:
                # No token (no managed identity here, `az login` missing, a wrong secret): not
                # retried; the message is the credential's, which names no secret.
                first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
                self._no_token = GraphError(
                    f"no token from graph.credential {s.credential} ({type(exc).__name__}: {first})",
                    path=path,
                )
                raise self._no_token from None
            except httpx.TransportError as exc:
                self.calls.append(Call(url, 0))
                if attempt == s.max_retries:
                    raise GraphError(
                        f"GET /{path}: cannot reach {s.endpoint} ({type(exc).__name__}) after "
                        f"{attempt + 1} attempts",
                        path=path,
                    ) from None
                wait = backoff(attempt)
            else:
                self.calls.append(Call(url, 200))
                if not body:
                    return None
                try:
                    return orjson.loads(body)
                except orjson.JSONDecodeError:
                    raise GraphError(f"GET /{path}: the answer is not JSON", path=path) from None
            await self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover


def _header(headers: Any, name: str) -> str | None:
    try:
        value = headers.get(name)
    except AttributeError:
        return None
    return value if isinstance(value, str) else None


def _odata(exc: Exception) -> tuple[str, str]:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) or ""
    message = getattr(error, "message", None) or ""
    return str(code), str(message)[:300]


def _failure(path: str, status: int, code: str, message: str, retries: int) -> GraphError:
    what = f"GET /{path}: {status} {code}".rstrip() + (f": {message}" if message else "")
    if retries:
        what += f" (after {retries} retries)"
    if status == 403 and "license" in (code + message).lower():
        return NotLicensed(what, path=path, status=status, code=code)
    if status in (401, 403):
        return PermissionDenied(what, path=path, status=status, code=code)
    return GraphError(what, path=path, status=status, code=code)


def build_credential(s: GraphSettings, env: Mapping[str, str]) -> Any:
    """The azure-identity (async) credential ``graph.credential`` names; its errors name the setting,
    never a secret's value."""
    from azure.identity.aio import (
        AzureCliCredential,
        CertificateCredential,
        ClientSecretCredential,
        ManagedIdentityCredential,
    )

    kw: dict[str, Any] = {"authority": s.authority} if s.authority else {}
    if s.credential == "managed_identity":
        return (
            ManagedIdentityCredential(client_id=s.client_id) if s.client_id else ManagedIdentityCredential()
        )
    if s.credential == "client_secret":
        secret = env.get(s.client_secret_env)
        if not secret:
            raise GraphError(
                f"graph.credential client_secret: environment variable {s.client_secret_env} is not set"
            )
        assert s.tenant_id and s.client_id  # the settings' validator
        return ClientSecretCredential(s.tenant_id, s.client_id, secret, **kw)
    if s.credential == "certificate":
        assert s.tenant_id and s.client_id and s.certificate_path
        if not os.path.isfile(s.certificate_path):
            raise GraphError(f"graph.certificate_path: no file at {s.certificate_path}")
        return CertificateCredential(s.tenant_id, s.client_id, certificate_path=s.certificate_path, **kw)
    if s.credential == "developer":  # `az login` on the developer's machine
        return AzureCliCredential(tenant_id=s.tenant_id) if s.tenant_id else AzureCliCredential()
    raise GraphError(f"graph.credential: {s.credential} needs no credential")
