"""The Re-enact page's mode selector (one line per mode, missing weights -> the Models dialog) and
how the page runs a one-shot take: available after Prepare, the job called with the mode's options."""
from __future__ import annotations

import os

os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")

import pytest

pytest.importorskip("pytestqt")

from optimize.backends import BACKENDS  # noqa: E402
from studio.gui.widgets.mode_selector import ModeSelector  # noqa: E402
from studio.jobs.oneshot import OneShotOptions  # noqa: E402
from studio.weights import REGISTRY  # noqa: E402
from tests.conftest import MEDIA  # noqa: E402

pytestmark = pytest.mark.gui


def test_one_line_per_mode_and_what_each_needs(qtbot, studio_cache):
    selector = ModeSelector()
    qtbot.addWidget(selector)
    assert list(selector.buttons) == list(BACKENDS) and selector.backend() == "personal"
    assert all(selector.buttons[n].toolTip() == BACKENDS[n].one_line for n in BACKENDS)
    assert selector.needs() == ("personalize",) and selector.weights_ready()
    assert selector.get_weights.isHidden()

    selector.set_backend("hyperreenact")
    assert selector.needs() == ("prepare",) and not selector.weights_ready()
    assert "stylegan2-voxceleb" in selector.weights_label.text() and not selector.get_weights.isHidden()
    with qtbot.waitSignal(selector.models_requested) as asked:
        selector.get_weights.click()
    assert asked.args == ["stylegan2-voxceleb"]
    selector.set_source(str(MEDIA / "aligned" / "pitt.jpg"))
    assert selector.needs() == () and selector.options() == OneShotOptions(source=str(MEDIA / "aligned" / "pitt.jpg"))

    selector.set_backend("diffusionact")
    studio_cache.mkdir()
    (studio_cache / REGISTRY["diffusionact-net"].filename).write_bytes(b"present")
    selector.refresh()
    assert not selector.weights_ready()                       # the official landmarks need FLAME & co.
    selector.landmarks_box.setCurrentIndex(selector.landmarks_box.findData("mediapipe"))
    assert selector.weights_ready() and selector.get_weights.isHidden()
    selector.quality_box.setCurrentIndex(selector.quality_box.findData("draft"))
    assert selector.options() == OneShotOptions(source=str(MEDIA / "aligned" / "pitt.jpg"), landmarks="mediapipe",
                                                quality="draft")


# ------------------------------------------------------------------------------ the Re-enact page
from tests import _gui_helpers as helpers  # noqa: E402
from tests.test_gui import project_window, settings, wait_job, window  # noqa: E402,F401 - the GUI tests' fixtures


def test_reenact_page_runs_a_one_shot_take_right_after_prepare(project_window, qtbot, studio_cache):
    win = project_window
    project = win.ctx.project
    for stage in ("capture", "prepare"):
        project.mark_done(stage)
    win.ctx.force_refresh()
    seen = {}

    def fake(project, driving, name, settings=None, progress=None, cancel=None, **options):
        seen.update(options)
        helpers.fake_reenact(project, driving, name, settings, progress, cancel)

    helpers.use_fakes(win, reenact=fake, render=helpers.fake_render)
    page = win.pages["reenact"]
    win.go_to_stage("reenact")
    page.set_driving(str(helpers.DRIVING))
    assert not page.run_button.isEnabled() and "Personalize" in page.needs_label.text()
    page.modes.set_backend("directions")
    assert not page.needs_label.isVisibleTo(page) and not page.run_button.isEnabled()   # its weights are missing
    page.modes.get_weights.click()                                   # -> the Models dialog
    assert win.models_dialog is not None and win.models_dialog.isVisible()
    win.models_dialog.close()
    studio_cache.mkdir()
    for name in BACKENDS["directions"].weights:
        (studio_cache / REGISTRY[name].filename).write_bytes(b"present")
    page.modes.refresh()
    assert page.run_button.isEnabled() and not page.lr_spin.isEnabled()   # the optimizer's settings do not apply
    page.start()
    wait_job(qtbot, win)
    assert seen["backend"] == "directions" and seen["oneshot"] == OneShotOptions()
    assert win.ctx.statuses["reenact"] == "done"


def test_reenact_page_never_scrolls_sideways_at_the_smallest_window(project_window, qtbot, tmp_path):
    """At 1024x640 no state of the page may be wider than the window: the Method list's lines
    (shown whole in the closed list), a one-shot mode's rows, long file names (elided, whole in
    the tooltip) all fit. The optimizer's fields are off for Fast, which runs no optimizer."""
    import shutil

    from PySide6.QtWidgets import QScrollArea

    from tests.test_screenshots import WINDOW_SIZE

    win = project_window
    win.resize(*WINDOW_SIZE)
    win.go_to_stage("reenact")
    page = win.pages["reenact"]
    scroll = page.findChild(QScrollArea)
    long_name = tmp_path / ("driving_clip_with_a_long_name_and_no_spaces_" + "x" * 40 + ".mp4")
    shutil.copy(helpers.DRIVING, long_name)
    assert page.set_driving(str(long_name)) and page.drop.toolTip() == str(long_name)

    def fits(state: str) -> None:
        qtbot.wait(20)
        assert not scroll.horizontalScrollBar().isVisible(), f"scrolls sideways: {state}"
        label = page.drop.label  # its zone has a fixed minimum width: a long name would be cut there
        assert label.width() >= label.minimumSizeHint().width(), f"driving video's name cut: {state}"

    method = page.fast.mode_box
    for key in ("exact", "refine", "fast"):
        method.setCurrentIndex(method.findData(key))
        fits(f"personal mode, {key}")
        assert method.width() >= method.sizeHint().width(), f"the closed Method list cuts its {key} line"
        assert page.steps_spin.isEnabled() == page.lr_spin.isEnabled() == (key != "fast")
    method.setCurrentIndex(method.findData("refine"))
    page.tabs.setCurrentIndex(1)
    fits("the Motion model & Live tab")
    for backend in BACKENDS:
        page.modes.set_backend(backend)
        fits(backend)
    page.modes.set_source(str(tmp_path / ("a_portrait_photo_with_a_long_name_" + "y" * 40 + ".jpg")))
    fits("a one-shot mode with a long photo name")
