"""One sandboxed Jinja2 environment for every sink template: strict undefined, HTML autoescaped.

Templates are ``<sink>.<part>.<format>.j2`` under ``sinks/templates``; a deployment can override any
of them from its own folder (``templates`` in the config, searched first). Audit fields are
attacker-controlled text: the sandbox stops a template from reaching into Python, ``.html.j2``
templates autoescape (the default ``select_autoescape`` would not: it matches ``.html``, not
``.html.j2``), and filters give per-target escaping and truncation with a visible marker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pimwatch.delivery.text import md_escape, truncate

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "sinks" / "templates"


@lru_cache(maxsize=8)
def environment(override_dir: str | None = None) -> SandboxedEnvironment:
    from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape  # only when a sink renders
    from jinja2.sandbox import SandboxedEnvironment

    folders = [override_dir] if override_dir else []
    env = SandboxedEnvironment(
        loader=FileSystemLoader([*folders, str(DEFAULT_DIR)]),
        autoescape=select_autoescape(enabled_extensions=("html.j2", "html"), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["md_escape"] = md_escape
    env.filters["truncate_marked"] = lambda s, n: truncate("" if s is None else str(s), int(n))
    return env


_OVERRIDE: list[str] = []  # the deployment's template folder, set once at start (configure)


def configure(override_dir: str | None) -> None:
    """Search ``override_dir`` before the bundled templates (``templates:`` in the config)."""
    _OVERRIDE[:] = [override_dir] if override_dir else []


def render(name: str, override_dir: str | None = None, **context: Any) -> str:
    folder = override_dir or (_OVERRIDE[0] if _OVERRIDE else None)
    return environment(folder).get_template(name).render(**context)
