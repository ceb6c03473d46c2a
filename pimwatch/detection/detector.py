"""What a detector module declares, what it receives, and how the detectors are found.

A detector module under ``detectors/`` exports ``DETECTOR`` (metadata), ``detect(event, state)``
returning a :class:`Hit` or None, and ``CASES``. Adding a detector touches that one file. Authors
import everything from :mod:`pimwatch.detection`.

Windows are declared, not code: ``Detector.window`` (:class:`Window`) says how many distinct
``Hit.distinct`` values per ``Hit.key`` within how long raise the alert (the engine counts them in
the store), and the suppression period: hits of the same key in the same bucket of that size fold
into one alert (0 = every record is its own alert). Users override the declared window with
``threshold``, ``within_minutes`` and ``suppress_minutes`` (:data:`WINDOW_KEYS`). A detector's own
parameters are a pydantic model (:class:`Params`), validated at config time; a field annotated with
:class:`History` is how far back the detector reads state (:mod:`pimwatch.state.retention`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Generic, Protocol

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeVar

from pimwatch.detection import entities as _entities
from pimwatch.detection.alerts import Severity
from pimwatch.detection.contract import Member, Store
from pimwatch.detection.event import Event, Kind, Principal

if TYPE_CHECKING:
    from pimwatch.detection.principals import Principals


class Skip(Exception):
    """Raised by a detector when the event lacks what it needs: counted, never an error."""


# Highly privileged Entra roles, by display name and role template id (the default list).
DEFAULT_PRIVILEGED_ROLES: dict[str, str] = {
    "Global Administrator": "62e90394-69f5-4237-9190-012177145e10",
    "Privileged Role Administrator": "e8611ab8-c189-46e8-94e1-60213ab1f814",
    "Privileged Authentication Administrator": "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    "Security Administrator": "194ae4cb-b126-40b2-bd5b-6091b380977d",
    "Conditional Access Administrator": "b1be1c3e-b65d-4f19-8427-f6fa0d97feb9",
    "Exchange Administrator": "29232cdf-9323-42fd-ade2-1d097af3e4de",
    "SharePoint Administrator": "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    "User Administrator": "fe930be7-5e62-47db-91af-98c3a49a38b1",
    "Application Administrator": "9b895d92-2cd3-44c7-9d02-a6ac2d5ea5c3",
    "Cloud Application Administrator": "158c047a-c907-4556-b7ef-446551a6b5f7",
    "Authentication Administrator": "c4e39bd9-1100-46d3-8c65-fb160da0071f",
    "Helpdesk Administrator": "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    "Billing Administrator": "b0f54661-2d74-4c50-afa3-1ec803f12efe",
}


@dataclass(frozen=True)
class Settings:
    """Deployment facts every detector may read: who is break-glass, which roles are privileged."""

    break_glass_ids: frozenset[str] = frozenset()
    break_glass_upns: frozenset[str] = frozenset()
    privileged_names: frozenset[str] = frozenset(n.lower() for n in DEFAULT_PRIVILEGED_ROLES)
    privileged_ids: frozenset[str] = frozenset(DEFAULT_PRIVILEGED_ROLES.values())

    @classmethod
    def build(
        cls, break_glass: Sequence[str] = (), privileged_roles: Sequence[str] | None = None
    ) -> Settings:
        ids = frozenset(a.strip().lower() for a in break_glass if "@" not in a)
        upns = frozenset(a.strip().lower() for a in break_glass if "@" in a)
        if privileged_roles is None:
            return cls(ids, upns)
        names: set[str] = set()
        role_ids: set[str] = set()
        by_name = {n.lower(): i for n, i in DEFAULT_PRIVILEGED_ROLES.items()}
        for r in privileged_roles:
            r = r.strip()
            if _looks_like_guid(r):
                role_ids.add(r.lower())
            else:
                names.add(r.lower())
                if r.lower() in by_name:
                    role_ids.add(by_name[r.lower()])
        return cls(ids, upns, frozenset(names), frozenset(role_ids))

    def is_break_glass(self, p: Principal) -> bool:
        """Object id first; UPN (case-insensitive) second (Microsoft's guidance, entra-events.md §4)."""
        if p.id is not None and p.id.lower() in self.break_glass_ids:
            return True
        return p.upn is not None and p.upn.lower() in self.break_glass_upns

    def is_privileged(self, role_name: str | None, role_id: str | None) -> bool:
        if role_id is not None and role_id.lower() in self.privileged_ids:
            return True
        return role_name is not None and role_name.lower() in self.privileged_names


def _looks_like_guid(s: str) -> bool:
    parts = s.split("-")
    return len(s) == 36 and [len(p) for p in parts] == [8, 4, 4, 4, 12]


class Params(BaseModel):
    """A detector's own parameters: subclass it with typed fields and defaults, pass the class as
    ``Detector(params=...)`` and read ``state.params.<field>``. Validated strictly at config time
    (``detectors.<id>.<field>``); a ``model_validator`` judges what a type cannot (a zone name)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


Count = Annotated[int, Field(ge=0)]  # a whole number >= 0: a count, or a duration in a named unit


@dataclass(frozen=True)
class History:
    """Marks a :class:`Params` field as how far back the detector reads state, in ``unit`` per
    step: ``lookback_days: Annotated[Count, History(timedelta(days=1))] = 14``. ``lateness`` fields
    are added to the others (a deadline waits for records that arrive late). Retention keeps what
    the largest of these needs; durations that are not look-backs (a TTL, a policy limit) stay
    unmarked."""

    unit: timedelta
    lateness: bool = False


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


@dataclass(frozen=True)
class Window:
    """How hits become alerts: ``threshold`` distinct ``Hit.distinct`` values (default: record ids)
    per key ``within`` a trailing window raise the alert; hits of one key in one ``suppress`` bucket
    fold into one alert (0: every record is its own alert); the context lists named in
    ``accumulate`` are the union over the folded hits. ``distinct`` says in words what is counted
    (the catalogue)."""

    threshold: int = 1
    within: timedelta = timedelta(0)
    suppress: timedelta = timedelta(0)
    distinct: str = ""
    accumulate: tuple[str, ...] = ()

    @property
    def within_minutes(self) -> int | float:
        """``within`` in minutes, as a title says it (``10``, not ``10.0``)."""
        return _in_minutes(self.within)

    def keys(self, like: Window | None = None) -> dict[str, int | float]:
        """The config keys that override this window, with their values: ``threshold`` for a
        counting window, ``within_minutes`` for a window with a width, ``suppress_minutes`` always
        (which keys: those of the window declared ``like``, default this one)."""
        like = like or self
        out: dict[str, int | float] = {}
        if like.threshold > 1:
            out["threshold"] = self.threshold
        if like.within > timedelta(0):
            out["within_minutes"] = _in_minutes(self.within)
        out["suppress_minutes"] = _in_minutes(self.suppress)
        return out

    def override(self, values: dict[str, int | float]) -> Window:
        """This window with the config's ``threshold`` / ``within_minutes`` / ``suppress_minutes``."""
        changed: dict[str, Any] = {}
        if "threshold" in values:
            changed["threshold"] = int(values["threshold"])
        if "within_minutes" in values:
            changed["within"] = minutes(values["within_minutes"])
        if "suppress_minutes" in values:
            changed["suppress"] = minutes(values["suppress_minutes"])
        return replace(self, **changed)

    def reached(
        self, members: Sequence[Member], since: float | None = None
    ) -> Iterator[tuple[Member, list[Member]]]:
        """Each member (at or after ``since``, epoch seconds) whose trailing window holds at least
        ``threshold`` distinct values, with that window. The one window count: the engine raises
        alerts with it, a detector reads which records were counted (:meth:`counted`)."""
        width = self.within.total_seconds()
        rows = sorted(members, key=lambda m: (m.at, m.member))
        counts: Counter[str] = Counter()
        lo = hi = 0
        for last in rows:  # a sliding count: linear in the members, whatever the threshold
            while hi < len(rows) and rows[hi].at <= last.at:
                counts[rows[hi].value] += 1
                hi += 1
            while rows[lo].at < last.at - width:
                counts[rows[lo].value] -= 1
                if not counts[rows[lo].value]:
                    del counts[rows[lo].value]
                lo += 1
            if (since is None or last.at >= since) and len(counts) >= self.threshold:
                yield last, rows[lo:hi]

    def counted(self, members: Sequence[Member]) -> list[Member]:
        """The members that are in some window that reached the threshold."""
        out: dict[str, Member] = {}
        for _, window in self.reached(members):
            out.update({m.member: m for m in window})
        return list(out.values())


WINDOW_KEYS = ("threshold", "within_minutes", "suppress_minutes")


def _in_minutes(span: timedelta) -> int | float:
    value = span / timedelta(minutes=1)
    return int(value) if value == int(value) else value


@dataclass(frozen=True)
class Hit:
    """What ``detect`` returns: one event's contribution to an alert (see module docstring)."""

    key: tuple[str, ...]
    title: str
    context: dict[str, Any]
    principal: Principal
    severity: Severity | None = None
    distinct: str | None = None
    # The record the alert counts, when it is not the event at hand (a hit raised from a later
    # record, or by ``tick``): its event time and record id.
    record: tuple[datetime, str] | None = None
    # Who and what the record is about (pimwatch.detection.entities); the engine adds the principal.
    entities: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True)
