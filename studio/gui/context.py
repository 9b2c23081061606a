"""What every page shares: the open project, settings, the job functions and their runner, and a
few app actions.

Why a context object instead of pages reaching into the main window: pages can be built and tested
on their own (a test creates a context, a project and one page), and the main window stays the
only place that arranges them.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QMessageBox, QWidget

from personalize.errors import UserError
from studio.gui.error_dialog import OpenModels, show_error
from studio.gui.job_functions import Jobs
from studio.gui.settings import StudioSettings
from studio.gui.worker import JobOutcome, JobRunner, format_duration
from studio.project import STAGES, Project

# A job that has run this long is not stopped by one click without asking: a stray click (or,
# before, the Esc key anywhere in the window) must never throw away minutes of work.
CONFIRM_CANCEL_AFTER_S = 5.0


class StudioContext(QObject):
    """Shared state. Signals: ``project_changed(project|None)``, ``statuses_changed(dict)``,
    ``navigate(stage)``, ``message(text)`` (shown in the status bar)."""

    project_changed = Signal(object)
    statuses_changed = Signal(dict)
    navigate = Signal(str)
    message = Signal(str)
    edits_changed = Signal(dict)

    def __init__(self, settings: StudioSettings, jobs: Jobs | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.jobs = jobs or Jobs()
        self.runner = JobRunner(self)
        self.project: Project | None = None
        self.statuses: dict[str, str] = {s: "not done" for s in STAGES}
        self._outputs: dict[str, str | None] = {}
        self.edits: dict[str, float] = {}
        self.style: str | None = None
        self.dialog_parent: QWidget | None = None
        self.last_error: QMessageBox | None = None
        self.cancel_prompt: QMessageBox | None = None
        self.open_models: OpenModels | None = None  # the main window's Models window
        self.closing = False  # the window is closing: no new job starts
        self.open_url: Callable[[QUrl], Any] = QDesktopServices.openUrl  # tests replace it
        self._on_success: Callable[[JobOutcome], None] | None = None
        self._stopped_message: str | None = None
        self.runner.finished.connect(self._job_finished)
        self.runner.progressed.connect(self._job_progressed)
        self._last_refresh = 0.0
        # Another process (studio-cli) may change the project too: poll the manifest cheaply.
        self._poll = QTimer(self)
        self._poll.setInterval(2000)
        self._poll.timeout.connect(self.refresh)
        self._poll.start()

    # ------------------------------------------------------------------ project
    def set_project(self, project: Project | None) -> None:
        """Show ``project`` (None: none). Everything shown of the previous one is dropped: the
        edits and style, and (through ``project_changed``) every page's contents."""
        self.project = project
        self.edits = {}
        self.style = None
        self.statuses = project.statuses() if project is not None else {s: "not done" for s in STAGES}
        if project is not None:
            self.settings.add_recent_project(project.root)
        self.project_changed.emit(project)
        self.edits_changed.emit({})
        self.statuses_changed.emit(self.statuses)

    def refresh(self) -> None:
        """Re-read the project's manifest and tell the pages if any stage changed state."""
        if self.project is None:
            return
        try:
            self.project.reload()
        except UserError:
            pass
        statuses = self.project.statuses()
        # A stage re-run elsewhere (studio-cli) between two polls keeps its status but gets a new
        # fingerprint: the pages showing its outputs must hear of it too.
        outputs = {stage: self.project.fingerprint(stage) for stage in STAGES}
        changed = statuses != self.statuses or outputs != self._outputs
        self.statuses, self._outputs = statuses, outputs
        if changed or not self._poll.isActive():
            self.statuses_changed.emit(statuses)

    def force_refresh(self) -> None:
        if self.project is not None:
            try:
                self.project.reload()
            except UserError:
                pass
            self.statuses = self.project.statuses()
        self.statuses_changed.emit(self.statuses)

    @property
    def device(self) -> str:
        """The device setting as the user chose it ('auto', 'cpu', 'cuda', 'mps')."""
        return str(self.settings.get("device") or "auto")

    def resolved_device(self) -> str:
        """The device that will really run ('cpu', 'cuda', ...); UserError if unavailable."""
        return self.resolved_device_of(self.device)

    @staticmethod
    def resolved_device_of(choice: str) -> str:
        from personalize.device import pick_device
        return str(pick_device(choice))

    # ------------------------------------------------------------------ jobs
    def run_job(self, title: str, fn: Callable[..., Any], *args: Any,
                on_success: Callable[[JobOutcome], None] | None = None,
                stopped_message: str | None = None, **kwargs: Any) -> bool:
        """Start ``fn(*args, progress=..., cancel=..., **kwargs)`` (one of ``self.jobs``) in the
        background.

        A device that cannot be used becomes a dialog; a job already running makes this a no-op
        that says so. The outcome's dialog, status refresh and ``on_success`` happen on the UI
        thread. ``stopped_message``: what the status bar says when the user stops the job (what
        is kept, what is lost); the default only promises what every job does.
        """
        if self.closing:
            return False
        if self.runner.busy:
            self.message.emit(f"Wait for '{self.runner.title}' to finish or cancel it first.")
            return False
        if "device" in kwargs:  # 'auto' / 'cuda' from the settings -> the device that exists
            try:
                kwargs["device"] = self.resolved_device_of(kwargs["device"])
            except UserError as exc:
                self.error(title, exc)
                return False
        self._on_success = on_success
        self._stopped_message = stopped_message
        # The job gets its own Project object: it mutates and saves its manifest on its thread
        # while the UI thread keeps re-reading the file into ``self.project``.
        args = tuple(_own_copy(a) for a in args)
        kwargs = {k: _own_copy(v) for k, v in kwargs.items()}
        started = self.runner.start(title, fn, *args, **kwargs)
        if started:
            self.force_refresh()
        return started

    def _job_progressed(self, *_args: Any) -> None:
        now = time.monotonic()
        if now - self._last_refresh > 0.5:
            self._last_refresh = now
            self.refresh()

    def _job_finished(self, outcome: JobOutcome) -> None:
        callback, self._on_success = self._on_success, None
        stopped, self._stopped_message = self._stopped_message, None
        if self.cancel_prompt is not None:  # the job ended while the user was being asked
            self.cancel_prompt.close()
            self.cancel_prompt = None
        if outcome.error is not None:
            self.error(outcome.title, outcome.error, outcome.details)
        elif outcome.cancelled:
            kept = outcome.extra.get("kept")  # the job's own words for what it saved
            self.message.emit(f"{outcome.title}: {kept} Start it again to resume." if kept else
                              f"{outcome.title}: stopped. "
                              + (stopped or "Start it again to continue from its last saved point."))
        else:
            self.message.emit(f"{outcome.title}: done in {outcome.seconds:.0f} s.")
            if callback is not None:
                try:
                    callback(outcome)
                except Exception as exc:  # noqa: BLE001
                    import traceback
                    self.error(outcome.title, exc, traceback.format_exc())
        self.force_refresh()

    def request_cancel(self, then: Callable[[], None] | None = None) -> QMessageBox | None:
        """Stop the running job: at once in its first seconds, else after the user confirms.

        The question is a window-modal, non-blocking dialog (returned, and kept as
        ``cancel_prompt``); "Keep it running" is its default and Esc answer. ``then`` runs once the
        user chose to stop (e.g. closing the window after the job saved its work).
        """
        runner = self.runner
        if not runner.busy:
            if then is not None:
                then()
            return None
        if runner.cancel_requested or runner.elapsed < CONFIRM_CANCEL_AFTER_S:
            runner.cancel()
            if then is not None:
                then()
            return None
        if self.cancel_prompt is not None:
            self.cancel_prompt.raise_()
            return self.cancel_prompt
        box = QMessageBox(self.dialog_parent)
        box.setObjectName("cancelPrompt")
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle(f"Stop {runner.title}?")
        box.setText(f"Stop '{runner.title}'? It has run for {format_duration(runner.elapsed)}.")
        box.setInformativeText(self._stopped_message or
                               "It stops after its current step and keeps what it has saved; "
                               "starting it again continues from there.")
        stop = box.addButton("Stop the job", QMessageBox.ButtonRole.DestructiveRole)
        keep = box.addButton("Keep it running", QMessageBox.ButtonRole.RejectRole)
        box.setDefaultButton(keep)
        box.setEscapeButton(keep)

        def answered(button) -> None:
            self.cancel_prompt = None
            if button is stop:
                runner.cancel()
                if then is not None:
                    then()
        box.buttonClicked.connect(answered)
        self.cancel_prompt = box
        box.open()
        return box

    def error(self, title: str, exc: BaseException, details: str = "") -> QMessageBox:
        self.last_error = show_error(self.dialog_parent, title, exc, details,
                                     open_models=self.open_models)
        return self.last_error

    def open_folder(self, path: str | Path) -> bool:
        """Open ``path`` in the file manager; False (and a message saying where the folder is)
        when the desktop has no program for it."""
        if self.open_url(QUrl.fromLocalFile(str(path))) is False:
            self.message.emit(f"Could not open the folder: no file manager is set up to open "
                              f"folders on this computer. It is {path}")
            return False
        return True


def _own_copy(value: Any) -> Any:
    """A fresh ``Project`` for the job's thread (same folder); other values unchanged."""
    return Project.open(value.root) if isinstance(value, Project) else value
