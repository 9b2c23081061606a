"""Exceptions for problems a user can cause (bad files, missing weights, wrong settings).

Why a separate type: the CLI and the GUI show ``UserError`` messages as they are, without a
traceback, while any other exception is a bug and is reported with its traceback. Every message
says what is wrong *and* what to do about it.

Why an ``Action`` beside the words: the same error reaches a terminal and a window, where the
fix is done differently (a command to paste, a step to open). The code that raises says *which*
step fixes it; each front end phrases it (``studio.cli.common.command_for``,
``studio.gui.error_dialog``). Hints therefore never name a command themselves.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class Action:
    """The step that fixes an error.

    ``step``: a pipeline stage ('capture', 'prepare', 'select', 'personalize', 'reenact', 'edit',
    'export') or one of 'new' (create a project), 'resume-take', 'restart-take', 'stylize',
    'learn-direction', 'import-direction', 'models' (get pretrained weights), 'motion-model'
    (train the motion model of the fast re-enactment modes).
    ``subject``: what it acts on (a take, style or weights name), when that matters.
    """

    step: str
    subject: str | None = None


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is the message and the hint (in words);
    ``action`` optionally names the step that fixes it."""

    def __init__(self, message: str, hint: str | None = None, action: Action | None = None) -> None:
        self.message = message
        self.hint = hint
        self.action = action
        super().__init__(message if not hint else f"{message}\n{hint}")


class CheckpointError(UserError):
    """A generator checkpoint that cannot be used (corrupt, unsupported, unsafe, mismatched)."""


class MissingWeightsError(UserError):
    """Pretrained weights the studio needs are not in the cache."""


class MediaError(UserError):
    """A video or image that cannot be read, or holds no usable face."""


class ProjectError(UserError):
    """A project folder that is missing, corrupt, or lacks the stage a command needs."""


class Cancelled(Exception):
    """Raised inside a job when its cancel token is set; the job has saved what it finished.

    ``kept``: what exactly was saved for the next run, in words, when the job says so (e.g. "the
    anchors of 16 of 40 frames"); front ends show it instead of a generic "work is kept".
    """

    def __init__(self, message: str = "cancelled by the user", kept: str | None = None) -> None:
        super().__init__(message)
        self.kept = kept

    def __reduce__(self):  # noqa: ANN204 - keep ``kept`` when sent to another process
        return (type(self), (str(self), self.kept))
    """Raised inside a job when its cancel token is set; the job has saved what it finished."""


@contextlib.contextmanager
def fixed_by(action: Action) -> Iterator[None]:
    """Give ``UserError``s raised inside the block ``action`` as their next step (if they name none).

    Why: a low-level reader (a checkpoint loader) knows what is wrong with a file but not which
    registry entry it was loaded as; the caller that knows wraps the call, so the CLI and the GUI
    can offer the step that fixes it (e.g. get that weights file again).
    """
    try:
        yield
    except UserError as err:
        if err.action is None:
            err.action = action
        raise
