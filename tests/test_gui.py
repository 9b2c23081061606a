"""GUI behaviour under pytest-qt (offscreen): start screen, stage states, jobs, cancel, errors,
settings, models dialog and every page's main interactions.

Heavy jobs are replaced by quick fakes (tests/_gui_helpers.py) that honour the same contract;
``test_gui_real_jobs.py`` runs the real ones.
"""
from __future__ import annotations

import functools
import gc
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl  # noqa: E402
from PySide6.QtGui import QAction, QDropEvent  # noqa: E402
from PySide6.QtWidgets import QMessageBox  # noqa: E402

from personalize.errors import MediaError  # noqa: E402
from studio.gui.main_window import StudioWindow  # noqa: E402
from studio.gui.settings import StudioSettings  # noqa: E402
from studio.gui.widgets.loss_plot import read_loss_log  # noqa: E402
from studio.gui.worker import EtaEstimator, format_eta  # noqa: E402
from studio.project import STAGES  # noqa: E402
from tests import _gui_helpers as helpers  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture()
def settings(tmp_path: Path) -> StudioSettings:
    return StudioSettings.at(tmp_path / "settings.ini")


@pytest.fixture()
def window(qtbot, settings, studio_cache):
    win = StudioWindow(settings)
    opened: list[QUrl] = []
    win.ctx.open_url = opened.append
    win.opened_urls = opened
    win.show()
    yield win
    close_window(win, qtbot)


def close_window(win, qtbot, timeout: int = 10000) -> None:
    """Stop every job, then close and delete the window. Not ``qtbot.addWidget``: pytest-qt
    deletes its widgets before fixtures end, and a window never closes under a running job."""
    for runner in win._runners():
        runner.cancel()
    qtbot.waitUntil(lambda: not any(runner.busy for runner in win._runners()), timeout=timeout)
    for box in (win.ctx.last_error, win.ctx.cancel_prompt):
        if box is not None:
            box.close()
    win.close()
    win.deleteLater()
    qtbot.wait(1)
    # The deleted window's Python side (pages in reference cycles, their pixmaps, settings) is
    # freed here, on the GUI thread, not by a collection on a later test's job thread.
    gc.collect()


@pytest.fixture()
def project_window(window, tmp_path):
    window.new_project(tmp_path / "anna.studio")
    return window


def with_finished_take(win, name: str):
    """The window's project with every stage up to Re-enact done and a finished take ``name``."""
    project = win.ctx.project
    for stage in ("capture", "prepare", "select", "personalize", "reenact"):
        project.mark_done(stage)
    helpers.make_take(project, name)
    win.ctx.force_refresh()
    return project


def wait_job(qtbot, win, timeout=20000):
    qtbot.waitUntil(lambda: not win.ctx.runner.busy, timeout=timeout)


def close_error(win) -> QMessageBox:
    box = win.ctx.last_error
    assert box is not None and box.isVisible()
    box.close()
    return box


