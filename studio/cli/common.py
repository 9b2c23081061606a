"""Helpers shared by the command modules: progress bars, device selection, printing."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from typing import Callable, Iterator

import torch
from tqdm import tqdm

from personalize.device import describe_device, pick_device
from personalize.progress import CancelToken


class ProgressBar:
    """A ``ProgressFn`` that draws a tqdm bar (with ETA) on stderr; usable as a context manager."""

    def __init__(self, desc: str, unit: str = "it", unit_scale: bool = False) -> None:
        """``unit='B', unit_scale=True`` shows byte counts as kB/MB/GB with a transfer rate."""
        self.desc = desc
        self.unit = unit
        self.unit_scale = unit_scale
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if self._bar is None or self._bar.total != total:
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
def ctrl_c_cancels(token: CancelToken) -> Iterator[None]:
    """First Ctrl-C asks the job to stop cleanly (it saves its progress); a second one interrupts.

    Why: a long job killed mid-write would lose work; through the token it stops between units.
    Outside the main thread (signals unavailable) this does nothing.
    """
    try:
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame):  # noqa: ANN001
            token.cancel()
            signal.signal(signal.SIGINT, previous)
            print("\nstopping after the current step...", file=sys.stderr)

        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
