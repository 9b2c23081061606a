"""Select: pick the N most varied frames to train on; show them and how well they cover poses."""
from __future__ import annotations

from PySide6.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QPushButton, QSpinBox, QWidget

from studio.gui.context import StudioContext
from studio.gui.pages.base import StagePage, hint
from studio.gui.scan_files import frame_index, pose_grid, quality_flags, selected_frames
from studio.gui.widgets.coverage_meter import CoverageMeter
from studio.gui.widgets.frame_grid import FrameGrid
from studio.project import DONE


class SelectPage(StagePage):
    stage = "select"
    needs = ("prepare",)
    shows = ("prepare", "select")
    description = ("Chooses the frames that differ most from each other (poses, expressions), so "
                   "training sees as much variety as possible without near-duplicates.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(ctx, parent)
        self.count_spin = QSpinBox()
        self.count_spin.setRange(2, 5000)
        self.count_spin.setValue(int(ctx.settings.get("select/count")))
        self.count_spin.setToolTip("How many frames to train on (N). 250 is the paper's choice; "
                                   "if the scan has fewer good frames, all of them are used.")
        self.run_button = QPushButton("Select frames")
        self.run_button.setToolTip("Start selecting (Ctrl+R)")
        self.run_button.clicked.connect(self.start)
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.coverage = CoverageMeter(show_expressions=False)
        self.coverage.setToolTip("Head directions of the selected frames / of all frames. "
                                 "Empty squares are poses the avatar will do less well.")
        self.coverage.setMaximumHeight(180)
        self.grid = FrameGrid()
        form = QFormLayout()
        form.addRow("Number of frames (N):", self.count_spin)
        row = QHBoxLayout()
        row.addLayout(form)
        row.addStretch(1)
        row.addWidget(self.run_button)
        self.body.addLayout(row)
        self.body.addWidget(self.summary_label)
        self.body.addWidget(self.coverage)
        self.body.addWidget(hint("Selected frames have a green border and ★."))
        self.body.addWidget(self.grid, 1)

    def update_buttons(self) -> None:
        self.run_button.setEnabled(self.ready)
        self.run_button.setText("Select again" if self.ctx.statuses.get(self.stage) == DONE
                                else "Select frames")

    def reset(self) -> None:
        self.grid.clear_frames()
        self.coverage.reset()
        self.summary_label.setText("")

    def reload(self) -> None:
        self.load_results()

    def load_results(self) -> None:
        if self.project is None:
            return
        paths = self.project.scan_crop_paths()
        flags, _ = quality_flags(self.project)
        selected, data = selected_frames(self.project)
        index_of = {frame_index(p): pos for pos, p in enumerate(paths)}
        positions = [index_of.get(i, i) for i in selected]
        by_position = {pos: flags.get(frame_index(p), []) for pos, p in enumerate(paths)}
        self.grid.set_frames(paths, {k: v for k, v in by_position.items() if v}, positions)
        all_grid = pose_grid(self.project, None)
        sel_grid = pose_grid(self.project, selected) if selected else None
        if all_grid is not None:
            self.coverage.set_grid(sel_grid or [[0] * len(all_grid[0]) for _ in all_grid], all_grid)
        else:
            self.coverage.reset()
        if selected:
            text = f"{len(selected)} of {len(paths)} frames selected."
            coverage = data.get("coverage")
            if isinstance(coverage, dict):
                spreads = [f"{name.replace('_', ' ')} {v['chosen_p5_p95'] / v['all_p5_p95']:.0%}"
                           for name, v in coverage.items()
                           if isinstance(v, dict) and v.get("all_p5_p95")]
                if spreads:
                    text += " Spread kept vs all frames: " + ", ".join(spreads) + "."
            self.summary_label.setText(text)
        else:
            self.summary_label.setText("No frames selected yet." if paths else "Prepare the scan first.")

    def start(self) -> None:
        if not self.ready:
            return
        count = int(self.count_spin.value())
        self.ctx.settings.set("select/count", count)
        self.ctx.run_job("Select frames", self.ctx.jobs.select, self.project, count=count, device=self.ctx.device,
                         on_success=lambda _o: self.load_results())
