"""GUI behaviour under pytest-qt (offscreen): start screen, stage states, jobs, cancel, errors,
settings, models dialog and every page's main interactions.

Heavy jobs are replaced by quick fakes (tests/_gui_helpers.py) that honour the same contract;
``test_gui_real_jobs.py`` runs the real ones.
"""
from __future__ import annotations

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
    qtbot.addWidget(win)
    win.show()
    yield win
    win.ctx.runner.cancel()
    win.ctx.runner.wait(10000)
    if win.ctx.last_error is not None:
        win.ctx.last_error.close()


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
    assert "12 face pictures; 1 with a problem" in page.summary_label.text()
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
    assert "resume" in win.statusBar().currentMessage()
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


def test_status_bar_shows_device_and_missing_weights(window):
    assert "CPU" in window.device_label.text() and "slow" in window.device_label.text()
    text = window.weights_button.text()
    assert "ffhq ✘" in text and "lpips-alex ✘" in text


def test_models_dialog_import_rejects_a_wrong_file_and_fetch_reports_progress(window, qtbot, tmp_path):
    dialog = window.show_models()
    names = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
    assert {"ffhq", "lpips-alex", "clip-vit-b32"} <= set(names)
    dialog.table.selectRow(names.index("lpips-alex"))
    wrong = tmp_path / "not-alexnet.pth"
    wrong.write_bytes(b"\0" * 1000)
    dialog.import_selected(str(wrong))
    qtbot.waitUntil(lambda: not dialog.runner.busy, timeout=10000)
    assert dialog.last_error is not None and "nothing was installed" in dialog.last_error.text()
    dialog.last_error.close()

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
    assert {"Ctrl+N", "Ctrl+O", "Ctrl+R", "Esc", "Ctrl+M", "Ctrl+1", "Ctrl+7", "Ctrl+Right"} <= shortcuts


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
    page.project_loaded()                        # what reopening the project shows
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
    qtbot.addWidget(first)
    first.show()
    first.resize(740, 520)
    qtbot.wait(20)
    first.close()
    second = StudioWindow(settings)
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == (740, 520)
    project = Project.create(tmp_path / "dropped.studio")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(project.root))])
    second.dropEvent(QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                                Qt.KeyboardModifier.NoModifier))
    assert second.ctx.project is not None and second.ctx.project.root == project.root
    second.close()
