"""What the CLI writes for a person: terminal-safe lines, the alert table fitted to the terminal, and
a stdout that a reader may close early (``pimwatch replay ... | head -1``).

Audit text is attacker-controlled: every field shown goes through :func:`oneline` (the sink toolkit's
cleaner, :func:`pimwatch.delivery.text.clean`), so ANSI escapes and bidi overrides are shown as
U+FFFD instead of reaching the analyst's terminal.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from collections import Counter
from collections.abc import Iterable
from typing import IO, Protocol

from pimwatch.delivery.text import clean
from pimwatch.detection.alerts import Alert, Severity

EXIT_PIPE = 141
"""The exit code when stdout was closed before all output was written: 128 + SIGPIPE, what a shell
reports for a Unix tool that a closed pipe stopped (``set -o pipefail`` sees it as with ``cat``)."""

TITLE_LINES = 4  # a title wraps onto at most this many lines on a terminal, the last one ellipsized
MIN_TITLE = 50  # a title column narrower than this: the title goes on its own lines under the row
_HEAD = f"{'SEVERITY':<9} {'FIRST SEEN (UTC)':<20} {'COUNT':>5}  {'DETECTOR':<28} "


class Writer(Protocol):
    def write(self, s: str, /) -> int: ...


def oneline(s: str, limit: int | None = None) -> str:
    """One terminal-safe line: whitespace runs as one space, other control characters as U+FFFD;
    cut at ``limit`` characters with an ellipsis (None: not cut)."""
    s = clean(" ".join(s.split()), replacement="\ufffd")
    return s if limit is None or len(s) <= limit else s[: limit - 1] + "…"


def _title_lines(title: str, width: int | None) -> list[str]:
    if width is None:
        return [title]
    lines = textwrap.wrap(title, width, break_on_hyphens=False) or [""]
    if len(lines) > TITLE_LINES:
        lines = lines[:TITLE_LINES]
        lines[-1] = lines[-1][: width - 1] + "…"
    return lines


def table(alerts: Iterable[Alert], out: Writer, columns: int | None = None) -> Counter[Severity]:
    """The alerts as a table; on a terminal of ``columns`` characters (None: not a terminal, one line
    per alert whatever its length, for grep) each title is wrapped to fit the width."""
    by_severity: Counter[Severity] = Counter()
    room = None if columns is None else columns - len(_HEAD)
    below = room is not None and room < MIN_TITLE  # a narrow terminal: titles under their row
    indent = " " * (4 if below else len(_HEAD))
    width = None if columns is None else max(columns - len(indent), 10)
    for a in alerts:
        if not by_severity:
            out.write(_HEAD + "TITLE\n" if not below else _HEAD.rstrip() + "\n    TITLE\n")
        by_severity[a.severity] += 1
        first = a.first_seen[:19].replace("T", " ")
        title = oneline(("[resolved] " if a.status == "resolved" else "") + a.title)
        row = f"{a.severity.value:<9} {first:<20} {a.count:>5}  {oneline(a.detector):<28} "
        lines = _title_lines(title, width)
        if below:
            out.write(row.rstrip() + "\n" + "".join(f"{indent}{line}\n" for line in lines))
        else:
            out.write(row + lines[0] + "\n" + "".join(f"{indent}{line}\n" for line in lines[1:]))
    if not by_severity:
        out.write("No alerts.\n")
    return by_severity


def terminal_columns(stream: IO[str]) -> int | None:
    """The width of the terminal ``stream`` writes to (``COLUMNS`` first, as shutil reads it), None
    when it is no terminal: piped output keeps one line per alert, for grep."""
    if not stream.isatty():
        return None
    return shutil.get_terminal_size().columns


class PipeOut:
    """stdout for output a reader may stop reading: after a BrokenPipeError every write is dropped
    (the run still finishes: state committed, deliveries sent, the summary on stderr) and
    :attr:`closed` says so; fd 1 then points at /dev/null, so Python's flush at exit is quiet too."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.closed = False

    def write(self, s: str) -> int:
        if not self.closed:
            try:
                return self.stream.write(s)
            except BrokenPipeError:
                self.gone()
        return len(s)

    def flush(self) -> None:
        if not self.closed:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.gone()

    def gone(self) -> None:
        self.closed = True
        stdout_gone()


def stdout_gone() -> None:
    """Point fd 1 at /dev/null: what Python still holds for the closed pipe is dropped at exit
    without an "Exception ignored" message (the recipe of the signal module's documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
