"""Server-drawn SVG: the geometry of the console's bars and day charts.

No JavaScript and no chart library: the pages draw with inline SVG whose
coordinates are computed here and written by the templates (autoescaped
attributes only, so the Content-Security-Policy needs no inline script or
style). Every point carries a ``<title>`` (the browser's tooltip) and every
chart a table-free text summary, so the figures read without a pointer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta


def bar(value: int | None, max_: int | None) -> dict:
    """A limit's bar: ``{"width": 0..100 (percent of the track filled),
    "unlimited": bool, "known": bool}``. ``max_`` negative = unlimited (no
    bar); over the limit fills the track; ``max_`` 0 with usage fills it."""
    if max_ is None or max_ < 0:
        return {"width": 0, "unlimited": True, "known": value is not None}
    if value is None:
        return {"width": 0, "unlimited": False, "known": False}
    if max_ == 0:
        return {"width": 100 if value > 0 else 0, "unlimited": False, "known": True}
    return {"width": round(min(100.0, value * 100.0 / max_), 1), "unlimited": False, "known": True}


@dataclass
class DayChart:
    """One series over consecutive days, ready to draw in a ``width`` x ``height`` box.

    ``segments``: SVG ``points`` strings, one per run of reported days (a day
    without a value breaks the line); ``dots``: ``(x, y, day, value)`` per
    reported day; ``ticks``: y-axis ``(y, label)``; ``x_labels``:
    ``(x, "YYYY-MM-DD", text-anchor)`` for the first, middle and last day; ``limit_y``:
    the y of the limit line (None: unlimited or off the scale is clamped to
    the top); ``summary``: a sentence (latest and highest value).
    """

    key: str
    title: str
    width: int
    height: int
    segments: list[str] = field(default_factory=list)
    dots: list[tuple[float, float, str, int]] = field(default_factory=list)
    ticks: list[tuple[float, str]] = field(default_factory=list)
    x_labels: list[tuple[float, str, str]] = field(default_factory=list)
    limit_y: float | None = None
    limit: int | None = None
    summary: str = ""


#: Margins of a day chart: left (y labels), right, top, bottom (x labels).
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 8, 18


def _nice_ceiling(n: float) -> int:
    """The smallest of 1, 2, 5 x 10^k that is >= n (a readable axis top)."""
    if n <= 1:
        return 1
    k = 1
    while True:
        for m in (1, 2, 5):
            if m * k >= n:
                return m * k
        k *= 10


def day_chart(key: str, title: str, first: date, last: date, values: dict[date, int | None],
              limit: int | None = None, width: int = 640, height: int = 120, summary: str | None = None) -> DayChart:
    """The chart of ``values`` ({day: count}, None or absent: not reported)
    for each day ``first``..``last`` (inclusive). ``limit``: the effective
    max of the kind (negative or None: unlimited, no line); ``summary``:
    the sentence to show instead of the default one. The y scale runs from 0
    to a round number above the highest value (and the limit)."""
    days = (last - first).days + 1
    chart = DayChart(key, title, width, height, limit=limit if limit is not None and limit >= 0 else None)
    known = [v for v in values.values() if v is not None]
    top = _nice_ceiling(max(known + ([chart.limit] if chart.limit is not None else []) + [1]))
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM

    def x_of(i: int) -> float:
        return round(LEFT + (plot_w * i / (days - 1) if days > 1 else plot_w / 2), 1)

    def y_of(v: int) -> float:
        return round(TOP + plot_h - plot_h * v / top, 1)

    run: list[str] = []
    for i in range(days):
        day = first + timedelta(days=i)
        v = values.get(day)
        if v is None:
            if run:
                chart.segments.append(" ".join(run))
                run = []
            continue
        x, y = x_of(i), y_of(v)
        run.append(f"{x},{y}")
        chart.dots.append((x, y, day.isoformat(), v))
    if run:
        chart.segments.append(" ".join(run))
    chart.ticks = [(y_of(0), "0"), (y_of(top / 2), f"{top / 2:g}"), (y_of(top), f"{top:,}")]
    middle = (days - 1) // 2
    chart.x_labels = [(x_of(0), first.isoformat(), "start"),
                      (x_of(middle), (first + timedelta(days=middle)).isoformat(), "middle"),
                      (x_of(days - 1), last.isoformat(), "end")]
    if chart.limit is not None:
        chart.limit_y = y_of(chart.limit)
    if known:
        latest_day = max(d for d, v in values.items() if v is not None)
        chart.summary = (f"{len(known)} of {days} days reported; latest {values[latest_day]:,} on {latest_day.isoformat()},"
                         f" highest {max(known):,}" + (f"; limit {chart.limit:,}" if chart.limit is not None else ""))
    else:
        chart.summary = f"no report in these {days} days"
    if summary is not None:
        chart.summary = summary
    return chart
