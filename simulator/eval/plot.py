"""Line charts drawn with Pillow, for the evaluation report.

Why not matplotlib: the report needs a handful of line charts (a curve per method, an optional
shaded spread band, axes with ticks, a legend). Pillow is already a dependency and draws these
in ~150 lines, deterministically and offline; matplotlib would add a large dependency (and its
font cache at first import) for that. Text uses Pillow's bundled FreeType font.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# a colour-blind-safe cycle (Okabe-Ito), one per series in the order given
PALETTE: tuple[tuple[int, int, int], ...] = (
    (0, 114, 178), (213, 94, 0), (0, 158, 115), (204, 121, 167), (230, 159, 0), (86, 180, 233), (0, 0, 0))


@dataclass
class Series:
    """One curve: y over x, optionally with a shaded band [low, high] (e.g. the spread over episodes)."""

    label: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    dashed: bool = False
    colour: tuple[int, int, int] | None = None  # None: the next colour of PALETTE
    points: bool = False  # a scatter: a dot per (x, y), no line


@dataclass
class ChartConfig:
    width: int = 720  # pixels
    height: int = 420
    margin_left: int = 70  # room for the y tick labels
    margin_right: int = 20
    margin_top: int = 40  # room for the title
    margin_bottom: int = 80  # room for the x tick labels, axis label and legend
    font_size: int = 13
    ticks: int = 6  # about how many ticks per axis
    band_alpha: int = 60  # 0..255 opacity of the spread bands


@dataclass
class LineChart:
    title: str
    x_label: str
    y_label: str
    series: list[Series] = field(default_factory=list)
    config: ChartConfig = field(default_factory=ChartConfig)

    def add(self, series: Series) -> LineChart:
        self.series.append(series)
        return self

    def render(self) -> Image.Image:
        if not self.series:
            raise ValueError(f"chart {self.title!r} has no series to draw")
        c = self.config
        font = ImageFont.load_default(size=c.font_size)
        img = Image.new("RGB", (c.width, c.height), "white")
        x0, y0, x1, y1 = c.margin_left, c.margin_top, c.width - c.margin_right, c.height - c.margin_bottom
        (xmin, xmax), (ymin, ymax) = self._limits()

        def to_px(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
            px = x0 + (np.asarray(x, float) - xmin) / (xmax - xmin) * (x1 - x0)
            py = y1 - (np.asarray(y, float) - ymin) / (ymax - ymin) * (y1 - y0)
            return list(zip(px.tolist(), py.tolist()))

        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        band_draw = ImageDraw.Draw(overlay)
        for i, s in enumerate(self.series):
            if s.low is not None and s.high is not None and len(s.x) > 1:
                ok = np.isfinite(s.low) & np.isfinite(s.high)
                poly = to_px(s.x[ok], s.high[ok]) + to_px(s.x[ok][::-1], s.low[ok][::-1])
                band_draw.polygon(poly, fill=self._colour(i) + (c.band_alpha,))
        img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
        draw = ImageDraw.Draw(img)

        for value in _nice_ticks(ymin, ymax, c.ticks):
            (_, py), = to_px(np.array([xmin]), np.array([value]))
            draw.line([(x0, py), (x1, py)], fill=(225, 225, 225))
            draw.text((x0 - 6, py), _fmt(value), fill="black", font=font, anchor="rm")
        for value in _nice_ticks(xmin, xmax, c.ticks):
            (px, _), = to_px(np.array([value]), np.array([ymin]))
            draw.line([(px, y1), (px, y1 + 4)], fill="black")
            draw.text((px, y1 + 6), _fmt(value), fill="black", font=font, anchor="mt")
        draw.rectangle([x0, y0, x1, y1], outline="black")

        for i, s in enumerate(self.series):
            ok = np.isfinite(s.y)
            points = to_px(s.x[ok], s.y[ok])
            colour = self._colour(i)
            if len(points) == 1 or s.points:
                for px, py in points:
                    draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
                continue
            for j, (a, b) in enumerate(zip(points, points[1:])):
                if not s.dashed or j % 2 == 0:
                    draw.line([a, b], fill=colour, width=2)

        draw.text((c.width / 2, 8), self.title, fill="black", font=font, anchor="mt")
        draw.text(((x0 + x1) / 2, y1 + 24), self.x_label, fill="black", font=font, anchor="mt")
        draw.text((6, y0 - 20), self.y_label, fill="black", font=font, anchor="lt")
        self._legend(draw, font, x0, c.height - 26)
        return img

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.render().save(path)
        return path

    def _limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs = np.concatenate([np.asarray(s.x, float) for s in self.series])
        ys = np.concatenate([np.asarray(v, float) for s in self.series for v in (s.y, s.low, s.high) if v is not None])
        xs, ys = xs[np.isfinite(xs)], ys[np.isfinite(ys)]
        if xs.size == 0 or ys.size == 0:
            raise ValueError(f"chart {self.title!r}: no finite values to draw")
        xmin, xmax = float(xs.min()), float(xs.max())
        ymin, ymax = float(ys.min()), float(ys.max())
        pad = 0.05 * (ymax - ymin) if ymax > ymin else max(abs(ymin) * 0.1, 1.0)
        return (xmin, xmax if xmax > xmin else xmin + 1), (ymin - pad, ymax + pad)

    def _colour(self, i: int) -> tuple[int, int, int]:
        return self.series[i].colour or PALETTE[i % len(PALETTE)]

    def _legend(self, draw: ImageDraw.ImageDraw, font: ImageFont.FreeTypeFont, x: float, y: float) -> None:
        for i, s in enumerate(self.series):
            colour = self._colour(i)
            draw.line([(x, y + 7), (x + 22, y + 7)], fill=colour, width=3)
            draw.text((x + 28, y), s.label, fill="black", font=font)
            x += 28 + draw.textlength(s.label, font=font) + 18


def _nice_ticks(low: float, high: float, count: int) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) inside [low, high]."""
    span = high - low
    if span <= 0:
        return [low]
    raw = span / max(count, 1)
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or float(value).is_integer() else f"{value:.3g}"


def image_grid(rows: list[list[np.ndarray]], row_labels: list[str], col_labels: list[str],
               scale: int = 3, pad: int = 4, font_size: int = 13) -> Image.Image:
    """A labelled grid of uint8 [H, W, 3] frames (all the same size), upscaled `scale`x with
    nearest-neighbour so that pixels stay pixels."""
    if not rows or len(rows) != len(row_labels) or any(len(r) != len(col_labels) for r in rows):
        raise ValueError(f"grid: {len(rows)} rows for {len(row_labels)} row labels, columns "
                         f"{[len(r) for r in rows]} for {len(col_labels)} column labels")
    h, w = rows[0][0].shape[:2]
    font = ImageFont.load_default(size=font_size)
    label_w, label_h = 150, font_size + 10
    cell_w, cell_h = w * scale + pad, h * scale + pad
    img = Image.new("RGB", (label_w + cell_w * len(col_labels), label_h + cell_h * len(rows)), "white")
    draw = ImageDraw.Draw(img)
    for j, text in enumerate(col_labels):
        draw.text((label_w + j * cell_w + cell_w / 2, 4), text, fill="black", font=font, anchor="mt")
    for i, (row, text) in enumerate(zip(rows, row_labels)):
        top = label_h + i * cell_h
        draw.text((6, top + cell_h / 2), text, fill="black", font=font, anchor="lm")
        for j, frame in enumerate(row):
            tile = Image.fromarray(np.asarray(frame, np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
            img.paste(tile, (label_w + j * cell_w, top))
    return img
