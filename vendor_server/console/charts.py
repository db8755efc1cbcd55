"""Charts drawn on the server as inline SVG: no script, no chart library, nothing fetched by the page
(its Content-Security-Policy allows no script at all). Every bar carries its series and value
(``data-series``, ``data-value``) and a ``<title>`` tooltip, so what a chart shows can be read back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 34
#: at most this many labels under the x axis
X_LABELS = 12


def stacked_bars(
    labels: Sequence[str], series: Mapping[str, Sequence[int]], colors: Mapping[str, str], caption: str
) -> Markup:
    """Bars over ``labels`` (time buckets), each stacking the values of ``series`` at that bucket
    (one colour each, listed in a legend); ``caption`` is the chart's accessible name."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    peak = max(totals, default=0)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(labels))
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(caption)}">',
        f'<line class="axis" x1="{LEFT}" y1="{TOP + plot_h}" x2="{WIDTH - RIGHT}" y2="{TOP + plot_h}"/>',
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{peak * fraction:,.0f}</text>'
        )
    for i, label in enumerate(labels):
        x, base = LEFT + i * step, TOP + plot_h
        for name, values in series.items():
            value = values[i]
            if value <= 0:
                continue
            height = plot_h * value / peak
            base -= height
            parts.append(
                f'<rect class="bar" data-series="{escape(name)}" data-value="{value}" x="{x + step * 0.1:.1f}" '
                f'y="{base:.1f}" width="{step * 0.8:.1f}" height="{height:.1f}" fill="{colors[name]}">'
                f"<title>{escape(label)}: {escape(name)} {value:,}</title></rect>"
            )
        if i % max(1, -(-len(labels) // X_LABELS)) == 0:
            parts.append(
                f'<text class="tick" x="{x + step / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    if peak == 0:
        parts.append(f'<text class="empty" x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle">no data yet</text>')
    parts.append("</svg>")
    legend = "".join(
        f'<svg class="swatch" width="10" height="10"><rect width="10" height="10" fill="{colors[name]}"/></svg>'
        f"{escape(name)} "
        for name in series
    )
    return Markup(f"<figure>{''.join(parts)}<figcaption>{escape(caption)} · {legend}</figcaption></figure>")
