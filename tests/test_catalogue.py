"""docs/detectors.md is generated from the detectors' metadata and must not go stale."""

from __future__ import annotations

from pimwatch.catalogue import render_markdown
from pimwatch.detector import discover
from tests.conftest import REPO

ISSUE_IDS = {
    "breakglass.signin",
    "breakglass.activity",
    "activation.simultaneous",
    "activation.repeated_failure",
    "settings.changed",
    "assignment.outside_pim",
    "assignment.privileged",
    "assignment.permanent",
    "assignment.bulk",
    "assignment.self",
    "activation.too_frequent",
    "activation.off_hours",
    "activation.first_time",
    "activation.denied",
    "activation.risky_session",
    "approval.overdue",
    "approval.self_approved",
    "pim.alert_tampering",
    "pim.builtin_alert",
    "elevation.root_access",
    "conditional_access.weakened",
    "credentials.privileged_changed",
}


def test_docs_catalogue_is_current() -> None:
    expected = render_markdown(discover())
    actual = (REPO / "docs" / "detectors.md").read_text(encoding="utf-8")
    assert actual == expected, (
        "docs/detectors.md is stale: pimwatch detectors --format markdown > docs/detectors.md"
    )


def test_the_catalogue_has_every_detector_of_the_contract() -> None:
    assert {p.meta.id for p in discover()} == ISSUE_IDS


def test_the_readme_table_lists_every_detector() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for p in discover():
        assert f"| `{p.meta.id}` | {p.meta.severity.value}" in readme, p.meta.id
