"""``graph:`` and ``posture:`` in the config (validated with the rest; errors name the key path).

```yaml
graph:
  endpoint: https://graph.microsoft.com     # national clouds: docs/graph.md
  credential: managed_identity   # managed_identity | client_secret | certificate | developer | none
  tenant_id: <guid>                         # client_secret, certificate (and developer, optional)
  client_id: <guid>                         # the app; for managed_identity: a user-assigned identity's
  client_secret_env: PIMWATCH_GRAPH_CLIENT_SECRET   # the NAME of the variable holding the secret
  certificate_path: /path/cert.pem          # certificate
posture:
  baseline: <path to a baseline YAML>       # default: the guide's tiers (pimwatch/graph/baseline.py)
  checks:
    <check id>: {enabled: true, severity: high, <parameter>: <value>}
```

Only standard-library and pydantic imports here: the config module imports this on every path.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from pimwatch.delivery.http import is_loopback as host_is_loopback

PUBLIC_CLOUD = "https://graph.microsoft.com"

# Graph endpoint → the Entra authority azure-identity must ask for tokens (national clouds).
AUTHORITIES: dict[str, str] = {
    "https://graph.microsoft.com": "login.microsoftonline.com",
    "https://graph.microsoft.us": "login.microsoftonline.us",  # US Government L4
    "https://dod-graph.microsoft.us": "login.microsoftonline.us",  # US Government L5 (DoD)
    "https://microsoftgraph.chinacloudapi.cn": "login.chinacloudapi.cn",  # operated by 21Vianet
}

Credential = Literal["managed_identity", "client_secret", "certificate", "developer", "none"]


def is_loopback(url: str) -> bool:
    """Whether ``url`` points at this machine, by the one loopback rule the sinks use."""
    return host_is_loopback(urlsplit(url).hostname)


class PullSettings(BaseModel):
    """``graph.pull``: the Graph pull of audit and sign-in records (pimwatch/graph/pull.py, docs/graph.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = False  # the Functions ``pull`` timer runs only when true (the CLI runs when asked)
    overlap_minutes: float = Field(default=15.0, ge=0, le=24 * 60)  # re-read for late records
    lookback_hours: float = Field(default=24.0, gt=0, le=30 * 24)  # the first pull (no cursor yet)
    interval_seconds: float = Field(default=300.0, ge=10)  # `pimwatch pull` without --once
    signins: bool = True  # also pull the watched principals' sign-ins
    audit_filters: list[str] = []  # more directoryAudits queries, e.g. "category eq 'Policy'"
    max_pages: int = Field(default=500, ge=1)  # per query and pull; more fails the query (cursor kept)


class GraphSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str = PUBLIC_CLOUD
    credential: Credential = "managed_identity"
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_env: str = "PIMWATCH_GRAPH_CLIENT_SECRET"
    certificate_path: str | None = None
    timeout_seconds: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=5, ge=0, le=20)  # per request: 429, 5xx and connection failures
    max_wait_seconds: float = Field(default=120.0, gt=0)  # a longer Retry-After fails the request instead
    pull: PullSettings = PullSettings()

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        value = value.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f"expected the Graph root URL such as {PUBLIC_CLOUD}, got {value!r}")
        if parts.path not in ("", "/"):
            raise ValueError(f"expected the root URL without a version (no /v1.0), got {value!r}")
        if parts.scheme == "http" and not is_loopback(value):
            raise ValueError(f"plain http is accepted only for a loopback test server, got {value!r}")
        return value

    @field_validator("credential")
    @classmethod
    def _credential(cls, value: str, info: ValidationInfo) -> str:
        endpoint = info.data.get("endpoint")
        if value == "none" and not (isinstance(endpoint, str) and is_loopback(endpoint)):
            raise ValueError("'none' (no token) is accepted only with a loopback graph.endpoint (tests)")
        return value

    @model_validator(mode="after")
    def _needs(self) -> GraphSettings:
        missing = []
        if self.credential in ("client_secret", "certificate"):
            missing += [k for k in ("tenant_id", "client_id") if not getattr(self, k)]
        if self.credential == "certificate" and not self.certificate_path:
            missing.append("certificate_path")
        if missing:
            raise ValueError(
                f"credential: {self.credential} needs " + ", ".join(f"graph.{k}" for k in missing)
            )
        return self

    @property
    def authority(self) -> str | None:
        return AUTHORITIES.get(self.endpoint)


class PostureSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    baseline: str | None = None
    checks: dict[str, dict[str, Any] | None] = {}
    # The deployed app: re-check a role or group within seconds of a change record (graph/recheck.py),
    # and how long the directory enrichment read from Graph is kept (graph/enrich.py; 0: not read).
    recheck: bool = True
    enrichment_ttl_minutes: float = Field(default=60.0, ge=0)
