"""The layering contract: ``cli > hosting > config > delivery | state > detection`` (docs/architecture.md).

The shipped test kit (``pimwatch.testing``, ``pimwatch.harness``) sits between hosting and the CLI:
it drives the real pipeline, and ``pimwatch render`` runs detector cases with it.

A module may import modules of its own layer and of the layers below it, never above; ``delivery``
and ``state`` are siblings that do not import each other. Plug-ins sit on top of their facade:
``detectors/`` import ``pimwatch.detection`` only (tests/test_detection.py), ``sinks/`` import the
delivery layer only.

The modules still live flat in ``pimwatch/`` (the sub-package move is one mechanical commit still to
come): each one's layer is named here, and every module must have one, so a new module is placed
consciously. The edges that cross the rule today are listed in ``KNOWN`` with what cuts them: the
list may only shrink (a new back-edge fails, and so does a listed one that no longer exists).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

RANK = {"detection": 0, "state": 1, "delivery": 1, "config": 2, "hosting": 3, "testing": 4, "cli": 5}

LAYER = {
    # detection: bytes → events → detectors → alerts (no host, no network, no backend)
    "activities": "detection",
    "alerts": "detection",
    "catalogue": "detection",
    "detection": "detection",
    "detector": "detection",
    "engine": "detection",
    "event": "detection",
    "lifecycle": "detection",
    "normalize": "detection",
    "pipeline": "detection",
    "principals": "detection",
    "reader": "detection",
    "stats": "detection",
    "timeutil": "detection",
    # state: where state lives
    "store": "state",
    "tablestore": "state",
    "tableunit": "state",
    "archive": "state",
    "quarantine": "state",
    "retention": "state",
    "progress": "state",
    # delivery: the outbox to the sinks
    "delivery": "delivery",
    "sink": "delivery",
    "templating": "delivery",
    # config: the YAML, validated; wires detectors and sinks
    "config": "config",
    # hosting: the driver and the hosts that call it
    "driver": "hosting",
    "runtime": "hosting",
    "consume": "hosting",
    "consume_processor": "hosting",
    "consume_settings": "hosting",
    "storage": "hosting",
    "heartbeat": "hosting",
    "prefetch": "hosting",
    # cli
    "cli": "cli",
    "cli_archive": "cli",
    "cli_consume": "cli",
    "cli_delivery": "cli",
    "cli_prune": "cli",
    "__main__": "cli",
    # the shipped test kit
    "testing": "testing",
    "harness": "testing",
}

# (importer, imported): the back-edges of today, and what cuts each one before the package move.
KNOWN = {
    # The Store contract (protocols, Member, StoreError) moves into detection; state implements it.
    ("detector", "store"),
    ("engine", "store"),
    ("principals", "store"),
    ("pipeline", "store"),
    ("detection", "store"),
    ("delivery", "store"),  # the Deliveries role and the Delivery row, with the rest of the contract
    # The engine and pipeline take the detection part of the config, not Config itself.
    ("engine", "config"),
    ("pipeline", "config"),
    # The pipeline rejects bad input through a port, not the Quarantine class.
    ("pipeline", "quarantine"),
    # Record builders move from pimwatch.testing into pimwatch.detection.records.
    ("detection.records", "testing"),
    # Retention's horizon takes the detector configs; config's retention check moves into retention.
    ("retention", "config"),
    # BlobArchive takes an account URL and a credential, not the app settings.
    ("archive", "storage"),
    # The deliverer writes dead letters through a port defined in delivery.
    ("delivery", "archive"),
}


def _module(path: Path) -> str:
    rel = path.relative_to(REPO / "pimwatch").with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts) if parts else "__init__"


def _layer(module: str) -> str | None:
    return LAYER.get(module) or LAYER.get(module.split(".", 1)[0])


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
        if importer == "__init__":
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


def test_every_module_has_a_layer() -> None:
    missing = sorted(
        m
        for m in (_module(p) for p in (REPO / "pimwatch").rglob("*.py"))
        if m != "__init__" and not _layer(m)
    )
    assert not missing, f"name the layer of {missing} in tests/test_layering.py (docs/architecture.md)"


def test_no_import_goes_up_a_layer_except_the_known_ones() -> None:
    crossing = {e for e in _edges() if _crosses(*e)}
    new = sorted(crossing - KNOWN)
    gone = sorted(KNOWN - crossing)
    assert not new, (
        f"imports against the layering (cli > hosting > config > delivery | state > detection): {new}"
    )
    assert not gone, f"cut: remove {gone} from KNOWN"


def test_sinks_import_only_the_delivery_layer_and_below() -> None:
    bad: list[str] = []
    for path in sorted((REPO / "sinks").glob("*.py")):
        for imported in _imports(path):
            layer = _layer(imported)
            if layer is not None and (RANK[layer] > RANK["delivery"] or layer == "state"):
                bad.append(f"{path.name} imports pimwatch.{imported} ({layer})")
    assert not bad, bad
