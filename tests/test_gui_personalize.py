"""The Personalize page with the real job (tiny StyleGAN2, random LPIPS backbone): stopping during
the inversion keeps every finished batch and says exactly that; the next start resumes from them;
the phases are named in the progress and shown with their steps and time estimates."""
from __future__ import annotations

import os

os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")

import numpy as np
import pytest

pytest.importorskip("pytestqt")

import studio.jobs.personalize as personalize_job  # noqa: E402
from personalize.fileio import atomic_write_json  # noqa: E402
from personalize.inversion import InversionProgress  # noqa: E402
from personalize.perceptual import build_lpips  # noqa: E402
from personalize.stylegan2 import save_generator, tiny_generator  # noqa: E402
from studio.gui.main_window import StudioWindow  # noqa: E402
from studio.gui.settings import StudioSettings  # noqa: E402
from tests._personalize_helpers import read_face_frames, write_scan  # noqa: E402

pytestmark = pytest.mark.gui

FRAMES, INVERSION_STEPS = 8, 20


@pytest.fixture()
def window(qtbot, tmp_path, studio_cache, monkeypatch):
    metric = build_lpips(None, random_backbone=True, seed=0)
    monkeypatch.setattr(personalize_job, "build_project_lpips", lambda device="cpu": metric)
    win = StudioWindow(StudioSettings.at(tmp_path / "settings.ini"))
    win.ctx.open_url = lambda url: None
    qtbot.addWidget(win)
    win.show()
    win.new_project(tmp_path / "anna.studio")
    project = win.ctx.project
    write_scan(project.scan_dir, read_face_frames(12, size=64, step=25))
    atomic_write_json(project.selection_path, {"requested": FRAMES, "count": FRAMES,
                                               "frame_ids": list(range(FRAMES)), "usable_frames": 12})
    for stage in ("capture", "prepare", "select"):
        project.mark_done(stage)
    base = tmp_path / "tiny_base.safetensors"
    save_generator(tiny_generator(seed=0), base)
    win.ctx.force_refresh()
    page = win.pages["personalize"]
    page.set_base(str(base))
    page.frames_spin.setValue(FRAMES)
    page.inversion_spin.setValue(INVERSION_STEPS)
    page.steps_spin.setValue(2)
    page.batch_spin.setValue(1)  # inversion batches of 2 frames: 4 batches
    yield win
    win.ctx.runner.cancel()
    win.ctx.runner.wait(30000)
    if win.ctx.last_error is not None:
        win.ctx.last_error.close()


def test_stopping_during_inversion_keeps_finished_batches_and_says_so(window, qtbot):
    win = window
    page = win.pages["personalize"]
    project = win.ctx.project
    assert "Inversion: 80 steps" in page.estimate_label.text()     # 4 batches x 20, named up front
    assert "no measurement yet" in page.estimate_label.text()
    messages: list[str] = []
    win.ctx.message.connect(messages.append)
    seen: list[tuple[int, str]] = []

    def stop_after_the_first_batch(done: int, total: int, message: str, eta: float) -> None:
        seen.append((done, message))
        if message.startswith("inverting") and done > INVERSION_STEPS:  # into the second batch
            win.ctx.runner.cancel()

    win.ctx.runner.progressed.connect(stop_after_the_first_batch)
    with qtbot.waitSignal(win.ctx.runner.cancelled, timeout=600000):
        page.start()
    win.ctx.runner.progressed.disconnect(stop_after_the_first_batch)
    saved = InversionProgress.load(project.inversion_progress_path)
    assert saved is not None and 1 <= saved.done.sum() < 4
    kept_frames = 2 * int(saved.done.sum())
    assert messages[-1] == (f"Personalize: Stopped while inverting: the anchors of {kept_frames} of {FRAMES} "
                            "frames are kept; the frames being inverted when it stopped start over. "
                            "Start it again to resume.")
    assert win.ctx.statuses["personalize"] == "not done"
    assert "Inversion: " + f"{INVERSION_STEPS * int(saved.done.sum())} of 80 steps done" in page.estimate_label.text()

    # the next start continues after the kept batches, and keeps their anchors as they were
    firsts: list[int] = []

    def record(done: int, total: int, message: str, eta: float) -> None:
        seen.append((done, message))
        if message.startswith("inverting"):
            firsts.append(done)

    win.ctx.runner.progressed.connect(record)
    page.start()
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=600000)
    assert win.ctx.last_error is None, win.ctx.last_error.text()
    assert firsts and firsts[0] > INVERSION_STEPS * int(saved.done.sum()) - 1
    anchors = np.load(project.dataset_anchors_path)
    done_rows = np.repeat(saved.done, 2)
    np.testing.assert_array_equal(anchors[done_rows], saved.anchors[done_rows])
    assert win.ctx.statuses["personalize"] == "done"
    assert {m.split(":")[0] for _, m in seen if m} == {"inverting", "tuning"}  # phases named for the strip
    # both phases now have speeds measured on this machine
    page.update_estimate()
    assert "Inversion: 80 steps, done" in page.estimate_label.text()
    assert "Tuning: 2 steps, done" in page.estimate_label.text()
    project.inversion_path.unlink()  # as for another selection: both phases to run, both estimated
    page.steps_spin.setValue(40)
    text = page.estimate_label.text()
    assert text.count("measured on this machine") == 2 and "left" in text, text
