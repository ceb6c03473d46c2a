"""The PIM settings baseline ``posture.policy_drift`` compares every role's and PIM group's policy with.

A YAML file of tiers; each tier names roles (display names or template ids) and PIM groups (object
ids), and the expected value of any of the 17 policy rules (graph-and-report.md §1.4). Validated like
the config: every error names its key path (``tiers.high.rules.Expiration_EndUser_Assignment.
maximumDuration: ...``). The default (:data:`DEFAULT`) is the guide's tiers.

Comparison per field: ``maximumDuration`` at most the expected; ``enabledRules`` and
``notificationRecipients`` contain the expected; ``min_approvers`` at least that many primary
approvers over the approval stages; every other field equal. MFA on activation is also met by an
enabled authentication context (``AuthenticationContext_EndUser_Assignment.isEnabled``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pimwatch.config import ConfigError, _loc

DEFAULT = """\
# The guide's tiers (docs/graph.md): high-privilege and medium roles.
tiers:
  high:
    roles: [Global Administrator, Privileged Role Administrator]
    groups: []
    rules:
      Expiration_EndUser_Assignment: {isExpirationRequired: true, maximumDuration: PT4H}
      Enablement_EndUser_Assignment: {enabledRules: [MultiFactorAuthentication, Justification, Ticketing]}
      Approval_EndUser_Assignment: {isApprovalRequired: true, min_approvers: 1}
      Expiration_Admin_Eligibility: {isExpirationRequired: true, maximumDuration: P180D}
      Expiration_Admin_Assignment: {isExpirationRequired: true, maximumDuration: P180D}
      Enablement_Admin_Assignment: {enabledRules: [Justification]}
      Notification_Admin_EndUser_Assignment: {isDefaultRecipientsEnabled: true}
  medium:
    roles: [User Administrator, Exchange Administrator]
    groups: []
    rules:
      Expiration_EndUser_Assignment: {isExpirationRequired: true, maximumDuration: PT8H}
      Enablement_EndUser_Assignment: {enabledRules: [MultiFactorAuthentication, Justification]}
      Expiration_Admin_Eligibility: {isExpirationRequired: true, maximumDuration: P365D}
      Expiration_Admin_Assignment: {isExpirationRequired: true, maximumDuration: P365D}
      Enablement_Admin_Assignment: {enabledRules: [Justification]}
