"""Helpers for the GUI tests: quick fake jobs that write real project files, and the check that
every page calls its job with keywords the real job has.

The fake jobs stand in for the heavy ``studio.jobs`` functions (which have their own tests) so the
GUI's own behaviour — progress, cancel, errors, status — is tested in seconds. They follow the same
contract as the real ones: ``progress(done, total, message)``, ``cancel.check()``,
``project.mark_running/mark_done/mark_stopped``, and the files they write have the real writers'
formats. Their images are real frames from ../shared/media. ``use_fakes`` installs them on a
window so that each call is first bound to the real job's signature: a page passing a keyword the
real job does not take (or lacks one it needs) fails the test.
"""
from __future__ import annotations

import csv
import functools
import inspect
import json
import time
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from tests.conftest import MEDIA

SELFSCAN = MEDIA / "selfscan_woman2_12s.mp4"
DRIVING = MEDIA / "driving_man_smile_wink_3s.mp4"


def real_frames(path: Path = SELFSCAN, count: int = 12, size: int = 64, step: int = 25) -> list[np.ndarray]:
    """``count`` frames (HWC uint8 RGB, size x size, centre square) from a real clip."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        if index % step == 0:
            h, w = bgr.shape[:2]
            s = min(h, w)
            square = bgr[(h - s) // 2:(h + s) // 2, (w - s) // 2:(w + s) // 2]
            frames.append(cv2.cvtColor(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA),
                                       cv2.COLOR_BGR2RGB))
        index += 1
    cap.release()
    return frames


def write_crops(scan_dir: Path, frames: list[np.ndarray]) -> list[Path]:
    crops = scan_dir / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    paths = []
    for t, frame in enumerate(frames):
        path = crops / f"{t:06d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def signature_checked(real: Callable[..., Any], fake: Callable[..., Any]) -> Callable[..., Any]:
    """``fake``, after checking that the call binds to ``real``'s signature (TypeError if not)."""
    signature = inspect.signature(real)

    @functools.wraps(fake)
    def call(*args: Any, **kwargs: Any) -> Any:
        signature.bind(*args, **kwargs)
        return fake(*args, **kwargs)

    return call


def use_fakes(window, **fakes: Callable[..., Any]) -> None:
    """Replace jobs of ``window`` (``ctx.jobs.<name>``) by fakes checked against the real jobs."""
    from studio.gui.job_functions import real_job

    for name, fake in fakes.items():
        setattr(window.ctx.jobs, name, signature_checked(real_job(name), fake))


def quality_report(n: int, flagged: dict[int, list[str]]) -> dict[str, Any]:
    """A ``quality.json`` as the prepare stage writes it (``personalize.faces.quality``)."""
    from personalize.faces.quality import FrameQuality, QualityThresholds
    from personalize.faces.quality import quality_report as report

    frames = [FrameQuality(1, 200.0, 0.0, 0.0, 100.0, flagged.get(t, [])) for t in range(n)]
    return report(frames, QualityThresholds())


def fake_prepare(project, video=None, size=64, smooth=2.0, progress=None, cancel=None, delay=0.01, count=12):
    """Writes real crops + a quality report, reporting progress per frame; cancellable."""
    project.mark_running("prepare")
    try:
        frames = real_frames(count=count, size=size)
        for i in range(len(frames)):
            cancel.check()
            progress(i + 1, len(frames), f"frame {i + 1}")
            time.sleep(delay)
        write_crops(project.scan_dir, frames)
        (project.scan_dir / "quality.json").write_text(json.dumps(quality_report(len(frames), {3: ["blurry"]})))
    except BaseException:
        project.mark_stopped("prepare")
        raise
    project.mark_done("prepare", frames=len(frames))
    return {"frames": len(frames)}