# ----------------------------------------------------------------------------- pure helpers
def test_version_prints_without_a_window():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    out = subprocess.run([sys.executable, "-c", "import sys; from studio.app import main; sys.exit(main(['--version']))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    from studio import __version__
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"studio {__version__}"


def test_eta_estimator_uses_the_rate_of_the_current_phase():
    now = [0.0]
    eta = EtaEstimator(clock=lambda: now[0])
    assert eta.update(0, 100, "tuning") is None          # first report starts the phase
    now[0] = 10.0
    assert eta.update(10, 100, "tuning") == pytest.approx(90.0)   # 1 unit/s, 90 left
    now[0] = 12.0
    assert eta.update(0, 5, "inverting") is None         # new phase: unknown again
    now[0] = 14.0
    assert eta.update(1, 5, "inverting") == pytest.approx(8.0)
    assert format_eta(None).startswith("estimating")
    assert format_eta(75) == "about 1 min 15 s left"


def test_a_job_called_with_a_keyword_it_lacks_fails_loudly(project_window, qtbot):
    """The runner passes a page's keywords as they are: a renamed job parameter is a bug dialog
    (and ``use_fakes`` makes every page test check its calls against the real jobs)."""
    win = project_window
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()

    def renamed(project, video=None, size=1024, smoothing=2.0, progress=None, cancel=None):
        raise AssertionError("not reached: the page passes smooth=")
    win.ctx.jobs.prepare = renamed
    win.pages["prepare"].start()
    wait_job(qtbot, win)
    box = close_error(win)
    assert "TypeError" in box.text() and "smooth" in box.text()
    with pytest.raises(TypeError, match="smooth"):
        helpers.signature_checked(renamed, helpers.fake_prepare)(win.ctx.project, size=64, smooth=1.0)


def test_loss_log_parser_skips_partial_lines(tmp_path):
    helpers.write_training_outputs(tmp_path)
    with open(tmp_path / "log.csv", "a") as fh:
        fh.write("20,0.5")  # a row being written
    xs, curves = read_loss_log(tmp_path / "log.csv")
    assert len(xs) == 20 and set(curves) == {"loss", "lpips", "pixel"}
    assert curves["lpips"][0] > curves["lpips"][-1]
    assert read_loss_log(tmp_path / "missing.csv") == ([], {})


def test_settings_remember_recent_projects_folder_and_geometry(tmp_path, qtbot):
    s = StudioSettings.at(tmp_path / "s.ini")
    for i in range(12):
        s.add_recent_project(tmp_path / f"p{i}")
    s.add_recent_project(tmp_path / "p3")
    s.set_last_folder(tmp_path)
    s.set("select/count", 99)
    again = StudioSettings.at(tmp_path / "s.ini")
    recent = again.recent_projects()
    assert recent[0] == str(tmp_path / "p3") and len(recent) == 8 and len(set(recent)) == 8
    assert again.last_folder() == str(tmp_path)
    assert again.get("select/count") == 99
    assert again.get("reenact/smooth") is True   # default


# ----------------------------------------------------------------------------- window
def test_start_screen_new_and_recent_projects(window, tmp_path, qtbot, settings):
    assert window.stack.currentWidget() is window.start_screen
    project = window.new_project(tmp_path / "anna.studio")
    assert project is not None and (tmp_path / "anna.studio" / "project.json").is_file()
    assert window.stack.currentWidget() is window.project_view
    titles = [window.stage_list.item(i).text() for i in range(window.stage_list.count())]
    assert titles == ["1. Capture", "2. Prepare", "3. Select", "4. Personalize", "5. Re-enact",
                      "6. Edit & Stylize", "7. Export"]
    assert window.current_stage() == "capture"
    window.close_project()
    assert window.stack.currentWidget() is window.start_screen
    assert window.start_screen.recent.count() == 1
    item = window.start_screen.recent.item(0)
    window.start_screen.recent.itemActivated.emit(item)
    assert window.ctx.project is not None and window.ctx.project.root == project.root
    assert settings.recent_projects() == [str(project.root)]


def test_opening_a_non_project_shows_an_actionable_dialog(window, tmp_path):
    (tmp_path / "empty").mkdir()
    assert window.open_project(tmp_path / "empty") is None
    box = close_error(window)
    assert "No studio project" in box.text() and "File ▸ New project" in box.informativeText()
    assert "studio-cli" not in box.informativeText()   # the window phrases the step its own way
    assert window.stack.currentWidget() is window.start_screen


def test_buttons_follow_stage_state_including_stale(project_window, qtbot):
    win = project_window
    project, pages = win.ctx.project, win.pages
    assert not pages["prepare"].run_button.isEnabled()
    assert "Capture" in pages["prepare"].needs_label.text()
    assert not pages["select"].run_button.isEnabled()
    project.mark_done("capture")
    win.ctx.force_refresh()
    assert pages["prepare"].run_button.isEnabled()
    assert not pages["select"].run_button.isEnabled()
    project.mark_done("prepare")
    project.mark_done("select")
    win.ctx.force_refresh()
    assert pages["personalize"].start_button.isEnabled()
    assert not pages["reenact"].run_button.isEnabled()
    # A new capture makes everything after it stale: Select (needs Prepare) is blocked again.
    project.mark_done("capture")
    win.ctx.force_refresh()
    assert win.ctx.statuses["prepare"] == "stale" and win.ctx.statuses["select"] == "stale"
    assert not pages["select"].run_button.isEnabled()
    assert "redone" in pages["select"].needs_label.text()
    assert "out of date" in pages["prepare"].status_label.text()
    assert "stale" in win.stage_list.item(2).toolTip()


def test_prepare_job_updates_progress_grid_and_project(project_window, qtbot):
    win = project_window
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()
    helpers.use_fakes(win, prepare=helpers.fake_prepare)
    seen: list[tuple[int, int]] = []
    win.ctx.runner.progressed.connect(lambda d, t, m, e: seen.append((d, t)))
    page = win.pages["prepare"]
    win.go_to_stage("prepare")
    qtbot.mouseClick(page.run_button, Qt.MouseButton.LeftButton)
    assert win.ctx.runner.busy and win.job_panel.isVisible()
    assert not page.run_button.isEnabled()        # no second start while running
    wait_job(qtbot, win)
    assert seen and seen[-1] == (12, 12)
    assert win.ctx.statuses["prepare"] == "done"
    assert not win.job_panel.isVisible()
    assert len(page.grid.paths) == 12 and page.grid.flags == {3: ["blurry"]}
    assert "12 face pictures" in page.summary_label.text()
    assert "11 of 12 can be used for training; problems: 1 blurry." in page.summary_label.text()
    assert page.run_button.isEnabled() and page.run_button.text() == "Prepare again"


def test_cancel_stops_the_job_and_keeps_the_project_consistent(project_window, qtbot):
    win = project_window
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()
    helpers.use_fakes(win, prepare=helpers.slow_job)
    win.pages["prepare"].start()
    qtbot.waitUntil(lambda: win.job_panel.bar.maximum() == 400, timeout=5000)
    assert win.ctx.statuses["prepare"] == "running"
    assert "Prepare" in win.stage_list.item(1).toolTip() and "running" in win.stage_list.item(1).toolTip()
    with qtbot.waitSignal(win.ctx.runner.cancelled, timeout=5000):
        qtbot.mouseClick(win.job_panel.cancel_button, Qt.MouseButton.LeftButton)
    assert win.ctx.statuses["prepare"] == "not done"
    assert "continue from its last saved point" in win.statusBar().currentMessage()
    assert win.ctx.last_error is None                  # cancelling is not an error
    assert win.pages["prepare"].run_button.isEnabled()


def test_errors_become_dialogs_with_details(project_window, qtbot):
    win = project_window
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()

    def bad_video(project, progress=None, cancel=None, **_):
        raise MediaError("No face was found in any frame of the video.",
                         "Record again facing the camera in good light.")
    helpers.use_fakes(win, prepare=bad_video)
    win.pages["prepare"].start()
    wait_job(qtbot, win)
    box = close_error(win)
    assert box.text() == "No face was found in any frame of the video."
    assert "good light" in box.informativeText()
    assert "bad_video" in box.detailedText()             # traceback one click away

    def bug(project, progress=None, cancel=None, **_):
        raise ZeroDivisionError("division by zero")
    helpers.use_fakes(win, prepare=bug)
    win.pages["prepare"].start()
    wait_job(qtbot, win)
    box = close_error(win)
    assert "ZeroDivisionError" in box.text() and "bug" in box.informativeText()
    assert "Traceback" in box.detailedText()


def test_status_bar_shows_device_and_the_personal_weights_only(project_window):
    window = project_window
    assert "CPU" in window.device_label.text() and "slow" in window.device_label.text()
    assert window.weights_button.text() == "Weights: ffhq ✘ · lpips-alex ✘"
    window.go_to_stage("edit")                         # stylizing needs CLIP too
    assert window.weights_button.text() == "Weights: ffhq ✘ · lpips-alex ✘ · clip-vit-b32 ✘"
    assert "one-shot" in window.weights_button.toolTip()


def tree_rows(dialog) -> dict[str, list[str]]:
    """Mode title -> the registry names listed under it."""
    tree = dialog.tree
    return {tree.topLevelItem(i).text(0): [tree.topLevelItem(i).child(j).text(0)
                                           for j in range(tree.topLevelItem(i).childCount())]
            for i in range(tree.topLevelItemCount())}


def test_models_dialog_import_rejects_a_wrong_file_and_fetch_reports_progress(window, qtbot, tmp_path):
    dialog = window.show_models("lpips-alex")
    rows = tree_rows(dialog)
    personal = next(names for title, names in rows.items() if title.startswith("Your personal"))
    assert {"ffhq", "lpips-alex"} <= set(personal)
    assert any("clip-vit-b32" in names for names in rows.values())
    assert dialog.selected_name() == "lpips-alex"
    wrong = tmp_path / "not-alexnet.pth"
    wrong.write_bytes(b"\0" * 1000)
    dialog.import_selected(str(wrong))
    qtbot.waitUntil(lambda: not dialog.runner.busy, timeout=10000)
    box = dialog.last_error
    assert box is not None and "nothing was installed" in box.text()
    text = box.text() + box.informativeText()
    assert "studio-cli" not in text and "Tools ▸ Models" not in text    # inside the Models window
    assert not [b for b in box.buttons() if b.text() == "Open Models…"]
    box.close()

    def fake_fetch(name, progress=None, cancel=None):
        for i in range(1, 6):
            progress(i * 100, 500, "downloading")
    helpers.use_fakes(window, fetch_weights=fake_fetch)
    with qtbot.waitSignal(dialog.weights_changed, timeout=10000):
        dialog.fetch_selected()
    assert "done" in dialog.state_label.text() and not dialog.progress.isVisible()
    dialog.reject()


def test_settings_dialog_saves_device_and_defaults(window, settings):
    dialog = window.show_settings()
    dialog.device_box.setCurrentIndex(dialog.device_box.findData("cpu"))
    dialog.count_spin.setValue(120)
    dialog.accept()
    assert settings.get("device") == "cpu" and settings.get("select/count") == 120


def test_shortcuts_exist_for_main_actions(window):
    shortcuts = {a.shortcut().toString() for a in window.findChildren(QAction) if not a.shortcut().isEmpty()}
    assert {"Ctrl+N", "Ctrl+O", "Ctrl+R", "Ctrl+M", "Ctrl+1", "Ctrl+7", "Ctrl+Right"} <= shortcuts
    assert "Esc" not in shortcuts   # Esc belongs to text boxes and dialogs, never to the job


def start_slow_prepare(win, qtbot):
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()
    helpers.use_fakes(win, prepare=functools.partial(helpers.slow_job, steps=100000, delay=0.01))
    win.pages["prepare"].start()
    qtbot.waitUntil(lambda: win.job_panel.bar.maximum() == 100000, timeout=5000)


def test_esc_anywhere_leaves_the_job_running(project_window, qtbot):
    """Issue 17: Esc cancelled the running job from anywhere, even while typing in a text box."""
    win = project_window
    win.activateWindow()
    start_slow_prepare(win, qtbot)
    win.go_to_stage("reenact")
    box = win.pages["reenact"].name_edit
    box.setFocus()
    qtbot.keyClicks(box, "my take")
    qtbot.keyClick(box, Qt.Key.Key_Escape)
    qtbot.keyClick(win, Qt.Key.Key_Escape)
    qtbot.wait(100)
    assert win.ctx.runner.busy and not win.ctx.runner.cancel_requested
    assert box.text() == "my take"


def test_stopping_a_job_that_ran_a_while_asks_first(project_window, qtbot, monkeypatch):
    import studio.gui.context as context

    win = project_window
    start_slow_prepare(win, qtbot)
    monkeypatch.setattr(context, "CONFIRM_CANCEL_AFTER_S", 0.2)
    qtbot.waitUntil(lambda: win.ctx.runner.elapsed > 0.2, timeout=5000)
    qtbot.mouseClick(win.job_panel.cancel_button, Qt.MouseButton.LeftButton)
    prompt = win.ctx.cancel_prompt
    assert prompt is not None and prompt.isVisible() and "It has run for" in prompt.text()
    keep = next(b for b in prompt.buttons() if b.text() == "Keep it running")
    assert prompt.defaultButton() is keep and prompt.escapeButton() is keep
    qtbot.mouseClick(keep, Qt.MouseButton.LeftButton)
    qtbot.wait(100)
    assert win.ctx.runner.busy and not win.ctx.runner.cancel_requested
    win.close()                                   # quitting asks the same question
    prompt = win.ctx.cancel_prompt
    assert prompt is not None and win.isVisible() and win.ctx.runner.busy
    with qtbot.waitSignal(win.ctx.runner.cancelled, timeout=5000):
        qtbot.mouseClick(next(b for b in prompt.buttons() if b.text() == "Stop the job"),
                         Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=5000)
    assert win.ctx.statuses["prepare"] == "not done"


def test_a_job_stopped_in_its_first_seconds_stops_at_once(project_window, qtbot):
    win = project_window
    start_slow_prepare(win, qtbot)
    with qtbot.waitSignal(win.ctx.runner.cancelled, timeout=5000):
        qtbot.mouseClick(win.job_panel.cancel_button, Qt.MouseButton.LeftButton)
    assert win.ctx.cancel_prompt is None
    assert "stopped" in win.statusBar().currentMessage()


# ----------------------------------------------------------------------------- pages
def test_capture_page_uses_a_dropped_real_video_and_trims_it(project_window, qtbot):
    win = project_window
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(helpers.SELFSCAN))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    win.dropEvent(event)
    page = win.pages["capture"]
    assert page.video_path == str(helpers.SELFSCAN)
    assert page.trim_out.value() == pytest.approx(11.8, abs=0.1) and "512×512" in page.file_label.text()
    assert not page.webcam.record_button.isEnabled()   # no camera here: recording degrades
    page.trim_in.setValue(2.0)
    page.trim_out.setValue(3.0)
    qtbot.mouseClick(page.use_button, Qt.MouseButton.LeftButton)
    wait_job(qtbot, win, 60000)
    assert win.ctx.last_error is None and win.ctx.statuses["capture"] == "done"
    project = win.ctx.project
    record = project.scan_record
    assert record["original"] == str(helpers.SELFSCAN.resolve()) and record["trim"] == [2.0, 3.0]
    from personalize.video import probe_video
    video = project.scan_source()
    assert video == project.root / record["copy"] and probe_video(video).n_frames == 30
    assert win.pages["prepare"].run_button.isEnabled()


def test_choosing_the_same_video_again_keeps_later_stages(project_window, qtbot):
    """The capture job compares the file's fingerprint and part: the same choice changes nothing
    (before, every 'Use this video' marked Capture done again and made everything after it stale)."""
    win = project_window
    project, page = win.ctx.project, win.pages["capture"]
    page.load_video(str(helpers.DRIVING))
    page.use_video()
    wait_job(qtbot, win, 60000)
    for stage in ("prepare", "select"):
        project.mark_done(stage)
    win.ctx.force_refresh()
    fingerprint = project.fingerprint("capture")
    page.reset()                                 # what reopening the project shows
    page.reload()
    assert page.video_path == str(helpers.DRIVING.resolve())
    page.use_video()
    wait_job(qtbot, win, 60000)
    assert win.ctx.project.fingerprint("capture") == fingerprint
    assert win.ctx.statuses["prepare"] == "done" and win.ctx.statuses["select"] == "done"
    page.trim_in.setValue(1.0)                   # another part of it is another self-scan
    page.use_video()
    wait_job(qtbot, win, 60000)
    assert win.ctx.statuses["prepare"] == "stale" and win.ctx.project.scan_record["trim"][0] == 1.0


def test_webcam_panel_previews_measures_and_records_a_live_source(project_window, qtbot):
    """Everything after the camera, for real: frames of a real self-scan pushed through a
    QVideoFrameInput (where a QCamera would be) reach the preview with MediaPipe's landmarks and
    the coverage meter, and Qt's recorder writes a video the page then offers to use."""
    from PySide6.QtGui import QImage
    from PySide6.QtMultimedia import QVideoFrame, QVideoFrameInput

    from personalize.video import iter_frames, probe_video

    win = project_window
    page = win.pages["capture"]
    panel = page.webcam
    assert not panel.record_button.isEnabled()
    source = QVideoFrameInput()
    panel.start_frame_source(source)
    assert panel.record_button.isEnabled()
    panel.target_seconds, panel.countdown_seconds = 1.5, 0.25
    recorded: list[str] = []
    panel.recorded.connect(recorded.append)
    frames = [f.copy() for _i, f in zip(range(300), iter_frames(helpers.SELFSCAN))][::6]  # 50 frames, 10 s

    def push(index: int) -> None:
        rgb = frames[index % len(frames)]
        image = QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888)
        source.sendVideoFrame(QVideoFrame(image.copy()))
        qtbot.wait(40)

    for i in range(10):
        push(i)
    qtbot.waitUntil(lambda: panel._lm is not None, timeout=20000)   # landmarks found off the UI thread
    assert panel._lm.shape == (478, 3) and not panel.preview.pixmap().isNull()
    assert panel.coverage.fraction_covered() == 0                    # not recording yet: no coverage
    qtbot.mouseClick(panel.record_button, Qt.MouseButton.LeftButton)
    assert panel.record_button.text().startswith("■")
    i = 10
    while not recorded and i < 400:
        push(i)
        i += 1
    qtbot.waitUntil(lambda: bool(recorded), timeout=20000)
    video = Path(recorded[0])
    assert video.parent == win.ctx.project.root / "capture" and video.is_file()
    info = probe_video(video)
    assert info.n_frames >= 10 and (info.width, info.height) == (512, 512)
    assert panel.coverage.fraction_covered() > 0                     # poses seen while recording
    assert page.video_path == str(video) and page.use_button.isEnabled()
    panel.stop_camera()
    assert not panel.record_button.isEnabled()