class Resolve:
    """What ``detect`` returns when a record closes the reason of the open alerts with this key."""

    key: tuple[str, ...]
    at: datetime | None = None  # event time of the closing record (default: the event at hand)


# MITRE ATT&CK Enterprise tactics, as Microsoft Sentinel names them (an analytics rule's ``tactics``).
TACTICS = (
    "Reconnaissance",
    "ResourceDevelopment",
    "InitialAccess",
    "Execution",
    "Persistence",
    "PrivilegeEscalation",
    "DefenseEvasion",
    "CredentialAccess",
    "Discovery",
    "LateralMovement",
    "Collection",
    "CommandAndControl",
    "Exfiltration",
    "Impact",
)


@dataclass(frozen=True)
class Detector:
    id: str
    severity: Severity
    summary: str
    runbook: str
    mitre: tuple[str, ...]  # ATT&CK technique ids (T1098.003)
    kinds: tuple[Kind, ...] = ("audit",)
    # Which anchors (detections.md) have this detection: "Microsoft PIM", "Sentinel", "Sigma", ...
    anchors: tuple[str, ...] = ()
    # How the detection works, in words, for docs/detectors.md (defaults to the module docstring).
    logic: str = ""
    window: Window = Window()
    params: type[Params] = Params
    # What the detector reads, so the pipeline can count the rest without normalizing it (most of
    # the volume): audit activities (canonical names; None = every activity), and whether it only
    # cares about records that involve a break-glass account.
    activities: frozenset[str] | None = None
    break_glass_only: bool = False
    # A sign-in detector that needs, besides the sign-ins of break-glass accounts, those whose
    # properties-level string fields have one of these values (compared lower-case), e.g.
    # {"riskLevelDuringSignIn": {"high"}}: a property of the record itself, so what is screened out
    # does not depend on what was read before; the others can still be skipped unparsed.
    signin_values: Mapping[str, frozenset[str]] = field(default_factory=dict)
    # ATT&CK tactics the techniques serve, in Sentinel's names (:data:`TACTICS`), in kill-chain order.
    tactics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [t for t in self.tactics if t not in TACTICS]
        if unknown:
            raise ValueError(f"detector {self.id}: unknown MITRE tactics {unknown}; one of {TACTICS}")
        order = sorted(self.tactics, key=TACTICS.index)
        if list(self.tactics) != order or len(set(order)) != len(order):
            raise ValueError(f"detector {self.id}: list each tactic once, in kill-chain order: {order}")

    def alert(
        self,
        event: Event,
        *,
        key: Sequence[str | None],
        title: str,
        context: dict[str, Any] | None = None,
        principal: Principal | None = None,
        severity: Severity | None = None,
        distinct: str | None = None,
        record: tuple[datetime, str] | None = None,
        entities: Sequence[Mapping[str, str]] | None = None,
    ) -> Hit:
        """Build the hit for ``event``; ``principal`` defaults to the event's subject.

        ``entities`` default to those ``event`` names (:func:`pimwatch.detection.entities.of_event`) when the
        hit is for the event at hand; a hit raised on behalf of another ``record`` carries only
        the ``entities`` given (those of that record, remembered with it), so it is the same hit
        whichever record came first."""
        if entities is None:
            entities = _entities.of_event(event) if record is None else ()
        return Hit(
            key=_key(key),
            title=title,
            context=context or {},
            principal=principal or event.subject,
            severity=severity,
            distinct=distinct,
            record=record,
            entities=tuple(entities),
        )

    @property
    def accumulate(self) -> tuple[str, ...]:
        return self.window.accumulate

    def defaults(self) -> dict[str, Any]:
        """Every config key with its default: the window's, then the parameters'."""
        return {**self.window.keys(), **self.params().model_dump()}

    def resolve(self, *, key: Sequence[str | None], at: datetime | None = None) -> Resolve:
        """Close the open alerts of this detector with this key (e.g. the approval finally came)."""
        return Resolve(_key(key), at)


