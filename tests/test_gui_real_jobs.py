"""The GUI driving the real jobs (not fakes): import and trim a real self-scan, prepare it with
MediaPipe through the Prepare page, cancel a real preparation, and the whole flow to an exported
MP4 with tiny models."""
from __future__ import annotations

import os

os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from studio.gui.main_window import StudioWindow  # noqa: E402
from studio.gui.settings import StudioSettings  # noqa: E402
from tests import _gui_helpers as helpers  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture()
def window(qtbot, tmp_path, studio_cache):
    from tests.test_gui import close_window

    win = StudioWindow(StudioSettings.at(tmp_path / "settings.ini"))
    win.ctx.open_url = lambda url: None
    win.show()
    win.new_project(tmp_path / "woman2.studio")
    yield win
    close_window(win, qtbot, timeout=60000)


def import_clip(win, qtbot, start: float, end: float) -> None:
    capture = win.pages["capture"]
    capture.load_video(str(helpers.SELFSCAN))
    capture.trim_in.setValue(start)
    capture.trim_out.setValue(end)
    capture.use_video()
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=60000)
    assert win.ctx.last_error is None
    assert win.ctx.statuses["capture"] == "done"


def test_real_prepare_from_the_prepare_page(window, qtbot):
    win = window
    import_clip(win, qtbot, 4.0, 5.5)                      # 45 frames of the real self-scan
    page = win.pages["prepare"]
    win.go_to_stage("prepare")
    page.select_size(128)
    seen = []
    win.ctx.runner.progressed.connect(lambda d, t, m, e: seen.append((d, t)))
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=120000)
    assert win.ctx.last_error is None, win.ctx.last_error.text()
    assert seen and seen[-1][0] == seen[-1][1]
    project = win.ctx.project
    assert win.ctx.statuses["prepare"] == "done" and win.ctx.statuses["capture"] == "done"
    crops = sorted((project.scan_dir / "crops").glob("*.png"))
    assert len(crops) == 45 and len(page.grid.paths) == 45
    assert (project.scan_dir / "landmarks.npz").is_file() and (project.scan_dir / "quality.json").is_file()
    assert "45 face pictures" in page.summary_label.text()
    assert win.pages["select"].run_button.isEnabled()


def test_cancelling_a_real_preparation_leaves_the_project_resumable(window, qtbot):
    win = window
    import_clip(win, qtbot, 0.0, 6.0)
    page = win.pages["prepare"]
    page.select_size(128)
    page.start()
    qtbot.waitUntil(lambda: win.job_panel.bar.maximum() > 0 and win.job_panel.bar.value() >= 5, timeout=60000)
    with qtbot.waitSignal(win.ctx.runner.cancelled, timeout=60000):
        win.job_panel.cancel()
    assert win.ctx.statuses["prepare"] == "not done"
    assert win.ctx.last_error is None
    assert page.run_button.isEnabled()


@pytest.mark.slow
def test_full_flow_from_selfscan_to_exported_mp4_with_tiny_models(window, qtbot, tmp_path, monkeypatch):
    """Import -> prepare -> select -> personalize -> re-enact -> export, all through the pages,
    with the real jobs, a tiny random StyleGAN2 and (explicit test hook) a random LPIPS backbone."""
    import functools

    import studio.jobs.personalize as personalize_job
    from personalize.perceptual import build_lpips
    from personalize.stylegan2 import save_generator, tiny_generator
    from personalize.video import probe_video

    metric = build_lpips(None, random_backbone=True, seed=0)
    monkeypatch.setattr(personalize_job, "build_project_lpips", lambda device="cpu": metric)
    # The real personalize job, with test-sized checkpoints (the GUI leaves them at their default).
    win = window
    win.ctx.jobs.personalize = functools.partial(win.ctx.jobs.personalize, checkpoint_every=2)
    base = tmp_path / "tiny_base.safetensors"
    save_generator(tiny_generator(seed=0), base)

    def run(button_owner, button, timeout=600000):
        assert button.isEnabled(), f"{button.text()} is disabled"
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=timeout)
        assert win.ctx.last_error is None, (win.ctx.last_error.text(), win.ctx.last_error.detailedText())

    import_clip(win, qtbot, 0.0, 3.0)
    prepare = win.pages["prepare"]
    prepare.select_size(128)
    run(prepare, prepare.run_button)
    select = win.pages["select"]
    select.count_spin.setValue(8)
    run(select, select.run_button)
    assert len(select.grid.selected) == 8
    personalize = win.pages["personalize"]
    personalize.set_base(str(base))
    personalize.frames_spin.setValue(8)
    personalize.steps_spin.setValue(4)
    personalize.inversion_spin.setValue(6)
    personalize.batch_spin.setValue(2)
    run(personalize, personalize.start_button)
    assert win.ctx.statuses["personalize"] == "done" and len(personalize.plot.xs) >= 2
    reenact = win.pages["reenact"]
    reenact.set_driving(str(helpers.DRIVING))
    reenact.steps_spin.setValue(2)
    run(reenact, reenact.run_button)
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=600000)   # its preview render
    assert win.ctx.statuses["reenact"] == "done"
    edit = win.pages["edit"]                                          # live preview, real job
    win.go_to_stage("edit")
    qtbot.waitUntil(lambda: edit.preview.source is not None or "No preview" in edit.preview.text(),
                    timeout=120000)
    assert edit.preview.source is not None, edit.preview.text()
    export = win.pages["export"]
    win.go_to_stage("export")
    export.load_takes()
    run(export, export.export_button)
    out = export.last_output
    info = probe_video(out)
    driving = probe_video(helpers.DRIVING)
    assert out.suffix == ".mp4" and info.n_frames == driving.n_frames
    assert info.fps == pytest.approx(driving.fps, rel=0.01)
    assert win.ctx.statuses["export"] == "done"
