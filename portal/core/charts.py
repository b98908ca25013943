"""Charts drawn on the server as SVG: no script, no CDN, fine under the Content-Security-Policy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import gettext as _
from markupsafe import Markup, escape

from portal.core.languages import is_english, zh_attr

PALETTE = ("#0b4f8a", "#f4a259", "#5b8e7d", "#bc4b51", "#8cb369", "#6c757d")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _ticks(top: float) -> list[float]:
    if top <= 0:
        return [0]
    step = 10 ** (len(str(int(top))) - 1) or 1
    while top / step > 5:
        step *= 2
    return [step * i for i in range(int(top // step) + 2)]


def bar_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    line: Series | None = None,
    lines: Sequence[Series] = (),
    width: int = 720,
    height: int = 260,
    unit: str = "",
    lines_on_right_axis: bool = False,
) -> Markup:
    """Stacked bars per label, optional lines on top (a budget, a forecast), a legend.

    With `lines_on_right_axis` the lines have a scale of their own, read on a right-hand axis: a
    year's budget and running total would otherwise flatten the monthly bars to a few pixels.
    """
    lines = [*([line] if line is not None else []), *lines]
    left, bottom, top_pad, right = 64, 40, 16, 64 if lines_on_right_axis and lines else 16
    plot_w, plot_h = width - left - right, height - bottom - top_pad
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    line_values = [v for item in lines for v in item.values]
    separate = lines_on_right_axis and bool(lines)
    peak = max([*totals, *([] if separate else line_values), 1])
    ticks = _ticks(peak)
    scale = plot_h / (ticks[-1] or 1)
    line_ticks = _ticks(max([*line_values, 1])) if separate else ticks
    line_scale = plot_h / (line_ticks[-1] or 1)
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.6
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for tick in ticks:
        y = top_pad + plot_h - tick * scale
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e9ecef"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="#6c757d">'
            f"{escape(_short(tick))}{escape(unit)}</text>"
        )
    if separate:
        for tick in line_ticks:
            y = top_pad + plot_h - tick * line_scale
            parts.append(
                f'<text x="{width - right + 6}" y="{y + 4:.1f}" text-anchor="start" font-size="11" '
                f'fill="#212529">{escape(_short(tick))}{escape(unit)}</text>'
            )
    for i, label in enumerate(labels):
        x = left + slot * i + (slot - bar) / 2
        base: float = top_pad + plot_h
        for colour, item in zip(PALETTE, series, strict=False):
            h = item.values[i] * scale
            base -= h
            tip = f"{escape(label)} · {escape(item.name)}: {escape(_short(item.values[i]))}{escape(unit)}"
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{tip}</title></rect>'
            )
        parts.append(
            f'<text x="{x + bar / 2:.1f}" y="{height - bottom + 16}" text-anchor="middle" font-size="11" '
            f'fill="#495057"{zh_attr(label)}>{escape(label)}</text>'
        )
    line_colours = ("#bc4b51", "#212529", "#6f42c1")
    for n, item in enumerate(lines if labels else []):
        points = " ".join(
            f"{left + slot * i + slot / 2:.1f},{top_pad + plot_h - v * line_scale:.1f}"
            for i, v in enumerate(item.values)
        )
        dash = ' stroke-dasharray="6 4"' if n % 2 == 0 else ""
        parts.append(
            f'<polyline class="line" points="{points}" fill="none" stroke="{line_colours[n % 3]}" '
            f'stroke-width="2"{dash}><title>{escape(item.name)}</title></polyline>'
        )
    legend = [(PALETTE[n % len(PALETTE)], item) for n, item in enumerate(series)]
    legend += [(line_colours[n % 3], item) for n, item in enumerate(lines)]
    step = max(min(170, (width - left) // max(len(legend), 1)), 90)
    for n, (colour, item) in enumerate(legend):
        x = left + n * step
        parts.append(f'<rect x="{x}" y="{height - 14}" width="10" height="10" fill="{colour}"/>')
        parts.append(
            f'<text x="{x + 14}" y="{height - 5}" font-size="11" fill="#495057">{escape(item.name)}</text>'
        )
    parts.append("</svg>")
    columns = [item.name for item in (*series, *lines)]
    rows = [(label, [item.values[i] for item in (*series, *lines)]) for i, label in enumerate(labels)]
    return _with_table("".join(parts), title, columns, rows, unit)


def hbar_chart(rows: Sequence[tuple[str, float]], *, title: str, unit: str = "", width: int = 720) -> Markup:
    """One horizontal bar per (label, value): for categories whose names are too long to stand under a bar."""
    label_w, right, row_h = 200, 70, 22
    height = max(len(rows), 1) * row_h + 8
    peak = max([v for _l, v in rows] + [1])
    plot_w = width - label_w - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(rows):
        y = 4 + i * row_h
        w = plot_w * value / peak
        text = f"{escape(_short(value))}{escape(unit)}"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12" fill="#495057"'
            f"{zh_attr(label)}>{escape(label[:18])}</text>"
        )
        parts.append(
            f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{PALETTE[0]}"><title>{escape(label)}: {text}</title></rect>'
        )
        parts.append(
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}" font-size="11" fill="#6c757d">{text}</text>'
        )
    parts.append("</svg>")
    return _with_table("".join(parts), title, [title], [(label, [value]) for label, value in rows], unit)


def _with_table(
    svg: str, title: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[float]]], unit: str
) -> Markup:
    """The chart in a box that scrolls sideways on a phone (so its text is never scaled below 11 px:
    the SVG keeps its own width, see portal.css), and its figures as a table in a <details> beside it,
    for screen readers and for anyone who wants the numbers."""
    head = "".join(f'<th scope="col" class="text-end">{escape(c)}</th>' for c in columns)
    body = "".join(
        f'<tr><th scope="row"{zh_attr(label)}>{escape(label)}</th>'
        + "".join(f'<td class="text-end">{escape(_full(v))}{escape(unit)}</td>' for v in values)
        + "</tr>"
        for label, values in rows
    )
    summary, item = _("Figures as a table"), _("Item")  # outside the f-string, so pybabel finds them
    html = (
        f'<div class="chart-scroll" role="group" aria-label="{escape(title)}">{svg}</div>'
        f'<details class="chart-figures small"><summary>{escape(summary)}</summary>'
        f'<div class="table-responsive"><table class="table table-sm mb-0"><caption>{escape(title)}</caption>'
        f'<thead><tr><th scope="col">{escape(item)}</th>{head}</tr></thead><tbody>{body}</tbody>'
        "</table></div></details>"
    )
    # Every piece of text above went through escape(); the rest is our own markup (hence the nosec).
    return Markup(html)  # noqa: S704  # nosec B704


def _full(value: float) -> str:
    """A figure in full for the table (the chart's axis shortens large ones)."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _short(value: float) -> str:
    """An axis or tooltip amount: Chinese counts in 万 (ten thousands), English in k and M."""
    if is_english():
        if abs(value) >= 1_000_000:
            return f"{value / 1_000_000:,.1f}M"
        if abs(value) >= 10_000:
            return f"{value / 1_000:,.0f}k"
    elif abs(value) >= 10_000:
        return f"{value / 10_000:,.1f}万"
    return f"{value:,.0f}"
