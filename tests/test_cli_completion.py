"""``pimwatch completion bash|zsh|fish``: generated from the parser, run in the real shells.

bash and fish answer a completion request from a script (``COMP_WORDS`` + the function; fish's
``complete -C``); zsh's completion system needs a terminal to ask, so zsh is checked for syntax and
for registering its function with ``compinit``. scripts/test.sh installs zsh and fish."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pimwatch.cli import _parser, main
from pimwatch.cli.completion import model
from pimwatch.detection.detector import discover
from tests.conftest import REPO


def _script(capsys: pytest.CaptureFixture[str], shell: str, tmp_path: Path) -> Path:
    assert main(["completion", shell]) == 0
    path = tmp_path / f"pimwatch.{shell}"
    path.write_text(capsys.readouterr().out)
    return path


def _need(shell: str) -> str:
    found = shutil.which(shell)
    if found is None:
        pytest.skip(f"{shell} is not installed (scripts/test.sh installs it)")
    return found


def _bash(script: Path, *words: str) -> list[str]:
    """What bash completes for the command line ``words`` (the last one being typed)."""
    line = " ".join(f"'{w}'" for w in words)
    code = (
        f'source "{script}"; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _pimwatch; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    run = subprocess.run(["bash", "--norc", "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    return [w for w in run.stdout.splitlines() if w]


def test_every_command_of_the_parser_is_in_the_model() -> None:
    _, commands = model(_parser())
    assert {"replay", "check-config", "route", "init", "completion", "detectors"} <= {
        c.name for c in commands
    }


def test_bash_completes_commands_options_choices_detectors_and_paths(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _need("bash")
    script = _script(capsys, "bash", tmp_path)
    assert _bash(script, "pimwatch", "rou") == ["route"]
    assert _bash(script, "pimwatch", "check") == ["check-config"]
    assert _bash(script, "pimwatch", "replay", "--no-") == ["--no-progress"]
    assert _bash(script, "pimwatch", "replay", "--format", "") == ["text", "jsonl"]
    assert _bash(script, "pimwatch", "route", "--detector", "breakglass.") == [
        "breakglass.activity",
        "breakglass.signin",
    ]
    ids = _bash(script, "pimwatch", "route", "--detector", "")
    assert ids == [p.meta.id for p in discover()]
    assert _bash(script, "pimwatch", "outbox", "") == ["list", "retry", "purge"]
    assert _bash(script, "pimwatch", "completion", "") == ["bash", "zsh", "fish"]
    assert _bash(script, "pimwatch", "replay", "sampl") == ["samples"]  # PATH: file names
    assert _bash(script, "pimwatch", "replay", "--config", "samples/demo/pim") == [
        "samples/demo/pimwatch.yaml"
    ]
    assert _bash(script, "pimwatch", "route", "") == []  # no positional: nothing to offer
    assert _bash(script, "pimwatch", "route", "--severity", "c") == ["critical"]


def test_fish_completes_commands_options_and_choices(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fish = _need("fish")
    script = _script(capsys, "fish", tmp_path)
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path),
        "XDG_DATA_HOME": str(tmp_path),
    }

    def complete(line: str) -> list[str]:
        run = subprocess.run(
            [fish, "--no-config", "-c", f"source {script}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            check=True,
        )
        return [row.split("\t")[0] for row in run.stdout.splitlines()]

    assert complete("pimwatch rou") == ["route"]
    assert "--no-progress" in complete("pimwatch replay --no")
    assert set(complete("pimwatch replay --format ")) == {"text", "jsonl"}
    assert complete("pimwatch route --detector breakglass.") == ["breakglass.activity", "breakglass.signin"]
    assert set(complete("pimwatch outbox ")) == {"list", "retry", "purge"}
    assert complete("pimwatch route ") == []  # no positional, and options only after "-"


def test_zsh_script_parses_and_registers_with_compinit(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    zsh = _need("zsh")
    script = _script(capsys, "zsh", tmp_path)
    assert script.read_text().startswith("#compdef pimwatch\n")
    subprocess.run([zsh, "-n", str(script)], check=True)
    code = (
        f"autoload -U compinit; compinit -u -d {tmp_path}/zcompdump; source {script}; "
        "print -r -- $_comps[pimwatch]"
    )
    run = subprocess.run(
        [zsh, "-f", "-c", code], capture_output=True, text=True, env={**os.environ, "HOME": str(tmp_path)}
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "_pimwatch"
