"""The terminal side of the CLI: the progress bar's count and frames, the alert table fitted to the
terminal width, terminal-safe text, and a clean exit when stdout is closed early (``| head``).

The progress bar in a real terminal is tests/test_cli_tmux.py."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pimwatch.cli.output import EXIT_PIPE, oneline, table
from pimwatch.cli.progress import INTERVAL, Progress, input_size
from pimwatch.config import load
from pimwatch.detection.alerts import Alert, Severity, synthetic_alert
from pimwatch.detection.detector import discover
from pimwatch.detection.pipeline import Pipeline
from pimwatch.detection.reader import Screened, read_file
from pimwatch.state.quarantine import Quarantine
from pimwatch.state.sqlite import SqliteStore
from tests.conftest import REPO

DEMO = str(REPO / "samples" / "demo" / "day.eventhub.jsonl.gz")
DEMO_CONFIG = str(REPO / "samples" / "demo" / "pimwatch.yaml")
PIMWATCH = [sys.executable, "-m", "pimwatch"]


def _alert(title: str, detector: str = "breakglass.signin") -> Alert:
    a = synthetic_alert(Severity.CRITICAL)
    a.title, a.detector = title, detector
    return a


# --- progress -------------------------------------------------------------------------------------


class _Clock:
    """A clock that advances a fixed step per reading: frames depend on the items, not on load."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def _frames(text: str) -> list[str]:
    return [f for f in re.split(r"[\r\n]", text) if f.startswith("reading")]


def _count(frame: str) -> int:
    m = re.search(r"([\d,]+) records", frame)
    assert m, frame
    return int(m.group(1).replace(",", ""))


def test_the_bar_counts_records_as_the_summary_does_not_reader_items(tmp_path: Path) -> None:
    """The demo day is 7,636 records in 669 reader items (the screen sends the sign-ins it skips as
    one Screened item per category and 1,024 lines): counting items showed ~11x too few."""
    plugins = discover()
    config = load(DEMO_CONFIG, plugins)
    pipeline = Pipeline(plugins, config, SqliteStore(":memory:"), Quarantine(str(tmp_path / "q.jsonl")))
    counter = [0]
    stream = io.StringIO()
    bar = Progress(stream, counter, input_size([DEMO]), clock=_Clock(INTERVAL / 4))
    items = list(bar.wrap(read_file(DEMO, counter, pipeline.screen)))
    pipeline.feed(items)
    total = pipeline.stats.total_records
    assert total == 7636
    assert bar.records == total
    assert any(type(i) is Screened and i.count > 1 for i in items)
    assert len(items) < total / 5  # what the old count showed
    frames = _frames(stream.getvalue())
    assert _count(frames[0]) == 0  # drawn at once, before the first record
    assert _count(frames[-1]) == total  # and with the exact count at the end of the file
    assert len(frames) > 10  # in between, every INTERVAL of the (fake) clock
    counts = [_count(f) for f in frames]
    assert counts == sorted(counts)
    assert "100%" in frames[-1]  # the gzip trailer's size is what the reader counts
    assert re.search(r"[\d,]+ records/s", frames[-1])


def test_a_frame_at_the_end_of_every_file_whatever_the_clock(tmp_path: Path) -> None:
    """A clock that never reaches the next frame still gets the start and each file's end."""
    stream = io.StringIO()
    counter = [0]
    bar = Progress(stream, counter, None, clock=lambda: 0.0)
    first: Iterator[Screened] = iter([Screened("SignInLogs", 40), Screened("SignInLogs", 2)])
    list(bar.wrap(first))
    list(bar.wrap(iter([Screened("NonInteractiveUserSignInLogs", 1000)])))
    assert [_count(f) for f in _frames(stream.getvalue())] == [0, 42, 1042]
    assert _frames(stream.getvalue())[0].startswith("reading: ")  # no size known: no percentage


def test_input_size_reads_gzip_trailers_and_gives_up_on_stdin(tmp_path: Path) -> None:
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b"x" * 1234)
    counter = [0]
    list(read_file(DEMO, counter))
    assert input_size([DEMO, str(plain)]) == counter[0] + 1234
    assert input_size([str(plain), "-"]) is None


# --- the table ------------------------------------------------------------------------------------


LONG = (
    "Break-glass account bg-admin01@contoso.onmicrosoft.com signed in (interactive) from 192.0.2.77, "
    "Hanoi, VN — single-factor, password, no Conditional Access, legacy authentication client"
)


