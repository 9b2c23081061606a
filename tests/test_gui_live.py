"""The Re-enact page's fast modes and Live panel, for real on the stand-in generator: fast mode
before the motion model says which step to run, the Train button trains it, real self-scan frames
pushed through a QVideoFrameInput reach the avatar preview and an injected virtual camera with the
fps shown, and a recording (also one cut short by a lost camera) becomes a fast take."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("pytestqt")

from personalize.errors import Action  # noqa: E402
from tests import _gui_helpers as helpers  # noqa: E402
from tests._fast_helpers import SELFSCAN, standin_project  # noqa: E402
from tests.test_motion_cli import FakeVirtualCameras  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture()
def live_window(qtbot, tmp_path, monkeypatch, studio_cache):
    from studio.gui.main_window import StudioWindow
    from studio.gui.settings import StudioSettings

    project, _, _ = standin_project(tmp_path / "anna.studio", monkeypatch)
    win = StudioWindow(StudioSettings.at(tmp_path / "settings.ini"))
    qtbot.addWidget(win)
    win.show()
    win.open_project(project.root)
    yield win
    win.pages["reenact"].fast.live.stop()
    win.ctx.runner.cancel()
    win.ctx.runner.wait(20000)
    if win.ctx.last_error is not None:
        win.ctx.last_error.close()


def _frames(count: int = 60) -> list[np.ndarray]:
    from personalize.video import iter_frames

    return [f.copy() for _i, f in zip(range(count * 3), iter_frames(SELFSCAN))][::3]


def test_fast_mode_training_live_preview_virtual_camera_and_recorded_takes(live_window, qtbot) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage
    from PySide6.QtMultimedia import QVideoFrame, QVideoFrameInput

    from studio.gui.error_dialog import next_step_text
    from studio.jobs.live import VirtualCamera
    from studio.jobs.motion import train_motion_job

    win = live_window
    page = win.pages["reenact"]
    box, live = page.fast, page.fast.live
    assert "No motion model yet" in box.model_label.text() and box.train_button.isEnabled()
    assert not live.start_button.isEnabled()                    # no camera on this machine: said so
    assert "No camera found" in live.state_label.text()

    # fast mode before the motion model: the dialog names the step that fixes it
    box.mode_box.setCurrentIndex(box.mode_box.findData("fast"))
    page.set_driving(str(helpers.DRIVING))
    page.start()
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=60000)
    dialog = win.ctx.last_error
    assert dialog is not None and "motion model" in dialog.text()
    assert "Train motion model" in dialog.informativeText()
    assert next_step_text(Action("motion-model")) in dialog.informativeText()
    dialog.close()

    # the Train button runs the real job (a small sample pool: this is a test)
    def small_training(project, settings, device="cpu", progress=None, cancel=None, **kw):
        return train_motion_job(project, replace(settings, pool=24, batch=2, mesh_input=128, fit_steps=50), device=device,
                                progress=progress, cancel=cancel, **kw)

    helpers.use_fakes(win, train_motion=small_training)
    box.steps_spin.setValue(0)
    qtbot.mouseClick(box.train_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=180000)
    assert win.ctx.last_error is dialog, win.ctx.last_error.text()   # no new error
    qtbot.waitUntil(lambda: "Motion model ready" in box.model_label.text(), timeout=10000)

    # live: real frames through a QVideoFrameInput -> preview, virtual camera, fps
    cameras = FakeVirtualCameras()
    live.open_virtual_camera = lambda w, h: VirtualCamera.open(w, h, backend=cameras.module())
    source = QVideoFrameInput()
    live.start_frame_source(source)
    live.virtual_box.setChecked(True)
    frames = _frames()
    pushed = [0]

    def push() -> None:
        rgb = frames[pushed[0] % len(frames)]
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888)
        source.sendVideoFrame(QVideoFrame(image.copy()))
        pushed[0] += 1
        qtbot.wait(40)

    def push_until(condition, timeout_frames: int = 600) -> None:
        start = pushed[0]
        while not condition() and pushed[0] - start < timeout_frames:
            push()
        assert condition()

    push_until(lambda: live.worker is not None and live.worker.frames_done >= 5 and len(cameras.frames) >= 3)
    assert not live.avatar_view.pixmap().isNull() and not live.camera_view.pixmap().isNull()
    assert live.fps > 0 and "fps" in live.fps_label.text()
    assert cameras.frames[0].shape == (128, 128, 3)

    # a recording becomes a take in the fast mode
    calls: list[dict] = []

    def fake_reenact(project, driving, name, settings=None, progress=None, cancel=None, **kwargs):
        calls.append({"driving": driving, "name": name, **kwargs})
        helpers.make_take(project, name, result=False)
        project.mark_done("reenact", take=name)

    helpers.use_fakes(win, reenact=fake_reenact)
    qtbot.mouseClick(live.record_button, Qt.MouseButton.LeftButton)
    assert live.recording()
    for _ in range(25):
        push()
    qtbot.mouseClick(live.record_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: bool(calls), timeout=20000)
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=20000)
    recording = Path(calls[0]["driving"])
    assert calls[0]["mode"] == "fast" and recording.parent == win.ctx.project.capture_dir
    from personalize.video import probe_video

    assert probe_video(recording).n_frames >= 5
    qtbot.waitUntil(lambda: page.takes.currentItem() is not None
                    and page.takes.currentItem().text() == calls[0]["name"], timeout=10000)

    # the camera is lost mid-recording: the session stops cleanly, the recording is kept
    qtbot.mouseClick(live.record_button, Qt.MouseButton.LeftButton)
    for _ in range(15):
        push()
    live.source_lost("Camera: the device was unplugged")
    assert not live.running and live.worker is None and cameras.closed
    assert "recording so far is kept" in live.state_label.text()
    qtbot.waitUntil(lambda: len(calls) == 2, timeout=20000)
    assert Path(calls[1]["driving"]).is_file() and calls[1]["mode"] == "fast"
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=20000)


def test_no_virtual_camera_device_is_said_and_closing_the_window_ends_the_session(live_window, qtbot) -> None:
    from studio.jobs.live import VirtualCamera

    live = live_window.pages["reenact"].fast.live

    class Idle:
        def process(self, frame):  # never called: no frame is pushed
            raise AssertionError

        def close(self):
            pass

        size = 64

    live.make_driver = Idle
    live.open_virtual_camera = lambda w, h: VirtualCamera.open(
        w, h, backend=FakeVirtualCameras(device_exists=False).module())
    from PySide6.QtMultimedia import QVideoFrameInput

    live.start_frame_source(QVideoFrameInput())
    live.virtual_box.setChecked(True)
    qtbot.waitUntil(lambda: not live.virtual_box.isChecked(), timeout=10000)   # tried once the driver is ready
    assert "No virtual camera device was found" in live.state_label.text()
    assert "v4l2loopback" in live.state_label.text()
    worker = live.worker
    live_window.close()                     # closing the window ends the session and its thread
    assert not live.running and worker.isFinished()
