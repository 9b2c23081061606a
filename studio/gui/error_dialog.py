"""Errors as dialogs: the actionable message up front, the technical details one click away.

A ``UserError`` (bad file, missing weights, missing stage) is the user's to fix: its message and
hint are shown in the window's words. Any other exception is a bug: a short apology plus the
traceback in "Show Details…" so it can be reported. Dialogs are opened window-modal with
``open()``, never ``exec()``, so no nested event loop blocks the app (and tests can close them).

Missing or unobtainable pretrained weights get an "Open Models…" button. The weights manager
writes its hints for both front ends and names its terminal commands (``studio-cli models fetch
…`` / ``import …``); ``window_words`` turns those into the Models window's buttons, and inside the
Models window itself into just the button names.
"""
from __future__ import annotations

import re
from typing import Callable

from PySide6.QtWidgets import QMessageBox, QWidget

from personalize.errors import Action, MissingWeightsError, UserError

OpenModels = Callable[[str | None], object]
"""Opens the Models window, with the named weights selected (None: none in particular)."""

MODELS_MENU = "Tools ▸ Models…"


def next_step_text(action: Action | None, inside_models: bool = False,
                   models_button: bool = False) -> str:
    """How the window phrases an error's next step (the terminal: ``studio.cli.common.NEXT_STEPS``).

    ``inside_models``: shown by the Models window; ``models_button``: the dialog has an "Open
    Models…" button."""
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
        # Inside the Models window the hint's button names are the step: nothing to add.
        "models": ("" if inside_models else f"Get the weights{subject} with the Open Models… "
                   "button below." if models_button else f"Get the weights{subject} in {MODELS_MENU}"),
        "motion-model": "Open the Re-enact step and press 'Train motion model' (Fast modes & Live).",
    }
    if action.step in phrases:
        return phrases[action.step]
    if action.step in STAGE_TITLES:
        return f"Open the {STAGE_TITLES[action.step]} step (in the list on the left) and run it."
    return ""


def window_words(text: str, inside_models: bool = False) -> str:
    """``text`` with the weights manager's terminal commands phrased as the Models window's
    buttons (``inside_models``: the buttons alone, without pointing to the window itself)."""
    where = "" if inside_models else f" in {MODELS_MENU}"
    rules = (
        (r"Download it with:\s*`?studio-cli models fetch [\w.-]+`?",
         f"Download it with the Download button{where}"),
        (r"Run `?studio-cli models fetch [\w.-]+`? again", f"Press Download{where} again"),
        (r"\b(and\s+)?run:?\s*`?studio-cli models import [\w.-]+ FILE`?",
         rf"\1import it with Import from file…{where}"),
        (r"`?studio-cli models fetch(?: [\w.-]+)?`?", f"the Download button{where}"),
        (r"`?studio-cli models import [\w.-]+ FILE`?", f"Import from file…{where}"),
        (r"\s*elsewhere add --accept-licence\.?", ""),
        (r"\s*\(`--[\w-]+(?: [\w-]+)?`\)", ""),   # a command-line option in parentheses
    )
    for pattern, words in rules:
        text = re.sub(pattern, words, text)
    return re.sub(r"[ \t]*\n[ \t]*", "\n", text).strip()


def weights_named_in(exc: BaseException) -> str | None:
    """The registry name of the weights an error is about (its Action's subject, else the first
    quoted registry name in its message), or None."""
    from studio.weights import REGISTRY

    action = getattr(exc, "action", None)
    if action is not None and action.step == "models" and action.subject in REGISTRY:
        return action.subject
    names = getattr(exc, "names", None)  # LicenceNotAcceptedError
    if names:
        return str(names[0])
    for quoted in re.findall(r"'([\w.-]+)'", getattr(exc, "message", str(exc))):
        if quoted in REGISTRY:
            return quoted
    return None


def is_about_weights(exc: BaseException) -> bool:
    action = getattr(exc, "action", None)
    return isinstance(exc, MissingWeightsError) or (action is not None and action.step == "models")


def _sentence(text: str) -> str:
    """Capitalized (messages written for a log line may start in lower case)."""
    return text[:1].upper() + text[1:] if text else text


def error_texts(exc: BaseException, inside_models: bool = False,
                models_button: bool = False) -> tuple[str, str]:
    """(main text, informative text) for an exception (see ``next_step_text`` for the flags)."""
    if isinstance(exc, UserError):
        action = exc.action
        if action is None and is_about_weights(exc):
            action = Action("models", weights_named_in(exc))
        step = next_step_text(action, inside_models, models_button)
        hint = window_words(exc.hint or "", inside_models)
        return (_sentence(window_words(exc.message, inside_models)),
                "\n\n".join(_sentence(part) for part in (hint, step) if part))
    return (f"Something went wrong: {exc.__class__.__name__}: {exc}",
            "This is a bug in the studio, not something you did. The details below help to report it. "
            "Your project's finished work is saved; you can try the step again.")


def show_error(parent: QWidget | None, title: str, exc: BaseException, details: str = "",
               open_models: OpenModels | None = None, inside_models: bool = False) -> QMessageBox:
    """Open (without blocking) a dialog for ``exc``; returns it so callers/tests can close it.

    ``open_models``: shown as an "Open Models…" button when the error is about pretrained
    weights (``inside_models``: the error is shown by the Models window itself: no such button,
    and the words name its buttons only).
    """
    models_button = open_models is not None and not inside_models and is_about_weights(exc)
    text, info = error_texts(exc, inside_models, models_button)
    box = QMessageBox(parent)
    box.setObjectName("errorDialog")
    box.setIcon(QMessageBox.Icon.Warning if isinstance(exc, UserError) else QMessageBox.Icon.Critical)
    box.setWindowTitle(f"{title} — problem")
    box.setText(text)
    if info:
        box.setInformativeText(info)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    if models_button:
        button = box.addButton("Open Models…", QMessageBox.ButtonRole.ActionRole)
        button.setObjectName("openModels")
        name = weights_named_in(exc)
        # ActionRole buttons do not close the box on their own: close it, then open the window.
        button.clicked.connect(lambda: (box.close(), open_models(name)))
    box.open()
    return box
