"""docs/detectors.md is generated from the detectors' metadata and must not go stale; the README
links to it instead of copying it (adding a detector touches one file, plus the generated catalogue)."""

from __future__ import annotations

from pimwatch.cli.catalogue import render_markdown
from pimwatch.detection.detector import discover
from tests.conftest import REPO


def test_docs_catalogue_is_current() -> None:
    expected = render_markdown(discover())
    actual = (REPO / "docs" / "detectors.md").read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/detectors.md is stale: pimwatch detectors --format markdown > docs/detectors.md"
    )


def test_the_catalogue_has_a_section_per_detector() -> None:
    text = (REPO / "docs" / "detectors.md").read_text(encoding="utf-8")
    for p in discover():
        assert f"\n## {p.meta.id}\n" in text, p.meta.id
        for key in p.meta.defaults():
            assert f"| `{key}` |" in text.split(f"\n## {p.meta.id}\n", 1)[1], (p.meta.id, key)


def test_the_readme_links_the_catalogue_instead_of_copying_it() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "(docs/detectors.md)" in readme
    rows = [p.meta.id for p in discover() if f"| `{p.meta.id}` |" in readme]
    assert not rows, f"README.md has catalogue rows again (they go stale): {rows}"
