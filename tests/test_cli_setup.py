"""Setup for users vs developers (issue 11 item 7): the demo installs the runtime only, the test
command the dev tools; the packaging metadata builds without a setuptools warning; the progress bar's
dependency stays off every path but a terminal's."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

from tests.conftest import REPO


def test_the_license_is_an_spdx_string_with_a_setuptools_that_reads_it() -> None:
    """A TOML-table license makes setuptools >= 77 warn on every install (three times per build)."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["project"]["license"] == "MIT"
    (req,) = pyproject["build-system"]["requires"]
    m = re.fullmatch(r"setuptools==(\d+)\.(\d+)\.(\d+)", req)
    assert m, f"pin setuptools exactly: {req}"
    assert int(m.group(1)) >= 77  # the first to read an SPDX license expression


def test_the_demo_installs_the_runtime_and_the_tests_the_dev_tools() -> None:
    demo = (REPO / "scripts" / "demo.sh").read_text(encoding="utf-8")
    test = (REPO / "scripts" / "test.sh").read_text(encoding="utf-8")
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    assert "bash scripts/setup.sh runtime\n" in demo
    assert "bash scripts/setup.sh\n" in test
    assert "runtime) target='.'" in setup and "dev) target='.[dev]'" in setup
    assert "graph) target='.[graph]'" in setup and "bash scripts/setup.sh graph\n" in demo
    run = subprocess.run(
        ["bash", str(REPO / "scripts" / "setup.sh"), "nonsense"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "usage: scripts/setup.sh [dev|runtime|graph]" in run.stderr


def test_tqdm_is_imported_only_when_a_bar_is_drawn() -> None:
    code = (
        "import sys, pimwatch.cli, pimwatch.hosting.runtime, pimwatch.hosting.consume; "
        "from pimwatch.cli import main; "
        "main(['detectors', '--format', 'json']); "
        "sys.exit(1 if 'tqdm' in sys.modules else 0)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert run.returncode == 0, run.stderr
