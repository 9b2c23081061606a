"""Screenshots of every page, rendered in a real X window under Xvfb, kept reproducible.

Regenerate the committed images (docs/screenshots/) with:

    xvfb-run -a -s "-screen 0 1440x960x24" .venv/bin/python tests/test_screenshots.py docs/screenshots

The test renders the same set into a temporary folder and checks it matches the committed set
(same names, same sizes, not blank, coarsely similar), so a page that breaks or a screenshot that
goes stale is noticed. It skips (with the reason) when Xvfb is not installed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DOCS = ROOT / "docs" / "screenshots"
# The smallest window the studio is laid out for (a small laptop): nothing may be cut at this size.
WINDOW_SIZE = tuple(int(v) for v in os.environ.get("STUDIO_SHOT_SIZE", "1024x640").split("x"))
SHOTS = ("01_start", "02_capture", "03_prepare", "04_select", "05_personalize",
         "06_personalize_running", "07_reenact", "07b_reenact_oneshot", "07c_reenact_live", "08_edit", "09_export", "10_models",
         "11_settings", "12_error", "13_stop_job", "14_licence")


# ----------------------------------------------------------------------------- demo project
def build_demo_project(root: Path):
    """A project with real prepared frames (MediaPipe on a 4 s clip at 128 px) and stand-in
    outputs for the later stages (loss log, previews, takes, directions, a style)."""
    import json

    import numpy as np

    from personalize.video import write_video
    from studio.jobs.capture import capture_scan
    from studio.jobs.prepare import prepare_scan
    from studio.project import Project
    from tests import _gui_helpers as helpers

    project = Project.create(root, name="Anna")
    capture_scan(project, helpers.SELFSCAN, start=5.0, end=9.0)
    prepare_scan(project, size=128, smooth=2.0)
    crops = sorted((project.scan_dir / "crops").glob("*.png"))
    chosen = [int(p.stem) for p in crops[::5]][:24]
    (project.dataset_dir / "selection.json").write_text(json.dumps({"frame_ids": chosen, "count": len(chosen)}))
    project.mark_done("select", count=len(chosen))
    helpers.write_training_outputs(project.model_dir, steps=60)
    import cv2
    grid = [cv2.imread(str(crops[i])) for i in (0, 30, 60, 90, 10, 40, 70, 100)]
    cv2.imwrite(str(project.model_dir / "previews" / "step_000060.png"),
                np.concatenate([np.concatenate(grid[:4], 1), np.concatenate(grid[4:], 1)], 0))
    project.mark_done("personalize", steps=60)
    take = helpers.make_take(project, "smile_wink", result=False)
    frames = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in crops[:78]]
    write_video(take / "preview.mp4", iter(frames), 25.0, audio_from=None)
    helpers.make_take(project, "speech_unfinished", result=False, complete=False)
    project.mark_done("reenact", take="smile_wink")
    rng = np.random.default_rng(0)
    for name, rel in (("smile", 0.83), ("age", 0.41), ("yaw", 0.95)):
        np.save(project.directions_dir / f"{name}.npy", rng.standard_normal(8).astype(np.float32))
        (project.directions_dir / f"{name}.json").write_text(json.dumps({"reliability": rel}))
    style = project.style_dir("pencil_sketch")
    style.mkdir(parents=True)
    (style / "generator.safetensors").write_bytes(b"")
    (style / "style.json").write_text(json.dumps({"prompt": "a pencil sketch"}))
    project.mark_done("edit", directions=3)
    return project


def render_screenshots(out_dir: Path) -> list[Path]:
    """Open the real window on the demo project and save one PNG per page into ``out_dir``."""
    import tempfile

    os.environ.setdefault("QT_LOGGING_RULES", "qt.multimedia*=false")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from personalize.errors import MissingWeightsError
    from personalize.video import read_image
    from studio.weights import require_weights
    from studio.gui.main_window import StudioWindow
    from studio.gui.settings import StudioSettings
    from tests import _gui_helpers as helpers

    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    os.environ["STUDIO_CACHE_DIR"] = str(work / "cache")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setStyle("Fusion")
    project_root = work / "Anna.studio"
    build_demo_project(project_root)
    settings = StudioSettings.at(work / "settings.ini")
    for name in ("Ben.studio", "Chloe.studio"):
        settings.add_recent_project(work / name)
    settings.add_recent_project(project_root)
    win = StudioWindow(settings)
    win.resize(*WINDOW_SIZE)
    win.show()
    saved: list[Path] = []

    def settle(ms: int = 150) -> None:
        end = __import__("time").monotonic() + ms / 1000
        while __import__("time").monotonic() < end:
            app.processEvents()

    def shoot(name: str, widget=None) -> None:
        settle()
        target = widget or win
        pix = target.grab()
        path = out_dir / f"{name}.png"
        pix.save(str(path))
        saved.append(path)

    shoot("01_start")
    win.open_project(project_root)
    win.ctx.open_url = lambda url: None
    win.go_to_stage("capture")
    shoot("02_capture")
    win.go_to_stage("prepare")
    win.pages["prepare"].grid.load_all_now()
    shoot("03_prepare")
    win.go_to_stage("select")
    win.pages["select"].grid.load_all_now()
    shoot("04_select")
    win.go_to_stage("personalize")
    shoot("05_personalize")
    def inverting(project, progress=None, cancel=None, **_):
        """Reports like the personalize job's inversion phase (a phase name before a colon)."""
        project.mark_running("personalize")
        try:
            for step in range(16000):
                cancel.check()
                progress(step, 16000, f"inverting: frames {1 + 8 * (step // 500)}-{8 + 8 * (step // 500)} "
                         f"loss {0.6 - step / 60000:.3f}")
                time.sleep(0.005)
        finally:
            project.mark_stopped("personalize")
    helpers.use_fakes(win, personalize=inverting)
    win.pages["personalize"].start()
    settle(2000)
    shoot("06_personalize_running")
    import studio.gui.context as context
    context.CONFIRM_CANCEL_AFTER_S = 1.0
    prompt = win.ctx.request_cancel()
    settle(200)
    shoot("13_stop_job", prompt)
    prompt.close()
    win.ctx.cancel_prompt = None
    win.ctx.runner.cancel()
    win.ctx.runner.wait(10000)
    settle(300)
    win.statusBar().clearMessage()
    win.go_to_stage("reenact")
    page = win.pages["reenact"]
    page.set_driving(str(helpers.DRIVING))
    page.load_takes(select="smile_wink")
    page.player.slider.setValue(30)
    shoot("07_reenact")
    page.modes.set_backend("hyperreenact")  # a one-shot mode: its weights (missing here) and its source face
    shoot("07b_reenact_oneshot")
    page.modes.set_backend("personal")
    page.tabs.setCurrentIndex(1)  # the motion model and the Live panel (no camera under Xvfb: said so)
    shoot("07c_reenact_live")
    page.tabs.setCurrentIndex(0)
    # Stand-in preview (the demo take has no real latent track): a real aligned crop.
    crops = sorted((project_root / "scan" / "crops").glob("*.png"))
    helpers.use_fakes(win, preview_frame=lambda project, take, frame=0, **_: read_image(crops[40 + frame]))
    win.go_to_stage("edit")
    win.pages["edit"].sliders["smile"].slider.setValue(120)
    win.pages["edit"].prompt_edit.setText("a pencil sketch")
    win.pages["edit"].update_buttons()
    win.pages["edit"].update_preview()
    win.pages["edit"].preview_runner.wait(10000)
    settle(300)
    shoot("08_edit")
    win.go_to_stage("export")
    shoot("09_export")
    dialog = win.show_models()
    dialog.resize(900, 520)
    shoot("10_models", dialog)
    dialog.select("hyperreenact-net")
    licence = dialog.fetch_selected()
    settle(200)
    shoot("14_licence", licence)
    licence.close()
    dialog.hide()
    settings_dialog = win.show_settings()
    shoot("11_settings", settings_dialog)
    settings_dialog.reject()
    try:
        require_weights("ffhq")
    except MissingWeightsError as exc:
        box = win.ctx.error("Personalize", exc, "Traceback: …")
    settle(200)
    shoot("12_error", box)
    box.close()
    win.close()
    QTimer.singleShot(0, app.quit)
    shutil.rmtree(work, ignore_errors=True)
    return saved


