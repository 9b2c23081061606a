"""Tools ▸ Models: which pretrained weights are present; fetch them (with progress) or import a file.

Runs over ``studio.weights`` (the same manager as ``studio-cli models``). Downloads run in a
background runner owned by the dialog, so the main window stays usable and the dialog can be
closed (the download is then cancelled; it resumes next time from the ``.part`` file).
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QProgressBar, QPushButton, QTableWidget, QTableWidgetItem,
                               QVBoxLayout, QWidget)

from studio.gui.error_dialog import show_error
from studio.gui.job_functions import Jobs
from studio.gui.worker import JobRunner, format_eta
from studio.weights import get_entry, list_weights

REQUIRED = ("ffhq", "lpips-alex")  # needed for personalization; CLIP only for styles/age


def weights_status() -> list[tuple[str, str, bool, str]]:
    """(name, description, present, path) for every registry entry."""
    return [(row.name, row.description, row.present, str(row.path)) for row in list_weights()]


def human_size(size: int | None) -> str:
    if size is None:
        return "?"
    return f"{size / 1e6:.0f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"


class ModelsDialog(QDialog):
    weights_changed = Signal()

    def __init__(self, jobs: Jobs, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.jobs = jobs
        self.setWindowTitle("Models")
        self.resize(760, 360)
        self.runner = JobRunner(self)
        self.runner.progressed.connect(self._progress)
        self.runner.finished.connect(self._finished)
        self.last_error = None
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Name", "What it is", "Size", "Status"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.fetch_button = QPushButton("Download")
        self.fetch_button.setToolTip("Download the selected weights from their official source; "
                                     "an interrupted download resumes.")
        self.fetch_button.clicked.connect(self.fetch_selected)
        self.import_button = QPushButton("Import from file…")
        self.import_button.setToolTip("Use a file you already downloaded (it is checked and copied "
                                      "into the studio's cache).")
        self.import_button.clicked.connect(self.import_selected)
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.runner.cancel)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.state_label = QLabel("")
        self.state_label.setWordWrap(True)
        self.path_label = QLabel("")
        self.path_label.setWordWrap(True)
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setStyleSheet("color: #666;")
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)

        buttons = QHBoxLayout()
        buttons.addWidget(self.fetch_button)
        buttons.addWidget(self.import_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Pretrained networks the studio builds on. FFHQ and LPIPS are "
                                "needed to personalize; CLIP only for text styles and age."))
        layout.addWidget(self.table, 1)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.state_label)
        layout.addWidget(close)
        self.refresh()

    def refresh(self) -> None:
        rows = weights_status()
        self.table.setRowCount(len(rows))
        for r, (name, desc, present, _path) in enumerate(rows):
            items = [name, desc, human_size(get_entry(name).size),
                     "✔ present" if present else ("✘ missing (required)" if name in REQUIRED else "✘ missing")]
            for c, text in enumerate(items):
                item = QTableWidgetItem(text)
                if c == 3:
                    item.setForeground(Qt.GlobalColor.darkGreen if present else Qt.GlobalColor.darkRed)
                self.table.setItem(r, c, item)
        if rows and not self.table.selectedItems():
            self.table.selectRow(0)
        self._update_buttons()

    def selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        if not rows:
            return None
        item = self.table.item(rows[0].row(), 0)
        return item.text() if item else None

    def _update_buttons(self) -> None:
        name = self.selected_name()
        busy = self.runner.busy
        self.fetch_button.setEnabled(name is not None and not busy)
        self.import_button.setEnabled(name is not None and not busy)
        self.cancel_button.setEnabled(busy)
        status = {n: p for n, _d, _pr, p in weights_status()}
        self.path_label.setText(f"Stored at: {status.get(name, '')}" if name else "")

    def fetch_selected(self) -> None:
        name = self.selected_name()
        if name is None:
            return
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.state_label.setText(f"Downloading {name}…")
        self.runner.start(f"Download {name}", self.jobs.fetch_weights, name)
        self._update_buttons()

    def import_selected(self, file: str | None = None) -> None:
        name = self.selected_name()
        if name is None:
            return
        if not file:
            file, _ = QFileDialog.getOpenFileName(self, f"Import the file for {name}")
        if not file:
            return
        self.state_label.setText(f"Checking and importing {Path(file).name}…")
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.runner.start(f"Import {name}", self.jobs.import_weights, name, file)
        self._update_buttons()

    def _progress(self, done: int, total: int, message: str, eta: float) -> None:
        if total > 0:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * done / total))
        self.state_label.setText(f"{self.runner.title}: {message or ''} "
                                 f"{format_eta(None if eta < 0 else eta)}")

    def _finished(self, outcome) -> None:
        self.progress.setVisible(False)
        if outcome.error is not None:
            self.last_error = show_error(self, outcome.title, outcome.error, outcome.details)
            self.state_label.setText(f"{outcome.title} failed.")
        elif outcome.cancelled:
            self.state_label.setText(f"{outcome.title} stopped; it resumes next time.")
        else:
            self.state_label.setText(f"{outcome.title}: done.")
        self.refresh()
        self.weights_changed.emit()

    def reject(self) -> None:
        self.runner.cancel()
        self.runner.wait(10000)
        super().reject()