def test_on_a_terminal_titles_wrap_to_the_width_without_losing_words() -> None:
    out = io.StringIO()
    table([_alert(LONG)], out, columns=140)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 140 for line in lines), lines
    header, first, *rest = lines
    col = header.index("TITLE")
    assert first.index("Break-glass") == col
    assert rest and all(line[:col].strip() == "" for line in rest)
    assert " ".join(line[col:].strip() for line in [first, *rest]) == LONG


def test_a_narrow_terminal_puts_titles_under_their_row() -> None:
    out = io.StringIO()
    table([_alert(LONG)], out, columns=80)
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[2].startswith("critical ") and lines[2].rstrip().endswith("breakglass.signin")
    assert " ".join(line.strip() for line in lines[3:]) == LONG


def test_a_title_longer_than_four_lines_is_ellipsized() -> None:
    out = io.StringIO()
    title = " ".join(f"word{i}" for i in range(200))
    table([_alert(title)], out, columns=140)
    lines = out.getvalue().splitlines()[1:]
    assert len(lines) == 4 and lines[-1].endswith("…")
    assert all(len(line) <= 140 for line in lines)


def test_not_a_terminal_one_line_per_alert_whatever_its_length() -> None:
    title = " ".join(f"word{i}" for i in range(100))  # 689 characters: no fixed cut at 160 any more
    out = io.StringIO()
    table([_alert(title), _alert("short")], out, columns=None)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and lines[1].endswith(title)


def test_attacker_text_cannot_reach_the_terminal() -> None:
    evil = "adm-eve\x1b[2J\x1b]0;pwned\x07 \u202eevil\u2066 line\nbreak\u2028sep"
    shown = oneline(evil)
    assert not re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028]", shown)
    assert shown.startswith("adm-eve\ufffd[2J\ufffd]0;pwned\ufffd")
    assert "line break" in shown  # whitespace, newlines included, is one space
    out = io.StringIO()
    table([_alert(evil, detector="x\x1b[31m")], out, columns=120)
    assert "\x1b" not in out.getvalue() and "\u202e" not in out.getvalue()


# --- a closed stdout --------------------------------------------------------------------------------


def _closed_pipe() -> int:
    """The write end of a pipe whose reader has already gone (as `| head -1` after its line):
    every write fails, whatever the timing."""
    r, w = os.pipe()
    os.close(r)
    return w


@pytest.mark.parametrize("fmt", ["text", "jsonl"])
def test_replay_into_a_closed_pipe_finishes_the_run_quietly_and_exits_141(tmp_path: Path, fmt: str) -> None:
    state = tmp_path / "state.db"
    w = _closed_pipe()
    try:
        run = subprocess.run(
            [*PIMWATCH, "replay", "--config", DEMO_CONFIG, "--state", str(state), "--format", fmt, DEMO],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            timeout=300,
        )
    finally:
        os.close(w)
    assert run.returncode == EXIT_PIPE == 141, run.stderr
    assert "Traceback" not in run.stderr and "BrokenPipeError" not in run.stderr
    assert "Exception ignored" not in run.stderr
    # The run itself completed: the summary on stderr, the state committed.
    assert "pimwatch: 7,636 records in" in run.stderr
    assert "alerts: 7 critical, 13 high, 25 medium, 8 low (53 new" in run.stderr
    store = SqliteStore(str(state))
    assert sum(1 for _ in store.alerts()) == 53
    store.close()


def test_any_command_into_a_closed_pipe_exits_141_without_a_traceback(tmp_path: Path) -> None:
    w = _closed_pipe()
    try:
        run = subprocess.run(
            [*PIMWATCH, "detectors", "--format", "markdown"],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(w)
    assert run.returncode == 141
    assert run.stderr == ""


def test_replay_piped_to_head_in_a_shell(tmp_path: Path) -> None:
    """The documented case itself: `pimwatch replay ... | head -1` prints one line and nothing else."""
    cmd = " ".join([*PIMWATCH, "replay", "--config", DEMO_CONFIG, DEMO, "2>err.txt", "| head -1"])
    run = subprocess.run(
        ["bash", "-c", "set -o pipefail; " + cmd], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.stdout.startswith("SEVERITY") and run.stdout.count("\n") == 1
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err and "BrokenPipeError" not in err
    # 0 when head read everything before it exited (the table fits the pipe's buffer), 141 when
    # pimwatch wrote after head had gone: both are a clean exit, never 1.
    assert run.returncode in (0, EXIT_PIPE)
