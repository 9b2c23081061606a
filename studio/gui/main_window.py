"""The studio's main window: start screen, the project view with its stages, jobs, status bar.

Layout: a stage list on the left (in pipeline order, each with its status read from the project
folder), the selected stage's page on the right, a job panel (progress, ETA, cancel) at the bottom
while something runs, and a status bar with the compute device and the weights present.
"""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QIcon, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QListWidget, QListWidgetItem,
                               QMainWindow, QProgressBar, QPushButton, QSplitter, QStackedWidget,
                               QVBoxLayout, QWidget)

from personalize.errors import UserError
from studio import __version__
from studio.gui.context import StudioContext
from studio.gui.job_functions import Jobs
from studio.gui.models_dialog import REQUIRED, STYLES, ModelsDialog
from studio.gui.pages.base import STAGE_TITLES, STATUS_COLORS, StagePage
from studio.gui.pages.capture import CapturePage
from studio.gui.pages.edit import EditPage
from studio.gui.pages.export import ExportPage
from studio.gui.pages.personalize import PersonalizePage
from studio.gui.pages.prepare import PreparePage
from studio.gui.pages.reenact import ReenactPage
from studio.gui.pages.select import SelectPage
from studio.gui.settings import StudioSettings
from studio.gui.settings_dialog import SettingsDialog
from studio.gui.start_screen import StartScreen
from studio.gui.worker import format_eta
from studio.project import STAGES, Project

PAGE_CLASSES: tuple[type[StagePage], ...] = (CapturePage, PreparePage, SelectPage, PersonalizePage,
                                             ReenactPage, EditPage, ExportPage)
PRIMARY_ACTIONS = {"capture": "use_video", "prepare": "start", "select": "start",
                   "personalize": "start", "reenact": "start", "edit": "create_style",
                   "export": "start"}


def status_icon(state: str) -> QIcon:
    pix = QPixmap(14, 14)
    pix.fill(QColor(STATUS_COLORS.get(state, "#9e9e9e")))
    return QIcon(pix)


def split_phase(message: str) -> tuple[str, str]:
    """(phase, detail) of a job's progress message: jobs that run in phases name the phase
    before a colon ("inverting: frames 1-8 loss 0.31"); a message without one is all phase
    ("finding landmarks")."""
    phase, sep, detail = message.partition(":")
    return (phase.strip(), detail.strip()) if sep else (message.strip(), "")


