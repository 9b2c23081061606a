"""Tools ▸ Models: which pretrained weights each mode needs, which are present; download them
(after accepting their licence notes) or import a file.

Runs over ``studio.weights`` (the same manager as ``studio-cli models``): the groups come from
``files_for`` (one per re-enactment mode, plus the files no mode lists, e.g. CLIP for styles),
a row per file under each mode that needs it. Downloads run in a background runner owned by the
dialog, so the main window stays usable and the dialog can be closed (the download is then
cancelled; it resumes next time from the ``.part`` file). A file with a licence note is
downloaded only after the user accepted the note here (``accept_licence``); the manager's
``LicenceNotAcceptedError`` therefore becomes this question again, never an error dialog.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QHeaderView,
                               QLabel, QMessageBox, QProgressBar, QPushButton, QTreeWidget,
                               QTreeWidgetItem, QVBoxLayout, QWidget)

from studio.gui.error_dialog import show_error, window_words
from studio.gui.job_functions import Jobs
from studio.gui.worker import JobRunner, format_eta
from studio.weights import (BACKENDS, REGISTRY, LicenceNotAcceptedError, accept_licence,
                            files_for, get_entry, list_weights, pending_licences)

REQUIRED = ("ffhq", "lpips-alex")  # needed for personalization; CLIP only for styles/age
STYLES = ("clip-vit-b32",)          # text styles and the 'age' direction
MODE_TITLES = {
    "personal": "Your personal avatar (personalize, re-enact, edit)",
    "hyperreenact": "HyperReenact (one-shot mode)",
    "directions": "Latent directions (one-shot mode)",
    "diffusionact": "DiffusionAct (one-shot mode)",
    "styles": "Text styles and the 'age' direction",
    "other": "Other files",
}
NAME = Qt.ItemDataRole.UserRole  # a file row's registry name; a group row's mode


def weights_groups() -> list[tuple[str, tuple[str, ...]]]:
    """(mode, registry names) in display order: each mode's files, then the files no mode lists."""
    groups = [(backend, files_for(backend)) for backend in BACKENDS]
    listed = {name for _mode, names in groups for name in names}
    groups.append(("styles", tuple(n for n in STYLES if n in REGISTRY)))
    listed |= set(STYLES)
    rest = tuple(n for n in REGISTRY if n not in listed)
    if rest:
        groups.append(("other", rest))
    return groups


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
        self.resize(820, 460)
        self.runner = JobRunner(self)
        self.runner.progressed.connect(self._progress)
        self.runner.finished.connect(self._finished)
        self.last_error: QMessageBox | None = None
        self.licence_prompt: QMessageBox | None = None
        self._queue: list[str] = []
        self.tree = QTreeWidget()
        self.tree.setColumnCount(5)
        self.tree.setHeaderLabels(["Name", "Status", "Licence", "Size", "What it is"])
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.SingleSelection)
        self.tree.setUniformRowHeights(True)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.fetch_button = QPushButton("Download")
        self.fetch_button.setToolTip("Download the selected file (or every missing file of the "
                                     "selected mode) from its official source; an interrupted "
                                     "download resumes.")
        self.fetch_button.clicked.connect(self.fetch_selected)
        self.import_button = QPushButton("Import from file…")
        self.import_button.setToolTip("Use a file you already downloaded (it is checked and copied "
                                      "into the studio's cache).")
        self.import_button.clicked.connect(lambda: self.import_selected())
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.clicked.connect(self.cancel)
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
        intro = QLabel("Pretrained networks the studio builds on, by what they are for. Select a "
                       "file, or a whole mode to download all its missing files. ⚖ marks files "
                       "for non-commercial research only: their terms are shown before the "
                       "download.")
        intro.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.path_label)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.state_label)
        layout.addWidget(close)
        self.refresh()

    # ------------------------------------------------------------------ the list
    def refresh(self) -> None:
        selected = self._selected_key()
        status = {row.name: row for row in list_weights()}
        self.tree.blockSignals(True)
        self.tree.clear()
        chosen = None
        for mode, names in weights_groups():
            missing = [n for n in names if not status[n].present]
            group = QTreeWidgetItem([MODE_TITLES.get(mode, mode),
                                     "✔ ready" if not missing else f"✘ {len(missing)} missing"])
            group.setData(0, NAME, f"mode:{mode}")
            font = group.font(0)
            font.setBold(True)
            group.setFont(0, font)
            group.setForeground(1, Qt.GlobalColor.darkGreen if not missing else Qt.GlobalColor.darkRed)
            self.tree.addTopLevelItem(group)
            if selected == f"mode:{mode}":
                chosen = group
            for name in names:
                row = status[name]
                entry = get_entry(name)
                if row.present:
                    state = "✔ present"
                elif entry.source == "manual":
                    state = "✘ missing (import only)"
                else:
                    state = "✘ missing (required)" if name in REQUIRED else "✘ missing"
                licence = ("⚖ accepted" if row.licence_accepted else "⚖ research only") if row.licence else ""
                item = QTreeWidgetItem([name, state, licence, human_size(row.size), row.description])
                item.setData(0, NAME, name)
                item.setToolTip(4, f"{row.description}\nUsed for: {row.purpose}")
                if row.licence:
                    item.setToolTip(2, row.licence)
                item.setForeground(1, Qt.GlobalColor.darkGreen if row.present else Qt.GlobalColor.darkRed)
                group.addChild(item)
                if selected == name and chosen is None:
                    chosen = item
        self.tree.expandAll()
        self.tree.blockSignals(False)
        if chosen is None and self.tree.topLevelItemCount():
            chosen = self.tree.topLevelItem(0).child(0) or self.tree.topLevelItem(0)
        if chosen is not None:
            self.tree.setCurrentItem(chosen)
        self._update_buttons()

    def _selected_key(self) -> str | None:
        item = self.tree.currentItem()
        return None if item is None else str(item.data(0, NAME))

    def select(self, name: str | None) -> None:
        """Select the row of ``name`` (the first mode that lists it)."""
        if not name:
            return
        for i in range(self.tree.topLevelItemCount()):
            group = self.tree.topLevelItem(i)
            for j in range(group.childCount()):
                if group.child(j).data(0, NAME) == name:
                    self.tree.setCurrentItem(group.child(j))
                    return

    def selected_name(self) -> str | None:
        """The selected file's registry name (None when a mode or nothing is selected)."""
        key = self._selected_key()
        return None if key is None or key.startswith("mode:") else key

    def selected_names(self) -> list[str]:
        """The selected file, or every file of the selected mode."""
        key = self._selected_key()
        if key is None:
            return []
        if key.startswith("mode:"):
            return list(dict(weights_groups()).get(key[5:], ()))
        return [key]

    def _missing_downloadable(self, names: list[str]) -> list[str]:
        status = {row.name: row for row in list_weights(names)}
        return [n for n in names if not status[n].present and get_entry(n).downloadable]

    def _update_buttons(self) -> None:
        busy = self.runner.busy
        name = self.selected_name()
        names = self.selected_names()
        downloadable = [n for n in names if get_entry(n).downloadable]
        self.fetch_button.setEnabled(bool(downloadable) and not busy)
        self.fetch_button.setText("Download" if name else "Download missing files")
        self.import_button.setEnabled(name is not None and not busy)
        self.cancel_button.setEnabled(busy)
        self.path_label.setText(self._describe(name) if name else "")

    def _describe(self, name: str) -> str:
        row = list_weights([name])[0]
        entry = get_entry(name)
        lines = [f"Stored at: {row.path}" if row.present else f"Goes to: {row.path}"]
        if not row.present and entry.source == "manual":
            lines.append(window_words(entry.manual_steps, inside_models=True))
        elif not row.present:
            lines.append(f"Source: {entry.url}")
        return "\n".join(lines)

    # ------------------------------------------------------------------ downloads
    def fetch_selected(self) -> QMessageBox | None:
        """Download the selection's missing files, after their licence notes were accepted
        (asked here, once per note). Returns the licence question when one is open."""
        names = self._missing_downloadable(self.selected_names())
        if not names:
            if self.selected_names():
                self.state_label.setText("Everything selected that can be downloaded is present.")
            return None
        pending = pending_licences(names)
        if pending:
            return self.ask_licences(names, pending)
        self._start_queue(names)
        return None

    def ask_licences(self, names: list[str], pending: dict[str, list[str]]) -> QMessageBox:
        """Show the pending notes (non-blocking); "Accept and download" records the acceptance
        and starts the downloads, "Cancel" downloads nothing."""
        box = QMessageBox(self)
        box.setObjectName("licencePrompt")
        box.setIcon(QMessageBox.Icon.Information)
        box.setWindowTitle("Licence terms")
        covered = sorted({n for group in pending.values() for n in group})
        box.setText("Before downloading " + ", ".join(f"'{n}'" for n in covered)
                    + ", read and accept the terms under which their authors published them:")
        box.setInformativeText("\n\n".join(
            f"{', '.join(group)}: {note}" for note, group in pending.items()))
        accept = box.addButton("Accept and download", QMessageBox.ButtonRole.AcceptRole)
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(cancel)

        def answered(button) -> None:
            self.licence_prompt = None
            if button is accept:
                accept_licence(*covered)
                self._start_queue(names)
                self.refresh()
            else:
                self.state_label.setText("Nothing downloaded: the terms were not accepted.")
        box.buttonClicked.connect(answered)
        self.licence_prompt = box
        box.open()
        return box

    def _start_queue(self, names: list[str]) -> None:
        self._queue = list(names)
        self._next_download()

    def _next_download(self) -> None:
        if not self._queue:
            return
        name = self._queue.pop(0)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        left = f" ({len(self._queue)} more after it)" if self._queue else ""
        self.state_label.setText(f"Downloading {name}…{left}")
        self.runner.start(f"Download {name}", self.jobs.fetch_weights, name)
        self._update_buttons()

    def cancel(self) -> None:
        self._queue = []
        self.runner.cancel()

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
        error = outcome.error
        if isinstance(error, LicenceNotAcceptedError):
            # Accepted elsewhere, then changed: ask again instead of showing an error.
            self._queue = []
            self.state_label.setText("")
            self.ask_licences(error.names, pending_licences(error.names))
        elif error is not None:
            self._queue = []
            self.last_error = show_error(self, outcome.title, error, outcome.details,
                                         inside_models=True)
            self.state_label.setText(f"{outcome.title} failed.")
        elif outcome.cancelled:
            self._queue = []
            self.state_label.setText(f"{outcome.title} stopped; it resumes next time.")
        else:
            self.state_label.setText(f"{outcome.title}: done.")
        self.refresh()
        self.weights_changed.emit()
        if self._queue:
            self._next_download()

    def reject(self) -> None:
        self.cancel()
        self.runner.wait(10000)
        super().reject()
