"""The one normalized event every detector sees, whatever shape the record came in."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

Kind = Literal["audit", "signin"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A user, group, service principal or app. Any member may be unknown (None)."""

    id: str | None = None
    upn: str | None = None
    name: str | None = None
    type: str | None = None  # "User", "Group", "ServicePrincipal", "App"
    ip: str | None = None

    def label(self) -> str:
        """The most readable non-empty identifier, for titles."""
        return self.upn or self.name or self.id or "(unknown)"

    def as_alert(self) -> dict[str, str | None]:
        return {"id": self.id, "upn": self.upn, "name": self.name}


NOBODY = Principal()


@dataclass(frozen=True, slots=True)
class SignIn:
    """Sign-in specific fields (interactive and non-interactive user sign-ins)."""

    app: str | None = None
    app_id: str | None = None
    resource: str | None = None
    ip: str | None = None
    country: str | None = None
    city: str | None = None
    error_code: int | None = None
    failure_reason: str | None = None
    ca_status: str | None = None
    auth_requirement: str | None = None
    auth_methods: tuple[str, ...] = ()
    risk_during: str | None = None
    risk_aggregated: str | None = None
    risk_state: str | None = None
    interactive: bool | None = None
    client_app: str | None = None
    user_agent: str | None = None
    correlation_id: str | None = None
    tenant_id: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_code == 0


@dataclass(frozen=True, slots=True)
class Modified:
    """One ``modifiedProperties`` entry: the property's display name and its old and new values.

    Values are decoded once, the same way for every input shape: JSON text (Entra writes
    ``"\\"true\\""``, a whole policy as text, sometimes text of text) becomes what it encodes,
    other text stays as written, and an empty side (``null``, ``""``) is ``None``.
    """

    name: str
    old: Any = None
    new: Any = None


@dataclass(frozen=True, slots=True)
class Target:
    """One ``targetResources`` entry, in the record's order, with its modified properties."""

    type: str | None = None
    id: str | None = None
    name: str | None = None  # displayName
    upn: str | None = None
    modified: tuple[Modified, ...] = ()


@dataclass(frozen=True, slots=True)
class Event:
    """A normalized Entra audit record or user sign-in.

    ``kind`` is what detectors route on; ``category`` is the log category the record came from
    (``AuditLogs``, ``SignInLogs``, ``NonInteractiveUserSignInLogs``) and ``shape`` the input shape
    (``eventhub``, ``graph``, ``loganalytics``). ``raw`` is the record as read, for alert context.
    """

    kind: Kind
    id: str
    time: datetime
    category: str
    shape: str
    activity: str = ""
    audit_category: str | None = None
    service: str | None = None
    operation_type: str | None = None
    result: str | None = None
    result_reason: str | None = None
    correlation_id: str | None = None
    request_id: str | None = None
    tenant_id: str | None = None
    actor: Principal = NOBODY
    target: Principal = NOBODY
    role_name: str | None = None
    role_id: str | None = None
    scope_type: str | None = None  # "directory", "group", "resource"
    scope_id: str | None = None
    scope_name: str | None = None
    justification: str | None = None
    ticket: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    details: dict[str, str] = field(default_factory=dict)  # additionalDetails, keys lower-cased
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    # Sign-in details are decoded on first use: ~90% of records are sign-ins and almost all of them
    # only need the cheap break-glass check on ``actor`` (DESIGN.md, "the path of one record").
    signin_source: Callable[[], SignIn] | None = field(default=None, compare=False, repr=False)
    _signin: list[SignIn] = field(default_factory=list, compare=False, repr=False)
    # Targets (and their modified properties, which can hold whole policies as JSON text) are
    # decoded on first use too: few detectors read them.
    targets_source: Callable[[], tuple[Target, ...]] | None = field(default=None, compare=False, repr=False)
    _targets: list[tuple[Target, ...]] = field(default_factory=list, compare=False, repr=False)

    @property
    def failed(self) -> bool:
        return self.result == "failure"

    @property
    def subject(self) -> Principal:
        """The principal acted on (the target), else the one who acted (the actor)."""
        return self.target if (self.target.id or self.target.upn) else self.actor

    @property
    def signin(self) -> SignIn | None:
        if self.signin_source is None:
            return None
        if not self._signin:
            self._signin.append(self.signin_source())
        return self._signin[0]

    @property
    def targets(self) -> tuple[Target, ...]:
        """The audit record's ``targetResources``, whatever the input shape (empty for sign-ins)."""
        if self.targets_source is None:
            return ()
        if not self._targets:
            self._targets.append(self.targets_source())
        return self._targets[0]

    @property
    def modified(self) -> tuple[Modified, ...]:
        """Every target's modified properties, in record order (target by target)."""
        return tuple(m for t in self.targets for m in t.modified)

    def named_target(self, types: tuple[str, ...] = ("Other", "Role")) -> tuple[str, str] | None:
        """(display name, id) of the first target of the first of ``types`` that has a display name."""
        for ttype in types:
            for t in self.targets:
                if t.type == ttype and t.name:
                    return t.name, t.id or ""
        return None
