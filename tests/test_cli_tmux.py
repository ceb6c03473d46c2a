"""``pimwatch replay`` in a real terminal: tmux gives it a 120x40 terminal, ``script`` inside records
every byte the terminal received (each frame of the bar is overwritten by the next, so the final
screen alone cannot show them), and ``tmux capture-pane`` gives what the analyst sees at the end.

Deterministic by design: the frames asserted are the first one and those drawn at the end of each
input file (the count there is exact whatever the speed); frames drawn by time in between are only
checked to be in order. The test waits on tmux's ``wait-for`` channels, never on a sleep.
scripts/test.sh installs tmux (Debian: apt) when it is missing."""

from __future__ import annotations

import gzip
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimwatch.cli import main
from pimwatch.config import load
from pimwatch.detection.detector import discover
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import read_file
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from tests.conftest import REPO

DEMO = REPO / "samples" / "demo" / "day.eventhub.jsonl.gz"
DEMO_CONFIG = str(REPO / "samples" / "demo" / "pimwatch.yaml")
WIDTH, HEIGHT = 120, 40
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _total_records(path: Path, tmp_path: Path) -> int:
    """The records of ``path`` as the end-of-run summary counts them (the pipeline's stats)."""
    plugins = discover()
    pipeline = Pipeline(
        plugins, load(DEMO_CONFIG, plugins), SqliteStore(":memory:"), Quarantine(str(tmp_path / "q.jsonl"))
    )
    pipeline.feed(read_file(str(path), [0], pipeline.screen))
    return pipeline.stats.total_records


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[list[str]]:
    """A private tmux server (its own socket, no user config), killed at the end."""
    exe = shutil.which("tmux")
    if exe is None or shutil.which("script") is None:
        pytest.skip("tmux or script is not installed (scripts/test.sh installs tmux)")
    cmd = [exe, "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]
    yield cmd
    subprocess.run([*cmd, "kill-server"], capture_output=True)


def test_replay_in_a_terminal_shows_the_bar_early_with_the_right_count_and_a_table_that_fits(
    tmux: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two input files: the first plain, the second gzip (its size from the gzip trailer).
    lines = gzip.decompress(DEMO.read_bytes()).splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl.gz"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(gzip.compress(b"".join(lines[len(lines) // 2 :])))
    n_first, n_second = _total_records(first, tmp_path), _total_records(second, tmp_path)
    assert n_first > 1000 and n_second > 1000

    raw = tmp_path / "terminal.raw"
    replay = shlex.join(
        [sys.executable, "-m", "pimwatch", "replay", "--config", DEMO_CONFIG, str(first), str(second)]
    )
    tm = shlex.join(tmux)
    pane = (
        f"{tm} wait-for go; "
        f"script -q -e -c {shlex.quote(replay)} {shlex.quote(str(raw))}; echo EXIT=$?; "
        f"{tm} wait-for -S done; exec sleep 3600"
    )
    subprocess.run(
        [
            *tmux,
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            str(WIDTH),
            "-y",
            str(HEIGHT),
            "-c",
            str(tmp_path),
            pane,
        ],
        check=True,
    )
    subprocess.run([*tmux, "set-option", "-t", "t", "history-limit", "5000"], check=True)
    subprocess.run([*tmux, "wait-for", "-S", "go"], check=True, timeout=30)
    subprocess.run([*tmux, "wait-for", "done"], check=True, timeout=600)
    screen = _capture_until(tmux, "EXIT=")

    # What the terminal received: the bar's frames, each overwriting the last.
    stream = ANSI.sub("", raw.read_text(encoding="utf-8", errors="replace"))
    frames = [f.strip() for f in re.split(r"[\r\n]", stream) if f.startswith("reading")]
    counts = [int(re.search(r"([\d,]+) records", f).group(1).replace(",", "")) for f in frames]  # type: ignore[union-attr]
    total = n_first + n_second
    assert counts[0] == 0  # drawn at once, before the first record is read
    assert n_first in counts  # drawn at the end of the first file, with its exact count
    assert counts[-1] == total  # and at the end of the input: the summary's count
    assert counts == sorted(counts)
    assert all(re.search(r"[\d,]+ records/s", f) for f in frames[1:])
    assert "100%|" in frames[-1]
    assert all(len(f) <= WIDTH for f in frames)

    # What the analyst sees at the end: the bar gone, the table within the width, the summary.
    assert "EXIT=0" in screen
    assert "Traceback" not in screen
    shown = screen.splitlines()
    assert not any(line.startswith("reading") for line in shown)
    assert all(len(line) <= WIDTH for line in shown), max(shown, key=len)
    assert f"pimwatch: {total:,} records in" in screen
    header = next(i for i, line in enumerate(shown) if line.startswith("SEVERITY"))
    col = shown[header].index("TITLE")
    # The first alert's title, wrapped under the TITLE column, is whole.
    assert main(["replay", "--config", DEMO_CONFIG, "--format", "jsonl", str(DEMO)]) == 0
    title = json.loads(capsys.readouterr().out.splitlines()[0])["title"]
    assert len(title) > WIDTH - col  # long enough to wrap
    wrapped = [shown[header + 1][col:]]
    for line in shown[header + 2 :]:
        if line[:col].strip():
            break
        wrapped.append(line[col:])
    assert " ".join(w.strip() for w in wrapped) == title


def _capture_until(tmux: list[str], marker: str) -> str:
    """The pane's whole history, joined (-J: a line the terminal wrapped is one line again), once it
    shows ``marker``: the `done` signal can reach tmux before the pane's last output is drawn."""
    deadline = time.monotonic() + 60  # bounds a failure only: the marker normally shows at once
    while True:
        out = subprocess.run(
            [*tmux, "capture-pane", "-p", "-J", "-S", "-", "-E", "-", "-t", "t"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        if marker in out:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"{marker!r} never appeared in the pane:\n{out}")
