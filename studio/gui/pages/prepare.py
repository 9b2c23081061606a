"""Prepare: find the face in every frame, align and crop it; show the crops with quality flags."""
from __future__ import annotations

from PySide6.QtWidgets import (QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel,
                               QPushButton, QWidget)

from studio.gui.context import StudioContext
from studio.gui.pages.base import StagePage, hint
from studio.gui.scan_files import describe_scan, frame_index, quality_flags
from studio.gui.widgets.frame_grid import FrameGrid
from studio.project import DONE


class PreparePage(StagePage):
    stage = "prepare"
    needs = ("capture",)
    shows = ("prepare",)
    description = ("Finds your face in every frame, marks 478 face points, and cuts out an aligned "
                   "square picture of the face (like a passport photo) from each frame.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.size_box = QComboBox()
        for size in (256, 512, 1024):
            self.size_box.addItem(f"{size} × {size}", size)
        self.size_box.setCurrentIndex(max(0, self.size_box.findData(ctx.settings.get("prepare/size"))))
        self.size_box.setToolTip("Size of the face pictures. 1024 matches the standard FFHQ face "
                                 "model; smaller is faster but less sharp.")
        self.smooth_spin = QDoubleSpinBox()
        self.smooth_spin.setRange(0.0, 10.0)
        self.smooth_spin.setSingleStep(0.5)
        self.smooth_spin.setValue(float(ctx.settings.get("prepare/smooth")))
        self.smooth_spin.setSuffix(" frames")
        self.smooth_spin.setToolTip("Steadies the crop over time so the face does not jitter. "
                                    "0 turns smoothing off; 2 is a good default.")
        self.run_button = QPushButton("Prepare frames")
        self.run_button.setToolTip("Start preparing (Ctrl+R). You can cancel; it resumes later.")
        self.run_button.clicked.connect(self.start)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.grid = FrameGrid()

        form = QFormLayout()
        form.addRow("Face picture size:", self.size_box)
        form.addRow("Steadying (smoothing):", self.smooth_spin)
        row = QHBoxLayout()
        row.addLayout(form)
        row.addStretch(1)
        row.addWidget(self.run_button)
        self.body.addLayout(row)
        self.body.addWidget(self.summary_label)
        self.body.addWidget(hint("Frames with a red border and ⚠ have a problem (hover to see "
                                 "which); they are left out of training automatically."))
        self.body.addWidget(self.grid, 1)

    def select_size(self, size: int) -> None:
        """Show ``size`` in the size box (adding it if it is not one of the usual ones)."""
        if self.size_box.findData(size) < 0:
            self.size_box.addItem(f"{size} × {size}", size)
        self.size_box.setCurrentIndex(self.size_box.findData(size))

    def update_buttons(self) -> None:
        self.run_button.setEnabled(self.ready)
        done = self.ctx.statuses.get(self.stage) == DONE
        self.run_button.setText("Prepare again" if done else "Prepare frames")

    def reset(self) -> None:
        self.grid.clear_frames()
        self.summary_label.setText("")

    def reload(self) -> None:
        self.load_results()

    def load_results(self) -> None:
        if self.project is None:
            return
        settings = self.project.stage_info("prepare").get("settings") or {}
        if isinstance(settings, dict) and isinstance(settings.get("size"), int):
            self.select_size(settings["size"])
        paths = self.project.scan_crop_paths()
        flags, summary = quality_flags(self.project)
        by_position = {pos: flags.get(frame_index(p), []) for pos, p in enumerate(paths)}
        self.grid.set_frames(paths, {k: v for k, v in by_position.items() if v})
        self.summary_label.setText(describe_scan(summary, len(paths)))

    def start(self) -> None:
        if not self.ready:
            return
        size, smooth = int(self.size_box.currentData()), float(self.smooth_spin.value())
        self.ctx.settings.set("prepare/size", size)
        self.ctx.settings.set("prepare/smooth", smooth)
        self.ctx.run_job("Prepare frames", self.ctx.jobs.prepare, self.project, size=size,
                         smooth=smooth, on_success=lambda _o: self.load_results())
