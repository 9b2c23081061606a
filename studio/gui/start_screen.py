"""The first thing a user sees: create a project, open one, or pick a recent one."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton,
                               QVBoxLayout, QWidget)

from studio import __version__


class StartScreen(QWidget):
    """Signals: ``new_requested()``, ``open_requested()``, ``open_path(path)``."""

    new_requested = Signal()
    open_requested = Signal()
    open_path = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        title = QLabel("Self-Scan Avatar Studio")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 2.2)
        font.setBold(True)
        title.setFont(font)
        subtitle = QLabel("Record about 30 seconds of your face, teach the studio your look, then "
                          "make your avatar act out any video.")
        subtitle.setWordWrap(True)
        self.new_button = QPushButton("New project…")
        self.new_button.setToolTip("Start a new avatar: one project folder per person (Ctrl+N)")
        self.open_button = QPushButton("Open project…")
        self.open_button.setToolTip("Open an existing project folder (Ctrl+O)")
        for b in (self.new_button, self.open_button):
            b.setMinimumHeight(44)
            b.setMinimumWidth(180)
        self.new_button.clicked.connect(self.new_requested)
        self.open_button.clicked.connect(self.open_requested)
        self.recent = QListWidget()
        self.recent.setToolTip("Double-click (or Enter) to open")
        self.recent.itemActivated.connect(lambda item: self.open_path.emit(item.data(Qt.ItemDataRole.UserRole)))
        self.empty_label = QLabel("No recent projects yet.")
        self.empty_label.setStyleSheet("color: #666;")
        version = QLabel(f"version {__version__}")
        version.setStyleSheet("color: #888;")

        buttons = QHBoxLayout()
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.open_button)
        buttons.addStretch(1)
        column = QVBoxLayout()
        column.addWidget(title)
        column.addWidget(subtitle)
        column.addSpacing(16)
        column.addLayout(buttons)
        column.addSpacing(16)
        column.addWidget(QLabel("Recent projects"))
        column.addWidget(self.recent, 1)
        column.addWidget(self.empty_label)
        column.addWidget(version, 0, Qt.AlignmentFlag.AlignRight)
        outer = QHBoxLayout(self)
        outer.addStretch(1)
        outer.addLayout(column, 4)
        outer.addStretch(1)
        self.setAcceptDrops(True)

    def set_recent(self, paths: list[str]) -> None:
        self.recent.clear()
        for path in paths:
            exists = (Path(path) / "project.json").is_file()
            item = QListWidgetItem(f"{Path(path).name}    —    {path}" + ("" if exists else "  (missing)"))
            item.setData(Qt.ItemDataRole.UserRole, path)
            if not exists:
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEnabled)
            self.recent.addItem(item)
        self.empty_label.setVisible(not paths)
        self.recent.setVisible(bool(paths))

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        for url in event.mimeData().urls():
            path = Path(url.toLocalFile())
            folder = path.parent if path.name == "project.json" else path
            if (folder / "project.json").is_file():
                self.open_path.emit(str(folder))
                return