def test_select_page_highlights_selection_and_shows_coverage(project_window, qtbot):
    win = project_window
    project = win.ctx.project
    project.mark_done("capture")
    helpers.fake_prepare(project, progress=lambda *a: None, cancel=__import__("personalize.progress").progress.NEVER_CANCELLED)
    win.ctx.force_refresh()
    helpers.use_fakes(win, select=helpers.fake_select)
    page = win.pages["select"]
    page.count_spin.setValue(4)
    page.start()
    wait_job(qtbot, win)
    assert page.grid.selected == {0, 3, 6, 9}
    assert "4 of 12 frames selected" in page.summary_label.text()
    assert win.ctx.settings.get("select/count") == 4


def test_personalize_page_plots_the_log_and_shows_the_preview(project_window, qtbot):
    win = project_window
    project = win.ctx.project
    for stage in ("capture", "prepare", "select"):
        project.mark_done(stage)
    win.ctx.force_refresh()
    helpers.use_fakes(win, personalize=helpers.fake_personalize)
    page = win.pages["personalize"]
    assert page.start_button.isEnabled() and page.base_box.currentData() == "ffhq"
    page.start()
    wait_job(qtbot, win)
    assert win.ctx.statuses["personalize"] == "done"
    assert len(page.plot.xs) == 20 and "lpips" in page.plot.curves
    assert page.preview.pixmap() is not None and not page.preview.pixmap().isNull()
    assert page.start_button.text() == "Train again"