"""

RULE_IDS = (
    "Expiration_Admin_Eligibility",
    "Enablement_Admin_Eligibility",
    "Notification_Admin_Admin_Eligibility",
    "Notification_Requestor_Admin_Eligibility",
    "Notification_Approver_Admin_Eligibility",
    "Expiration_Admin_Assignment",
    "Enablement_Admin_Assignment",
    "Notification_Admin_Admin_Assignment",
    "Notification_Requestor_Admin_Assignment",
    "Notification_Approver_Admin_Assignment",
    "Approval_EndUser_Assignment",
    "AuthenticationContext_EndUser_Assignment",
    "Expiration_EndUser_Assignment",
    "Enablement_EndUser_Assignment",
    "Notification_Admin_EndUser_Assignment",
    "Notification_Requestor_EndUser_Assignment",
    "Notification_Approver_EndUser_Assignment",
)

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def duration(text: str) -> timedelta:
    """ISO 8601 durations as PIM writes them (``PT8H``, ``PT1H45M``, ``P180D``)."""
    m = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if m is None or text.strip() in ("P", "PT"):
        raise ValueError(f"expected an ISO 8601 duration such as PT8H or P180D, got {text!r}")
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return timedelta(days=d, hours=h, minutes=mi, seconds=s)


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ExpirationRule(_Rule):
    isExpirationRequired: bool | None = None
    maximumDuration: str | None = None

    @field_validator("maximumDuration")
    @classmethod
    def _iso(cls, v: str | None) -> str | None:
        if v is not None:
            duration(v)
        return v


class EnablementRule(_Rule):
    enabledRules: list[Literal["MultiFactorAuthentication", "Justification", "Ticketing"]] | None = None


class ApprovalRule(_Rule):
    isApprovalRequired: bool | None = None
    isRequestorJustificationRequired: bool | None = None
    min_approvers: int | None = Field(None, ge=0)


class AuthenticationContextRule(_Rule):
    isEnabled: bool | None = None
    claimValue: str | None = None


class NotificationRule(_Rule):
    isDefaultRecipientsEnabled: bool | None = None
    notificationRecipients: list[str] | None = None
    notificationLevel: Literal["None", "Critical", "All"] | None = None


KINDS: dict[str, type[_Rule]] = {
    "Expiration": ExpirationRule,
    "Enablement": EnablementRule,
    "Approval": ApprovalRule,
    "AuthenticationContext": AuthenticationContextRule,
    "Notification": NotificationRule,
}


class _Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    roles: list[str] = []
    groups: list[str] = []
    rules: dict[str, dict[str, Any]] = {}


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tiers: dict[str, _Tier]


@dataclass(frozen=True)
class Tier:
    name: str
    roles: tuple[str, ...]  # lower-cased names or template ids
    groups: tuple[str, ...]  # lower-cased group ids
    rules: dict[str, _Rule]  # rule id -> expected fields (only those set)
    rank: int  # file order: the first tier is the strictest (a group holding roles of two tiers gets it)


@dataclass(frozen=True)
class Baseline:
    tiers: tuple[Tier, ...]
    source: str = "default"

    def tier_of_role(self, role_id: str, name: str | None) -> Tier | None:
        keys = {role_id.lower(), (name or "").lower()}
        return next((t for t in self.tiers if keys & set(t.roles)), None)

    def tier_of_group(self, group_id: str) -> Tier | None:
        return next((t for t in self.tiers if group_id.lower() in t.groups), None)


def load(path: str | None) -> Baseline:
    if path is None:
        return parse(yaml.safe_load(DEFAULT), "default")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the baseline file: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    return parse(data, path)


def parse(data: Any, source: str) -> Baseline:
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping with 'tiers'"])
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_problem(d, ()) for d in exc.errors()]) from None
    problems: list[str] = []
    tiers: list[Tier] = []
    for rank, (name, tier) in enumerate(raw.tiers.items()):
        rules: dict[str, _Rule] = {}
        for rule_id, fields in tier.rules.items():
            path = ("tiers", name, "rules", rule_id)
            if rule_id not in RULE_IDS:
                problems.append(f"{_loc(path)}: unknown rule id (known: {', '.join(RULE_IDS)})")
                continue
            model = KINDS[rule_id.split("_", 1)[0]]
            try:
                rules[rule_id] = model.model_validate(fields or {})
            except ValidationError as exc:
                problems += [_problem(d, path) for d in exc.errors()]
        tiers.append(
            Tier(
                name,
                tuple(r.strip().lower() for r in tier.roles),
                tuple(g.strip().lower() for g in tier.groups),
                rules,
                rank,
            )
        )
    if problems:
        raise ConfigError(source, problems)
    return Baseline(tuple(tiers), source)


def _problem(d: Any, prefix: tuple[str, ...]) -> str:
    msg = "unknown key" if d["type"] == "extra_forbidden" else str(d["msg"]).removeprefix("Value error, ")
    return f"{_loc((*prefix, *d['loc']))}: {msg}"


def compare(rule_id: str, expected: _Rule, actual: dict[str, Any] | None) -> list[tuple[str, Any, Any]]:
    """The (field, expected, actual) pairs where ``actual`` (the rule's JSON) misses the baseline."""
    out: list[tuple[str, Any, Any]] = []
    setting = (actual or {}).get("setting") or {}
    for name, want in expected.model_dump(exclude_none=True).items():
        if actual is None:
            out.append((name, want, None))
            continue
        if name == "min_approvers":
            stages = setting.get("approvalStages") or []
            count = sum(len(s.get("primaryApprovers") or []) for s in stages if isinstance(s, dict))
            if count < want:
                out.append((name, want, count))
            continue
        got: Any = (setting if name in _SETTING else actual).get(name)
        if name == "maximumDuration":
            ok = isinstance(got, str) and _fits(got, want)
        elif name in ("enabledRules", "notificationRecipients"):
            have = {str(x).lower() for x in got or []}
            ok = {str(x).lower() for x in want} <= have
        else:
            ok = got == want
        if not ok:
            out.append((name, want, got))
    return out


_SETTING = frozenset({"isApprovalRequired", "isRequestorJustificationRequired"})  # under "setting"


def _fits(got: str, want: str) -> bool:
    try:
        return duration(got) <= duration(want)
    except ValueError:
        return False
