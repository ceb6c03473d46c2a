"""``pimwatch check-config``: the config as the app would load it, before it is deployed (after
Alertmanager's ``amtool check-config``).

Checks, each problem named by its key path: the schema and every value (:func:`pimwatch.config.load`),
the presence of every ``${NAME}`` environment variable a sink references (names only: a value is
never printed, and is masked if a sink's error message happens to contain it), the templates (every
override in the ``templates`` folder compiles and overrides a bundled one; every sink renders sample
alerts through them) and the routing (every ``detectors``/``exclude`` glob of a sink matches a
detector; a sink that no alert can reach is a warning).

Exit codes: 0 the config is usable (warnings aside), 2 it has errors (listed on stderr).
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from pimwatch.cli.output import oneline
from pimwatch.config import Config, ConfigError, load
from pimwatch.delivery import templating
from pimwatch.delivery.deliverer import DEAD_LETTERS, LoadedSink
from pimwatch.detection.alerts import Alert, Severity, synthetic_alert
from pimwatch.detection.detector import Plugin
from pimwatch.hosting.heartbeat import SILENT
from pimwatch.testing.harness import run_records

ENV_CONFIG = "PIMWATCH_CONFIG"
DEFAULT_CONFIG = "pimwatch.yaml"  # what `pimwatch init` writes
SAMPLE_DETECTOR = "breakglass.signin"  # its first case gives the sample alert: a critical, full context
MASK_FROM = 6  # characters: an environment value this long is masked in messages
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # the syntax pimwatch.config interpolates


def add_parser(sub: Any) -> None:
    cc = sub.add_parser(
        "check-config", help="validate a config: values, ${ENV} variables set, templates, routing (exit 0/2)"
    )
    cc.add_argument(
        "--config", help=f"YAML config file (default: ${ENV_CONFIG}, else ./{DEFAULT_CONFIG} if it exists)"
    )


def config_path(given: str | None) -> str | None:
    """The config to check: ``--config``, else ``$PIMWATCH_CONFIG``, else ./pimwatch.yaml if it exists."""
    if given:
        return given
    if os.environ.get(ENV_CONFIG):
        return os.environ[ENV_CONFIG]
    return DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None


def run(args: argparse.Namespace, plugins: list[Plugin]) -> int:
    path = config_path(args.config)
    if path is None:
        sys.stderr.write(
            f"pimwatch: no config to check: pass --config, set {ENV_CONFIG}, or write ./{DEFAULT_CONFIG} "
            "with 'pimwatch init'\n"
        )
        return 2
    errors, warnings, lines = check(path, plugins)
    for warning in warnings:
        sys.stderr.write(f"pimwatch: warning: {warning}\n")
    if errors:
        sys.stderr.write(f"pimwatch: config error in {path}:\n")
        sys.stderr.writelines(f"  {e}\n" for e in errors)
        return 2
    sys.stdout.write(f"{path}: ok\n")
    sys.stdout.writelines(f"  {line}\n" for line in lines)
    return 0


def check(path: str, plugins: Sequence[Plugin]) -> tuple[list[str], list[str], list[str]]:
    """(errors, warnings, what was checked) for the config at ``path``."""
    try:
        config = load(path, plugins)
    except ConfigError as exc:
        return exc.problems, [], []
    names = referenced_env(path)
    # Values long enough to be secrets (masking a one-letter value would garble the messages).
    secrets = {os.environ[n]: n for n in names if len(os.environ.get(n, "")) >= MASK_FROM}
    errors: list[str] = []
    warnings: list[str] = []
    errors += _template_files(config.templates)
    if not errors:  # a template that does not compile would fail every sink below again
        errors += [_mask(e, secrets) for e in _renders(config, plugins)]
    ids = known_ids(plugins)
    for sink in config.sinks.values():
        errors += _globs(sink, ids)
    warnings += _unreached(config, plugins)
    if not (config.settings.break_glass_ids or config.settings.break_glass_upns):
        warnings.append(
            "break_glass.accounts is empty: breakglass.signin and breakglass.activity watch no account"
        )
    enabled = sum(1 for d in config.detectors.values() if d.enabled)
    sinks = ", ".join(f"{n} ({s.config.type})" for n, s in config.sinks.items()) or "none"
    lines = [
        f"detectors: {len(config.detectors)} ({enabled} enabled)",
        f"sinks: {sinks}",
        "environment variables: " + (", ".join(names) + " (set)" if names else "none referenced"),
        "templates: "
        + (f"the bundled ones, overridden from {config.templates}" if config.templates else "bundled"),
    ]
    return errors, warnings, lines


def known_ids(plugins: Sequence[Plugin]) -> list[str]:
    """Every detector id an alert can have: the plug-ins' and pimwatch's own alerts."""
    return sorted({p.meta.id for p in plugins} | {SILENT, DEAD_LETTERS, "pimwatch.test"})


def referenced_env(path: str) -> list[str]:
    """The names of the ``${NAME}`` variables the config's sinks reference, in order of first use."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    sinks = data.get("sinks") if isinstance(data, dict) else None
    return list(dict.fromkeys(_ENV.findall("\n".join(_strings(sinks)))))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def _mask(message: str, secrets: Mapping[str, str]) -> str:
    """``message`` with any environment value a sink was given shown as its ``${NAME}``."""
    for value, name in sorted(secrets.items(), key=lambda kv: -len(kv[0])):
        message = message.replace(value, "${" + name + "}")
    return message


