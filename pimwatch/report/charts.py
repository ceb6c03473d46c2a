"""Charts as inline SVG, drawn with matplotlib from the report's frames.

No pyplot (no global figure state): each chart is its own :class:`~matplotlib.figure.Figure` saved
with the SVG backend. The bytes are reproducible: ``svg.hashsalt`` is fixed per chart (ids depend
only on the chart and its content, and differ between charts in one page), the ``Date`` metadata is
dropped, and text stays text (``svg.fonttype: none``: no glyph definitions, searchable, small).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pimwatch.detection.alerts import Severity

SEVERITY_COLOURS = {
    "critical": "#7f0000",
    "high": "#d7301f",
    "medium": "#fc8d59",
    "low": "#fdcc8a",
    "info": "#bdbdbd",
}
BLUE, GREY, DARK = "#3182bd", "#9ecae1", "#08519c"
_STYLE: Any = {
    "svg.hashsalt": "pimwatch",
    "svg.fonttype": "none",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def _svg(fig: Figure, name: str) -> str:
    buf = io.StringIO()
    style: Any = {**_STYLE, "svg.hashsalt": f"pimwatch-{name}"}
    with matplotlib.rc_context(style):
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buf.getvalue()
    text = text[text.index("<svg") :]  # inline: no XML declaration or DOCTYPE
    text = _TAG.sub(lambda m: _own_ids(m.group(0), name), text)
    return text.replace("<svg ", f'<svg class="chart" data-chart="{name}" role="img" ', 1)


_TAG = re.compile(r"<[^>]+>")  # text content is escaped: every "<" starts a tag


def _own_ids(tag: str, name: str) -> str:
    """A chart's own ids (clip paths) prefixed with its name, so they are unique in the page; only
    inside tags, so a label's text (attacker-controlled) is never rewritten."""
    tag = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', tag)
    tag = re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", tag)
    return re.sub(r'xlink:href="#([^"]+)"', rf'xlink:href="#{name}-\1"', tag)


def _fig(width: float, height: float) -> Figure:
    with matplotlib.rc_context(_STYLE):
        return Figure(figsize=(width, height), dpi=72, layout="constrained")


def _empty(name: str, message: str) -> str:
    fig = _fig(6.5, 0.6)
    with matplotlib.rc_context(_STYLE):
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.0, 0.5, message, va="center", color="#555555")
    return _svg(fig, name)


def per_bucket(buckets: Sequence[str], counts: Sequence[int], name: str, title: str) -> str:
    """Counts per time bucket: UTC hours ("YYYY-MM-DDTHH") or days ("YYYY-MM-DD")."""
    if not buckets or sum(counts) == 0:
        return _empty(name, f"{title}: none in the period")
    fig = _fig(6.5, 2.2)
    with matplotlib.rc_context(_STYLE):
        ax = fig.subplots()
        ax.bar(range(len(buckets)), counts, color=BLUE)
        _ticks(ax, buckets)
        ax.set_ylabel("activations")
        ax.set_title(title, loc="left", fontsize=10)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _svg(fig, name)


def by_hour(hours: Sequence[int], outside: Sequence[bool], name: str) -> str:
    """Activations per local hour of day; hours outside business hours in red."""
    counts = [0] * 24
    for h in hours:
        counts[h] += 1
    if not hours:
        return _empty(name, "Activations by hour: none in the period")
    colours = ["#d7301f" if o else BLUE for o in outside]
    fig = _fig(6.5, 2.0)
    with matplotlib.rc_context(_STYLE):
        ax = fig.subplots()
        ax.bar(range(24), counts, color=colours)
        ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
        ax.set_xlabel("hour of day (business-hours zone); red: outside business hours on workdays")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _svg(fig, name)


def barh(
    labels: Sequence[str],
    values: Sequence[float],
    name: str,
    xlabel: str,
    limit: int = 15,
    width: float = 6.5,
) -> str:
    if not labels:
        return _empty(name, f"{xlabel}: none in the period")
    pairs = list(zip(labels, values, strict=True))[:limit]
    fig = _fig(width, 0.45 + 0.2 * len(pairs))
    with matplotlib.rc_context(_STYLE):
        ax = fig.subplots()
        ys = range(len(pairs))
        ax.barh(ys, [v for _, v in pairs], color=BLUE)
        ax.set_yticks(ys, [_short(lbl) for lbl, _ in pairs])
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
    return _svg(fig, name)


