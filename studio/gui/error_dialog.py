"""Errors as dialogs: the actionable message up front, the technical details one click away.

A ``UserError`` (bad file, missing weights, missing stage) is the user's to fix: its message and
hint are shown as they are. Any other exception is a bug: a short apology plus the traceback in
"Show Details…" so it can be reported. Dialogs are opened window-modal with ``open()``, never
``exec()``, so no nested event loop blocks the app (and tests can close them).
"""
from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget

from personalize.errors import MissingWeightsError, UserError


def error_texts(exc: BaseException) -> tuple[str, str]:
    """(main text, informative text) for an exception."""
    if isinstance(exc, UserError):
        return exc.message, exc.hint or ""
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
