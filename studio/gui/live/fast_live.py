"""The Re-enact page's "Fast modes & Live" part: the mode of new takes, the motion model, and the
Live panel.

The motion model (``studio.jobs.motion``) is what the fast and refine modes and live driving
need; this box says whether it exists and trains it (``ctx.jobs.train_motion``). The page asks
``mode()`` when it starts a take, and listens to ``take_saved`` (a live recording became a take).
"""
from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QComboBox, QGroupBox, QHBoxLayout, QLabel, QPushButton, QSpinBox,
                               QVBoxLayout, QWidget)

from studio.gui.context import StudioContext
from studio.gui.live.live_panel import LivePanel
from studio.gui.widgets.text_fit import shrinkable

MODES = (("exact", "Exact (slowest, most faithful)",
          "Exact: optimize every frame (about 40 generator passes a frame); the slowest, most faithful."),
         ("refine", "Refine (fast, then corrected)",
          "Refine: the first frame as Exact, then the motion model's prediction corrected in 5 passes "
          "a frame. Needs the motion model."),
         ("fast", "Fast (3 renders a frame)",
          "Fast: the motion model's prediction, checked by 3 renders a frame; no optimizer. "
          "Needs the motion model."))
"""(key, the list's short line, its tooltip): short lines, so the closed list shows them whole at 1024 px."""


class FastLiveBox(QGroupBox):
    """Mode selector, motion model status and training, and the Live panel."""

    take_saved = Signal(str)

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__("Motion model && Live", parent)
        self.ctx = ctx
        self.mode_box = QComboBox()
        for key, text, _ in MODES:
            self.mode_box.addItem(text, key)
        self.mode_box.setToolTip("How new takes are made. Fast and Refine need the motion model.")
        shrinkable(self.mode_box)  # a long line must not widen the page past 1024 px
        for i, (_, _, description) in enumerate(MODES):
            self.mode_box.setItemData(i, description, Qt.ItemDataRole.ToolTipRole)
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.train_button = QPushButton("Train motion model")
        self.train_button.setToolTip("Learn how your head pose and expressions move your generator's "
                                     "code (a few minutes on a GPU; resumable).")
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 100000)
        self.steps_spin.setValue(1500)
        self.steps_spin.setToolTip("Training steps (0: the start alone: least squares, and the MLP fitted to the samples).")
        self.train_button.clicked.connect(self.train)
        self.live = LivePanel(self._make_driver, self._recording_path)
        self.live.recorded.connect(self.save_recording)
        self.live.failed.connect(lambda exc: ctx.error("Live", exc))

        row = QHBoxLayout()  # mode_box is placed by the page, next to the other take settings
        row.addWidget(QLabel("Training steps:"))
        row.addWidget(self.steps_spin)
        row.addWidget(self.train_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.model_label)
        layout.addWidget(self.live, 1)
        ctx.statuses_changed.connect(lambda _s: self.refresh())
        ctx.runner.busy_changed.connect(lambda _b: self.refresh())
        ctx.project_changed.connect(lambda _p: (self.live.stop(), self.refresh()))
        self.refresh()

    def mode(self) -> str:
        return str(self.mode_box.currentData())

    def refresh(self) -> None:
        project = self.ctx.project
        personalized = project is not None and self.ctx.statuses.get("personalize") == "done"
        state = self.ctx.statuses.get("motion", "not done")
        if project is None or not personalized:
            text = "Personalize the generator first; then train its motion model here."
        elif state == "done":
            errors = project.read_motion_info().get("held_out_keypoint_px", {})
            text = (f"Motion model ready (held-out keypoint error {errors.get('trained', float('nan')):.2f} px). "
                    "Fast and Refine takes and Live driving use it.")
        elif state == "stale":
            text = "The motion model is out of date (the generator changed): train it again."
        elif state == "running":
            text = "Training the motion model…"
        else:
            text = "No motion model yet: Fast, Refine and Live need it (train it once)."
        self.model_label.setText(text)
        self.train_button.setEnabled(personalized and not self.ctx.runner.busy)
        self.train_button.setText("Train motion model again" if state == "done" else "Train motion model")

    def train(self) -> None:
        from dataclasses import replace

        from optimize.fast_directions import MotionSettings

        if self.ctx.project is None:
            return
        settings = replace(MotionSettings(), steps=self.steps_spin.value())
        self.ctx.run_job("Train motion model", self.ctx.jobs.train_motion, self.ctx.project, settings,
                         device=self.ctx.device)

    # ------------------------------------------------------------------ live
    def _make_driver(self):
        """Called on the live worker's thread: the project's generator and motion model."""
        from studio.project import Project

        project, device = self.ctx.project, self.ctx.resolved_device()
        if project is None:
            raise RuntimeError("no project is open")
        # a Project of its own: the UI thread keeps re-reading the manifest into ctx.project
        return self.ctx.jobs.live_driver(Project.open(project.root), device)

    def _recording_path(self):
        return self.ctx.project.live_recording_path(time.strftime("%Y%m%d_%H%M%S"))

    def save_recording(self, path: str) -> None:
        """A finished live recording -> a take in the fast mode (the usual job, in the background)."""
        from pathlib import Path

        from studio.gui.pages.reenact import unique_take_name

        project = self.ctx.project
        if project is None:
            return
        name = unique_take_name(project.takes(), Path(path).stem)
        self.ctx.run_job(f"Save live take '{name}'", self.ctx.jobs.reenact, project, path, name,
                         device=self.ctx.device, mode="fast",
                         on_success=lambda _o: self.take_saved.emit(name))