def test_reenact_page_runs_a_take_and_plays_it_side_by_side(project_window, qtbot):
    win = project_window
    project = win.ctx.project
    for stage in ("capture", "prepare", "select", "personalize"):
        project.mark_done(stage)
    win.ctx.force_refresh()
    helpers.use_fakes(win, reenact=helpers.fake_reenact, render=helpers.fake_render)
    page = win.pages["reenact"]
    assert not page.run_button.isEnabled()              # no driving video yet
    page.set_driving(str(helpers.DRIVING))
    assert page.name_edit.text() == "driving_man_smile_wink_3s" and page.run_button.isEnabled()
    page.start()
    wait_job(qtbot, win)                                 # re-enact, then the preview render
    qtbot.waitUntil(lambda: (project.take_dir("driving_man_smile_wink_3s") / "preview.mp4").is_file())
    wait_job(qtbot, win)
    assert page.takes.count() == 1 and page.takes.currentItem().text() == "driving_man_smile_wink_3s"
    assert page.player.n_frames == 78
    page.player.slider.setValue(40)
    assert page.player.position.text() == "41 / 78"
    assert page.player.right_screen.pixmap() is not None
    options = project.take_dir("driving_man_smile_wink_3s") / "preview.mp4.options.json"
    qtbot.waitUntil(options.is_file)
    assert json.loads(options.read_text())["mark_export"] is False
    assert win.ctx.statuses["export"] != "done"  # a preview is not an export


def test_edit_sliders_feed_export_which_opens_the_folder(project_window, qtbot, tmp_path):
    win = project_window
    project = with_finished_take(win, "speech")
    helpers.use_fakes(win, import_direction=helpers.fake_import_direction, render=helpers.fake_render)
    edit = win.pages["edit"]
    win.go_to_stage("edit")
    assert edit.run_import(str(tmp_path / "smile.pt"), "smile")
    wait_job(qtbot, win)
    assert list(edit.sliders) == ["smile"]
    edit.sliders["smile"].slider.setValue(150)
    assert win.ctx.edits == {"smile": 1.5}
    export = win.pages["export"]
    win.go_to_stage("export")
    assert export.take_box.currentText() == "speech" and "smile +1.50" in export.edits_label.text()
    export.format_box.setCurrentIndex(export.format_box.findData("gif"))
    assert export.out_edit.text().endswith("speech_export.gif")
    assert export.resolution_box.isEnabled()
    export.resolution_box.setCurrentIndex(export.resolution_box.findData(720))
    qtbot.mouseClick(export.export_button, Qt.MouseButton.LeftButton)
    wait_job(qtbot, win)
    out = project.root / "exports" / "speech_export.gif"
    options = json.loads((out.parent / (out.name + ".options.json")).read_text())
    assert out.is_file() and options["edits"] == {"smile": 1.5} and options["mark_export"] is True
    assert options["paste_back"] is True and options["side_by_side"] is False and options["height"] == 720
    assert win.opened_urls and win.opened_urls[-1].toLocalFile() == str(out.parent)
    assert win.ctx.statuses["export"] == "done"
    # marked once, by the render job: the page did not write its own (stale) copy over it
    from studio.project import Project
    assert Project.open(project.root).stage_info("export") == {"take": "speech", "out": str(out), "kind": "gif"}


