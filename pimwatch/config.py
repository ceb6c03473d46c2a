"""The YAML config, validated before any input is read; every error names its key path.

```yaml
break_glass:
  accounts: [<object id or UPN>, ...]
  groups: [<group object id>, ...]                     # members read through Graph (docs/graph.md)
privileged_roles: [<role name or template id>, ...]   # optional; defaults to the built-in list
detectors:
  <detector id>:
    enabled: true|false
    severity: critical|high|medium|low|info
    <parameter>: <value of the parameter's type>
sinks: {<name>: {type: <sink>, ...}}                   # docs/sinks.md
delivery: {max_attempts: 12, ...}                      # docs/sinks.md
routing: {group_by: [action], group_wait: 30s}         # grouping, docs/sinks.md
pipeline:
  silent_minutes: 30      # the deployed app: no records for this long raises pipeline.silent (0: off)
  retention_days: 30      # keep state this long (default: what the enabled detectors need, >= 7)
graph: {endpoint: ..., credential: managed_identity}  # docs/graph.md (pimwatch/graph/settings.py)
posture: {baseline: <file>, checks: {<check id>: {...}}}
report: {retention_days: 400, schedule: {weekday: mon, hour: 7}, mail: <email sink>}  # docs/report.md
```
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import pkgutil
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, ValidationError
from pydantic_core import ErrorDetails

from pimwatch.delivery.deliverer import LoadedSink, Policy, sink_module
from pimwatch.delivery.grouping import Grouping
from pimwatch.detection.alerts import Severity
from pimwatch.detection.detector import (
    WINDOW_KEYS,
    Detector,
    DetectorConfig,
    Params,
    Plugin,
    Settings,
    Window,
    _looks_like_guid,
)
from pimwatch.graph.settings import GraphSettings, PostureSettings
from pimwatch.report.settings import ReportSettings
from pimwatch.report.settings import problems as report_problems
from pimwatch.state import retention


class ConfigError(ValueError):
    """One or more config problems, each ``key.path: what was expected``."""

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        super().__init__(f"{source}: " + "; ".join(self.problems))


class _BreakGlass(BaseModel):
    model_config = ConfigDict(extra="forbid")
    accounts: list[str] = []
    groups: list[str] = []  # object ids; members read through Graph (docs/graph.md, enrichment)


class PipelinePolicy(BaseModel):
    """``pipeline:`` in the config (the deployed app; ``replay`` ignores it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # No records for this long raises ``pipeline.silent`` (0: off). Entra delivers every few minutes
    # in a busy tenant; 30 minutes of nothing is a broken pipeline, not a quiet tenant.
    silent_minutes: NonNegativeFloat = 30.0
    # How far back (event time) state is kept; None: what the enabled detectors need
    # (pimwatch.retention). Only ever raises it: a value under that is a config error.
    retention_days: NonNegativeFloat | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")
    break_glass: _BreakGlass = _BreakGlass()
    privileged_roles: list[str] | None = None
    detectors: dict[str, dict[str, Any] | None] = {}
    sinks: dict[str, dict[str, Any]] = {}
    delivery: Policy = Policy()
    routing: Grouping = Grouping()
    pipeline: PipelinePolicy = PipelinePolicy()
    templates: str | None = None
    graph: GraphSettings = GraphSettings()  # docs/graph.md
    posture: PostureSettings = PostureSettings()
    report: ReportSettings = ReportSettings()  # docs/report.md


class _WindowValues(BaseModel):
    """The window keys every detector accepts (those its declared window has)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    threshold: int = Field(1, ge=1)
    within_minutes: NonNegativeInt = 0
    suppress_minutes: NonNegativeInt = 0


@dataclass(frozen=True)
class Config:
    settings: Settings
    detectors: Mapping[str, DetectorConfig]
    sinks: Mapping[str, LoadedSink] = field(default_factory=dict)
    delivery: Policy = field(default_factory=Policy)
    templates: str | None = None
    pipeline: PipelinePolicy = field(default_factory=PipelinePolicy)
    graph: GraphSettings = field(default_factory=GraphSettings)
    posture: PostureSettings = field(default_factory=PostureSettings)
    report: ReportSettings = field(default_factory=ReportSettings)
    routing: Grouping = field(default_factory=Grouping)  # how alerts are grouped into notifications


def load(path: str | None, plugins: Sequence[Plugin]) -> Config:
    """Read and validate ``path`` (None = all defaults)."""
    if path is None:
        return build({}, plugins, "defaults")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the config file: {exc.strerror or exc}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, ["(top level): expected a mapping of keys to values"])
    return build(data, plugins, path)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def build(
    data: Mapping[str, Any],
    plugins: Sequence[Plugin],
    source: str = "config",
    env: Mapping[str, str] | None = None,
) -> Config:
    try:
        raw = _File.model_validate(data)
    except ValidationError as exc:
        found = []
        for detail in exc.errors():
            msg = "unknown key" if detail["type"] == "extra_forbidden" else detail["msg"]
            found.append(f"{_loc(detail['loc'])}: {msg}")
        raise ConfigError(source, found) from None
    problems: list[str] = []
    for i, account in enumerate(raw.break_glass.accounts):
        if "@" not in account and not _looks_like_guid(account.strip()):
            problems.append(
                f"break_glass.accounts[{i}]: expected an object id (GUID) or a UPN, got {account!r}"
            )
    for i, group in enumerate(raw.break_glass.groups):
        if not _looks_like_guid(group.strip()):
            problems.append(f"break_glass.groups[{i}]: expected a group object id (GUID), got {group!r}")
    known = {p.meta.id: p for p in plugins}
    out: dict[str, DetectorConfig] = {}
    for det_id in raw.detectors:
        if det_id not in known:
            problems.append(f"detectors.{det_id}: unknown detector id (known: {', '.join(sorted(known))})")
    for det_id, plugin in known.items():
        meta = plugin.meta
        overrides = raw.detectors.get(det_id) or {}
        enabled, severity = True, meta.severity
        window_values: dict[str, Any] = {}
        param_values: dict[str, Any] = {}
        allowed = {*meta.window.keys(), *meta.params.model_fields}
        mine: dict[str, str] = {}  # key → its problem, reported in the order of the file
        for key, value in overrides.items():
            path = f"detectors.{det_id}.{key}"
            if key == "enabled":
                if not isinstance(value, bool):
                    mine[key] = f"{path}: expected true or false, got {value!r}"
                else:
                    enabled = value
            elif key == "severity":
                try:
                    severity = Severity(str(value).lower())
                except ValueError:
                    mine[key] = f"{path}: expected one of critical, high, medium, low, info, got {value!r}"
            elif key not in allowed:
                names = ", ".join(["enabled", "severity", *sorted(allowed)])
                mine[key] = f"{path}: unknown parameter (allowed: {names})"
            elif key in WINDOW_KEYS:
                window_values[key] = value
            else:
                param_values[key] = value
        resolved = _detector(meta, window_values, param_values, f"detectors.{det_id}")
        if isinstance(resolved, list):
            mine.update((key, problem) for key, problem in resolved if key)
            # What the types cannot judge (a model validator), only once the types are right.
            whole = [problem for key, problem in resolved if not key]
            problems += [mine[key] for key in overrides if key in mine] if mine else whole
            continue
        problems += [mine[key] for key in overrides if key in mine]
        out[det_id] = DetectorConfig(enabled, severity, *resolved, declared=meta.window)
    sinks = _sinks(raw.sinks, problems, env if env is not None else os.environ)
    if raw.templates is not None and not os.path.isdir(raw.templates):
        problems.append(f"templates: expected a folder of template overrides, {raw.templates!r} is not one")
    if raw.pipeline.retention_days is not None and not any(p.startswith("detectors.") for p in problems):
        problems += retention.too_short(raw.pipeline.retention_days, out, plugins)
    if not any(p.startswith("sinks.") for p in problems):
        problems += report_problems(raw.report, {n: s.config.type for n, s in sinks.items()})
    if problems:
        raise ConfigError(source, problems)
    settings = Settings.build(raw.break_glass.accounts, raw.privileged_roles)
    if raw.break_glass.groups:
        groups = frozenset(g.strip().lower() for g in raw.break_glass.groups)
        settings = dataclasses.replace(settings, break_glass_groups=groups)
    return Config(
        settings,
        out,
        sinks,
        raw.delivery,
        raw.templates,
        raw.pipeline,
        raw.graph,
        raw.posture,
        raw.report,
        raw.routing,
    )


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(value: Any, path: str, env: Mapping[str, str], problems: list[str]) -> Any:
    """``${NAME}`` from the environment, in every string of a sink's config. The value is never
    echoed in an error: only the key path and the variable's name."""
    if isinstance(value, str):

        def one(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in env:
                problems.append(f"{path}: environment variable {name} is not set")
                return ""
            return env[name]

        return _ENV.sub(one, value)
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env, problems) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{path}.{k}", env, problems) for k, v in value.items()}
    return value


def _sinks(raw: Mapping[str, Any], problems: list[str], env: Mapping[str, str]) -> dict[str, LoadedSink]:
    out: dict[str, LoadedSink] = {}
    for name, spec in raw.items():
        path = f"sinks.{name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
            problems.append(f"{path}.type: expected the sink type (the name of a module in sinks/)")
            continue
        module = sink_module(spec["type"])
        if module is None:
            known = ", ".join(sorted(m.name for m in pkgutil.iter_modules(sinks_package().__path__)))
            problems.append(f"{path}.type: unknown sink type {spec['type']!r} (known: {known})")
            continue
        before = len(problems)
        values = _interpolate(spec, path, env, problems)
        if len(problems) > before:
            continue
        try:
            cfg = module.Config.model_validate(values)
        except ValidationError as exc:
            for detail in exc.errors():
                msg = "unknown key" if detail["type"] == "extra_forbidden" else detail["msg"]
                problems.append(f"{path}.{_loc(detail['loc'])}: {msg}")
            continue
        out[name] = LoadedSink(name, cfg, module)
    return out


def sinks_package() -> ModuleType:
    return importlib.import_module("sinks")


def _detector(
    meta: Detector, window_values: dict[str, Any], param_values: dict[str, Any], prefix: str
) -> tuple[Window, Params] | list[tuple[str, str]]:
    """The detector's window (declared, with the config's keys) and its validated Params; else
    the problems as (key, ``key.path: what was expected``), key "" for the whole model."""
    problems: list[tuple[str, str]] = []
    window = meta.window
    try:
        valid = _WindowValues.model_validate(window_values)
        window = window.override(valid.model_dump(include=set(window_values)))
    except ValidationError as exc:
        problems += [_param_problem(prefix, d, _WindowValues, window_values) for d in exc.errors()]
    try:
        params = meta.params.model_validate(param_values)
    except ValidationError as exc:
        problems += [_param_problem(prefix, d, meta.params, param_values) for d in exc.errors()]
    return problems or (window, params)


_EXPECTED = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
}


