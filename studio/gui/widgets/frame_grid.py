"""A grid of aligned frames with quality flags and the selected frames highlighted.

Thumbnails load lazily (a few per timer tick) so opening a scan with 1,000 crops never freezes the
window; each tile's tooltip names its frame and flags in plain words.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

from studio.gui.scan_files import flag_words



class FrameGrid(QListWidget):
    """Icon grid; ``set_frames(paths, flags, selected)``: flags maps index -> list of flag names."""

    def __init__(self, parent: QWidget | None = None, thumb: int = 96) -> None:
        super().__init__(parent)
        self.thumb = thumb
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setIconSize(QSize(thumb, thumb))
        self.setGridSize(QSize(thumb + 12, thumb + 26))
        self.setSpacing(2)
        self.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.paths: list[Path] = []
        self.flags: dict[int, list[str]] = {}
        self.selected: set[int] = set()
        self._pending: list[int] = []
        self._timer = QTimer(self)
        self._timer.setInterval(15)
        self._timer.timeout.connect(self._load_some)

    def clear_frames(self) -> None:
        """Show nothing (another project opened). Not ``reset``: QListWidget's own ``reset``
        slot is called by ``clear``."""
        self.set_frames([])

    def set_frames(self, paths: Iterable[Path], flags: dict[int, list[str]] | None = None,
                   selected: Iterable[int] = ()) -> None:
        self.clear()
        self.paths = [Path(p) for p in paths]
        self.flags = dict(flags or {})
        self.selected = set(int(i) for i in selected)
        placeholder = QPixmap(self.thumb, self.thumb)
        placeholder.fill(QColor("#ddd"))
        for i, path in enumerate(self.paths):
            item = QListWidgetItem(QIcon(placeholder), self._label(i))
            item.setToolTip(self._tooltip(i, path))
            item.setData(Qt.ItemDataRole.UserRole, i)
            self.addItem(item)
        self._pending = list(range(len(self.paths)))
        if self._pending:
            self._timer.start()

    def _label(self, i: int) -> str:
        mark = "★ " if i in self.selected else ("⚠ " if self.flags.get(i) else "")
        return f"{mark}{i}"

    def _tooltip(self, i: int, path: Path) -> str:
        words = [flag_words(f) for f in self.flags.get(i, [])]
        lines = [f"Frame {i} ({path.name})"]
        lines.append("Selected for training" if i in self.selected else "Not selected")
        lines.append("Problems: " + ", ".join(words) if words else "No problems found")
        return "\n".join(lines)

    def _load_some(self, batch: int = 12) -> None:
        for _ in range(batch):
            if not self._pending:
                self._timer.stop()
                return
            i = self._pending.pop(0)
            item = self.item(i)
            if item is not None:
                item.setIcon(QIcon(self._thumbnail(i)))

    def load_all_now(self) -> None:
        """Load every thumbnail at once (screenshots and tests)."""
        while self._pending:
            self._load_some(len(self._pending))

    def _thumbnail(self, i: int) -> QPixmap:
        pix = QPixmap(str(self.paths[i]))
        if pix.isNull():
            pix = QPixmap(self.thumb, self.thumb)
            pix.fill(QColor("#999"))
        pix = pix.scaled(self.thumb, self.thumb, Qt.AspectRatioMode.KeepAspectRatio,
                         Qt.TransformationMode.SmoothTransformation)
        if i in self.selected or self.flags.get(i):
            painter = QPainter(pix)
            color = QColor("#27ae60") if i in self.selected else QColor("#eb5757")
            painter.setPen(QPen(color, 6))
            painter.drawRect(pix.rect().adjusted(2, 2, -3, -3))
            painter.end()
        return pix