def _template_files(folder: str | None) -> list[str]:
    """Every override compiles and has the name of a bundled template (else it would be ignored)."""
    if folder is None:
        return []
    from jinja2 import TemplateSyntaxError

    bundled = {p.name for p in templating.DEFAULT_DIR.glob("*.j2")}
    env = templating.environment(folder)
    problems: list[str] = []
    for p in sorted(Path(folder).iterdir()):
        if not p.is_file():
            continue
        if p.name not in bundled:
            problems.append(
                f"templates: {p.name} overrides no bundled template, so it is never used "
                f"(bundled: {', '.join(sorted(bundled))})"
            )
            continue
        try:
            env.get_template(p.name)
        except TemplateSyntaxError as exc:
            problems.append(f"templates: {p.name} line {exc.lineno}: {oneline(str(exc.message), 300)}")
    return problems


def samples(plugins: Sequence[Plugin]) -> list[Alert]:
    """Alerts to render: a real one (a detector case: full context) and the synthetic test alert."""
    out: list[Alert] = []
    plugin = next((p for p in plugins if p.meta.id == SAMPLE_DETECTOR), None)
    case = next((c for c in plugin.cases if c.expect), None) if plugin else None
    if plugin is not None and case is not None:
        alerts, _ = run_records(case.records, plugins, case.config)
        out += [a for a in alerts if a.detector == SAMPLE_DETECTOR][:1]
    return [*out, synthetic_alert(Severity.LOW)]


def _renders(config: Config, plugins: Sequence[Plugin]) -> list[str]:
    """Each sink renders each sample alert alone, and (a BATCH sink) all of them at once."""
    if not config.sinks:
        return []
    templating.configure(config.templates)
    alerts = samples(plugins)
    problems: list[str] = []
    for name, sink in config.sinks.items():
        for batch in [[a] for a in alerts] + ([alerts] if sink.batch else []):
            try:
                sink.render(batch)
            except Exception as exc:  # any failure of a template or a sink's render is the finding
                problems.append(
                    f"sinks.{name}: cannot render a sample alert ({type(exc).__name__}: "
                    f"{oneline(str(exc), 300)})"
                )
                break
    return problems


def _globs(sink: LoadedSink, ids: Sequence[str]) -> list[str]:
    """A ``detectors`` or ``exclude`` glob that matches no detector id is a typo, and silently routes
    too little (or excludes nothing)."""
    problems = []
    for key in ("detectors", "exclude"):
        for i, glob in enumerate(getattr(sink.config, key)):
            if not any(fnmatch.fnmatchcase(d, glob) for d in ids):
                problems.append(f"sinks.{sink.name}.{key}[{i}]: {glob!r} matches no detector id")
    return problems


def _unreached(config: Config, plugins: Sequence[Plugin]) -> list[str]:
    """Sinks that no enabled detector reaches at its configured severity (a warning: some detectors
    rate an alert by what happened, above their configured severity)."""
    out = []
    for name, sink in config.sinks.items():
        reached = [
            p.meta.id
            for p in plugins
            if config.detectors[p.meta.id].enabled and sink.config.routes(_probe(p.meta.id, config))
        ]
        if not reached:
            out.append(f"sinks.{name}: no enabled detector reaches it at its configured severity")
    return out


def _probe(detector: str, config: Config) -> Alert:
    """An alert of ``detector`` at its configured severity: what routing looks at."""
    return probe(detector, config.detectors[detector].severity)


def probe(detector: str, severity: Severity) -> Alert:
    """An alert of ``detector`` at ``severity`` (routing reads only these two)."""
    alert = synthetic_alert(severity)
    alert.detector = detector
    return alert
