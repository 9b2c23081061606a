"""A small live line plot of training losses, drawn with QPainter (no chart dependency).

Reads the tuning job's ``model/log.csv`` (a header row, then one row per logged step); the first
column named like 'step'/'iter' is the x axis and every other numeric column is one curve.

Why a logarithmic y axis: the curves differ by orders of magnitude (the pixel term is ~0.01, the
total ~1) and fall by a factor of several; on one linear axis the small one is a flat line at the
bottom. The legend sits above the plot, never on a curve.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

COLORS = ["#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#56ccf2"]
X_NAMES = ("step", "steps", "iter", "iteration", "it", "epoch")
SKIP = {"time", "seconds", "elapsed", "lr", "wall", "timestamp"}


def read_loss_log(path: str | Path) -> tuple[list[float], dict[str, list[float]]]:
    """Parse a CSV loss log into (xs, {curve name: ys}); missing/partial files give empty data."""
    path = Path(path)
    if not path.is_file():
        return [], {}
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
    except OSError:
        return [], {}
    if len(rows) < 2:
        return [], {}
    header = [h.strip() for h in rows[0]]
    x_col = next((i for i, h in enumerate(header) if h.lower() in X_NAMES), None)
    xs: list[float] = []
    curves: dict[str, list[float]] = {h: [] for i, h in enumerate(header)
                                      if i != x_col and h.lower() not in SKIP}
    for n, row in enumerate(rows[1:]):
        if len(row) != len(header):
            continue  # a line being written right now
        try:
            values = [float(v) for v in row]
        except ValueError:
            continue
        xs.append(values[x_col] if x_col is not None else float(n))
        for i, h in enumerate(header):
            if h in curves:
                curves[h].append(values[i])
    return xs, {k: v for k, v in curves.items() if v and all(math.isfinite(y) for y in v)}


class LossPlot(QWidget):
    """Plots curves; ``set_data(xs, curves)`` or ``load(csv_path)``. Empty: shows a hint."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.xs: list[float] = []
        self.curves: dict[str, list[float]] = {}
        self.empty_text = "The loss curve appears here while the model trains."
        self.setMinimumSize(240, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Loss: how far the generated faces still are from your frames. "
                        "It should go down and flatten out as training goes on.")

    def set_data(self, xs: list[float], curves: dict[str, list[float]]) -> None:
        self.xs, self.curves = list(xs), {k: list(v) for k, v in curves.items()}
        self.update()

    def load(self, path: str | Path) -> int:
        xs, curves = read_loss_log(path)
        self.set_data(xs, curves)
        return len(xs)

    def uses_log_axis(self) -> bool:
        """Log scale when every value is positive (losses are); linear otherwise."""
        return all(y > 0 for ys in self.curves.values() for y in ys)

    def legend_area(self) -> QRectF:
        line = QFontMetrics(self.font()).height()
        return QRectF(self.rect()).adjusted(48, 4, -12, -(self.height() - 4 - line))

    def plot_area(self) -> QRectF:
        line = QFontMetrics(self.font()).height()
        return QRectF(self.rect()).adjusted(48, 10 + line, -12, -(line + 12))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), self.palette().base())
        area = self.plot_area()
        p.setPen(QPen(self.palette().mid().color()))
        p.drawRect(area)
        if len(self.xs) < 2 or not self.curves:
            p.setPen(self.palette().placeholderText().color())
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.empty_text)
            return
        log = self.uses_log_axis()
        scale = (lambda y: math.log10(y)) if log else (lambda y: y)
        x0, x1 = min(self.xs), max(self.xs)
        all_y = [scale(y) for ys in self.curves.values() for y in ys]
        y0, y1 = min(all_y), max(all_y)
        if y1 - y0 < 1e-12:
            y0, y1 = y0 - 0.5, y1 + 0.5
        if x1 - x0 < 1e-12:
            x1 = x0 + 1

        def point(x: float, y: float) -> QPointF:
            return QPointF(area.left() + (x - x0) / (x1 - x0) * area.width(),
                           area.bottom() - (scale(y) - y0) / (y1 - y0) * area.height())

        metrics = QFontMetrics(self.font())
        text = self.palette().text().color()
        grid = QColor(self.palette().mid().color())
        grid.setAlpha(90)
        ticks = _log_ticks(y0, y1) if log else [y0, y1]
        for t in ticks:
            y = area.bottom() - (t - y0) / (y1 - y0) * area.height()
            p.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
            p.drawLine(QPointF(area.left(), y), QPointF(area.right(), y))
            p.setPen(text)
            p.drawText(QRectF(0, y - 7, 44, 14), Qt.AlignmentFlag.AlignRight, f"{10 ** t if log else t:.3g}")
        base = area.bottom() + 4
        p.drawText(QRectF(area.left(), base, 80, metrics.height()), Qt.AlignmentFlag.AlignLeft, f"{x0:g}")
        p.drawText(QRectF(area.right() - 160, base, 160, metrics.height()), Qt.AlignmentFlag.AlignRight,
                   f"step {x1:g}" + (" · log scale" if log else ""))
        legend = self.legend_area()
        x = legend.left()
        for i, (name, ys) in enumerate(self.curves.items()):
            color = QColor(COLORS[i % len(COLORS)])
            path = QPainterPath(point(self.xs[0], ys[0]))
            for px, py in zip(self.xs[1:], ys[1:]):
                path.lineTo(point(px, py))
            p.setPen(QPen(color, 2))
            p.drawPath(path)
            label = f"— {name} {ys[-1]:.3g}"
            if x + metrics.horizontalAdvance(label) > legend.right():
                label = f"— {name}"
            p.drawText(QRectF(x, legend.top(), legend.right() - x, legend.height()),
                       Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, label)
            x += metrics.horizontalAdvance(label) + 14
        p.end()


def _log_ticks(lo: float, hi: float) -> list[float]:
    """log10 positions of the decades (1, 2, 5 × 10^k when fewer than two decades fit) in
    [lo, hi], always including both ends."""
    ticks = [lo, hi]
    for k in range(math.floor(lo), math.ceil(hi) + 1):
        for m in ((1,) if hi - lo > 2 else (1, 2, 5)):
            t = k + math.log10(m)
            if lo + 0.08 * (hi - lo) < t < hi - 0.08 * (hi - lo):
                ticks.append(t)
    return sorted(ticks)
