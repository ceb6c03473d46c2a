"""The layering contract: ``cli > testing > hosting > config > delivery | state > detection``
(docs/architecture.md).

A module's layer is its sub-package of ``pimwatch/`` (``pimwatch/state/tables.py`` is ``state``);
``config.py`` is the config layer (the wiring: it may import every layer below the hosts);
``__init__.py`` and ``__main__.py`` at the top are outside the rule. The shipped test kit
(``pimwatch.testing``) sits between hosting and the CLI: it drives the real pipeline, and
``pimwatch render`` runs detector cases with it.

A module may import modules of its own layer and of the layers below it, never above; ``delivery``
and ``state`` are siblings that do not import each other. Plug-ins sit on top of their facade:
``detectors/`` import ``pimwatch.detection`` only (tests/test_detection.py), ``sinks/`` import
``pimwatch.delivery`` only. ``KNOWN`` lists accepted back-edges with what would cut them: it may
only shrink (a new back-edge fails, and so does a listed one that no longer exists); it is empty.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

RANK = {"detection": 0, "state": 1, "delivery": 1, "config": 2, "hosting": 3, "testing": 4, "cli": 5}
# Features built on the hosts, at the hosting level: Microsoft Graph posture and pull (graph), the
# auditors' report (report). They may use every layer below; only the CLI and the Functions app use them.
RANK |= {"graph": 3, "report": 3}
# Modules whose layer is not their sub-package's: the pydantic models of a feature's config section are
# part of the config layer (config.py validates the whole file in one pass).
PLACED = {"graph.settings": "config"}
# the package's own files, outside the rule (entry: the console script, before any layer is imported)
TOP = ("__init__", "__main__", "entry")

# (importer, imported) as dotted names under pimwatch: the accepted back-edges (none).
KNOWN: set[tuple[str, str]] = set()


def _module(path: Path) -> str:
    rel = path.relative_to(REPO / "pimwatch").with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) if parts else "__init__"


def _layer(module: str) -> str | None:
    """The layer of a module (a dotted name under pimwatch): its sub-package, or config."""
    if module in PLACED:
        return PLACED[module]
    first = module.split(".", 1)[0]
    return first if first in RANK else None


def test_every_module_has_a_layer() -> None:
    """Every file of pimwatch/ is in a layer's sub-package, config.py, or one of the top files."""
    stray = sorted(
        m for m in (_module(p) for p in (REPO / "pimwatch").rglob("*.py")) if m not in TOP and not _layer(m)
    )
    assert not stray, f"put {stray} into a layer's sub-package of pimwatch/ (docs/architecture.md)"
    assert set(RANK) - {"config"} == {
        p.name for p in (REPO / "pimwatch").iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + (
                [f"{node.module}.{a.name}" for a in node.names] if node.module == "pimwatch" else []
            )
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith("pimwatch."):
                out.add(name.removeprefix("pimwatch."))
    return out


def _edges() -> set[tuple[str, str]]:
    edges: set[tuple[str, str]] = set()
    for path in sorted((REPO / "pimwatch").rglob("*.py")):
        importer = _module(path)
        if importer in TOP:
            continue
        for imported in _imports(path):
            if _layer(imported) is not None:
                edges.add((importer, imported))
    return edges


def _crosses(importer: str, imported: str) -> bool:
    a, b = _layer(importer), _layer(imported)
    assert a is not None and b is not None
    if a == b:
        return False
    if {a, b} == {"delivery", "state"}:
        return True  # siblings
    return RANK[a] < RANK[b]


def test_no_import_goes_up_a_layer_except_the_known_ones() -> None:
    crossing = {e for e in _edges() if _crosses(*e)}
    new = sorted(crossing - KNOWN)
    gone = sorted(KNOWN - crossing)
    assert not new, (
        f"imports against the layering (cli > testing > hosting > config > delivery | state > detection):"
        f" {new}"
    )
    assert not gone, f"cut: remove {gone} from KNOWN"


def test_sinks_import_only_the_delivery_facade() -> None:
    """``sinks/*.py`` import ``pimwatch.delivery`` (the sink-author facade), nothing deeper."""
    bad: list[str] = []
    for path in sorted((REPO / "sinks").glob("*.py")):
        for imported in _imports(path):
            if imported != "delivery" and (_layer(imported) is not None or "." in imported):
                bad.append(f"{path.name} imports pimwatch.{imported}")
    assert not bad, bad
