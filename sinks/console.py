"""Alerts as readable lines on stdout: the local default, for trying pimwatch and for tests.

Control characters in audit text are shown as U+FFFD so nothing reaches the terminal as an escape
sequence.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

from pimwatch.delivery import Alert, Http, SinkConfig, clean, truncate

BATCH = True
RESOLVES = True


class Config(SinkConfig):
    type: Literal["console"] = "console"
    stream: Literal["stdout", "stderr"] = "stdout"
    max_title_chars: int = 300


def render(alerts: Sequence[Alert], config: Config) -> str:
    lines = []
    for a in alerts:
        state = "RESOLVED " if a.status == "resolved" else ""
        title = clean(truncate(a.title, config.max_title_chars), replacement="\ufffd")
        lines.append(
            f"[{a.severity.value.upper()}] {state}{a.detector} x{a.count} {a.first_seen} {title} ({a.id})"
        )
    return "".join(line + "\n" for line in lines)


def send(rendered: str, config: Config, http: Http) -> str:
    if not rendered:
        return "nothing to print"
    stream = sys.stdout if config.stream == "stdout" else sys.stderr
    stream.write(rendered)
    stream.flush()
    return f"printed {rendered.count(chr(10))} line(s)"
