"""Progress reporting and cancellation shared by every long job.

Why here (the lowest layer): jobs live in ``personalize``/``optimize``/``editing`` and must report
progress without knowing whether a terminal progress bar (CLI) or a Qt widget (GUI) listens.
A job receives a ``ProgressFn`` and a ``CancelToken``; it calls ``report(done, total, message)``
and ``token.check()`` between units of work.
"""
from __future__ import annotations

import threading
from typing import Protocol

from personalize.errors import Cancelled


class ProgressFn(Protocol):
    def __call__(self, done: int, total: int, message: str = "") -> None: ...


def no_progress(done: int, total: int, message: str = "") -> None:
    """The default listener: ignores reports."""


class CancelToken:
    """A thread-safe flag a GUI or signal handler sets; jobs poll it with ``check()``."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise ``Cancelled`` if cancellation was requested."""
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


NEVER_CANCELLED = CancelToken()