def _key(parts: Sequence[str | None]) -> tuple[str, ...]:
    return tuple("" if k is None else str(k).lower() for k in parts)


P = TypeVar("P", bound=Params, default=Params, covariant=True)


class State(Generic[P]):
    """What a detector sees besides the event: its parameters and window (as configured), the
    settings, scoped state (keys are prefixed with the detector id), and the principals known to be
    privileged. A detector with parameters annotates ``state: State[Config]`` (its Params class)."""

    def __init__(
        self,
        detector_id: str,
        params: P,
        settings: Settings,
        store: Store,
        principals: Principals,
        window: Window = Window(),
    ):
        self.detector_id = detector_id
        self._params = params
        self.window = window
        self.settings = settings
        self.principals = principals
        self._store = store

    @property
    def params(self) -> P:
        return self._params

    def add(
        self, key: str, member: str, at: datetime, value: str = "", payload: dict[str, Any] | None = None
    ) -> bool:
        """Idempotent, event-time windowed membership (see :class:`pimwatch.detection.contract.Store`)."""
        return self._store.add(f"{self.detector_id}\x1f{key}", member, at, value, payload)

    def members(self, key: str, start: datetime, end: datetime) -> list[Member]:
        return self._store.members(f"{self.detector_id}\x1f{key}", start, end)

    def remove(self, key: str, member: str) -> None:
        self._store.remove(f"{self.detector_id}\x1f{key}", member)

    def claim(self, key: str) -> bool:
        return self._store.claim(f"{self.detector_id}\x1f{key}")

    def get(self, key: str) -> Any | None:
        return self._store.get(f"{self.detector_id}\x1f{key}")

    def put(self, key: str, value: Any, *, ttl: timedelta | None = None) -> None:
        self._store.put(f"{self.detector_id}\x1f{key}", value, ttl=ttl)


