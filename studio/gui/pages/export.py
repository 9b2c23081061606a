"""Export: render a take to MP4 (with the driving video's sound), GIF or PNG frames."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QWidget)

from studio.gui.context import StudioContext
from studio.gui.pages.base import StagePage, hint

FORMATS = (("MP4 video (with the driving video's sound)", "mp4"), ("Animated GIF", "gif"),
           ("PNG pictures, one per frame", "png"))
RESOLUTIONS = (("Same as the source", None), ("1080 px tall", 1080), ("720 px tall", 720),
               ("512 px tall", 512), ("256 px tall", 256))


class ExportPage(StagePage):
    stage = "export"
    needs = ("reenact",)
    shows = ("reenact", "export")
    description = "Save a take as a video, a GIF or a folder of pictures, with your edits and style."

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.last_output: Path | None = None
        self.take_box = QComboBox()
        self.take_box.currentIndexChanged.connect(lambda _i: (self._suggest_output(), self._show_edits()))
        self.format_box = QComboBox()
        for label, fmt in FORMATS:
            self.format_box.addItem(label, fmt)
        self.format_box.currentIndexChanged.connect(lambda _i: self._suggest_output())
        self.paste_back = QCheckBox("Paste the face back into the full driving frames")
        self.paste_back.setChecked(True)
        self.paste_back.setToolTip("On: the avatar's face is blended into the driving video's "
                                   "whole picture. Off: only the square face crop.")
        self.side_by_side = QCheckBox("Side by side with the driving video")
        self.side_by_side.setToolTip("Puts the driving video on the left and the result on the right.")
        self.resolution_box = QComboBox()
        for label, value in RESOLUTIONS:
            self.resolution_box.addItem(label, value)
        self.resolution_box.setToolTip("Output height; the width follows the picture's shape. 'Same as "
                                       "the source' keeps the driving video's size (or the face "
                                       "crop's, without pasting back).")
        self.edits_label = QLabel()
        self.edits_label.setWordWrap(True)
        self.out_edit = QLineEdit()
        self.out_edit.setToolTip("Where to save.")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self.browse)
        self.open_when_done = QCheckBox("Open the folder when done")
        self.open_when_done.setChecked(True)
        self.export_button = QPushButton("Export")
        self.export_button.setToolTip("Render and save (Ctrl+E)")
        self.export_button.clicked.connect(self.start)
        self.open_button = QPushButton("Open folder")
        self.open_button.setEnabled(False)
        self.open_button.clicked.connect(lambda: self.last_output and self.ctx.open_folder(
            self.last_output if self.last_output.is_dir() else self.last_output.parent))
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        out_row = QHBoxLayout()
        out_row.addWidget(self.out_edit, 1)
        out_row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Take:", self.take_box)
        form.addRow("Format:", self.format_box)
        form.addRow("Resolution:", self.resolution_box)
        form.addRow("", self.paste_back)
        form.addRow("", self.side_by_side)
        form.addRow("Edits and style:", self.edits_label)
        form.addRow("Save to:", out_row)
        form.addRow("", self.open_when_done)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.export_button)
        self.body.addLayout(form)
        self.body.addLayout(buttons)
        self.body.addWidget(self.result_label)
        self.body.addWidget(hint("Edits and the style come from the Edit & Stylize page."))
        self.body.addStretch(1)
        ctx.edits_changed.connect(lambda _e: self._show_edits())
        self._show_edits()

    def _show_edits(self) -> None:
        parts = [f"{k} {v:+.2f}" for k, v in sorted(self.ctx.edits.items())]
        if self.ctx.style:
            parts.append(f"style '{self.ctx.style}'")
        take = self.take_box.currentText()
        if parts and self.project is not None and take and self.project.take_output(take) == "images":
            parts = ["none (a one-shot take: edits and styles do not apply)"]
        self.edits_label.setText(", ".join(parts) if parts else "none")

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.load_takes()
        self._show_edits()

    def reset(self) -> None:
        self.take_box.blockSignals(True)
        self.take_box.clear()
        self.take_box.blockSignals(False)
        self.out_edit.clear()
        self.result_label.setText("")
        self.last_output = None
        self.open_button.setEnabled(False)
        self._show_edits()

    def reload(self) -> None:
        self.load_takes()

    def load_takes(self) -> None:
        if self.project is None:
            return
        names = [n for n in self.project.takes() if self.project.take_is_complete(n)]
        if names == [self.take_box.itemText(i) for i in range(self.take_box.count())]:
            self.update_buttons()
            return
        current = self.take_box.currentText()
        self.take_box.blockSignals(True)
        self.take_box.clear()
        self.take_box.addItems(names)
        self.take_box.setCurrentIndex(max(0, self.take_box.findText(current)))
        self.take_box.blockSignals(False)
        self._suggest_output()
        self.update_buttons()

    def _suggest_output(self) -> None:
        if self.project is None or not self.take_box.currentText():
            return
        fmt = self.format_box.currentData()
        take = self.take_box.currentText()
        name = f"{take}_export" + ("" if fmt == "png" else f".{fmt}")
        self.out_edit.setText(str(self.project.exports_dir / name))

    def browse(self) -> None:
        fmt = self.format_box.currentData()
        if fmt == "png":
            path = QFileDialog.getExistingDirectory(self, "Folder for the PNG frames",
                                                    self.ctx.settings.last_folder())
        else:
            path, _ = QFileDialog.getSaveFileName(self, "Save as", self.out_edit.text(),
                                                  f"{fmt.upper()} (*.{fmt})")
        if path:
            self.ctx.settings.set_last_folder(path)
            self.out_edit.setText(path)

    def update_buttons(self) -> None:
        self.export_button.setEnabled(self.ready and self.take_box.count() > 0)

    def start(self) -> None:
        if not self.ready or not self.take_box.currentText():
            return
        out = Path(self.out_edit.text().strip() or "")
        if not out.name:
            self._suggest_output()
            out = Path(self.out_edit.text())
        fmt = self.format_box.currentData()
        if fmt != "png" and out.suffix.lower() != f".{fmt}":
            out = out.with_suffix(f".{fmt}")
        out.parent.mkdir(parents=True, exist_ok=True)

        def done(outcome) -> None:  # the render job recorded the Export stage itself
            self.last_output = Path(outcome.result.path)
            report = outcome.result.edit_report
            self.result_label.setText(f"Saved {self.last_output}" + (f"\nEdits: {report}." if report else ""))
            self.open_button.setEnabled(True)
            if self.open_when_done.isChecked():
                folder = self.last_output if self.last_output.is_dir() else self.last_output.parent
                if not self.ctx.open_folder(folder):
                    self.result_label.setText(f"Saved {self.last_output}. The folder could not be "
                                              "opened: no file manager is set up on this computer.")
        # a one-shot mode's take holds images: edits and styles (which act on latent codes) do not apply
        latent = self.project.take_output(self.take_box.currentText()) == "latents"
        self.ctx.run_job(f"Export '{self.take_box.currentText()}'", self.ctx.jobs.render, self.project,
                         self.take_box.currentText(), out,
                         paste_back=self.paste_back.isChecked(), side_by_side=self.side_by_side.isChecked(),
                         edits=(dict(self.ctx.edits) or None) if latent else None,
                         style=self.ctx.style if latent else None,
                         height=self.resolution_box.currentData(), device=self.ctx.device, on_success=done)
