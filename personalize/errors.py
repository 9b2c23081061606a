"""Exceptions for problems a user can cause (bad files, missing weights, wrong settings).

Why a separate type: the CLI and the GUI show ``UserError`` messages as they are, without a
traceback, while any other exception is a bug and is reported with its traceback. Every message
says what is wrong *and* what to do about it.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix. ``str(err)`` is the full, actionable message."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
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
    """Raised inside a job when its cancel token is set; the job has saved what it finished."""
