"""The bench's picture: krun's median over crun's and runc's, and krun's own work (its
median less its interpreter starts) over crun's median, per scenario."""

from __future__ import annotations

import math

from benchlib.png import Canvas, Color, text_width

INK: Color = (30, 30, 30)
GREY: Color = (110, 110, 110)
GRID: Color = (225, 225, 225)
PARITY: Color = (200, 30, 30)
SERIES: dict[str, Color] = {"crun": (52, 101, 164), "runc": (230, 140, 40),
                            "own": (90, 160, 90)}
LEGEND = {"crun": "krun / crun", "runc": "krun / runc",
          "own": "krun's own work / crun"}

WIDTH = 1000
BAR, BAR_GAP, GROUP_GAP = 20, 4, 20


def _nice_step(span: float) -> float:
    """A tick step of 1, 2 or 5 x 10^k giving at most ~8 ticks over `span`."""
    raw = span / 8
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def ratio_chart(groups: list[tuple[str, dict[str, float | None]]], title: str,
                subtitle: str, footnotes: list[str]) -> bytes:
    """Horizontal bars, one group per scenario, one bar per compared runtime."""
    s = 2  # font scale: 10x14 px glyphs
    label_w = max([text_width(g[0], s) for g in groups] + [100]) + 24
    x0, x1 = label_w, WIDTH - 90  # the right margin holds the value labels
    values = [v for _, vs in groups for v in vs.values() if v is not None]
    top = max([*values, 1.0]) * 1.08
    step = _nice_step(top)
    top = math.ceil(top / step) * step

    def xpos(v: float) -> int:
        return x0 + round((x1 - x0) * v / top)

    plot_top = 128
    group_h = len(SERIES) * (BAR + BAR_GAP) - BAR_GAP + GROUP_GAP
    plot_bottom = plot_top + max(1, len(groups)) * group_h
    height = plot_bottom + 50 + 22 * len(footnotes) + 10
    c = Canvas(WIDTH, height)

    c.text(16, 14, title, INK, 3)
    c.text(16, 50, subtitle, GREY, s)
    x = 16
    for name, color in SERIES.items():
        c.rect(x, 82, 20, 20, color)
        x = c.text(x + 28, 85, LEGEND[name], INK, s) + 30

    ticks = [i * step for i in range(round(top / step) + 1)]
    for t in ticks:
        c.rect(xpos(t), plot_top - 6, 1, plot_bottom - plot_top + 6, GRID)
        label = f"{t:g}"
        c.text(xpos(t) - text_width(label, s) // 2, plot_bottom + 8, label, GREY, s)
    c.rect(x0, plot_top - 6, 1, plot_bottom - plot_top + 6, GREY)  # the zero axis

    # Bars, then the parity line over them, then the values over both on a white patch.
    texts: list[tuple[int, int, str, Color]] = []
    y = plot_top
    for label, vs in groups:
        label_y = y + (group_h - GROUP_GAP) // 2 - 7
        texts.append((x0 - 12 - text_width(label, s), label_y, label, INK))
        for name, color in SERIES.items():
            v = vs.get(name)
            if v is None:
                texts.append((x0 + 6, y + 3, "n/a", GREY))
            else:
                c.rect(x0 + 1, y, xpos(v) - x0, BAR, color)
                texts.append((xpos(v) + 6, y + 3, f"{v:.2f}x", INK))
            y += BAR + BAR_GAP
        y += GROUP_GAP - BAR_GAP
    c.rect(xpos(1.0) - 1, plot_top - 16, 3, plot_bottom - plot_top + 16, PARITY)
    c.text(xpos(1.0) + 6, plot_top - 20, "1.0 = same speed", PARITY, s)
    for tx, ty, text, color in texts:
        c.rect(tx - 2, ty - 2, text_width(text, s) + 4, 7 * s + 4, (255, 255, 255))
        c.text(tx, ty, text, color, s)

    y = plot_bottom + 42
    for note in footnotes:
        c.text(16, y, note, GREY, s)
        y += 22
    return c.png()
