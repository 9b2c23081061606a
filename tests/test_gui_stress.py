"""Every stage's real job, started from the GUI, twice over, with tiny models — under the checks
that catch what crashes a Qt app from a worker thread (issue 17: a segfault in ``_JobThread``).

While each job runs, a timer walks the pages and moves an edit slider (so the Edit page's own
preview job runs alongside, as when a user looks around). After each job:

- no Qt function was called on a job thread (``QtCallLog``: every job runs under a per-thread
  profile hook; only signal ``emit`` is allowed);
- no Qt object waits in an unreachable reference cycle (``qt_garbage``: the cyclic collector
  would free it on whichever thread collects next — usually a job's);
- no stray top-level window appeared, and every dialog the run opened is an expected one.

The process runs with ``faulthandler`` (pytest's default), so a crash prints every thread's stack.
The second round opens a new project: the pages' reset paths run under the same checks (the
call trace, which makes jobs about three times slower, only in the first round).
"""
from __future__ import annotations

import dataclasses
import functools
import os

os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtWidgets import QApplication  # noqa: E402

from studio.gui.main_window import StudioWindow  # noqa: E402
from studio.gui.settings import StudioSettings  # noqa: E402
from studio.project import STAGES  # noqa: E402
from tests import _gui_helpers as helpers  # noqa: E402
from tests._gui_thread_checks import QtCallLog, guard_jobs, qt_garbage  # noqa: E402
from tests.test_gui import close_window  # noqa: E402

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture()
def tiny_world(tmp_path, monkeypatch, studio_cache):
    """Random LPIPS and CLIP (explicit test hooks), a tiny base generator, a 6-frame driving clip."""
    import studio.jobs.editing as editing_jobs
    import studio.jobs.personalize as personalize_jobs
    from editing.clip_model import random_clip
    from personalize.perceptual import build_lpips
    from personalize.stylegan2 import save_generator, tiny_generator
    from personalize.video import iter_frames, write_video

    metric = build_lpips(None, random_backbone=True, seed=0)
    monkeypatch.setattr(personalize_jobs, "build_project_lpips", lambda device="cpu": metric)
    monkeypatch.setattr(editing_jobs, "build_clip", lambda device="cpu": random_clip("tiny", seed=0))
    base = tmp_path / "tiny_base.safetensors"
    save_generator(tiny_generator(seed=0), base)
    driving = tmp_path / "driving.mp4"
    write_video(driving, (f for _, f in zip(range(6), iter_frames(helpers.DRIVING))), 25.0)
    direction = tmp_path / "smile.npy"
    np.save(direction, np.random.default_rng(0).standard_normal(64).astype(np.float32))
    return base, driving, direction


def test_every_stage_runs_from_the_gui_repeatedly_without_touching_qt_off_its_thread(
        tmp_path, qtbot, tiny_world):
    base, driving, direction = tiny_world
    qt_garbage()                          # what earlier tests' windows left, freed on this thread
    win = StudioWindow(StudioSettings.at(tmp_path / "settings.ini"))
    win.ctx.open_url = lambda url: True
    win.show()
    jobs = win.ctx.jobs
    jobs.personalize = functools.partial(jobs.personalize, checkpoint_every=2)
    jobs.learn_direction = functools.partial(jobs.learn_direction, samples=8, batch_size=4)
    unguarded = dataclasses.replace(jobs)
    log = QtCallLog()
    guard_jobs(win, log)   # the first round traces every call on the job threads (3x slower)
    pages = win.pages
    walk = iter(range(10 ** 6))

    def look_around() -> None:           # what a user does while a job runs
        win.go_to_stage(STAGES[next(walk) % len(STAGES)])
        sliders = pages["edit"].sliders
        if sliders:
            slider = next(iter(sliders.values())).slider
            slider.setValue(-slider.value() or 50)
    from PySide6.QtCore import QTimer
    timer = QTimer()
    timer.timeout.connect(look_around)
    timer.start(120)

    def run(start, expect_error: str | None = None) -> None:
        assert start() is not False
        qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=300000)
        error = win.ctx.last_error
        if expect_error is None:
            assert error is None or not error.isVisible(), error.text() + error.detailedText()
        else:
            assert error is not None and expect_error in error.text()
            error.close()
        assert log.calls == [], f"Qt called off the GUI thread: {log.calls}"
        assert qt_garbage() == {}
        strays = [w for w in QApplication.topLevelWidgets()
                  if w.isVisible() and w is not win and w is not win.ctx.last_error]
        assert strays == []

    try:
        for round_ in range(2):
            if round_ == 1:
                win.ctx.jobs = dataclasses.replace(unguarded)
            win.new_project(tmp_path / f"round{round_}.studio")
            capture = pages["capture"]
            capture.load_video(str(helpers.SELFSCAN))
            capture.trim_in.setValue(4.0)
            capture.trim_out.setValue(5.0)
            run(capture.use_video)
            pages["prepare"].select_size(64)
            run(pages["prepare"].start)
            pages["select"].count_spin.setValue(6)
            run(pages["select"].start)
            personalize = pages["personalize"]
            personalize.set_base(str(base))
            personalize.frames_spin.setValue(6)
            personalize.steps_spin.setValue(2)
            personalize.inversion_spin.setValue(2)   # the page passes its own value to the job
            personalize.batch_spin.setValue(2)
            run(personalize.start)
            reenact = pages["reenact"]
            reenact.set_driving(str(driving))
            reenact.steps_spin.setValue(1)
            run(reenact.start)                  # the take, then (on success) its preview render
            qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=300000)
            edit = pages["edit"]
            run(lambda: edit.run_import(str(direction), "imported"))
            # Too few samples: the job fails, as real jobs sometimes do (a failed job's traceback
            # once kept its thread in a reference cycle).
            run(edit.learn_direction, expect_error="too few")
            edit.prompt_edit.setText("a sketch")
            edit.iters_spin.setValue(2)
            run(edit.create_style)
            export = pages["export"]
            export.load_takes()
            run(export.start)
            assert export.last_output is not None and export.last_output.is_file()
            assert win.ctx.statuses["export"] == "done"
    finally:
        timer.stop()
        close_window(win, qtbot, timeout=60000)