def _param_problem(
    prefix: str, detail: ErrorDetails, model: type[BaseModel], values: Mapping[str, Any]
) -> tuple[str, str]:
    """One parameter's problem: its key, and ``detectors.<id>.<key>: expected ..., got ...``."""
    loc = detail["loc"]
    if not loc:  # a model validator's "<key>: what was expected"
        return "", f"{prefix}.{str(detail['msg']).removeprefix('Value error, ')}"
    name = str(loc[0])
    path, value = f"{prefix}.{name}", values.get(name, detail["input"])
    kind, _, problem = detail["type"].partition("_")
    field = model.model_fields.get(name)
    annotation = field.annotation if field is not None else None
    if annotation == list[str] and (kind == "list" or len(loc) > 1):
        return name, f"{path}: expected a list of strings, got {value!r}"
    if kind in _EXPECTED and problem in ("type", "parsing", "from_float", "fraction"):
        return name, f"{path}: expected {_EXPECTED[kind]}, got {value!r}"
    if detail["type"] in ("greater_than_equal", "greater_than"):
        what = "an integer" if annotation is int else "a number"
        ctx = detail.get("ctx") or {}
        sign, bound = (
            (">=", ctx.get("ge")) if detail["type"] == "greater_than_equal" else (">", ctx.get("gt"))
        )
        return name, f"{path}: expected {what} {sign} {bound}, got {value}"
    return name, f"{path}: {str(detail['msg']).removeprefix('Value error, ')}"
