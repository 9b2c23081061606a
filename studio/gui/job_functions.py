"""The job functions the GUI runs: the same ``studio.jobs`` (and weights) functions as the CLI.

Why an object the main window owns instead of module-level lookups: pages call
``ctx.jobs.<job>(...)`` with exact keywords, so a renamed job parameter fails loudly (a
``TypeError`` shown as a bug dialog, and in the tests, which check every page's call against the
real job's signature) instead of being dropped silently; and a test can swap one job for a quick
fake on its own window without touching global state.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

from studio.jobs.capture import capture_scan
from studio.jobs.editing import import_direction, learn_direction, preview_frame, stylize
from studio.jobs.live import open_live_driver
from studio.jobs.motion import train_motion_job
from studio.jobs.personalize import personalize_project, select_frames
from studio.jobs.prepare import prepare_scan
from studio.jobs.reenact import reenact_take, render_take_job
from studio.weights import fetch_weights, import_weights

Job = Callable[..., Any]


@dataclass
class Jobs:
    """One field per job a page or dialog starts; each defaults to the real function."""

    capture: Job = capture_scan
    prepare: Job = prepare_scan
    select: Job = select_frames
    personalize: Job = personalize_project
    reenact: Job = reenact_take
    render: Job = render_take_job
    train_motion: Job = train_motion_job
    live_driver: Job = open_live_driver
    import_direction: Job = import_direction
    learn_direction: Job = learn_direction
    stylize: Job = stylize
    preview_frame: Job = preview_frame
    fetch_weights: Job = fetch_weights
    import_weights: Job = import_weights


def real_job(name: str) -> Job:
    """The real function behind ``Jobs.<name>`` (what a replaced field stands in for)."""
    return next(f.default for f in fields(Jobs) if f.name == name)