# ----------------------------------------------------------------------------- the test
def _tiny_gray(path: Path):
    from PySide6.QtGui import QImage
    from PySide6.QtCore import Qt
    image = QImage(str(path)).convertToFormat(QImage.Format.Format_Grayscale8)
    small = image.scaled(64, 40, Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)
    import numpy as np
    ptr = small.constBits()
    return np.frombuffer(ptr, dtype=np.uint8, count=small.bytesPerLine() * 40).reshape(40, -1)[:, :64].astype(float), \
        (image.width(), image.height())


@pytest.mark.slow
@pytest.mark.gui
def test_screenshots_are_reproducible(tmp_path):
    if shutil.which("xvfb-run") is None:
        pytest.skip("xvfb-run not installed (Debian package xvfb): cannot render real windows")
    env = dict(os.environ, QT_QPA_PLATFORM="xcb", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    cmd = ["xvfb-run", "-a", "-s", "-screen 0 1440x960x24", sys.executable, str(Path(__file__)), str(tmp_path)]
    run = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    made = sorted(p.stem for p in tmp_path.glob("*.png"))
    assert made == sorted(SHOTS)
    committed = sorted(p.stem for p in DOCS.glob("*.png"))
    assert committed == sorted(SHOTS), "docs/screenshots is out of date: regenerate it (see module docstring)"
    for name in SHOTS:
        new, new_size = _tiny_gray(tmp_path / f"{name}.png")
        old, old_size = _tiny_gray(DOCS / f"{name}.png")
        # a dialog's height may settle a few pixels apart between runs (layout before the first paint)
        assert all(abs(a - b) <= 4 for a, b in zip(new_size, old_size)), f"{name}: size {new_size} vs committed {old_size}"
        assert new.std() > 8, f"{name} looks blank"
        assert abs(new - old).mean() < 25, f"{name} differs a lot from the committed screenshot"


if __name__ == "__main__":
    paths = render_screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else DOCS))
    print("\n".join(str(p) for p in paths))
