"""Checks that catch the GUI's thread-safety mistakes while its jobs run (the stress test).

Qt widgets, pixmaps and images belong to the GUI thread. The jobs run on ``_JobThread``s; the
only Qt call they may make is a signal ``emit`` (queued to the GUI thread). Two ways a job thread
ends up touching Qt anyway, and the check for each:

- *A Qt method called on the job's thread* (a progress callback that updates a widget, a job
  that builds a QImage): ``qt_calls_in(fn)`` runs ``fn`` under a per-thread profile hook that
  records every call of a PySide6/shiboken function other than ``emit``.
- *A Qt object freed on the job's thread*: CPython's cyclic garbage collector runs on whichever
  thread allocates when its thresholds are crossed, and a job allocates a lot. A Qt object that
  sits in an unreachable reference cycle is destroyed by that collection — on the job's thread.
  ``qt_garbage()`` lists the Qt objects that a collection would free right now; after every GUI
  action it must be empty.
"""
from __future__ import annotations

import functools
import gc
import sys
import threading
from collections import Counter
from typing import Any, Callable

import shiboken6

ALLOWED_CALLS = {"emit"}


def _qt_owner(func: Any) -> str | None:
    """The PySide6/shiboken class or module a builtin callable belongs to, or None."""
    owner = getattr(func, "__self__", None)
    module = getattr(func, "__module__", None) or getattr(type(owner), "__module__", "") or ""
    if isinstance(owner, shiboken6.Shiboken.Object):
        return type(owner).__name__
    if module.startswith(("PySide6", "shiboken6")):
        return module
    return None


class QtCallLog:
    """Qt calls made on threads other than the GUI thread: ``(thread name, 'Class.method')``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def guard(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn``, recording every Qt call it makes (directly or deeper) on its thread."""
        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            name = threading.current_thread().name

            def hook(frame, event, arg):  # noqa: ANN001 - sys.setprofile's signature
                if event == "c_call" and getattr(arg, "__name__", "") not in ALLOWED_CALLS:
                    owner = _qt_owner(arg)
                    if owner is not None:
                        with self._lock:
                            self.calls.append((name, f"{owner}.{arg.__name__}"))
            previous = sys.getprofile()
            sys.setprofile(hook)
            try:
                return fn(*args, **kwargs)
            finally:
                sys.setprofile(previous)
        return guarded


def guard_jobs(window, log: QtCallLog) -> None:
    """Wrap every job of ``window`` (``ctx.jobs``) so its Qt calls are logged."""
    from dataclasses import fields

    for field in fields(window.ctx.jobs):
        setattr(window.ctx.jobs, field.name, log.guard(getattr(window.ctx.jobs, field.name)))


def qt_garbage() -> Counter:
    """Live Qt objects (by class) that are unreachable but kept by reference cycles: what the
    next garbage collection — on any thread — would destroy. (A wrapper whose C++ object Qt has
    already deleted frees only Python memory: not counted.)"""
    flags = gc.get_debug()
    gc.set_debug(flags | gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = Counter(type(o).__name__ for o in gc.garbage
                        if isinstance(o, shiboken6.Shiboken.Object) and shiboken6.isValid(o))
    finally:
        gc.garbage.clear()
        gc.set_debug(flags)
    gc.collect()  # free what DEBUG_SAVEALL kept, here on the GUI thread
    return found
