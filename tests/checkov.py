"""checkov (the infrastructure-as-code scanner, from PyPI) for the template tests.

Installed the first time it is needed into its own virtual environment under ``$CHECKOV_HOME``
(default ``~/.cache/pimwatch-checkov/<version>``, outside the repository): it pins dozens of packages
of its own, which must not meet pimwatch's in ``.venv``. The tests that use it are skipped, with the
reason, when the install fails — or fail instead when ``CI`` or ``PIMWATCH_REQUIRE_CHECKOV`` is set
(a skipped scanner is exactly the silent gate this is meant to replace). It runs offline:
``--skip-download`` and ``BC_SKIP_MAPPING`` keep it from calling its vendor's API.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.azurite import _install_lock

CHECKOV_VERSION = "3.3.30"
INSTALL_TIMEOUT = 900.0
RUN_TIMEOUT = 300.0


@dataclass
class Report:
    """(check id, first folder under the scanned directory) of each result, and the files not parsed."""

    passed: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    parsing_errors: list[str] = field(default_factory=list)


def checkov_home() -> Path:
    return Path(
        os.environ.get("CHECKOV_HOME") or Path.home() / ".cache" / "pimwatch-checkov" / CHECKOV_VERSION
    )


def find_or_install() -> Path:
    home = checkov_home()
    binary = home / "bin" / "checkov"
    if binary.exists():
        return binary
    home.parent.mkdir(parents=True, exist_ok=True)
    with _install_lock(home.parent):
        if binary.exists():
            return binary
        steps = [
            [sys.executable, "-m", "venv", str(home)],
            [str(home / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             f"checkov=={CHECKOV_VERSION}"],
        ]  # fmt: skip
        for step in steps:
            try:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                _unavailable(f"installing checkov {CHECKOV_VERSION} into {home} failed: {exc}")
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                _unavailable(f"installing checkov {CHECKOV_VERSION} into {home} failed: " + " | ".join(tail))
    if not binary.exists():
        _unavailable(f"checkov {CHECKOV_VERSION} installed into {home} but {binary} is missing")
    return binary


def run_checkov(directory: Path, checks: list[str]) -> Report:
    """Run the Bicep ``checks`` over every ``.bicep`` file under ``directory``."""
    binary = find_or_install()
    command = [str(binary), "-d", str(directory), "--framework", "bicep", "--check", ",".join(checks)]
    command += ["--skip-download", "--output", "json"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False, env=env)
    if done.returncode not in (0, 1):  # 1: some check failed
        raise AssertionError(f"checkov exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    data: Any = json.loads(done.stdout)
    reports = data if isinstance(data, list) else [data]
    out = Report()
    for report in reports:
        if "results" not in report:  # {"passed": 0, ...}: no Bicep file was found or parsed at all
            continue
        results = report["results"]
        out.passed += [(c["check_id"], _folder(c["file_path"])) for c in results.get("passed_checks", [])]
        out.failed += [(c["check_id"], _folder(c["file_path"])) for c in results.get("failed_checks", [])]
        out.parsing_errors += list(results.get("parsing_errors", []))
    return out


def _folder(file_path: str) -> str:
    return file_path.strip("/").split("/")[0]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") or os.environ.get("PIMWATCH_REQUIRE_CHECKOV"):
        pytest.fail(f"{reason} (CI or PIMWATCH_REQUIRE_CHECKOV is set)")
    pytest.skip(reason)
