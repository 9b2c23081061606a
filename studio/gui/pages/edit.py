"""Edit & Stylize: sliders along semantic directions (smile, age, ...) and text-driven styles.

Slider values and the chosen style are kept in the shared context; Export renders with them.
The preview of the current frame runs in its own small background runner so sliders stay fluid.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QInputDialog, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPushButton, QSlider, QSpinBox,
                               QVBoxLayout, QWidget)

from editing.attributes import ATTRIBUTES
from editing.directions import list_directions
from personalize.errors import UserError
from studio.gui.context import StudioContext
from studio.gui.pages.base import StagePage, hint
from studio.gui.widgets.image_view import ImageView
from studio.gui.worker import JobRunner

NO_STYLE = "(no style — your own look)"
NO_DIRECTIONS = ("No directions yet: import one (.pt/.npy from InterFaceGAN) or learn one from your "
                 "own generator.")


class DirectionSlider(QWidget):
    """One row: name, slider (-3..3), value, reliability."""

    def __init__(self, name: str, reliability: float | None, on_change,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-300, 300)
        self.slider.setToolTip(f"Move to change '{name}' in every frame; the middle is no change.")
        self.value_label = QLabel("0.00")
        self.value_label.setMinimumWidth(40)
        rel = QLabel("reliability " + (f"{reliability:.0%}" if reliability is not None else "unknown"))
        rel.setToolTip("How well this direction fits your personal face space (100% = fully). "
                       "Low values can change your identity, not just the attribute.")
        if reliability is not None and reliability < 0.5:
            rel.setStyleSheet("color: #b35900;")
        reset = QPushButton("0")
        reset.setFixedWidth(28)
        reset.setToolTip("Reset to no change")
        reset.clicked.connect(lambda: self.slider.setValue(0))
        self.slider.valueChanged.connect(lambda v: (self.value_label.setText(f"{v / 100:+.2f}"),
                                                    on_change(self.name, v / 100)))
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        name_label = QLabel(name)
        name_label.setMinimumWidth(90)
        layout.addWidget(name_label)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)
        layout.addWidget(reset)
        layout.addWidget(rel)


class EditPage(StagePage):
    stage = "edit"
    needs = ("personalize",)
    shows = ("personalize", "reenact", "edit")
    description = ("Change an attribute (smile, age, head turn…) in a whole take with a slider, or "
                   "render it in a style you describe in words, e.g. “a pencil sketch”.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.sliders: dict[str, DirectionSlider] = {}
        self.preview_runner = JobRunner(self)
        self.preview_runner.finished.connect(self._preview_done)
        self._preview_again = False
        self._preview_root: Path | None = None
        self._preview_timer = QTimer(self)
        self._preview_timer.setSingleShot(True)
        self._preview_timer.setInterval(250)
        self._preview_timer.timeout.connect(self.update_preview)

        # directions
        self.directions_box = QGroupBox("Directions")
        self.directions_layout = QVBoxLayout(self.directions_box)
        self.no_directions = hint(NO_DIRECTIONS)
        self.directions_layout.addWidget(self.no_directions)
        self.import_button = QPushButton("Import direction…")
        self.import_button.setToolTip("Load a published StyleGAN2-FFHQ direction file (.pt or .npy).")
        self.import_button.clicked.connect(self.import_direction)
        self.attr_box = QComboBox()
        self.attr_box.addItems(ATTRIBUTES)
        self.attr_box.setToolTip("What the new direction should change. It is learned by drawing "
                                 "many random versions of you and measuring this attribute.")
        self.learn_button = QPushButton("Learn a direction")
        self.learn_button.clicked.connect(self.learn_direction)
        dir_buttons = QHBoxLayout()
        dir_buttons.addWidget(self.import_button)
        dir_buttons.addStretch(1)
        dir_buttons.addWidget(self.attr_box)
        dir_buttons.addWidget(self.learn_button)

        # preview
        self.take_box = QComboBox()
        self.take_box.setToolTip("The take whose frame is previewed.")
        self.take_box.currentIndexChanged.connect(lambda _i: self._schedule_preview())
        self.frame_spin = QSpinBox()
        self.frame_spin.setRange(0, 100000)
        self.frame_spin.setToolTip("Which frame of the take to preview.")
        self.frame_spin.valueChanged.connect(lambda _v: self._schedule_preview())
        self.preview = ImageView("Preview of the current frame", dark=True)
        self.preview.setToolTip("The selected frame of the take, with the slider edits and the style.")

        # styles
        self.styles = QListWidget()
        self.styles.setToolTip("Pick a style to render with; Export uses it.")
        self.styles.currentItemChanged.connect(self._style_selected)
        self.prompt_edit = QLineEdit()
        self.prompt_edit.setPlaceholderText("e.g. a pencil sketch")
        self.prompt_edit.setToolTip("Describe the look in words. The generator is adjusted so its "
                                    "pictures move from 'photo' towards your words (StyleGAN-NADA).")
        self.style_name = QLineEdit()
        self.style_name.setPlaceholderText("style name")
        self.iters_spin = QSpinBox()
        self.iters_spin.setRange(10, 5000)
        self.iters_spin.setValue(int(ctx.settings.get("stylize/iters")))
        self.iters_spin.setToolTip("Training iterations; about 300 is usually enough.")
        self.style_button = QPushButton("Create style")
        self.style_button.clicked.connect(self.create_style)
        style_box = QGroupBox("Styles")
        style_form = QFormLayout()
        style_form.addRow("Look:", self.prompt_edit)
        style_form.addRow("Name:", self.style_name)
        style_form.addRow("Iterations:", self.iters_spin)
        style_layout = QVBoxLayout(style_box)
        style_layout.addWidget(self.styles, 1)
        style_layout.addLayout(style_form)
        style_layout.addWidget(self.style_button, 0, Qt.AlignmentFlag.AlignRight)

        preview_box = QGroupBox("Preview")
        pv = QVBoxLayout(preview_box)
        pick = QHBoxLayout()
        pick.addWidget(QLabel("Take:"))
        pick.addWidget(self.take_box, 1)
        pick.addWidget(QLabel("Frame:"))
        pick.addWidget(self.frame_spin)
        pv.addLayout(pick)
        pv.addWidget(self.preview, 1)

        grid = QGridLayout()
        left = QVBoxLayout()
        left.addWidget(self.directions_box)
        left.addLayout(dir_buttons)
        left.addWidget(style_box, 1)
        grid.addLayout(left, 0, 0)
        grid.addWidget(preview_box, 0, 1)
        grid.setColumnStretch(0, 3)
        grid.setColumnStretch(1, 2)
        self.body.addLayout(grid, 1)

    # ------------------------------------------------------------------ state
    def update_buttons(self) -> None:
        ok = self.ready
        self.import_button.setEnabled(self.project is not None and not self.ctx.runner.busy)
        self.learn_button.setEnabled(ok)
        self.style_button.setEnabled(ok and bool(self.prompt_edit.text().strip()))

    def reset(self) -> None:
        self._preview_timer.stop()
        self._preview_again = False
        self._remove_sliders()
        self.no_directions.setText(NO_DIRECTIONS)
        self.no_directions.setVisible(True)
        self.styles.blockSignals(True)
        self.styles.clear()
        self.styles.blockSignals(False)
        self.take_box.blockSignals(True)
        self.take_box.clear()
        self.take_box.blockSignals(False)
        self.frame_spin.setValue(0)
        self.prompt_edit.clear()
        self.style_name.clear()
        self.preview.set_image(None)

    def reload(self) -> None:
        self.load_all()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if self.project is not None:
            self.load_takes()

    def load_all(self) -> None:
        self.load_directions()
        self.load_styles()
        self.load_takes()

    def _remove_sliders(self) -> None:
        """Delete the slider rows. Why not ``setParent(None)``: a row added to the (visible) box
        has a queued "show" pending; detached from its parent it would then open as a stray
        top-level window (issue 17), and a detached row lives on until Python's garbage
        collector frees it — on whatever thread happens to run the collection."""
        for row in self.sliders.values():
            row.hide()
            self.directions_layout.removeWidget(row)
            row.deleteLater()
        self.sliders.clear()

    def load_directions(self) -> None:
        self._remove_sliders()
        self.no_directions.setText(NO_DIRECTIONS)
        try:
            found = list_directions(self.project.directions_dir) if self.project else []
        except UserError as exc:  # a damaged direction file: say so instead of showing sliders
            found = []
            self.no_directions.setText(f"The directions cannot be read: {exc}")
        for direction in found:
            name = direction.name
            row = DirectionSlider(name, direction.reliability, self._edit_changed, self.directions_box)
            row.slider.setValue(int(round(self.ctx.edits.get(name, 0.0) * 100)))
            self.sliders[name] = row
            self.directions_layout.addWidget(row)
        self.no_directions.setVisible(not found)

    def load_styles(self) -> None:
        self.styles.blockSignals(True)
        self.styles.clear()
        self.styles.addItem(NO_STYLE)
        for name in self.project.styles() if self.project else []:
            self.styles.addItem(name)
        items = self.styles.findItems(self.ctx.style or NO_STYLE, Qt.MatchFlag.MatchExactly)
        self.styles.setCurrentItem(items[0] if items else self.styles.item(0))
        self.styles.blockSignals(False)

    def load_takes(self) -> None:
        current = self.take_box.currentText()
        self.take_box.blockSignals(True)
        self.take_box.clear()
        for name in self.project.takes():   # edits act on latent codes: one-shot takes (images) are not listed
            if self.project.take_is_complete(name) and self.project.take_output(name) == "latents":
                self.take_box.addItem(name)
        i = self.take_box.findText(current)
        self.take_box.setCurrentIndex(max(0, i))
        self.take_box.blockSignals(False)
        if not self.take_box.count():
            self.preview.set_image(None)
        self._schedule_preview()

    # ------------------------------------------------------------------ edits and preview
    def _edit_changed(self, name: str, value: float) -> None:
        if abs(value) < 1e-9:
            self.ctx.edits.pop(name, None)
        else:
            self.ctx.edits[name] = value
        self.ctx.edits_changed.emit(dict(self.ctx.edits))
        self._schedule_preview()

    def _style_selected(self, item: QListWidgetItem | None, _prev=None) -> None:
        self.ctx.style = None if item is None or item.text() == NO_STYLE else item.text()
        self.ctx.edits_changed.emit(dict(self.ctx.edits))
        self._schedule_preview()

    def _schedule_preview(self) -> None:
        if self.project is not None and self.take_box.count():
            self._preview_timer.start()

    def update_preview(self) -> None:
        if self.project is None or not self.take_box.currentText() or self.ctx.closing:
            return
        if self.preview_runner.busy:
            self._preview_again = True
            return
        try:
            device = self.ctx.resolved_device()
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA chosen but missing
            self.preview.show_text(f"No preview: {exc}")
            return
        self._preview_root = self.project.root
        self.preview_runner.start("Preview", self.ctx.jobs.preview_frame, self.project,
                                  take=self.take_box.currentText(), frame=self.frame_spin.value(),
                                  edits=dict(self.ctx.edits), style=self.ctx.style, device=device)

    def _preview_done(self, outcome) -> None:
        shown = self.project is not None and self.project.root == self._preview_root
        if not shown:
            pass  # a preview of the project shown before: dropped
        elif outcome.error is not None:
            message = getattr(outcome.error, "message", None) or str(outcome.error)
            self.preview.show_text(f"No preview: {message}")
        elif outcome.result is not None:
            self.preview.set_image(np.asarray(outcome.result, dtype=np.uint8))
        if self._preview_again:
            self._preview_again = False
            self.update_preview()

    # ------------------------------------------------------------------ actions
    def import_direction(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a direction", self.ctx.settings.last_folder(),
                                              "Directions (*.pt *.npy);;All files (*)")
        if not path:
            return
        self.ctx.settings.set_last_folder(path)
        name, ok = QInputDialog.getText(self, "Direction name", "Name for this direction:",
                                        text=Path(path).stem)
        if ok and name.strip():
            self.run_import(path, name.strip())

    def run_import(self, path: str, name: str) -> bool:
        return self.ctx.run_job(f"Import direction '{name}'", self.ctx.jobs.import_direction,
                                self.project, path, name, on_success=lambda _o: self.load_directions())

    def learn_direction(self) -> None:
        attribute = self.attr_box.currentText()
        self.ctx.run_job(f"Learn direction '{attribute}'", self.ctx.jobs.learn_direction, self.project,
                         attribute=attribute, device=self.ctx.device,
                         on_success=lambda _o: self.load_directions())

    def create_style(self) -> None:
        prompt = self.prompt_edit.text().strip()
        name = self.style_name.text().strip() or "".join(
            c if c.isalnum() else "_" for c in prompt.lower())[:32].strip("_") or "style"
        self.ctx.settings.set("stylize/iters", self.iters_spin.value())
        self.ctx.run_job(f"Create style '{name}'", self.ctx.jobs.stylize, self.project, prompt, name,
                         iterations=self.iters_spin.value(), device=self.ctx.device,
                         on_success=lambda _o: self.load_styles())
