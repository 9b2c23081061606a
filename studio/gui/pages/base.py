"""The frame every stage page shares: title, status, what it needs, and a "Next" button.

A page's action buttons are enabled only when the stages it needs are done and no job runs;
otherwise the page says in words what to do first. Subclasses fill ``self.body`` and implement
``reset``, ``reload`` and ``update_buttons``.

Why ``reset`` + ``shows``: a page shows one project at a time. When another project opens (File ▸
New included) every page first forgets everything it showed (``reset``), then loads what the new
project has (``reload``); and whenever a stage the page shows (``shows``) gets a new output (its
fingerprint or status changes — a run in this window, in another process, or an upstream re-run)
the page reloads. Nothing a page displays can outlive the project or the output it came from.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QScrollArea, QSizePolicy,
                               QVBoxLayout, QWidget)

from studio.gui.context import StudioContext
from studio.project import DONE, STAGES, STALE

STAGE_TITLES = {
    "capture": "Capture",
    "prepare": "Prepare",
    "select": "Select",
    "personalize": "Personalize",
    "reenact": "Re-enact",
    "edit": "Edit & Stylize",
    "export": "Export",
}

STATUS_COLORS = {"not done": "#9e9e9e", "running": "#2f80ed", "done": "#27ae60", "stale": "#f2994a"}
STATUS_WORDS = {"not done": "not done", "running": "running…", "done": "done",
                "stale": "out of date — an earlier step changed"}


class StagePage(QWidget):
    """Base page. ``needs`` lists the stages that must be done before this page's main action."""

    stage = ""
    needs: tuple[str, ...] = ()
    shows: tuple[str, ...] = ()
    """Stages whose outputs the page displays: a new output of any of them reloads the page."""
    description = ""

    def __init__(self, ctx: StudioContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._shown: tuple | None = None
        self.title_label = QLabel(STAGE_TITLES.get(self.stage, self.stage))
        font = self.title_label.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        self.title_label.setFont(font)
        self.status_label = QLabel()
        self.status_label.setObjectName("stageStatus")
        self.description_label = QLabel(self.description)
        self.description_label.setWordWrap(True)
        self.needs_label = QLabel()
        self.needs_label.setObjectName("needsHint")
        self.needs_label.setWordWrap(True)
        self.needs_label.setStyleSheet("color: #b35900;")
        self.next_button = QPushButton("Next ▸")
        self.next_button.setToolTip("Go to the next step (Ctrl+Right)")
        self.next_button.clicked.connect(self.go_next)

        header = QHBoxLayout()
        header.addWidget(self.title_label)
        header.addWidget(self.status_label)
        header.addStretch(1)
        header.addWidget(self.next_button)

        self.body_widget = QWidget()
        self.body = QVBoxLayout(self.body_widget)
        self.body.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(self.body_widget)
        scroll.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.description_label)
        layout.addWidget(self.needs_label)
        layout.addWidget(scroll, 1)

        ctx.statuses_changed.connect(self._on_statuses)
        ctx.project_changed.connect(self._on_project)
        ctx.runner.busy_changed.connect(lambda _busy: self._on_statuses(self.ctx.statuses))

    # ------------------------------------------------------------------ state
    @property
    def project(self):
        return self.ctx.project

    def missing_needs(self) -> list[str]:
        return [s for s in self.needs if self.ctx.statuses.get(s) != DONE]

    @property
    def ready(self) -> bool:
        """True when the main action can run now: a project is open, needs done, no job running."""
        return self.project is not None and not self.missing_needs() and not self.ctx.runner.busy

    def _on_project(self, project) -> None:
        self._shown = None
        self.reset()
        self._on_statuses(self.ctx.statuses)

    def _outputs_key(self, statuses: dict) -> tuple | None:
        if self.project is None:
            return None
        return tuple((s, self.project.fingerprint(s), statuses.get(s)) for s in self.shows)

    def _on_statuses(self, statuses: dict) -> None:
        key = self._outputs_key(statuses)
        if key is not None and key != self._shown:
            self._shown = key
            self.reload()
        state = statuses.get(self.stage, "not done")
        self.status_label.setText(f"● {STATUS_WORDS.get(state, state)}")
        self.status_label.setStyleSheet(f"color: {STATUS_COLORS.get(state, '#9e9e9e')};")
        missing = self.missing_needs()
        if self.project is None:
            self.needs_label.setText("Open or create a project first.")
        elif missing:
            names = ", ".join(STAGE_TITLES[s] for s in missing)
            stale = [s for s in missing if statuses.get(s) == STALE]
            verb = "must be redone first" if stale else "must be done first"
            self.needs_label.setText(f"This step needs: {names} ({verb}).")
        elif self.ctx.runner.busy:
            self.needs_label.setText(f"Busy: {self.ctx.runner.title}. You can look around meanwhile.")
        else:
            self.needs_label.setText("")
        self.needs_label.setVisible(bool(self.needs_label.text()))
        self.next_button.setEnabled(self.stage != STAGES[-1])
        self.update_buttons()

    # ------------------------------------------------------------------ for subclasses
    def reset(self) -> None:
        """Forget everything shown from the previous project (called before another opens)."""

    def reload(self) -> None:
        """Show what the open project has on disk for this page (first show, and after any
        output of the ``shows`` stages changed)."""

    def update_buttons(self) -> None:
        """Enable/disable the page's actions (``self.ready`` is the usual condition)."""

    def go_next(self) -> None:
        index = STAGES.index(self.stage)
        if index + 1 < len(STAGES):
            self.ctx.navigate.emit(STAGES[index + 1])


def hint(text: str) -> QLabel:
    """A small grey explanatory label."""
    label = QLabel(text)
    label.setWordWrap(True)
    label.setStyleSheet("color: #666;")
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label
