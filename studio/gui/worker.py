"""Background jobs for the GUI: run a ``studio.jobs`` function off the UI thread.

Why a thread and not a process: the job functions already report progress through a callback and
stop cleanly at ``CancelToken.check()``, so one QThread per job is enough and keeps models in the
same memory. The job's ``progress(done, total, message)`` calls arrive on the worker thread; they
are turned into a Qt signal (queued to the UI thread) at most every ``min_interval`` seconds so a
job that reports thousands of tiny steps cannot flood the event loop.
"""
from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal

from personalize.errors import Cancelled
from personalize.progress import CancelToken


class EtaEstimator:
    """Estimates the remaining seconds of a job from its (done, total) reports.

    The rate is measured from the first report of the current phase (a phase restarts when the
    total or the message prefix changes, e.g. "select" then "invert"), so the ETA is not skewed by
    model loading before the first unit.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._phase: tuple[int, str] | None = None
        self._t0 = 0.0
        self._done0 = 0

    def update(self, done: int, total: int, message: str = "") -> float | None:
        """Return the estimated seconds left, or None while unknown."""
        phase = (int(total), message.split(":")[0].split(" ")[0] if message else "")
        now = self._clock()
        if phase != self._phase:
            self._phase, self._t0, self._done0 = phase, now, done
            return None
        elapsed = now - self._t0
        progressed = done - self._done0
        if total <= 0 or progressed <= 0 or elapsed <= 0:
            return None
        return max(0.0, (total - done) * elapsed / progressed)


def format_eta(seconds: float | None) -> str:
    """'about 3 min left' style text for the progress panel."""
    if seconds is None:
        return "estimating time left…"
    return f"about {format_duration(seconds)} left"


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '1 h 02 min' (how long a job has run)."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {(seconds % 3600) // 60:02d} min"


@dataclass
class JobOutcome:
    """What a finished job left: its result, or the exception and formatted traceback."""

    title: str
    result: Any = None
    error: BaseException | None = None
    details: str = ""
    cancelled: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _drop_tracebacks(exc: BaseException) -> None:
    """Forget the frames of a failed job (its text is in ``JobOutcome.details``).

    Why: the traceback holds ``run()``'s frame, whose locals are this thread object and the
    outcome that holds the exception: a reference cycle, kept with every local of the failed job
    (generators, tensors) until the cyclic garbage collector frees it — on whatever thread runs
    that collection, usually the next job's. Nothing Qt-owned may be freed that way.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__


class _JobThread(QThread):
    """Runs one job; the signals live on this object (owned by the UI thread), emitted from run()."""

    progressed = Signal(int, int, str)
    ended = Signal(object)  # JobOutcome

    def __init__(self, title: str, fn: Callable[..., Any], args: tuple, kwargs: dict,
                 token: CancelToken, min_interval: float) -> None:
        super().__init__()
        self.title, self.fn, self.args, self.kwargs = title, fn, args, kwargs
        self.token = token
        self.min_interval = min_interval
        self._last_emit = 0.0

    def _progress(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        if done >= total or now - self._last_emit >= self.min_interval:
            self._last_emit = now
            self.progressed.emit(int(done), int(total), str(message))

    def run(self) -> None:  # worker thread
        start = time.monotonic()
        outcome = JobOutcome(self.title)
        try:
            outcome.result = self.fn(*self.args, progress=self._progress, cancel=self.token,
                                     **self.kwargs)
        except Cancelled as exc:
            outcome.cancelled = True
            outcome.extra["kept"] = exc.kept  # what the job saved, in its words (or None)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the user as a dialog
            outcome.error = exc
            outcome.details = "".join(traceback.format_exception(exc))
            _drop_tracebacks(exc)
        outcome.seconds = time.monotonic() - start
        self.fn = self.args = self.kwargs = None  # a finished thread keeps none of the job's inputs
        self.ended.emit(outcome)


class JobRunner(QObject):
    """Runs at most one job at a time and reports it with Qt signals (all on the UI thread).

    ``start(title, fn, *args, **kwargs)`` calls ``fn(*args, progress=..., cancel=..., **kwargs)``
    in a thread: every job takes a progress callback and a cancel token. Signals: ``started(title)``,
    ``progressed(done, total, message, eta_seconds or -1)``, ``succeeded(outcome)``,
    ``failed(outcome)``, ``cancelled(outcome)``, and ``finished(outcome)`` after any of the three;
    ``stopping()`` when a cancel was asked for (the job still runs until its next check).
    """

    started = Signal(str)
    progressed = Signal(int, int, str, float)
    succeeded = Signal(object)
    failed = Signal(object)
    cancelled = Signal(object)
    finished = Signal(object)
    busy_changed = Signal(bool)
    stopping = Signal()

    def __init__(self, parent: QObject | None = None, min_interval: float = 0.05) -> None:
        super().__init__(parent)
        self._thread: _JobThread | None = None
        self._token: CancelToken | None = None
        self._eta = EtaEstimator()
        self._min_interval = min_interval
        self.title = ""
        self.last_outcome: JobOutcome | None = None
        self._started_at = 0.0

    @property
    def busy(self) -> bool:
        return self._thread is not None

    @property
    def elapsed(self) -> float:
        """Seconds the running job has run (0 when none runs)."""
        return time.monotonic() - self._started_at if self._thread is not None else 0.0

    def start(self, title: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Start a job; returns False (and does nothing) if one is already running."""
        if self._thread is not None:
            return False
        self.title = title
        self._token = CancelToken()
        self._eta = EtaEstimator()
        thread = _JobThread(title, fn, args, kwargs, self._token, self._min_interval)
        thread.progressed.connect(self._on_progress)
        thread.ended.connect(self._on_ended)
        self._thread = thread
        self._started_at = time.monotonic()
        self.started.emit(title)
        self.busy_changed.emit(True)
        thread.start()
        return True

    def cancel(self) -> None:
        """Ask the running job to stop at its next check; it saves its progress for resume."""
        if self._token is not None and not self._token.cancelled:
            self._token.cancel()
            self.stopping.emit()

    @property
    def cancel_requested(self) -> bool:
        return self._token is not None and self._token.cancelled

    def wait(self, timeout_ms: int = 30000) -> bool:
        """Block until the job's thread ends (used when the window closes and in tests)."""
        thread = self._thread
        return True if thread is None else thread.wait(timeout_ms)

    def _on_progress(self, done: int, total: int, message: str) -> None:
        eta = self._eta.update(done, total, message)
        self.progressed.emit(done, total, message, -1.0 if eta is None else float(eta))

    def _on_ended(self, outcome: JobOutcome) -> None:
        thread, self._thread, self._token = self._thread, None, None
        if thread is not None:
            thread.wait()
            thread.deleteLater()
        self.last_outcome = outcome
        if outcome.cancelled:
            self.cancelled.emit(outcome)
        elif outcome.error is not None:
            self.failed.emit(outcome)
        else:
            self.succeeded.emit(outcome)
        self.busy_changed.emit(False)
        self.finished.emit(outcome)