class DetectFn(Protocol):
    """``detect(event, state)``: a hit, a resolution, both (a list), or None."""

    def __call__(self, event: Event, state: State) -> Hit | Resolve | list[Hit | Resolve] | None: ...


class TickFn(Protocol):
    """Optional module-level ``tick(now, state)``: hits due by the clock (production) or the
    watermark (replay), e.g. an approval that never came."""

    def __call__(self, now: datetime, state: State) -> list[Hit | Resolve]: ...


@dataclass(frozen=True)
class Case:
    """A detector test case: records (real shapes, any input format) in, expected alerts out.

    ``expect`` holds partial alert dicts compared field by field (``title``, ``severity``,
    ``count``, ``principal`` and ``context`` sub-dicts, or ``title_has`` for a substring), in
    first-seen order; ``[]`` means no alert. ``config`` is merged into the test config
    (``break_glass``, ``privileged_roles``, ``detectors``).
    """

    name: str
    records: list[dict[str, Any]]
    expect: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plugin:
    """A discovered detector module."""

    meta: Detector
    detect: DetectFn
    cases: list[Case]
    module: ModuleType
    tick: TickFn | None = None


@dataclass(frozen=True)
class DetectorConfig:
    """One detector's config in effect (built by :func:`pimwatch.config.build`)."""

    enabled: bool
    severity: Severity
    window: Window  # the declared window with the config's threshold / within_minutes / suppress_minutes
    params: Params  # the detector's own Params, validated

    declared: Window = field(default_factory=Window)  # the detector's own window: which window keys it has

    def values(self) -> dict[str, Any]:
        """Every config key with its value in effect (``pimwatch detectors``)."""
        return {**self.window.keys(like=self.declared), **self.params.model_dump()}


class DetectionConfig(Protocol):
    """The part of the config detection reads (:class:`pimwatch.config.Config` has it): the engine
    and the pipeline take this, not the whole config."""

    @property
    def settings(self) -> Settings: ...

    @property
    def detectors(self) -> Mapping[str, DetectorConfig]: ...


def discover(package: str = "detectors") -> list[Plugin]:
    """Import every module of ``package`` that defines ``DETECTOR``; sorted by id."""
    pkg = importlib.import_module(package)
    found: list[Plugin] = []
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        meta = getattr(mod, "DETECTOR", None)
        if not isinstance(meta, Detector):
            continue
        if callable(getattr(mod, "validate", None)):
            raise RuntimeError(
                f"{mod.__name__}: a module-level validate() is no longer read; check the values in a"
                " model_validator of the detector's Params"
            )
        cases = list(getattr(mod, "CASES", []))
        found.append(Plugin(meta, mod.detect, cases, mod, getattr(mod, "tick", None)))
    ids = [p.meta.id for p in found]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise RuntimeError(f"duplicate detector ids: {sorted(dupes)}")
    return sorted(found, key=lambda p: p.meta.id)
