"""Where the GUI finds the job functions it runs (the same ones ``studio-cli`` calls).

Imports are lazy: a stage whose job module is not installed (or fails to import) shows a clear
message when used instead of breaking the whole window at start-up, and importing torch-heavy
modules is deferred until a job actually needs them.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

from personalize.errors import UserError

# (module, function) per GUI action.
JOBS: dict[str, tuple[str, str]] = {
    "prepare": ("studio.jobs.prepare", "prepare_scan"),
    "select": ("studio.jobs.personalize", "select_frames"),
    "personalize": ("studio.jobs.personalize", "personalize_project"),
    "reenact": ("studio.jobs.reenact", "reenact_take"),
    "render": ("studio.jobs.reenact", "render_take_job"),
    "import_direction": ("studio.jobs.editing", "import_direction"),
    "learn_direction": ("studio.jobs.editing", "learn_direction"),
    "stylize": ("studio.jobs.editing", "stylize"),
    "preview_frame": ("studio.jobs.editing", "preview_frame"),
    "list_weights": ("studio.weights", "list_weights"),
    "fetch_weights": ("studio.weights", "fetch_weights"),
    "import_weights": ("studio.weights", "import_weights"),
    "weights_path": ("studio.weights", "weights_path"),
}

# Test hook: tests put fake functions here to run the GUI without the heavy jobs.
OVERRIDES: dict[str, Callable[..., Any]] = {}


def job(action: str) -> Callable[..., Any]:
    """Return the function behind ``action``, or raise a UserError saying what is missing."""
    if action in OVERRIDES:
        return OVERRIDES[action]
    module_name, attr = JOBS[action]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"This part of the studio ({module_name}) is not installed.",
                            "Update or reinstall the studio.") from exc
        raise
    fn = getattr(module, attr, None)
    if fn is None:
        raise UserError(f"This version of the studio has no '{attr}' in {module_name}.",
                        "Update the studio.")
    return fn


def available(action: str) -> bool:
    """True if ``action``'s function can be found (used to grey out features not built yet)."""
    try:
        job(action)
    except Exception:  # noqa: BLE001 - any import problem means "not available"
        return False
    return True


def weights_registry() -> dict[str, Any]:
    """The weights manager's registry (name -> entry), or {} when the manager is unavailable."""
    try:
        module = importlib.import_module("studio.weights")
    except Exception:  # noqa: BLE001
        return {}
    return dict(getattr(module, "REGISTRY", {}) or {})
