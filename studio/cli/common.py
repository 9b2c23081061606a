"""Helpers shared by the command modules: progress bars, device selection, printing."""
from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
import time
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from personalize.device import describe_device, pick_device
from personalize.errors import Action
from personalize.progress import CancelToken

# How the terminal phrases an error's next step (``personalize.errors.Action``); the GUI phrases
# the same steps in studio.gui.error_dialog.
NEXT_STEPS = {
    "new": "create it: studio-cli new {project}",
    "capture": "run: studio-cli prepare {project} --video FILE",
    "prepare": "run: studio-cli prepare {project} --video FILE",
    "select": "run: studio-cli select {project}",
    "personalize": "run: studio-cli personalize {project} --base ffhq",
    "reenact": "run: studio-cli reenact {project} --driving FILE --name {subject}",
    "resume-take": "run: studio-cli reenact {project} --name {subject}",
    "restart-take": "run: studio-cli reenact {project} --driving FILE --name {subject} --restart",
    "stylize": "run: studio-cli stylize {project} --prompt TEXT --name {subject}",
    "learn-direction": "run: studio-cli directions learn {project} --attribute smile",
    "import-direction": "run: studio-cli directions import {project} FILE --name {subject}",
    "models": "run: studio-cli models fetch {subject}   (or: studio-cli models import {subject} FILE)",
    "motion-model": "run: studio-cli motion-model {project}",
    "force": "to replace it, run the same command with --force",
}


class ProgressBar:
    """A ``ProgressFn`` that draws a tqdm bar (with ETA) on stderr; usable as a context manager."""

    def __init__(self, desc: str, unit: str = "it", unit_scale: bool = False) -> None:
        """``unit='B', unit_scale=True`` shows byte counts as kB/MB/GB with a transfer rate."""
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        # A new total, or a count that starts again (a job's next pass), is a new bar.
        if self._bar is None or self._bar.total != (total or None) or done < self._bar.n:
            if self._bar is not None:
                self._bar.close()
            self._bar = tqdm(total=total or None, desc=self.desc, unit=self.unit,
                             unit_scale=self.unit_scale, unit_divisor=1024 if self.unit_scale else 1000,
                             file=sys.stderr, dynamic_ncols=True, initial=done)
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "ProgressBar":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def next_step(action: Action, project: str | None = None, subject: str | None = None) -> str | None:
    """The command line that does ``action``, with paths quoted so it can be pasted as it is.

    ``project``: the project folder the failed command was given; ``subject``: a take/style name
    to use when the action names none. Placeholders stay in capitals (FILE, TEXT).
    """
    template = NEXT_STEPS.get(action.step)
    if template is None:
        return None
    name = action.subject or subject
    return template.format(project=shlex.quote(str(project)) if project else "PROJECT",
                           subject=shlex.quote(name) if name else "NAME")


def add_device_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto",
                        help="auto (CUDA, then Apple MPS, then CPU), cpu, cuda, cuda:N or mps")


def resolve_device(args: argparse.Namespace) -> torch.device:
    """Pick the device from ``--device`` and say which one runs (users on servers want to know)."""
    device = pick_device(getattr(args, "device", "auto"))
    print(f"device: {describe_device(device)}", file=sys.stderr)
    return device


def timed(label: str) -> Callable[[], None]:
    start = time.perf_counter()

    def done() -> None:
        print(f"{label} in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    return done


@contextlib.contextmanager
def ctrl_c_cancels(token: CancelToken, quiet: bool = False) -> Iterator[None]:
    """First Ctrl-C asks the job to stop cleanly (it saves its progress); a second one interrupts.

    Why: a long job killed mid-write would lose work; through the token it stops between units.
    Outside the main thread (signals unavailable) this does nothing. ``quiet``: say nothing
    (torchrun workers other than rank 0).
    """
    try:
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):  # noqa: ANN001
            token.cancel()
            signal.signal(signal.SIGINT, previous)
            if not quiet:
                print("\nstopping after the current step...", file=sys.stderr)

        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
