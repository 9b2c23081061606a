"""Personalize: fine-tune the base face generator on the selected frames (MyStyle pivotal tuning).

Shows the loss curve from ``model/log.csv`` and the newest preview grid from ``model/previews/``
while the job runs; both are re-read from disk, so a run started from ``studio-cli`` shows too.

The run has two long phases, both named here with their steps and a time estimate: the inversion
(every frame's anchor, ``Inversion steps`` per batch of frames) and the tuning (``Steps``).
Estimates come from speeds measured on this machine (``studio.jobs.personalize.estimate_personalize``);
without one the page says so and the job strip estimates from the first steps.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QPushButton, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from personalize.errors import UserError
from studio.gui.context import StudioContext
from studio.gui.pages.base import StagePage, hint
from studio.gui.widgets.image_view import ImageView
from studio.gui.widgets.loss_plot import LossPlot
from studio.gui.worker import format_eta
from studio.jobs.personalize import PhaseEstimate, estimate_personalize
from studio.project import DONE
from studio.weights import is_present

CHECKPOINT_FILTER = "Generator checkpoints (*.pkl *.safetensors *.pt);;All files (*)"


class PersonalizePage(StagePage):
    stage = "personalize"
    needs = ("select",)
    shows = ("select", "personalize")
    description = ("Teaches a general face generator (the base model) to draw only you, from the "
                   "selected frames. This is the long step: minutes on a big GPU, hours on a CPU.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.base_box = QComboBox()
        self.base_box.setToolTip("The pretrained face generator to start from. 'FFHQ' is NVIDIA's "
                                 "StyleGAN2 trained on 70,000 faces; fetch it in Tools ▸ Models.")
        self.base_box.activated.connect(self._base_chosen)
        self.frames_spin = QSpinBox()
        self.frames_spin.setRange(0, 5000)
        self.frames_spin.setSpecialValueText("all selected")
        self.frames_spin.setToolTip("How many of the selected frames to train on.")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 1_000_000)
        self.steps_spin.setSingleStep(100)
        self.steps_spin.setSpecialValueText("auto (recommended)")
        self.steps_spin.setValue(int(ctx.settings.get("personalize/steps")))
        self.steps_spin.setToolTip("Tuning steps (the second phase). More steps copy your face more "
                                   "exactly but take longer; 'auto' picks a good number for the image size.")
        self.inversion_spin = QSpinBox()
        self.inversion_spin.setRange(1, 100_000)
        self.inversion_spin.setSingleStep(50)
        self.inversion_spin.setValue(int(ctx.settings.get("personalize/inversion_steps")))
        self.inversion_spin.setToolTip("Inversion steps (the first phase): how long each batch of frames "
                                       "is optimized to find its starting point in the generator. A batch "
                                       "stops sooner once it stops improving.")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 64)
        self.batch_spin.setValue(int(ctx.settings.get("personalize/batch")))
        self.batch_spin.setToolTip("Frames per training step. Lower it if the GPU runs out of memory.")
        self.start_button = QPushButton("Start training")
        self.start_button.setToolTip("Start, or continue a stopped run from its last checkpoint (Ctrl+R)")
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Pause")
        self.cancel_button.setToolTip("Stop after the current step. Kept: the tuning up to that step, and "
                                      "the anchors of every finished batch of frames (a batch being "
                                      "inverted starts over); a frame selection in progress is not kept.")
        self.estimate_label = QLabel()
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setToolTip("The two phases of a run and how long they should take here. "
                                       "Times come from earlier runs on this machine with the same device, "
                                       "base model and batch.")
        self.cancel_button.clicked.connect(lambda: ctx.request_cancel())
        self.plot = LossPlot()
        self.preview = ImageView("Preview grids (generated | real) appear here as training goes on.")
        self.preview.setToolTip("Left of each pair: what the generator draws now; right: your frame.")
        self._preview_path: Path | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(1500)
        self._timer.timeout.connect(self.load_results)

        form = QFormLayout()
        form.addRow("Base model:", self.base_box)
        form.addRow("Frames:", self.frames_spin)
        form.addRow("Inversion steps:", self.inversion_spin)
        form.addRow("Tuning steps:", self.steps_spin)
        form.addRow("Batch:", self.batch_spin)
        buttons = QVBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.cancel_button)
        buttons.addStretch(1)
        row = QHBoxLayout()
        row.addLayout(form)
        row.addStretch(1)
        row.addLayout(buttons)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.plot)
        splitter.addWidget(self.preview)
        splitter.setSizes([500, 400])
        self.body.addLayout(row)
        self.body.addWidget(self.estimate_label)
        self.body.addWidget(hint("You can stop or close the window: the next start resumes with the "
                                 "anchors of every finished batch of frames and the last tuning step."))
        self.body.addWidget(splitter, 1)
        self.fill_bases()
        ctx.runner.busy_changed.connect(self._busy_changed)
        for spin in (self.frames_spin, self.steps_spin, self.inversion_spin, self.batch_spin):
            spin.valueChanged.connect(self.update_estimate)
        self.base_box.currentIndexChanged.connect(self.update_estimate)

    def fill_bases(self) -> None:
        self.base_box.clear()
        label = "FFHQ 1024 (StyleGAN2)" + ("" if is_present("ffhq") else " — not downloaded yet")
        self.base_box.addItem(label, "ffhq")
        saved = str(self.ctx.settings.get("personalize/base") or "ffhq")
        if saved != "ffhq" and Path(saved).is_file():
            self.base_box.addItem(Path(saved).name, saved)
            self.base_box.setCurrentIndex(self.base_box.count() - 1)
        self.base_box.addItem("Choose a checkpoint file…", "__choose__")

    def _base_chosen(self, index: int) -> None:
        if self.base_box.itemData(index) != "__choose__":
            return
        path, _ = QFileDialog.getOpenFileName(self, "Choose a base generator",
                                              self.ctx.settings.last_folder(), CHECKPOINT_FILTER)
        if path:
            self.ctx.settings.set_last_folder(path)
            self.base_box.insertItem(index, Path(path).name, path)
            self.base_box.setCurrentIndex(index)
        else:
            self.base_box.setCurrentIndex(0)

    def set_base(self, base: str) -> None:
        """Select ``base`` (a registry name or a file), adding it to the list if needed."""
        i = self.base_box.findData(base)
        if i < 0:
            self.base_box.insertItem(self.base_box.count() - 1, Path(base).name, base)
            i = self.base_box.findData(base)
        self.base_box.setCurrentIndex(i)

    def _busy_changed(self, busy: bool) -> None:
        if busy and self.ctx.runner.title.startswith("Personalize"):
            self._timer.start()
        else:
            self._timer.stop()
            self.load_results()

    def update_buttons(self) -> None:
        self.start_button.setEnabled(self.ready)
        running_here = self.ctx.runner.busy and self.ctx.runner.title.startswith("Personalize")
        self.cancel_button.setEnabled(running_here)
        has_checkpoint = self.project is not None and self.project.has_tuning_checkpoint()
        state = self.ctx.statuses.get(self.stage)
        self.start_button.setText("Resume training" if has_checkpoint and state != DONE
                                  else ("Train again" if state == DONE else "Start training"))

    def reset(self) -> None:
        self.plot.set_data([], {})
        self.preview.set_image(None)
        self._preview_path = None
        self.update_estimate()

    def reload(self) -> None:
        self.load_results()
        self.update_estimate()

    def _base(self) -> str:
        base = str(self.base_box.currentData() or "ffhq")
        return "ffhq" if base == "__choose__" else base

    def update_estimate(self) -> None:
        """Name both phases with their steps and the time they should take on this machine."""
        if self.project is None:
            self.estimate_label.setText("")
            return
        try:
            phases = estimate_personalize(self.project, self._base(), self.frames_spin.value() or None,
                                          self.steps_spin.value() or None, self.batch_spin.value(),
                                          self.inversion_spin.value(), self.ctx.device)
        except UserError:  # e.g. an unreadable selection: the Select page says what to do
            self.estimate_label.setText("")
            return
        self.estimate_label.setText("\n".join(_describe(p) for p in phases))

    def load_results(self) -> None:
        if self.project is None:
            return
        self.plot.load(self.project.tuning_log_path)
        preview = self.project.newest_preview()
        if preview is not None and preview != self._preview_path:
            if self.preview.set_image(preview):
                self._preview_path = preview

    def start(self) -> None:
        if not self.ready:
            return
        base = self._base()
        self.ctx.settings.set("personalize/base", base)
        self.ctx.settings.set("personalize/steps", self.steps_spin.value())
        self.ctx.settings.set("personalize/inversion_steps", self.inversion_spin.value())
        self.ctx.settings.set("personalize/batch", self.batch_spin.value())
        self.ctx.run_job("Personalize", self.ctx.jobs.personalize, self.project, base=base,
                         frames=self.frames_spin.value() or None, steps=self.steps_spin.value() or None,
                         batch=self.batch_spin.value(), device=self.ctx.device,
                         inversion_steps=self.inversion_spin.value(),
                         on_success=lambda _o: self.load_results())


def _describe(phase: PhaseEstimate) -> str:
    """'Inversion: 1,500 of 16,000 steps done — about 20 min left (at most; measured on this machine)'."""
    name = phase.name.capitalize()
    if phase.steps is None:
        return f"{name}: steps set by the base model's resolution ({phase.basis})."
    if phase.done >= phase.steps:
        return f"{name}: {phase.steps:,} steps, done ({phase.basis or 'kept from the last run'})."
    steps = f"{phase.done:,} of {phase.steps:,} steps done" if phase.done else f"{phase.steps:,} steps"
    if phase.seconds is None:
        return f"{name}: {steps} — time unknown ({phase.basis})."
    return f"{name}: {steps} — {format_eta(phase.seconds)} ({phase.basis})."
