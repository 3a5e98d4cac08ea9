"""The codebook confusion matrix P(class | atom) as a compact SVG drawn for the page.

The run's own ``plots/confusion.svg`` is a matplotlib figure sized in inches: shown in a page column
its 8-pt tick labels end up a few pixels high. This one is laid out in CSS pixels (1 SVG unit = 1 px
at natural size) with 13-px labels, rows in :func:`varinv.eval.metrics.ordered_confusion` order and
unused atoms left out, so it reads well at its natural size and the page can show it larger.
"""

from __future__ import annotations

import html

import numpy as np

__all__ = ["confusion_svg", "FONT_PX"]

FONT_PX = 13
_CHAR = 0.62  # average glyph width / font size (system sans-serif)


def _x(s) -> str:
    return html.escape(str(s), quote=True)


def _short(s: str, n: int = 18) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _hex(rgb) -> str:
    return "#%02x%02x%02x" % tuple(int(round(v * 255)) for v in rgb[:3])


def confusion_svg(counts, content_names: list[str], title: str = "") -> str | None:
    """SVG text of P(class | atom) from raw counts (K, C); None when ``counts`` is not a usable matrix."""
    from matplotlib import colormaps

    from varinv.eval.metrics import ordered_confusion

    try:
        m = np.asarray(counts, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if m.ndim != 2 or m.size == 0 or not np.isfinite(m).all() or (m < 0).any() or m.sum() <= 0:
        return None
    k_all, c = m.shape
    names = [str(content_names[j]) if j < len(content_names) else str(j) for j in range(c)]
    mat, order = ordered_confusion(m)
    used = m.sum(axis=1)[order] > 0
    n_hidden = int((~used).sum())
    mat, order = mat[used], order[used]
    k = mat.shape[0]
    fs = FONT_PX
    # cells fill about 320 px each way when the matrix is small; rows stay >= 14 px (a tall matrix scrolls
    # in its box on the page) and columns fit their labels
    ch = int(np.clip(320 // k, 16 if k <= 40 else 14, 40))
    labels = [_short(n) for n in names]
    longest = max(len(s) for s in labels)
    cw = int(np.clip(max(np.ceil(longest * _CHAR * fs) + 8, 320 // c), 26, 64))
    vertical = longest * _CHAR * fs + 6 > cw
    left = int(max(len(str(int(a))) for a in order) * _CHAR * fs) + 30  # atom ids + the axis title
    top = 30 if title else 8
    xlab = int(longest * _CHAR * fs) + 10 if vertical else fs + 8
    bottom = xlab + fs + 14
    bar = 44  # colour bar and its ticks
    width = left + c * cw + 12 + bar
    height = top + k * ch + bottom
    cmap = colormaps["viridis"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" '
           f'font-size="{fs}">',
           f'<rect width="{width}" height="{height}" fill="#fff"/>']
    if title:
        full = title + (f" ({n_hidden} unused atoms hidden)" if n_hidden else "")
        out.append(f'<text x="{left}" y="{fs + 6}" font-weight="600">{_x(full)}</text>')
    for i in range(k):
        y = top + i * ch
        row = mat[i]
        j_max = int(row.argmax())
        out.append(f'<g><title>atom {int(order[i])}: {_x(names[j_max])} {100 * row[j_max]:.0f}%</title>')
        for j in range(c):
            out.append(f'<rect x="{left + j * cw}" y="{y}" width="{cw}" height="{ch}" fill="{_hex(cmap(row[j]))}"/>')
        out.append("</g>")
        out.append(f'<text x="{left - 5}" y="{y + ch / 2:.1f}" text-anchor="end" dominant-baseline="central">'
                   f"{int(order[i])}</text>")
    yb = top + k * ch
    for j, lab in enumerate(labels):
        x = left + j * cw + cw / 2
        tip = f"<title>{_x(names[j])}</title>" if lab != names[j] else ""
        if vertical:
            out.append(f'<text transform="translate({x:.1f},{yb + 6}) rotate(-90)" text-anchor="end" '
                       f'dominant-baseline="central">{tip}{_x(lab)}</text>')
        else:
            out.append(f'<text x="{x:.1f}" y="{yb + fs + 2}" text-anchor="middle">{tip}{_x(lab)}</text>')
    out.append(f'<text x="{left + c * cw / 2:.1f}" y="{height - 6}" text-anchor="middle" fill="#444">'
               "content class</text>")
    mid = top + k * ch / 2
    out.append(f'<text transform="translate({fs},{mid:.1f}) rotate(-90)" text-anchor="middle" fill="#444">'
               "atom</text>")
    # colour bar 0 → 1, top to bottom = 1 → 0
    bx, bh = left + c * cw + 12, max(k * ch, 60)
    out.append('<defs><linearGradient id="vv" x1="0" y1="1" x2="0" y2="0">'
               + "".join(f'<stop offset="{t:.2f}" stop-color="{_hex(cmap(t))}"/>' for t in np.linspace(0, 1, 6))
               + "</linearGradient></defs>")
    out.append(f'<rect x="{bx}" y="{top}" width="12" height="{bh}" fill="url(#vv)"/>')
    out.append(f'<text x="{bx + 16}" y="{top + fs - 2}">1</text>')
    out.append(f'<text x="{bx + 16}" y="{top + bh}">0</text>')
    out.append("</svg>\n")
    return "".join(out)