class JobPanel(QWidget):
    """The job strip: the running job, its phase, bar, details, time left and Cancel."""

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.title = QLabel()
        self.phase = QLabel()
        self.phase.setToolTip("The part of the job that runs now (each part has its own count "
                              "and time estimate).")
        self.bar = QProgressBar()
        self.bar.setMinimumWidth(160)
        self.message = QLabel()
        self.message.setMinimumWidth(40)
        self.eta = QLabel()
        self.cancel_button = QPushButton("Cancel…")
        self.cancel_button.setToolTip("Stop the job after its current step (asks first when it has "
                                      "run for more than a few seconds).")
        self.cancel_button.clicked.connect(self.cancel)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 2, 6, 2)
        layout.addWidget(self.title)
        layout.addWidget(self.phase)
        layout.addWidget(self.bar, 2)
        layout.addWidget(self.message, 1)
        layout.addWidget(self.eta)
        layout.addWidget(self.cancel_button)
        runner = ctx.runner
        runner.started.connect(self._started)
        runner.progressed.connect(self._progress)
        runner.stopping.connect(self._stopping)
        runner.finished.connect(lambda _o: self.setVisible(False))
        self.setVisible(False)

    def _started(self, title: str) -> None:
        self.title.setText(f"<b>{title}</b>")
        self.phase.setText("")
        self.bar.setRange(0, 0)  # busy until the first report
        self.message.setText("starting…")
        self.eta.setText("")
        self.cancel_button.setEnabled(True)
        self.cancel_button.setText("Cancel…")
        self.setVisible(True)

    def _progress(self, done: int, total: int, message: str, eta: float) -> None:
        phase, detail = split_phase(message)
        self.phase.setText(f"— {phase}" if phase else "")
        if total > 0:
            self.bar.setRange(0, total)
            self.bar.setValue(min(done, total))
            self.bar.setFormat(f"{done} / {total}")
        self.message.setText(detail)
        self.message.setToolTip(message)
        self.eta.setText(format_eta(None if eta < 0 else eta))

    def _stopping(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_button.setText("Stopping…")

    def cancel(self) -> None:
        self.ctx.request_cancel()


class StudioWindow(QMainWindow):
    def __init__(self, settings: StudioSettings | None = None, jobs: Jobs | None = None) -> None:
        """``jobs``: the job functions the pages run (default: the real ones)."""
        super().__init__()
        self.settings = settings or StudioSettings()
        self.settings.apply_environment()
        self.ctx = StudioContext(self.settings, jobs, self)
        self.ctx.dialog_parent = self
        self.ctx.open_models = self.show_models
        self.setWindowTitle("Self-Scan Avatar Studio")
        self.setAcceptDrops(True)
        self.models_dialog: ModelsDialog | None = None
        self._quit_confirmed = False

        self.start_screen = StartScreen()
        self.start_screen.new_requested.connect(self.new_project_dialog)
        self.start_screen.open_requested.connect(self.open_project_dialog)
        self.start_screen.open_path.connect(self.open_project)

        self.stage_list = QListWidget()
        self.stage_list.setIconSize(QSize(14, 14))
        self.stage_list.setMinimumWidth(150)
        self.stage_list.setMaximumWidth(240)
        self.stage_list.setToolTip("The steps, in order. Ctrl+1 … Ctrl+7 jump to a step.")
        self.pages: dict[str, StagePage] = {}
        self.page_stack = QStackedWidget()
        for n, cls in enumerate(PAGE_CLASSES, start=1):
            page = cls(self.ctx)
            self.pages[page.stage] = page
            self.page_stack.addWidget(page)
            item = QListWidgetItem(f"{n}. {STAGE_TITLES[page.stage]}")
            item.setData(Qt.ItemDataRole.UserRole, page.stage)
            self.stage_list.addItem(item)
        self.stage_list.currentRowChanged.connect(self.page_stack.setCurrentIndex)
        self.stage_list.currentRowChanged.connect(lambda _row: self.update_weights_label())
        self.project_label = QLabel()
        self.project_label.setWordWrap(True)
        side = QWidget()
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.project_label)
        side_layout.addWidget(self.stage_list, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(side)
        splitter.addWidget(self.page_stack)
        splitter.setStretchFactor(1, 1)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([170, 1000])
        self.job_panel = JobPanel(self.ctx)
        self.project_view = QWidget()
        pv = QVBoxLayout(self.project_view)
        pv.setContentsMargins(6, 6, 6, 0)
        pv.addWidget(splitter, 1)
        pv.addWidget(self.job_panel)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.start_screen)
        self.stack.addWidget(self.project_view)
        self.setCentralWidget(self.stack)

        self.device_label = QLabel()
        self.weights_button = QPushButton()
        self.weights_button.setFlat(True)
        self.weights_button.setToolTip("Pretrained weights the studio needs. Click to manage them.")
        self.weights_button.clicked.connect(self.show_models)
        self.statusBar().addPermanentWidget(self.weights_button)
        self.statusBar().addPermanentWidget(self.device_label)

        self.ctx.statuses_changed.connect(self._update_stage_list)
        self.ctx.navigate.connect(self.go_to_stage)
        self.ctx.message.connect(lambda text: self.statusBar().showMessage(text, 15000))
        self._build_menus()
        self.update_device_label()
        self.update_weights_label()
        self.start_screen.set_recent(self.settings.recent_projects())
        geometry = self.settings.geometry()
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1200, 800)

    # ------------------------------------------------------------------ menus and shortcuts
    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        if tip:
            action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&New project…", self.new_project_dialog, QKeySequence.StandardKey.New)
        self._action(file_menu, "&Open project…", self.open_project_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(file_menu, "&Close project", self.close_project, QKeySequence.StandardKey.Close)
        file_menu.addSeparator()
        self._action(file_menu, "Show project &folder", self.show_project_folder)
        self._action(file_menu, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        go_menu = bar.addMenu("&Go")
        for n, stage in enumerate(STAGES, start=1):
            self._action(go_menu, STAGE_TITLES[stage], lambda _=False, s=stage: self.go_to_stage(s),
                         f"Ctrl+{n}")
        go_menu.addSeparator()
        self._action(go_menu, "Next step", lambda: self._step(+1), "Ctrl+Right")
        self._action(go_menu, "Previous step", lambda: self._step(-1), "Ctrl+Left")
        job_menu = bar.addMenu("&Job")
        self._action(job_menu, "&Run this step", self.run_current, "Ctrl+R")
        # No shortcut on purpose: Esc belongs to text boxes and dialogs, and one key must never
        # throw away a long job (issue 17).
        self._action(job_menu, "&Cancel the running job…", self.ctx.request_cancel)
        tools = bar.addMenu("&Tools")
        self._action(tools, "&Models…", self.show_models, "Ctrl+M")
        self._action(tools, "&Settings…", self.show_settings, QKeySequence.StandardKey.Preferences)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&About", lambda: self.statusBar().showMessage(
            f"Self-Scan Avatar Studio {__version__}", 8000))
        QShortcut(QKeySequence("Ctrl+I"), self, activated=self._import_video)
        QShortcut(QKeySequence("Ctrl+E"), self, activated=lambda: self._run_on("export"))

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_projects():
            self.recent_menu.addAction(path, lambda p=path: self.open_project(p))
        if not self.recent_menu.actions():
            self.recent_menu.addAction("(none)").setEnabled(False)

    # ------------------------------------------------------------------ projects
    def new_project_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "New project folder (one per person)",
                                              str(Path(self.settings.last_folder()) / "my-avatar.studio"))
        if path:
            self.new_project(path)

    def open_project_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a project folder", self.settings.last_folder())
        if path:
            self.open_project(path)

    def new_project(self, path: str | Path) -> Project | None:
        try:
            project = Project.create(path)
        except UserError as exc:
            self.ctx.error("New project", exc)
            return None
        self.settings.set_last_folder(Path(project.root).parent)
        self._show_project(project)
        return project

    def open_project(self, path: str | Path) -> Project | None:
        try:
            project = Project.open(path)
        except UserError as exc:
            self.ctx.error("Open project", exc)
            return None
        self.settings.set_last_folder(Path(project.root).parent)
        self._show_project(project)
        return project

    def _show_project(self, project: Project) -> None:
        self.ctx.set_project(project)
        self.project_label.setText(f"<b>{project.name}</b><br><small>{project.root}</small>")
        self.setWindowTitle(f"{project.name} — Self-Scan Avatar Studio")
        self.stack.setCurrentWidget(self.project_view)
        self.go_to_stage(self.first_unfinished_stage())

    def close_project(self) -> None:
        if self.ctx.runner.busy:
            self.statusBar().showMessage("Cancel the running job before closing the project.", 8000)
            return
        self.ctx.set_project(None)
        self.setWindowTitle("Self-Scan Avatar Studio")
        self.start_screen.set_recent(self.settings.recent_projects())
        self.stack.setCurrentWidget(self.start_screen)

    def show_project_folder(self) -> None:
        if self.ctx.project is not None:
            self.ctx.open_folder(self.ctx.project.root)

    def first_unfinished_stage(self) -> str:
        for stage in STAGES:
            if self.ctx.statuses.get(stage) != "done":
                return stage
        return STAGES[-1]

    # ------------------------------------------------------------------ navigation and jobs
    def go_to_stage(self, stage: str) -> None:
        if stage in self.pages and self.ctx.project is not None:
            self.stage_list.setCurrentRow(STAGES.index(stage))

    def current_stage(self) -> str:
        return STAGES[max(0, self.stage_list.currentRow())]

    def _step(self, delta: int) -> None:
        i = STAGES.index(self.current_stage()) + delta
        if 0 <= i < len(STAGES):
            self.go_to_stage(STAGES[i])

    def run_current(self) -> None:
        self._run_on(self.current_stage())

    def _run_on(self, stage: str) -> None:
        if self.ctx.project is None:
            return
        self.go_to_stage(stage)
        page = self.pages[stage]
        action = getattr(page, PRIMARY_ACTIONS[stage], None)
        if action is not None:
            action()

    def _import_video(self) -> None:
        if self.ctx.project is not None:
            self.go_to_stage("capture")
            self.pages["capture"].drop.pick()

    def _update_stage_list(self, statuses: dict) -> None:
        for row, stage in enumerate(STAGES):
            item = self.stage_list.item(row)
            state = statuses.get(stage, "not done")
            item.setIcon(status_icon(state))
            item.setToolTip(f"{STAGE_TITLES[stage]}: {state}")

    # ------------------------------------------------------------------ status bar and dialogs
    def update_device_label(self) -> None:
        try:
            from personalize.device import describe_device, pick_device
            device = pick_device(self.ctx.device)
            text = describe_device(device)
            slow = device.type == "cpu"
        except Exception as exc:  # noqa: BLE001 - e.g. CUDA requested but missing
            text, slow = f"Device problem: {exc}", True
        self.device_label.setText(("⚠ " if slow else "") + text)
        self.device_label.setStyleSheet("color: #b35900;" if slow else "color: #1e7e34;")
        self.device_label.setToolTip("Where the computing runs (change it in Tools ▸ Settings)."
                                     + (" On a CPU, personalization takes hours; a GPU is 10–100× "
                                        "faster." if slow else ""))

    def update_weights_label(self) -> None:
        """The weights the personal pipeline needs (CLIP too on the Edit & Stylize step); the
        one-shot modes' files are in the Models window."""
        from studio.weights import list_weights

        names = REQUIRED + (STYLES if self.ctx.project is not None
                            and self.current_stage() == "edit" else ())
        rows = list_weights(list(names))
        missing = [row.name for row in rows if not row.present]
        self.weights_button.setText("Weights: " + " · ".join(
            f"{row.name} {'✔' if row.present else '✘'}" for row in rows))
        self.weights_button.setStyleSheet("color: #b35900;" if missing else "")
        self.weights_button.setToolTip(
            ("Missing: " + ", ".join(missing) + ". " if missing else "")
            + "Pretrained weights of your personal avatar. Click to see every file (also those of "
              "the one-shot modes) and get the missing ones.")

    def show_models(self, name: str | None = None) -> ModelsDialog:
        """Open the Models window, with the weights ``name`` selected when given."""
        if self.models_dialog is None:
            self.models_dialog = ModelsDialog(self.ctx.jobs, self)
            self.models_dialog.weights_changed.connect(self.update_weights_label)
            self.models_dialog.weights_changed.connect(self.pages["personalize"].fill_bases)
        self.models_dialog.refresh()
        if isinstance(name, str):
            self.models_dialog.select(name)
        self.models_dialog.show()
        self.models_dialog.raise_()
        return self.models_dialog

    def show_settings(self) -> SettingsDialog:
        dialog = SettingsDialog(self.settings, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)  # one per opening, not kept
        dialog.accepted.connect(self.update_device_label)
        dialog.accepted.connect(self.update_weights_label)
        dialog.open()
        return dialog

    # ------------------------------------------------------------------ window
    def _quit_after_stop(self) -> None:
        self._quit_confirmed = True
        QTimer.singleShot(0, self.close)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        """A dropped project folder opens it; a dropped video goes to Capture (or Re-enact)."""
        from studio.gui.widgets.drop_zone import dropped_video
        video = dropped_video(event.mimeData())
        if video is not None and self.ctx.project is not None:
            stage = self.current_stage()
            if stage == "reenact":
                self.pages["reenact"].set_driving(str(video))
            else:
                self.go_to_stage("capture")
                self.pages["capture"].load_video(str(video))
            event.acceptProposedAction()
            return
        self.start_screen.dropEvent(event)

    def _runners(self) -> list:
        """Every job runner of the window: the main one, the pages' previews, the Models window's."""
        runners = [self.ctx.runner]
        runners += [page.preview_runner for page in self.pages.values() if hasattr(page, "preview_runner")]
        if self.models_dialog is not None:
            runners.append(self.models_dialog.runner)
        return runners

    def _close_when_idle(self, *_args) -> None:
        if not any(runner.busy for runner in self._runners()):
            QTimer.singleShot(0, self.close)

    def closeEvent(self, event) -> None:  # noqa: N802
        if self.ctx.runner.busy and not self._quit_confirmed:
            # Quitting stops the job: ask first, like Cancel (Ctrl+Q must not lose a long job).
            event.ignore()
            self.ctx.request_cancel(then=self._quit_after_stop)
            return
        busy = [runner for runner in self._runners() if runner.busy]
        if busy:
            # Never let a job's thread outlive the window: Python would be finalized under it
            # (a crash on the way out). Stop every job; the window closes when the last one has
            # saved its work and ended.
            event.ignore()
            self.ctx.closing = True
            for runner in busy:
                runner.cancel()
                runner.finished.connect(self._close_when_idle)
            self.statusBar().showMessage("Stopping the running job; the window closes when it has "
                                         "saved its work.")
            return
        self.settings.set_geometry(self.saveGeometry())
        capture = self.pages.get("capture")
        if capture is not None:
            capture.webcam.stop_camera()
        super().closeEvent(event)
