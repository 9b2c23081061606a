"""Re-enact: drive your avatar with another video; list the takes and play them side by side."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QListWidget, QListWidgetItem, QPushButton, QSpinBox,
                               QSplitter, QVBoxLayout, QWidget)

from optimize.reenact_settings import ReenactSettings
from studio.gui.context import StudioContext
from studio.gui.live.fast_live import FastLiveBox
from studio.gui.pages.base import StagePage, hint
from studio.gui.widgets.drop_zone import DropZone
from studio.gui.widgets.mode_selector import ModeSelector
from studio.gui.widgets.video_player import SideBySidePlayer


def unique_take_name(existing: list[str], stem: str) -> str:
    base = "".join(c if c.isalnum() or c in "-_ " else "_" for c in stem).strip() or "take"
    name, n = base, 2
    while name in existing:
        name, n = f"{base}-{n}", n + 1
    return name


class ReenactPage(StagePage):
    stage = "reenact"
    needs = ("personalize",)
    description = ("Makes your avatar copy the head motion, expressions and eye and mouth "
                   "movements of someone in another video (the driving video). Each run is a take.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        self.modes: ModeSelector | None = None
        super().__init__(ctx, parent)
        self.driving: str | None = None
        self.modes = ModeSelector(start_dir=ctx.settings.last_folder)
        self.modes.mode_changed.connect(lambda _name: self._mode_changed())
        self.modes.models_requested.connect(self._open_models)
        self.drop = DropZone("Drop a driving video here, or click to choose one",
                             start_dir=ctx.settings.last_folder)
        self.drop.file_chosen.connect(self.set_driving)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("take name")
        self.name_edit.setToolTip("A name for this take (a folder under takes/).")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 10000)
        self.steps_spin.setSpecialValueText("auto (recommended)")
        self.steps_spin.setValue(int(ctx.settings.get("reenact/steps")))
        self.steps_spin.setToolTip("Optimization steps per frame: more follows the driving face "
                                   "more closely but takes longer.")
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(4)
        self.lr_spin.setRange(0.0, 1.0)
        self.lr_spin.setSingleStep(0.001)
        self.lr_spin.setSpecialValueText("auto")
        self.lr_spin.setValue(float(ctx.settings.get("reenact/lr")))
        self.lr_spin.setToolTip("Learning rate: how big each adjustment step is. Leave on auto.")
        self.smooth_box = QCheckBox("Smooth over time")
        self.smooth_box.setChecked(bool(ctx.settings.get("reenact/smooth")))
        self.smooth_box.setToolTip("Removes flicker between frames (recommended).")
        self.run_button = QPushButton("Re-enact")
        self.run_button.setToolTip("Start the take (Ctrl+R). A stopped take resumes where it stopped.")
        self.run_button.clicked.connect(self.start)
        self.takes = QListWidget()
        self.takes.setToolTip("Your takes. Click one to play it.")
        self.takes.currentItemChanged.connect(self._take_selected)
        self.render_button = QPushButton("Render preview")
        self.render_button.setToolTip("Make a quick video of the selected take to watch here.")
        self.render_button.clicked.connect(self.render_preview)
        self.player = SideBySidePlayer()
        self.fast = FastLiveBox(ctx)
        self.fast.take_saved.connect(lambda name: self.load_takes(select=name))

        form = QFormLayout()
        form.addRow(self.modes)
        form.addRow("Take name:", self.name_edit)
        form.addRow("Steps per frame:", self.steps_spin)
        form.addRow("Learning rate:", self.lr_spin)
        form.addRow("", self.smooth_box)
        top = QHBoxLayout()
        top.addWidget(self.drop, 1)
        top.addLayout(form)
        top.addWidget(self.run_button, 0, Qt.AlignmentFlag.AlignBottom)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(QLabel("Takes"))
        left_layout.addWidget(self.takes, 1)
        left_layout.addWidget(self.render_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.player)
        splitter.setSizes([180, 700])
        self.body.addLayout(top)
        self.body.addWidget(hint("Tip: a driving video with one face, looking roughly at the "
                                 "camera, in good light, works best."))
        self.body.addWidget(self.fast)
        self.body.addWidget(splitter, 1)
        self.setAcceptDrops(True)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.drop.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.drop.dropEvent(event)

    def missing_needs(self) -> list[str]:
        """The chosen mode's needs: personalization, or (one-shot) a prepared self-scan unless a photo is the source."""
        needs = self.modes.needs() if self.modes is not None else self.needs
        return [s for s in needs if self.ctx.statuses.get(s) != "done"]

    def _mode_changed(self) -> None:
        personal = self.modes.backend() == "personal"
        for widget in (self.lr_spin, self.smooth_box, self.steps_spin):
            widget.setEnabled(personal)
        self.fast.setVisible(personal)  # fast/refine and live drive the personalized generator only
        self._on_statuses(self.ctx.statuses)

    def _open_models(self, name: str) -> None:
        window = self.window()
        if hasattr(window, "show_models"):
            dialog = window.show_models()
            dialog.finished.connect(lambda _r: self.modes.refresh())

    def set_driving(self, path: str) -> None:
        self.driving = str(path)
        self.ctx.settings.set_last_folder(path)
        self.drop.label.setText(f"Driving video: {Path(path).name}\n(drop another to change)")
        if self.project is not None:
            self.name_edit.setText(unique_take_name(self.project.takes(), Path(path).stem))
        self.update_buttons()

    def update_buttons(self) -> None:
        if self.modes is None:
            return
        self.run_button.setEnabled(self.ready and self.driving is not None and self.modes.weights_ready())
        item = self.takes.currentItem()
        self.render_button.setEnabled(self.project is not None and not self.ctx.runner.busy
                                      and item is not None
                                      and self.project.take_is_complete(item.text()))

    def project_loaded(self) -> None:
        self.load_takes()

    def stage_changed(self, state: str) -> None:
        if self.project is not None and self.takes.count() != len(self.project.takes()):
            self.load_takes()

    def load_takes(self, select: str | None = None) -> None:
        if self.project is None:
            return
        current = select or (self.takes.currentItem().text() if self.takes.currentItem() else None)
        self.takes.clear()
        for name in self.project.takes():
            item = QListWidgetItem(name)
            done = self.project.take_is_complete(name)
            item.setToolTip("finished" if done else "not finished — re-enact again to resume")
            if not done:
                item.setText(name)
                item.setForeground(Qt.GlobalColor.darkYellow)
            self.takes.addItem(item)
            if name == current:
                self.takes.setCurrentItem(item)

    def _take_selected(self, item: QListWidgetItem | None, _previous=None) -> None:
        self.update_buttons()
        if item is None or self.project is None:
            return
        take = item.text()
        driving = self.project.driving_copy(take)
        preview = self.project.preview_path(take)
        self.player.set_videos(driving, preview if preview.is_file() else None)
        if not self.project.take_is_complete(take) and driving is not None:
            # An unfinished take: pressing Re-enact continues it where it stopped.
            self.set_driving(str(driving))
            self.name_edit.setText(item.text())
            backend = self.project.take_backend(take)
            if backend in self.modes.buttons:
                self.modes.set_backend(backend)
            self.run_button.setText("Resume take")
        else:
            self.run_button.setText("Re-enact")

    def start(self) -> None:
        if not self.ready or not self.driving:
            return
        name = self.name_edit.text().strip() or unique_take_name(
            self.project.takes(), Path(self.driving).stem)
        self.ctx.settings.set("reenact/steps", self.steps_spin.value())
        self.ctx.settings.set("reenact/lr", self.lr_spin.value())
        self.ctx.settings.set("reenact/smooth", self.smooth_box.isChecked())

        def done(_outcome) -> None:
            self.load_takes(select=name)
            self.render_preview()
        backend = self.modes.backend()
        settings = ReenactSettings().adjusted(steps=self.steps_spin.value() or None,
                                              lr=self.lr_spin.value() or None,
                                              smooth=self.smooth_box.isChecked())
        self.ctx.run_job(f"Re-enact '{name}'", self.ctx.jobs.reenact, self.project, self.driving, name,
                         settings, device=self.ctx.device, backend=backend, oneshot=self.modes.options(),
                         mode=self.fast.mode() if backend == "personal" else "exact", on_success=done)

    def render_preview(self) -> None:
        item = self.takes.currentItem()
        if item is None or self.project is None:
            return
        take = item.text()
        out = self.project.preview_path(take)
        self.ctx.run_job(f"Render preview of '{take}'", self.ctx.jobs.render, self.project, take, out,
                         paste_back=False, side_by_side=False, mark_export=False, device=self.ctx.device,
                         on_success=lambda _o: self._take_selected(self.takes.currentItem()))