def test_edit_page_learns_stylizes_and_previews_with_the_real_jobs_keywords(project_window, qtbot):
    import numpy as np

    win = project_window
    project = with_finished_take(win, "speech")
    calls = []

    def fake_learn(project, attribute, progress=None, cancel=None, **options):
        calls.append(("learn", attribute, options))

    def fake_stylize(project, prompt, name, progress=None, cancel=None, **options):
        calls.append(("stylize", prompt, name, options))
        project.style_dir(name).mkdir(parents=True)
        (project.style_dir(name) / "generator.safetensors").write_bytes(b"")
        (project.style_dir(name) / "style.json").write_text("{}")

    def fake_preview(project, take, frame=0, progress=None, cancel=None, **options):
        calls.append(("preview", take, frame, options))
        return np.full((16, 16, 3), 200, np.uint8)

    helpers.use_fakes(win, learn_direction=fake_learn, stylize=fake_stylize, preview_frame=fake_preview)
    edit = win.pages["edit"]
    win.go_to_stage("edit")
    edit.attr_box.setCurrentText("age")
    edit.learn_direction()
    wait_job(qtbot, win)
    edit.prompt_edit.setText("a pencil sketch")
    edit.iters_spin.setValue(40)
    edit.create_style()
    wait_job(qtbot, win)
    assert win.ctx.last_error is None
    assert calls[0] == ("learn", "age", {"device": "cpu"})
    assert calls[1] == ("stylize", "a pencil sketch", "a_pencil_sketch", {"iterations": 40, "device": "cpu"})
    assert [edit.styles.item(i).text() for i in range(edit.styles.count())][1:] == ["a_pencil_sketch"]
    edit.update_preview()
    qtbot.waitUntil(lambda: edit.preview.source is not None, timeout=10000)
    assert calls[-1][:3] == ("preview", "speech", 0)


def test_every_stage_page_survives_small_and_large_windows(project_window, qtbot):
    win = project_window
    for size in ((800, 560), (1600, 1000)):
        win.resize(*size)
        for stage in STAGES:
            win.go_to_stage(stage)
            qtbot.wait(5)
            assert win.pages[stage].isVisible()
            assert win.pages[stage].width() > 300


def test_live_coverage_reads_head_turns_and_expressions_from_real_frames(qtbot):
    import cv2

    from personalize.faces import detect_landmarks
    from studio.gui.live_coverage import read_landmarks
    from studio.gui.widgets.coverage_meter import CoverageMeter

    cap = cv2.VideoCapture(str(helpers.SELFSCAN))
    readings = {}
    for index in (0, 280, 320):            # frontal, turned (yaw ~ +20 deg), mouth open
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
        assert ok
        landmarks = detect_landmarks(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        assert landmarks is not None
        readings[index] = read_landmarks(landmarks)
    assert abs(readings[0].yaw) < 8 and readings[280].yaw > 12
    assert readings[320].mouth_open > 0.4 > readings[0].mouth_open
    meter = CoverageMeter()
    qtbot.addWidget(meter)
    for r in readings.values():
        meter.add_pose(r.yaw, r.pitch)
    assert meter.cell_of(readings[0].yaw, readings[0].pitch) != meter.cell_of(readings[280].yaw, readings[280].pitch)
    assert 0 < meter.fraction_covered() < 1


def test_unfinished_take_is_offered_for_resume(project_window):
    win = project_window
    project = win.ctx.project
    for stage in ("capture", "prepare", "select", "personalize"):
        project.mark_done(stage)
    helpers.make_take(project, "half", result=False, complete=False)
    win.ctx.force_refresh()
    page = win.pages["reenact"]
    page.load_takes()
    page.takes.setCurrentRow(0)
    assert page.run_button.text() == "Resume take" and page.name_edit.text() == "half"
    assert page.run_button.isEnabled() and not page.render_button.isEnabled()


def test_settings_cache_folder_reaches_the_weights_manager(window, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_CACHE_DIR", str(tmp_path / "elsewhere"))
    dialog = window.show_settings()
    dialog.cache_edit.setText(str(tmp_path / "my-weights"))
    dialog.accept()
    from studio.weights import weights_path
    assert weights_path("ffhq").parent == tmp_path / "my-weights"


def test_window_geometry_is_remembered_and_a_dropped_project_folder_opens(qtbot, settings, tmp_path, studio_cache):
    from studio.project import Project

    first = StudioWindow(settings)
    first.show()
    first.resize(740, 520)
    qtbot.wait(20)
    close_window(first, qtbot)
    second = StudioWindow(settings)
    assert (second.width(), second.height()) == (740, 520)
    project = Project.create(tmp_path / "dropped.studio")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(project.root))])
    second.dropEvent(QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))
    assert second.ctx.project is not None and second.ctx.project.root == project.root
    close_window(second, qtbot)


# ----------------------------------------------------------------------------- issue 17
def filled_project(win, qtbot, tmp_path):
    """The window's project with prepared frames, a selection, a training log, a finished take,
    a direction with a slider moved, and every page showing them."""
    from personalize.progress import NEVER_CANCELLED

    project = win.ctx.project
    helpers.use_fakes(win, capture=lambda project, video, start=0.0, end=None, progress=None, cancel=None:
                      project.mark_done("capture"))
    win.pages["capture"].load_video(str(helpers.SELFSCAN))
    helpers.fake_prepare(project, progress=lambda *a: None, cancel=NEVER_CANCELLED)
    helpers.fake_select(project, progress=lambda *a: None, cancel=NEVER_CANCELLED)
    helpers.write_training_outputs(project.model_dir)
    with_finished_take(win, "speech")
    helpers.fake_import_direction(project, tmp_path / "smile.npy", "smile")
    win.ctx.force_refresh()
    win.pages["edit"].sliders["smile"].slider.setValue(120)
    win.pages["reenact"].set_driving(str(helpers.DRIVING))
    for stage in STAGES:
        win.go_to_stage(stage)
        qtbot.wait(5)
    return project


