"""Errors as dialogs: the actionable message up front, the technical details one click away.

A ``UserError`` (bad file, missing weights, missing stage) is the user's to fix: its message and
hint are shown as they are. Any other exception is a bug: a short apology plus the traceback in
"Show Details…" so it can be reported. Dialogs are opened window-modal with ``open()``, never
``exec()``, so no nested event loop blocks the app (and tests can close them).
"""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from personalize.errors import Action, MissingWeightsError, UserError


def next_step_text(action: Action | None) -> str:
    """How the window phrases an error's next step (the terminal: ``studio.cli.common.NEXT_STEPS``)."""
    from studio.gui.pages.base import STAGE_TITLES

    if action is None:
        return ""
    subject = f" '{action.subject}'" if action.subject else ""
    phrases = {
        "new": "Create a project with File ▸ New project…",
        "resume-take": f"Open the Re-enact step, pick the take{subject} and resume it.",
        "restart-take": "Open the Re-enact step and give the take another name.",
        "stylize": "Open the Edit & Stylize step and create the style.",
        "learn-direction": "Open the Edit & Stylize step to learn a direction.",
        "import-direction": "Open the Edit & Stylize step to import or learn a direction.",
        "models": f"Get the weights{subject} in Tools ▸ Models…",
    }
    if action.step in phrases:
        return phrases[action.step]
    if action.step in STAGE_TITLES:
        return f"Open the {STAGE_TITLES[action.step]} step (in the list on the left) and run it."
    return ""


def error_texts(exc: BaseException) -> tuple[str, str]:
    """(main text, informative text) for an exception."""
    if isinstance(exc, UserError):
        step = next_step_text(exc.action)
        return exc.message, "\n".join(part for part in (exc.hint or "", step) if part)
    return (f"Something went wrong: {exc.__class__.__name__}: {exc}",
            "This is a bug in the studio, not something you did. The details below help to report it. "
            "Your project's finished work is saved; you can try the step again.")


def show_error(parent: QWidget | None, title: str, exc: BaseException, details: str = "") -> QMessageBox:
    """Open (without blocking) a dialog for ``exc``; returns it so callers/tests can close it."""
    text, info = error_texts(exc)
    box = QMessageBox(parent)
    box.setObjectName("errorDialog")
    box.setIcon(QMessageBox.Icon.Warning if isinstance(exc, UserError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(f"{title} — problem")
    box.setText(text)
    if isinstance(exc, MissingWeightsError) and "Models" not in info:
        info = (info + "\n\n" if info else "") + "You can also get it from Tools ▸ Models…"
    if info:
        box.setInformativeText(info)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.open()
    return box
