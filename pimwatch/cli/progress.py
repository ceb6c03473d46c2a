"""The replay's progress bar on stderr, when stderr is a terminal (tqdm, imported only then).

The count is of records, the unit of the end-of-run summary: a reader item is one record except a
:class:`~pimwatch.detection.reader.Screened` item, which stands for ``count`` sign-ins the screen
skipped without parsing (most of a tenant's volume) — counting items instead showed ~7-11x too few.
The bar is drawn at once, then at most every :data:`INTERVAL` seconds and at the end of every file
(with the exact count so far); it shows the share of the input read when the sizes are known (plain
files, and gzip files by their trailer), the records and records/s.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any

from pimwatch.detection.reader import Item, Screened

INTERVAL = 0.1  # seconds between two frames


def wanted(stream: IO[str], disabled: bool = False) -> bool:
    """Whether to draw: ``stream`` is a terminal that can move the cursor, and not ``--no-progress``."""
    return not disabled and stream.isatty() and os.environ.get("TERM", "") != "dumb"


def input_size(paths: Sequence[str]) -> int | None:
    """The bytes the reader will count for ``paths`` (their text, decompressed), or None when one
    is unknown (stdin, a pipe). A gzip file's is its trailer's ISIZE (the size mod 2**32 of its last
    member: right for the single-member files of exports and captures under 4 GiB)."""
    total = 0
    for path in paths:
        if path == "-":
            return None
        try:
            with open(path, "rb") as f:
                magic = f.read(2)
                if magic == b"\x1f\x8b":
                    f.seek(-4, os.SEEK_END)
                    total += struct.unpack("<I", f.read(4))[0]
                else:
                    total += f.seek(0, os.SEEK_END)
        except OSError:
            return None
    return total


class Progress:
    """One bar for a whole run: :meth:`wrap` each file's items, :meth:`close` before the output."""

    def __init__(
        self,
        stream: IO[str],
        counter: list[int],
        total_bytes: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counter = counter
        self.total_bytes = total_bytes
        self.records = 0
        self.clock = clock
        self.started = clock()
        self._next = self.started + INTERVAL
        self._bar = _bar(stream, total_bytes)  # draws the first frame: "0 records"

    def text(self, now: float) -> str:
        rate = self.records / max(now - self.started, 1e-9)
        return f"{self.records:,} records, {rate:,.0f} records/s"

    def draw(self) -> None:
        now = self.clock()
        bar = self._bar
        bar.set_description_str(self.text(now), refresh=False)
        bar.n = min(self.counter[0], self.total_bytes) if self.total_bytes else self.counter[0]
        bar.refresh()
        self._next = now + INTERVAL

    def wrap(self, items: Iterator[Item]) -> Iterator[Item]:
        """``items``, counted; a frame when :data:`INTERVAL` has passed, and one at the end."""
        clock = self.clock
        try:
            for item in items:
                self.records += item.count if type(item) is Screened else 1
                if clock() >= self._next:
                    self.draw()
                yield item
        finally:
            self.draw()

    def close(self) -> None:
        """Clear the bar (the table and the summary follow on a clean line)."""
        self._bar.close()


def _bar(stream: IO[str], total: int | None) -> Any:
    """A tqdm bar whose description is the records text (tqdm has no type hints: Any)."""
    from tqdm import tqdm  # only on a terminal: never on the Event Hub path

    tqdm.monitor_interval = 0  # no monitor thread: frames are drawn by Progress only
    left = "reading {percentage:3.0f}%|{bar}| " if total else "reading: "
    try:
        sized = os.get_terminal_size(stream.fileno()).columns > 0
    except (OSError, ValueError):
        sized = False
    return tqdm(
        total=total or None,
        file=stream,
        leave=False,
        # Follow the terminal's width; a terminal of unknown size (0 columns) would get nothing.
        dynamic_ncols=sized,
        ncols=None if sized else 80,
        nrows=None if sized else 24,
        bar_format=left + "{desc} [{elapsed}]",
        desc="0 records",
        mininterval=0,
        miniters=0,
    )
