"""Alerts as readable lines on stdout: the local default, for trying pimwatch and for tests.

Control characters in audit text are shown as U+FFFD so nothing reaches the terminal as an escape
sequence.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Literal

from pimwatch.delivery import Alert, Http, SinkConfig, truncate

BATCH = True
RESOLVES = True
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


class Config(SinkConfig):
    type: Literal["console"] = "console"
    stream: Literal["stdout", "stderr"] = "stdout"
    max_title_chars: int = 300


def render(alerts: Sequence[Alert], config: Config) -> str:
    lines = []
    for a in alerts:
        state = "RESOLVED " if a.status == "resolved" else ""
        title = _CONTROL.sub("\ufffd", truncate(a.title, config.max_title_chars))
        lines.append(
            f"[{a.severity.value.upper()}] {state}{a.detector} x{a.count} {a.first_seen} {title} ({a.id})"
        )
    return "".join(line + "\n" for line in lines)


def send(rendered: str, config: Config, http: Http) -> str:
    stream = sys.stdout if config.stream == "stdout" else sys.stderr
    stream.write(rendered)
    stream.flush()
    return f"printed {rendered.count(chr(10))} line(s)"