def durations(acts: pd.DataFrame, name: str, limit: int = 30) -> str:
    """Used vs requested vs the role's maximum (maximum only where known): per activation when there
    are at most ``limit``, else per role (medians of used and requested, the largest known maximum)."""
    if acts.empty:
        return _empty(name, "Durations: no activation in the period")
    if len(acts) <= limit:
        rows = acts
        labels = [
            f"{p} · {_short(r, 22)} · {t[11:16]}"
            for p, r, t in zip(rows["principal"], rows["role"], rows["activated_at"], strict=True)
        ]
    else:
        num = acts.assign(
            requested_minutes=acts["requested_minutes"].astype("float64"),
            used_minutes=acts["used_minutes"].astype("float64"),
            max_minutes=acts["max_minutes"].astype("float64"),
        )
        rows = (
            num.groupby("role", sort=True)
            .agg(
                requested_minutes=("requested_minutes", "median"),
                used_minutes=("used_minutes", "median"),
                max_minutes=("max_minutes", "max"),
                n=("activated_at", "size"),
            )
            .reset_index()
            .head(limit)
        )
        labels = [f"{r} (median of {n})" for r, n in zip(rows["role"], rows["n"], strict=True)]
    fig = _fig(6.5, 0.6 + 0.2 * len(rows))
    with matplotlib.rc_context(_STYLE):
        ax = fig.subplots()
        ys = list(range(len(rows)))
        requested = rows["requested_minutes"].astype("float64").fillna(0) / 60
        used = rows["used_minutes"].astype("float64")
        ax.barh(ys, requested, color=GREY, height=0.8, label="requested")
        ax.barh(ys, used.fillna(0) / 60, color=DARK, height=0.4, label="used")
        unknown = [y for y, u in zip(ys, used, strict=True) if pd.isna(u)]
        if unknown:
            ax.scatter(
                [0.05] * len(unknown), unknown, marker="x", color="#d7301f", s=12, label="used: unknown"
            )
        maxima = rows["max_minutes"].astype("float64")
        known = [(y, m / 60) for y, m in zip(ys, maxima, strict=True) if not pd.isna(m)]
        if known:
            ax.scatter(
                [m for _, m in known],
                [y for y, _ in known],
                marker="|",
                color="#000000",
                s=120,
                label="role maximum",
            )
        ax.set_yticks(ys, [_short(lbl, 48) for lbl in labels], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("hours")
        ax.legend(loc="lower right", fontsize=7, frameon=False)
    return _svg(fig, name)


def alerts_over_time(alerts: pd.DataFrame, buckets: Sequence[str], width: int, name: str) -> str:
    """Alerts per time bucket (the first ``width`` characters of first_seen), stacked by severity."""
    if alerts.empty:
        return _empty(name, "Alerts: none in the period")
    fig = _fig(6.5, 2.4)
    with matplotlib.rc_context(_STYLE):
        ax = fig.subplots()
        bucket = alerts["first_seen"].str[:width]
        bottom = [0] * len(buckets)
        index = {b: i for i, b in enumerate(buckets)}
        for sev in reversed(Severity):
            counts = [0] * len(buckets)
            for b in bucket[alerts["severity"] == sev.value]:
                if b in index:
                    counts[index[b]] += 1
            if any(counts):
                ax.bar(
                    range(len(buckets)),
                    counts,
                    bottom=bottom,
                    color=SEVERITY_COLOURS[sev.value],
                    label=sev.value,
                )
                bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
        _ticks(ax, buckets)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("alerts")
        ax.legend(fontsize=7, frameon=False, ncols=5, loc="upper left")
    return _svg(fig, name)


def _ticks(ax: Any, buckets: Sequence[str]) -> None:
    """Hours of one day as "HH:00"; hours over several days as "MM-DD HH:00"; days as "MM-DD"."""
    one_day = len({b[:10] for b in buckets}) == 1
    labels = [(b[11:] if one_day else b[5:].replace("T", " ")) + (":00" if "T" in b else "") for b in buckets]
    step = max(1, -(-len(buckets) // (12 if one_day or "T" not in buckets[0] else 6)))
    ax.set_xticks(range(0, len(buckets), step), labels[::step], fontsize=7)


def _short(s: str, n: int = 30) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"