def slow_job(project, *_args, stage="prepare", progress=None, cancel=None, steps=400, delay=0.02, **_):
    """Runs until cancelled (or ``steps`` done); leaves the stage stopped when cancelled."""
    project.mark_running(stage)
    try:
        for i in range(steps):
            cancel.check()
            progress(i, steps, "working")
            time.sleep(delay)
    except BaseException:
        project.mark_stopped(stage)
        raise
    project.mark_done(stage)


def fake_select(project, count=4, progress=None, cancel=None, **_):
    n = len(list((project.scan_dir / "crops").glob("*.png")))
    chosen = list(range(0, n, max(1, n // count)))[:count]
    progress(1, 1, "selected")
    (project.dataset_dir / "selection.json").write_text(json.dumps({"frame_ids": chosen, "count": len(chosen),
                                                                   "requested": count}))
    project.mark_done("select", count=len(chosen))


def write_training_outputs(model_dir: Path, steps: int = 20) -> None:
    """A loss log and a preview grid (generated | real) like the tuning job writes."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / "log.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["step", "loss", "lpips", "pixel"])
        for s in range(steps):
            lp = 0.6 * np.exp(-s / 8) + 0.1
            px = 0.05 * np.exp(-s / 5) + 0.01
            writer.writerow([s, lp + 10 * px, lp, px])
    frames = real_frames(count=4, size=64)
    top = np.concatenate(frames[:2], axis=1)
    bottom = np.concatenate(frames[2:4], axis=1)
    (model_dir / "previews").mkdir(exist_ok=True)
    cv2.imwrite(str(model_dir / "previews" / "step_000020.png"),
                cv2.cvtColor(np.concatenate([top, bottom], axis=0), cv2.COLOR_RGB2BGR))


def fake_personalize(project, base="ffhq", steps=None, batch=4, progress=None, cancel=None, **_):
    project.mark_running("personalize")
    for s in range(5):
        cancel.check()
        progress(s + 1, 5, f"step {s + 1}")
    write_training_outputs(project.model_dir)
    project.mark_done("personalize", steps=5)


def make_take(project, name: str = "smile", result: bool = True, complete: bool = True) -> Path:
    """A take folder: the real driving clip, a latent track (finished or half done), optionally
    the GUI's preview render."""
    import shutil

    from optimize.track import LatentTrack
    folder = project.take_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(DRIVING, folder / "driving.mp4")
    track = LatentTrack.empty("fake", n_frames=3, n_anchors=2, num_ws=4, w_dim=8, max_steps=1)
    track.frames_done, track.complete = (3, True) if complete else (1, False)
    if complete:
        track.ws_smooth = track.ws.copy()
    track.save(project.track_path(name))
    if result:
        shutil.copyfile(DRIVING, project.preview_path(name))
    return folder


def fake_reenact(project, driving, name, settings=None, progress=None, cancel=None, **_):
    project.mark_running("reenact")
    for i in range(3):
        cancel.check()
        progress(i + 1, 3, f"frame {i + 1}")
    make_take(project, name, result=False)
    project.mark_done("reenact", take=name)


def fake_render(project, take, out, progress=None, cancel=None, mark_export=True, **options):
    """Copies the driving clip to ``out``, records the options beside it and, like the real job,
    marks the Export stage done unless asked not to."""
    import shutil

    from editing.render import RenderResult
    progress(1, 1, "rendered")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project.driving_copy(take), out)
    options["mark_export"] = mark_export
    (out.parent / (out.name + ".options.json")).write_text(json.dumps(
        {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, dict, type(None)))}))
    if mark_export:
        project.mark_done("export", take=take, out=str(out), kind=out.suffix.lstrip("."))
    return RenderResult(out, 3, out.suffix.lstrip("."), 25.0)


def fake_import_direction(project, file, name, progress=None, cancel=None, **_):
    vec = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    np.save(project.directions_dir / f"{name}.npy", vec)
    (project.directions_dir / f"{name}.json").write_text(json.dumps({"reliability": 0.83, "source": str(file)}))
    project.mark_done("edit", direction=name)
