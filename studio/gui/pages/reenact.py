"""Re-enact: drive your avatar with another video; list the takes and play them side by side."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QInputDialog,
                               QLineEdit, QListWidget, QListWidgetItem, QMenu, QMessageBox,
                               QPushButton, QSpinBox, QSplitter, QTabWidget, QVBoxLayout, QWidget)

from optimize.reenact_settings import ReenactSettings
from personalize.errors import UserError
from personalize.video import probe_video
from studio.gui.context import StudioContext
from studio.gui.live.fast_live import FastLiveBox
from studio.gui.pages.base import StagePage, hint
from studio.gui.widgets.drop_zone import DropZone
from studio.gui.widgets.mode_selector import ModeSelector
from studio.gui.widgets.text_fit import elided
from studio.gui.widgets.video_player import SideBySidePlayer

TAKE = Qt.ItemDataRole.UserRole  # a take item's name (its text may carry a note)
DROP_WIDTH = 240  # the driving-video zone's least width; names shown in it are elided to fit it
NAME_CHARS = 34


def unique_take_name(existing: list[str], stem: str) -> str:
    base = "".join(c if c.isalnum() or c in "-_ " else "_" for c in stem).strip() or "take"
    name, n = base, 2
    while name in existing:
        name, n = f"{base}-{n}", n + 1
    return name


class ReenactPage(StagePage):
    stage = "reenact"
    needs = ("personalize",)
    shows = ("personalize", "reenact")
    description = ("Makes your avatar copy the head motion, expressions and eye and mouth "
                   "movements of someone in another video (the driving video). Each run is a take.")

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        self.modes: ModeSelector | None = None
        super().__init__(ctx, parent)
        self.driving: str | None = None
        self._rendering: str | None = None  # the take whose preview is being rendered
        self.modes = ModeSelector(start_dir=ctx.settings.last_folder)
        self.modes.mode_changed.connect(lambda _name: self._mode_changed())
        self.modes.models_requested.connect(self._open_models)
        self.drop = DropZone("Drop a driving video here, or click to choose one",
                             start_dir=ctx.settings.last_folder)
        self.drop.file_chosen.connect(self.set_driving)
        self.drop.setMinimumWidth(DROP_WIDTH)  # the form beside it asks for more room than 1024 px leaves
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("take name")
        self.name_edit.setToolTip("A name for this take (a folder under takes/).")
        self.name_edit.setMinimumWidth(240)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(0, 10000)
        self.steps_spin.setSpecialValueText("auto (recommended)")
        self.steps_spin.setValue(int(ctx.settings.get("reenact/steps")))
        self.steps_spin.setToolTip("Optimization steps per frame: more follows the driving face "
                                   "more closely but takes longer. Refine uses them for its first "
                                   "frame; Fast runs no optimization.")
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(4)
        self.lr_spin.setRange(0.0, 1.0)
        self.lr_spin.setSingleStep(0.001)
        self.lr_spin.setSpecialValueText("auto")
        self.lr_spin.setValue(float(ctx.settings.get("reenact/lr")))
        self.lr_spin.setToolTip("Learning rate: how big each adjustment step is. Leave on auto. "
                                "Fast runs no optimization.")
        self.smooth_box = QCheckBox("Smooth over time")
        self.smooth_box.setChecked(bool(ctx.settings.get("reenact/smooth")))
        self.smooth_box.setToolTip("Removes flicker between frames (recommended).")
        self.run_button = QPushButton("Re-enact")
        self.run_button.setToolTip("Start the take (Ctrl+R). A stopped take resumes where it stopped.")
        self.run_button.clicked.connect(self.start)
        self.takes = QListWidget()
        self.takes.setWordWrap(True)
        self.takes.setMinimumWidth(170)
        self.takes.setToolTip("Your takes. Click one to play it; right-click to rename or delete it.")
        self.takes.currentItemChanged.connect(self._take_selected)
        self.takes.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.takes.customContextMenuRequested.connect(self._take_menu)
        self.render_button = QPushButton("Render preview")
        self.render_button.setToolTip("Make a quick video of the selected take to watch here.")
        self.render_button.clicked.connect(self.render_preview)
        self.rename_button = QPushButton("Rename…")
        self.rename_button.setToolTip("Give the selected take another name.")
        self.rename_button.clicked.connect(self.ask_rename)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setToolTip("Delete the selected take (its track, crops and preview).")
        self.delete_button.clicked.connect(self.ask_delete)
        self.player = SideBySidePlayer()
        self.fast = FastLiveBox(ctx)
        self.fast.take_saved.connect(lambda name: self.load_takes(select=name))
        self.fast.mode_box.currentIndexChanged.connect(lambda _i: self._mode_changed())

        self.form = form = QFormLayout()
        form.addRow(self.modes)
        form.addRow("Take name:", self.name_edit)
        form.addRow("Method:", self.fast.mode_box)
        form.addRow("Steps per frame:", self.steps_spin)
        form.addRow("Learning rate:", self.lr_spin)
        form.addRow("", self.smooth_box)
        top = QHBoxLayout()
        top.addWidget(self.drop, 1)
        top.addLayout(form)
        top.addWidget(self.run_button, 0, Qt.AlignmentFlag.AlignBottom)
        take_buttons = QHBoxLayout()
        take_buttons.addWidget(self.rename_button)
        take_buttons.addWidget(self.delete_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.takes, 1)
        left_layout.addLayout(take_buttons)
        left_layout.addWidget(self.render_button)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(left)
        splitter.addWidget(self.player)
        splitter.setSizes([210, 700])
        splitter.setChildrenCollapsible(False)
        self.body.addLayout(top)
        self.body.addWidget(hint("Tip: a driving video with one face, looking roughly at the "
                                 "camera, in good light, works best."))
        self.tabs = QTabWidget()  # takes, or live driving (personal mode): one at a time fits 1024x640
        self.tabs.addTab(splitter, "Takes")
        self.fast.setTitle("")  # the tab names it
        self.tabs.addTab(self.fast, "Motion model && Live")
        self.body.addWidget(self.tabs, 1)
        self.setAcceptDrops(True)
        ctx.runner.progressed.connect(self._render_progress)
        ctx.runner.finished.connect(lambda _o: setattr(self, "_rendering", None))

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        self.drop.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        self.drop.dropEvent(event)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        self.driving = None
        self.drop.reset()
        self.name_edit.clear()
        self.takes.blockSignals(True)
        self.takes.clear()
        self.takes.blockSignals(False)
        self.player.set_videos(None, None)
        self.run_button.setText("Re-enact")
        self.modes.set_source(None)  # another person's photo is not this project's source

    def reload(self) -> None:
        self.load_takes()

    def missing_needs(self) -> list[str]:
        """The chosen mode's needs: personalization, or (one-shot) a prepared self-scan unless a photo is the source."""
        needs = self.modes.needs() if self.modes is not None else self.needs
        return [s for s in needs if self.ctx.statuses.get(s) != "done"]

    def _mode_changed(self) -> None:
        personal = self.modes.backend() == "personal"
        for widget in (self.lr_spin, self.smooth_box, self.steps_spin, self.fast.mode_box):
            widget.setEnabled(personal)
            self.form.setRowVisible(widget, personal)  # the optimizer's settings: the personal mode's only
        optimizing = personal and self.fast.mode() != "fast"  # fast mode runs no optimizer
        for widget in (self.lr_spin, self.steps_spin):
            widget.setEnabled(optimizing)
        self.tabs.setTabVisible(1, personal)  # the motion model and live drive the personalized generator only
        self._on_statuses(self.ctx.statuses)

    def _open_models(self, name: str) -> None:
        window = self.window()
        if hasattr(window, "show_models"):
            dialog = window.show_models()
            dialog.finished.connect(lambda _r: self.modes.refresh())

    def set_driving(self, path: str, take: str | None = None) -> bool:
        """Use ``path`` as the driving video (``take``: it is that take's own copy). A file that is
        not a readable video is refused with a dialog, as on the Capture page. Returns True when
        the video was taken."""
        try:
            info = probe_video(path)
        except UserError as exc:
            self.ctx.error("Driving video", exc)
            return False
        self.driving = str(path)
        if take is None:
            self.ctx.settings.set_last_folder(path)
            shown = elided(Path(path).name, self.drop.label, NAME_CHARS)  # the full path is the tooltip
            self.takes.blockSignals(True)
            self.takes.setCurrentItem(None)  # the player shows the new video, not a take
            self.takes.blockSignals(False)
            self.run_button.setText("Re-enact")
            if self.project is not None:
                self.name_edit.setText(unique_take_name(self.project.takes(), Path(path).stem))
            self.player.set_videos(path, None)
        else:
            source = self.project.read_take_info(take).get("driving_source") if self.project else None
            kept = f"kept in take '{elided(take, self.drop.label, NAME_CHARS - 2)}'"
            shown = f"{elided(Path(source).name, self.drop.label, NAME_CHARS)} ({kept})" if source else f"the copy {kept}"
        self.drop.label.setText(f"Driving video: {shown}\n{info.duration:.1f} s, {info.n_frames} frames "
                                "(drop another to change)")
        self.drop.setToolTip(str(path))
        self.update_buttons()
        return True

    def selected_take(self) -> str | None:
        item = self.takes.currentItem()
        return None if item is None else str(item.data(TAKE))

    def update_buttons(self) -> None:
        if self.modes is None:
            return
        self.run_button.setEnabled(self.ready and self.driving is not None and self.modes.weights_ready())
        take = self.selected_take()
        idle = self.project is not None and not self.ctx.runner.busy
        self.render_button.setEnabled(idle and take is not None and self.project.take_is_complete(take))
        self.rename_button.setEnabled(idle and take is not None)
        self.delete_button.setEnabled(idle and take is not None)

    def load_takes(self, select: str | None = None) -> None:
        if self.project is None:
            return
        current = select or self.selected_take()
        self.takes.blockSignals(True)
        self.takes.clear()
        chosen = None
        for name in self.project.takes():
            done = self.project.take_is_complete(name)
            item = QListWidgetItem(name if done else f"{name}\n(not finished)")
            item.setData(TAKE, name)
            item.setToolTip("finished" if done else "not finished — select it and press 'Resume take' "
                            "to continue, or delete it")
            if not done:
                item.setForeground(Qt.GlobalColor.darkYellow)
            self.takes.addItem(item)
            if name == current:
                chosen = item
        self.takes.blockSignals(False)
        if chosen is not None:
            self.takes.setCurrentItem(chosen)
        elif current is not None:
            self._take_selected(None)
        self.update_buttons()

    def _take_selected(self, item: QListWidgetItem | None, _previous=None) -> None:
        self.update_buttons()
        if item is None or self.project is None:
            if self.driving is None:
                self.player.set_videos(None, None)
            return
        take = str(item.data(TAKE))
        driving = self.project.driving_copy(take)
        preview = self.project.preview_path(take)
        self.player.set_videos(driving, preview if preview.is_file() else None)
        if not self.project.take_is_complete(take) and driving is not None:
            # An unfinished take: pressing Re-enact continues it where it stopped.
            if self.set_driving(str(driving), take=take):
                self.name_edit.setText(take)
                backend = self.project.take_backend(take)
                if backend in self.modes.buttons:
                    self.modes.set_backend(backend)
                self.run_button.setText("Resume take")
        else:
            self.run_button.setText("Re-enact")

    # ------------------------------------------------------------------ take management
    def _take_menu(self, pos) -> None:
        item = self.takes.itemAt(pos)
        if item is None or self.ctx.runner.busy:
            return
        self.takes.setCurrentItem(item)
        menu = QMenu(self)
        menu.addAction("Rename…", self.ask_rename)
        menu.addAction("Delete…", self.ask_delete)
        menu.popup(self.takes.viewport().mapToGlobal(pos))

    def ask_rename(self) -> None:
        take = self.selected_take()
        if take is None:
            return
        new, ok = QInputDialog.getText(self, "Rename the take", "New name:", text=take)
        if ok and new.strip() and new.strip() != take:
            self.rename_take(take, new.strip())

    def rename_take(self, take: str, new_name: str) -> str | None:
        if self.ctx.runner.busy:
            return None
        try:
            name = self.project.rename_take(take, new_name)
        except UserError as exc:
            self.ctx.error("Rename take", exc)
            return None
        self.load_takes(select=name)
        self.ctx.force_refresh()
        return name

    def ask_delete(self) -> QMessageBox | None:
        """Ask (non-blocking) before deleting the selected take; returns the question."""
        take = self.selected_take()
        if take is None:
            return None
        box = QMessageBox(self)
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Delete the take?")
        box.setText(f"Delete the take '{take}'?")
        box.setInformativeText("Its latent track, prepared frames and preview are removed. Exported "
                               "videos stay where you saved them.")
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep it", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.buttonClicked.connect(lambda button: button is delete and self.delete_take(take))
        box.open()
        return box

    def delete_take(self, take: str) -> bool:
        if self.ctx.runner.busy:
            return False
        self.player.set_videos(None, None)  # let go of the files before they are removed
        try:
            self.project.delete_take(take)
        except (UserError, OSError) as exc:
            self.ctx.error("Delete take", exc)
            return False
        if self.driving is not None and Path(self.driving).is_relative_to(self.project.take_dir(take)):
            self.driving = None
            self.drop.reset()
            self.name_edit.clear()
        self.load_takes()
        self.ctx.force_refresh()
        return True

    # ------------------------------------------------------------------ jobs
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
        take = self.selected_take()
        if take is None or self.project is None:
            return
        out = self.project.preview_path(take)
        started = self.ctx.run_job(
            f"Render preview of '{take}'", self.ctx.jobs.render, self.project, take, out,
            paste_back=False, side_by_side=False, mark_export=False, device=self.ctx.device,
            on_success=lambda _o: self._take_selected(self.takes.currentItem()))
        if started:
            self._rendering = take
            self.player.right_screen.show_pixmap(None)
            self.player.right_screen.setText("Rendering the preview…")

    def _render_progress(self, done: int, total: int, _message: str, _eta: float) -> None:
        if self._rendering is not None and self._rendering == self.selected_take() and total > 0:
            self.player.right_screen.setText(f"Rendering the preview…\n{done} / {total} frames")