def test_a_new_project_shows_nothing_of_the_previous_one(project_window, qtbot, tmp_path):
    """Issue 17: after File ▸ New, Capture showed (and 'Use this video' applied) the previous
    project's video, Select its coverage grid, Re-enact its driving file and take name."""
    win = project_window
    filled_project(win, qtbot, tmp_path)
    pages = win.pages
    assert pages["capture"].video_path and len(pages["select"].grid.paths) == 12
    assert pages["reenact"].driving and pages["reenact"].name_edit.text() and win.ctx.edits
    assert pages["personalize"].plot.xs and pages["export"].take_box.count() == 1

    win.new_project(tmp_path / "ben.studio")
    capture = pages["capture"]
    assert capture.video_path is None and capture.file_label.text() == "No video chosen yet."
    assert not capture.use_button.isEnabled() and not capture.trim_out.isEnabled()
    assert capture.in_use_image.source is None
    assert pages["prepare"].grid.count() == 0 and pages["prepare"].summary_label.text() == "Nothing prepared yet."
    select = pages["select"]
    assert select.grid.count() == 0 and select.coverage.reference is None
    assert select.coverage.fraction_covered() == 0 and "selected" not in select.summary_label.text()
    assert pages["personalize"].plot.xs == [] and pages["personalize"].preview.source is None
    reenact = pages["reenact"]
    assert reenact.driving is None and reenact.name_edit.text() == "" and reenact.takes.count() == 0
    assert reenact.player.n_frames == 0 and reenact.drop.label.text() == reenact.drop.prompt
    edit = pages["edit"]
    assert edit.sliders == {} and edit.take_box.count() == 0 and win.ctx.edits == {}
    assert pages["export"].take_box.count() == 0 and pages["export"].edits_label.text() == "none"


def test_select_shows_the_new_frames_when_prepare_finishes(project_window, qtbot):
    win = project_window
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()
    select = win.pages["select"]
    assert select.grid.count() == 0
    helpers.use_fakes(win, prepare=helpers.fake_prepare)
    win.pages["prepare"].start()
    wait_job(qtbot, win)
    assert select.grid.count() == 12
    assert select.summary_label.text() == "No frames selected yet."


def test_reloading_directions_opens_no_stray_window(project_window, qtbot, tmp_path):
    """Issue 17: a copy of the smile slider opened as its own 360×22 window after 'Learn a
    direction' (the rows were detached with setParent(None) while their queued show was pending)."""
    from PySide6.QtWidgets import QApplication

    win = project_window
    project = with_finished_take(win, "speech")
    edit = win.pages["edit"]
    win.go_to_stage("edit")
    qtbot.wait(10)
    helpers.fake_import_direction(project, tmp_path / "smile.npy", "smile")
    edit.load_directions()      # e.g. the job's on_success, then a status refresh
    edit.load_directions()
    qtbot.wait(50)
    strays = [w for w in QApplication.topLevelWidgets() if w.isVisible() and w is not win]
    assert strays == []
    assert list(edit.sliders) == ["smile"] and edit.sliders["smile"].isVisible()
    assert edit.sliders["smile"].window() is win


def test_reenact_refuses_a_text_file_named_mp4_and_previews_a_real_one(project_window, tmp_path):
    win = project_window
    for stage in ("capture", "prepare", "select", "personalize"):
        win.ctx.project.mark_done(stage)
    win.ctx.force_refresh()
    page = win.pages["reenact"]
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are my notes, not a video\n" * 20)
    assert page.set_driving(str(fake)) is False
    box = close_error(win)
    assert "not a readable video" in box.text()
    assert page.driving is None and not page.run_button.isEnabled()
    assert page.set_driving(str(helpers.DRIVING))          # a real video previews at once
    assert page.player.sources[0] is not None and page.player.sources[0].n_frames == 78
    assert page.player.left_screen.pixmap() is not None and not page.player.left_screen.pixmap().isNull()
    assert "driving_man_smile_wink_3s.mp4" in page.drop.label.text()


def test_takes_can_be_renamed_and_deleted_and_keep_their_original_name(project_window, qtbot):
    win = project_window
    project = win.ctx.project
    for stage in ("capture", "prepare", "select", "personalize"):
        project.mark_done(stage)
    helpers.make_take(project, "failed", result=False, complete=False)
    helpers.make_take(project, "good")
    win.ctx.force_refresh()
    page = win.pages["reenact"]
    win.go_to_stage("reenact")
    names = [page.takes.item(i).data(Qt.ItemDataRole.UserRole) for i in range(page.takes.count())]
    assert names == ["failed", "good"] and "not finished" in page.takes.item(0).text()
    page.takes.setCurrentRow(0)
    assert page.run_button.text() == "Resume take"
    assert "driving.mp4" not in page.drop.label.text() and "take 'failed'" in page.drop.label.text()
    assert page.rename_take("failed", "good") is None      # taken: a dialog, nothing renamed
    close_error(win)
    assert page.rename_take("failed", "second try") == "second try"
    assert project.takes() == ["good", "second try"] and page.selected_take() == "second try"
    box = page.ask_delete()
    assert "second try" in box.text()
    qtbot.mouseClick(next(b for b in box.buttons() if b.text() == "Delete"), Qt.MouseButton.LeftButton)
    assert project.takes() == ["good"] and page.takes.count() == 1
    assert page.driving is None and not page.run_button.isEnabled()


def test_render_preview_shows_its_progress_in_the_player(project_window, qtbot):
    import time as _time

    win = project_window
    project = with_finished_take(win, "speech")
    project.preview_path("speech").unlink()
    seen = []

    def slow_render(project, take, out, progress=None, cancel=None, **options):
        for i in range(1, 4):
            progress(i, 3, "rendering")
            seen.append(win.pages["reenact"].player.right_screen.text())
            _time.sleep(0.1)
        return helpers.fake_render(project, take, out, progress=progress, cancel=cancel, **options)
    helpers.use_fakes(win, render=slow_render)
    page = win.pages["reenact"]
    page.load_takes(select="speech")
    page.render_preview()
    qtbot.waitUntil(lambda: "frames" in page.player.right_screen.text(), timeout=5000)
    assert page.player.right_screen.text().startswith("Rendering the preview")
    wait_job(qtbot, win)
    assert page.player.right_screen.pixmap() is not None and not page.player.right_screen.pixmap().isNull()


