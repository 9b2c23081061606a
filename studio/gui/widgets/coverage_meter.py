"""Coverage meter: which head poses (a yaw x pitch grid) and expressions a scan already covers.

Why: a personalized generator can only reproduce poses and expressions it has seen, so while
recording (and when reviewing a selection) the user sees which cells are still empty.
"""
from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

EXPRESSIONS = ("smile", "mouth open", "eyes closed", "brows up")


class CoverageMeter(QWidget):
    """Draws a yaw x pitch grid (cell counts, optionally a reference set) and expression bars.

    ``add_pose(yaw_deg, pitch_deg)`` fills a cell; ``set_expression(name, fraction)`` fills a bar;
    ``set_grid(counts, reference)`` shows precomputed counts (e.g. selection vs all frames).
    """

    def __init__(self, parent: QWidget | None = None, cols: int = 5, rows: int = 3,
                 max_yaw: float = 40.0, max_pitch: float = 25.0, show_expressions: bool = True) -> None:
        super().__init__(parent)
        self.default_shape = (rows, cols)
        self.show_expressions = show_expressions
        self.cols, self.rows = cols, rows
        self.max_yaw, self.max_pitch = max_yaw, max_pitch
        self.counts = [[0] * cols for _ in range(rows)]
        self.reference: list[list[int]] | None = None
        self.expressions = {name: 0.0 for name in EXPRESSIONS}
        self.target_per_cell = 5
        self.setMinimumSize(220, 150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Coverage: each square is a head direction (left/right, up/down). "
                        "Green squares are covered. Turn your head slowly to fill them, and make "
                        "the expressions listed on the right.")

    def reset(self) -> None:
        """Empty: no pose seen, no reference set, no expression."""
        self.rows, self.cols = self.default_shape
        self.counts = [[0] * self.cols for _ in range(self.rows)]
        self.reference = None
        self.expressions = {name: 0.0 for name in EXPRESSIONS}
        self.update()

    def cell_of(self, yaw: float, pitch: float) -> tuple[int, int]:
        col = int((max(-self.max_yaw, min(self.max_yaw, yaw)) + self.max_yaw)
                  / (2 * self.max_yaw) * self.cols)
        row = int((max(-self.max_pitch, min(self.max_pitch, pitch)) + self.max_pitch)
                  / (2 * self.max_pitch) * self.rows)
        return min(row, self.rows - 1), min(col, self.cols - 1)

    def add_pose(self, yaw: float, pitch: float) -> None:
        row, col = self.cell_of(yaw, pitch)
        self.counts[row][col] += 1
        self.update()

    def set_grid(self, counts: list[list[int]], reference: list[list[int]] | None = None) -> None:
        self.rows, self.cols = len(counts), len(counts[0]) if counts else 0
        self.counts = [list(r) for r in counts]
        self.reference = [list(r) for r in reference] if reference else None
        self.update()

    def set_expression(self, name: str, fraction: float) -> None:
        self.expressions[name] = max(0.0, min(1.0, fraction))
        self.update()

    def fraction_covered(self) -> float:
        cells = self.rows * self.cols
        full = sum(1 for r in self.counts for c in r if c >= 1)
        return full / cells if cells else 0.0

    def title(self, width: float) -> str:
        """The coverage headline, the longest wording that fits ``width`` pixels."""
        share = f"{self.fraction_covered():.0%}"
        metrics = QFontMetrics(self.font())
        for text in (f"Head directions: {share} covered", f"Directions: {share} covered",
                     f"{share} covered"):
            if metrics.horizontalAdvance(text) <= width:
                return text
        return share

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        metrics = QFontMetrics(self.font())
        line = metrics.height() + 2
        w, h = self.width(), self.height()
        grid_w = w * 0.58 if self.show_expressions else float(w)
        p.setPen(self.palette().text().color())
        p.drawText(QRectF(0, 0, grid_w, line), Qt.AlignmentFlag.AlignCenter, self.title(grid_w))
        top = float(line + 2)
        cw = (grid_w - 8) / max(1, self.cols)
        ch = (h - top - line - 2) / max(1, self.rows)
        target = self.target_per_cell
        for r in range(self.rows):
            for c in range(self.cols):
                n = self.counts[r][c]
                fill = min(1.0, n / target) if target else 1.0
                color = QColor.fromRgbF(0.15, 0.35 + 0.45 * fill, 0.2 + 0.1 * fill, 0.15 + 0.75 * fill)
                rect = QRectF(4 + c * cw, top + r * ch, cw - 4, ch - 4)
                p.fillRect(rect, color if n else QColor("#e0e0e0"))
                if self.reference is not None:
                    text = f"{n}/{self.reference[r][c]}"
                    if metrics.horizontalAdvance(text) > rect.width() - 2:
                        text = str(n)  # a narrow cell keeps the count, drops the total
                    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
                elif n:
                    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, str(n))
        axis = "← left · right →" + ("   (selected / all frames)" if self.reference is not None else "")
        p.drawText(QRectF(0, h - line, grid_w, line), Qt.AlignmentFlag.AlignCenter, axis)
        if self.show_expressions:
            x = grid_w + 10
            bar_w = w - x - 6
            y = top
            for name, frac in self.expressions.items():
                p.drawText(QRectF(x, y, bar_w, line), Qt.AlignmentFlag.AlignLeft, name)
                bar = QRectF(x, y + line + 1, bar_w, 10)
                p.fillRect(bar, QColor("#e0e0e0"))
                p.fillRect(QRectF(bar.left(), bar.top(), bar.width() * frac, bar.height()), QColor("#27ae60"))
                p.setPen(QPen(self.palette().mid().color()))
                p.drawRect(bar)
                p.setPen(self.palette().text().color())
                y += line + 16
        p.end()