def test_capture_says_when_the_loaded_file_is_not_the_one_in_use(project_window, qtbot):
    win = project_window
    page = win.pages["capture"]
    page.load_video(str(helpers.DRIVING))
    assert page.pending_label.isVisible() and "Not used yet" in page.pending_label.text()
    page.use_video()
    wait_job(qtbot, win, 60000)
    assert not page.pending_label.isVisible()
    assert page.in_use_image.source is not None and "driving_man_smile_wink_3s.mp4" in page.in_use_label.text()
    page.load_video(str(helpers.SELFSCAN))                 # another file: not used until 'Use'
    assert page.pending_label.isVisible() and "not the self-scan yet" in page.pending_label.text()
    page.load_video(str(helpers.DRIVING))
    assert not page.pending_label.isVisible()
    page.trim_in.setValue(1.0)                             # another part of it
    assert page.pending_label.isVisible()


def test_export_says_when_the_folder_cannot_be_opened(project_window, qtbot):
    win = project_window
    with_finished_take(win, "speech")
    win.ctx.open_url = lambda url: False                   # no file manager on this desktop
    helpers.use_fakes(win, render=helpers.fake_render)
    export = win.pages["export"]
    win.go_to_stage("export")
    export.start()
    wait_job(qtbot, win)
    assert "could not be opened" in export.result_label.text()
    assert "no file manager" in win.statusBar().currentMessage()


def test_missing_weights_dialog_speaks_window_words_and_opens_models(project_window, qtbot):
    """Issue 17: missing-weights dialogs pointed to CLI commands and started in lower case."""
    from studio.weights import require_weights

    win = project_window
    with pytest.raises(Exception) as caught:
        require_weights("ffhq")
    box = win.ctx.error("Personalize", caught.value)
    text, info = box.text(), box.informativeText()
    assert text.startswith("Missing pretrained weights 'ffhq'")
    assert "studio-cli" not in text + info
    assert "Download button in Tools ▸ Models…" in info and "Import from file…" in info
    button = next(b for b in box.buttons() if b.text() == "Open Models…")
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert not box.isVisible()
    assert win.models_dialog.isVisible() and win.models_dialog.selected_name() == "ffhq"
    win.models_dialog.reject()


def test_downloads_with_a_licence_note_ask_first_and_never_fail_for_it(window, qtbot):
    from studio.weights import LicenceNotAcceptedError, licence_accepted, licence_note

    fetched = []

    def fake_fetch(name, progress=None, cancel=None):
        fetched.append(name)
        progress(1, 1, "downloading")
    helpers.use_fakes(window, fetch_weights=fake_fetch)
    dialog = window.show_models("hyperreenact-net")
    assert dialog.tree.currentItem().text(2) == "⚖ research only"
    prompt = dialog.fetch_selected()
    assert prompt is dialog.licence_prompt and licence_note("hyperreenact-net") in prompt.informativeText()
    qtbot.mouseClick(prompt.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert fetched == [] and not licence_accepted("hyperreenact-net")
    prompt = dialog.fetch_selected()
    with qtbot.waitSignal(dialog.weights_changed, timeout=10000):
        qtbot.mouseClick(next(b for b in prompt.buttons() if b.text() == "Accept and download"),
                         Qt.MouseButton.LeftButton)
    assert fetched == ["hyperreenact-net"] and licence_accepted("hyperreenact-net")

    def refusing_fetch(name, progress=None, cancel=None):   # e.g. a note changed meanwhile
        raise LicenceNotAcceptedError([name], licence_note(name))
    helpers.use_fakes(window, fetch_weights=refusing_fetch)
    dialog.select("deca")
    from studio.weights import accept_licence
    accept_licence("deca")
    dialog.fetch_selected()
    qtbot.waitUntil(lambda: not dialog.runner.busy, timeout=10000)
    assert dialog.last_error is None and dialog.licence_prompt is not None   # asked, not an error
    dialog.licence_prompt.close()
    dialog.reject()


def test_a_mode_downloads_its_missing_files_and_import_only_files_say_where_to_get_them(window, qtbot):
    from studio.weights import accept_licence, files_for

    fetched = []
    helpers.use_fakes(window, fetch_weights=lambda name, progress=None, cancel=None: fetched.append(name))
    dialog = window.show_models()
    tree = dialog.tree
    group = next(tree.topLevelItem(i) for i in range(tree.topLevelItemCount())
                 if tree.topLevelItem(i).text(0).startswith("DiffusionAct"))
    tree.setCurrentItem(group)
    assert dialog.fetch_button.text() == "Download missing files" and not dialog.import_button.isEnabled()
    accept_licence(*files_for("diffusionact"))
    dialog.fetch_selected()
    qtbot.waitUntil(lambda: not dialog.runner.busy and not dialog._queue, timeout=10000)
    assert fetched == [n for n in files_for("diffusionact") if n != "flame"]   # FLAME: import only
    dialog.select("flame")
    assert not dialog.fetch_button.isEnabled() and dialog.import_button.isEnabled()
    assert "import only" in tree.currentItem().text(1)
    assert "https://flame.is.tue.mpg.de" in dialog.path_label.text()
    assert "studio-cli" not in dialog.path_label.text() and "Import from file…" in dialog.path_label.text()
    dialog.reject()


def test_the_job_strip_names_the_phase_and_counts_its_units(project_window, qtbot):
    win = project_window
    win.ctx.project.mark_done("capture")
    win.ctx.force_refresh()
    reports = [(30, 75, "finding landmarks (pass 1 of 2)"), (75, 75, "finding landmarks (pass 1 of 2)"),
               (10, 75, "writing crops (pass 2 of 2)"), (161, 16000, "inverting: frames 1-8 loss 0.312")]
    shown = []

    def phased(project, progress=None, cancel=None, **_):
        for done, total, message in reports:
            progress(done, total, message)
            import time as _time
            _time.sleep(0.15)
    helpers.use_fakes(win, prepare=phased)
    panel = win.job_panel
    win.ctx.runner.progressed.connect(lambda *_: shown.append(
        (panel.phase.text(), panel.bar.format(), panel.message.text())))
    win.pages["prepare"].start()
    wait_job(qtbot, win)
    assert shown == [("— finding landmarks (pass 1 of 2)", "30 / 75", ""),
                     ("— finding landmarks (pass 1 of 2)", "75 / 75", ""),
                     ("— writing crops (pass 2 of 2)", "10 / 75", ""),
                     ("— inverting", "161 / 16000", "frames 1-8 loss 0.312")]


def test_the_loss_chart_uses_a_log_axis_and_keeps_its_legend_off_the_curves(qtbot, tmp_path):
    from studio.gui.widgets.loss_plot import LossPlot

    helpers.write_training_outputs(tmp_path, steps=40)
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(420, 220)
    plot.load(tmp_path / "log.csv")
    assert plot.uses_log_axis()                       # loss ~1 and pixel ~0.01 both readable
    assert not plot.legend_area().intersects(plot.plot_area())
    plot.show()
    assert not plot.grab().isNull()
    plot.set_data([0, 1, 2], {"delta": [-1.0, 0.0, 1.0]})
    assert not plot.uses_log_axis()


def test_every_weights_message_is_phrased_without_commands():
    """The weights manager writes for the terminal too; every hint it can give, for every file,
    reads as the Models window's buttons (and inside the window, never points to it)."""
    from pathlib import Path as _Path

    from studio.gui.error_dialog import window_words
    from studio.weights import REGISTRY
    from studio.weights.download import _drive_refused, _interrupted, _source_of, _unreachable
    from studio.weights.licences import LicenceNotAcceptedError
    from studio.weights.store import how_to_get, manual_download_hint

    class Quota:
        kind, reason = "quota", "the download quota is exceeded"

    for entry in REGISTRY.values():
        source = _source_of(entry, None)
        texts = [how_to_get(entry, _Path("/cache") / entry.filename), manual_download_hint(entry),
                 entry.manual_steps, _unreachable(entry, source, "timed out").hint,
                 _drive_refused(entry, source, Quota()).hint,
                 _interrupted(entry, source, _Path("/x.part"), 1, 2, "reset").hint,
                 LicenceNotAcceptedError([entry.name], entry.licence or "").hint]
        for text in texts:
            for inside in (False, True):
                words = window_words(text, inside)
                assert "studio-cli" not in words and "`--" not in words, (entry.name, words)
                if inside:
                    assert "Tools ▸ Models" not in words


def cut_texts(root) -> list[str]:
    """Visible labels, buttons and check boxes of ``root`` whose text does not fit their width."""
    from PySide6.QtWidgets import QAbstractButton, QLabel

    cut = []
    for widget in root.findChildren(QLabel) + root.findChildren(QAbstractButton):
        if not widget.isVisible() or not widget.text() or widget.width() <= 1:
            continue
        if isinstance(widget, QLabel) and (widget.wordWrap() or widget.pixmap() is not None
                                           and not widget.pixmap().isNull()):
            if widget.wordWrap() and widget.heightForWidth(widget.width()) > widget.height() + 2:
                cut.append(f"{type(widget).__name__} {widget.text()[:40]!r} (height)")
            continue
        from PySide6.QtWidgets import QPushButton
        needed = (widget.fontMetrics().horizontalAdvance(widget.text()) + 8
                  if isinstance(widget, QPushButton) else widget.sizeHint().width())
        if needed > widget.width() + 1:
            cut.append(f"{type(widget).__name__} {widget.text()[:40]!r} ({needed} > {widget.width()})")
    return cut


def test_nothing_is_cut_at_1024_by_640(project_window, qtbot, tmp_path):
    """Issue 17: at 1024×640, labels were cut ("Head directions: 0% covered", the take name)."""
    win = project_window
    filled_project(win, qtbot, tmp_path)
    win.resize(1024, 640)
    qtbot.wait(20)
    for stage in STAGES:
        win.go_to_stage(stage)
        qtbot.wait(20)
        page = win.pages[stage]
        assert cut_texts(page) == [], stage
    reenact = win.pages["reenact"]
    name = reenact.name_edit
    assert name.fontMetrics().horizontalAdvance(name.text()) < name.width() - 8
    meter = win.pages["select"].coverage
    assert meter.title(meter.width()).startswith("Head directions")


def test_a_failed_job_leaves_no_qt_object_for_the_garbage_collector(qtbot):
    """The failed job's traceback held the job thread (run()'s frame) in a reference cycle, freed
    later by the cyclic collector on whatever thread ran it — typically the next job's."""
    from studio.gui.worker import JobRunner
    from tests._gui_thread_checks import qt_garbage

    qt_garbage()                                 # what earlier tests' windows left
    runner = JobRunner()

    def broken(progress=None, cancel=None):
        raise ValueError("boom")
    with qtbot.waitSignal(runner.failed, timeout=5000) as failed:
        runner.start("broken", broken)
    assert "ValueError: boom" in failed.args[0].details and "Traceback" in failed.args[0].details
    del failed                                   # the next outcome replaces runner.last_outcome
    with qtbot.waitSignal(runner.succeeded, timeout=5000):
        runner.start("fine", lambda progress=None, cancel=None: 1)
    qtbot.wait(10)
    assert qt_garbage() == {}


def test_the_window_closes_only_after_its_jobs_ended(project_window, qtbot):
    """Closing used to wait 30 s for the job and then let Python shut down under the still
    running job thread ("QThread: Destroyed while thread is still running": a crash on exit)."""
    win = project_window
    start_slow_prepare(win, qtbot)
    ended = []
    win.ctx.runner.finished.connect(lambda _o: ended.append(win.isVisible()))
    win.close()                                   # a job in its first seconds: no question
    assert win.ctx.cancel_prompt is None and win.ctx.runner.cancel_requested and win.isVisible()
    qtbot.waitUntil(lambda: not win.isVisible(), timeout=10000)
    assert ended == [True] and not win.ctx.runner.busy   # the job ended, then the window closed
    assert not win.ctx.run_job("late", lambda progress=None, cancel=None: None)  # none starts now


def test_a_stage_rerun_elsewhere_reloads_the_pages_that_show_it(project_window, qtbot):
    """studio-cli re-running a stage between two polls keeps its status ('done') but gives it a
    new output: the pages showing it reload all the same."""
    from personalize.progress import NEVER_CANCELLED
    from studio.project import Project

    win = project_window
    project = win.ctx.project
    project.mark_done("capture")
    helpers.fake_prepare(project, progress=lambda *a: None, cancel=NEVER_CANCELLED, count=6)
    win.ctx.refresh()
    select = win.pages["select"]
    assert select.grid.count() == 6
    elsewhere = Project.open(project.root)          # another process
    helpers.fake_prepare(elsewhere, progress=lambda *a: None, cancel=NEVER_CANCELLED, count=9)
    assert win.ctx.statuses["prepare"] == "done" == elsewhere.status("prepare")
    win.ctx.refresh()
    assert select.grid.count() == 9
