"""Job 'motion-model' (the person's pose/expression directions) and the fast re-enactment modes.

Shared by the CLI and the GUI. ``train_motion_job`` learns the motion model of
``optimize.fast_directions`` from the personalized generator, its anchors and the selected
self-scan frames' landmarks, into ``model/motion/`` (resumable; stage 'motion', stale when the
generator is personalized again). ``motion_predictor`` is what the fast modes and live driving
load; ``mode_track`` makes a take's track in the fast or refine mode (``studio.jobs.reenact``
calls it for ``mode != 'exact'``).
"""
from __future__ import annotations

import shutil
from typing import Any, Callable

import numpy as np
import torch

from optimize.driving import DrivingFrames
from optimize.fast_directions import (CHECKPOINTS_DIR, POOL_FILE, MotionSettings, load_motion_model,
                                      train_motion_model)
from optimize.fast_reenact import MODES, REFINE_STEPS, MotionPredictor, RenderReader, fast_track, refine_track
from optimize.latent_space import PersonalizedSpace
from optimize.reenact import ReenactResult
from optimize.reenact_settings import ReenactSettings
from personalize.errors import Action, ProjectError, UserError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from studio.project import DONE, STALE, Project

Notify = Callable[[str], None]
TRAIN_ACTION = Action("motion-model")


def _quiet(message: str) -> None:
    """Default notify: say nothing."""


def scan_landmarks(project: Project) -> tuple[np.ndarray, int]:
    """The selected self-scan frames' landmarks (T,478,3) in crop pixels, and the crop side.

    Why the selection: those are the frames the generator was personalized on (paper: the PCA is
    fitted on the person's selected frames); without a selection every valid frame is used.
    """
    scan = project.read_scan_landmarks()
    size = project.scan_crop_size()
    if scan is None or size is None:
        raise ProjectError("The self-scan's landmarks are missing.", "Prepare the self-scan again.",
                           Action("prepare"))
    landmarks, valid = scan
    selection = project.read_selection()
    ids = [t for t in (selection or {}).get("frame_ids", []) if 0 <= t < len(valid) and valid[t]]
    if len(ids) < 3:
        ids = np.flatnonzero(valid).tolist()
    if len(ids) < 3:
        raise ProjectError("The self-scan has fewer than 3 frames with a face.", "Prepare the self-scan again.",
                           Action("prepare"))
    return landmarks[ids], size


def train_motion_job(project: Project, settings: MotionSettings = MotionSettings(),
                     device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                     cancel: CancelToken = NEVER_CANCELLED, *, restart: bool = False,
                     notify: Notify = _quiet) -> dict[str, Any]:
    """Train (or resume) the motion model into ``model/motion/``; returns its record (motion.json).

    ``restart`` drops the sample pool and the checkpoint first. The perceptual term needs the
    LPIPS weights (as personalization does); with ``settings.weights.perceptual == 0`` it is left out.
    """
    from studio.jobs.personalize import build_project_lpips
    from studio.jobs.reenact import enable_fast_math, load_personalized_generator

    project.require("personalize", "The motion model")
    settings.validate()
    device = torch.device(device)
    folder = project.motion_dir
    if restart:
        shutil.rmtree(folder / CHECKPOINTS_DIR, ignore_errors=True)
        (folder / POOL_FILE).unlink(missing_ok=True)
    generator = load_personalized_generator(project, device)
    anchors = project.load_anchors()
    landmarks, size = scan_landmarks(project)
    lpips_model = build_project_lpips(device) if settings.weights.perceptual > 0 else None
    enable_fast_math(device)
    notify(f"training the motion model ({settings.kind}, {settings.steps} steps, "
           f"{settings.pool} samples) on {len(landmarks)} self-scan frames")
    project.mark_running("motion")
    try:
        result = train_motion_model(generator, anchors, landmarks, size, folder, settings,
                                    lpips_model=lpips_model, generator_id=project.generator_id(),
                                    device=device, progress=progress, cancel=cancel)
    except BaseException:
        project.mark_stopped("motion")
        raise
    info = result.files.info
    errors = info["held_out_keypoint_px"]
    project.mark_done("motion", kind=settings.kind, steps=result.steps_done,
                      regression_px=errors["regression"], trained_px=errors["trained"])
    if result.resumed_from:
        notify(f"resumed from step {result.resumed_from}")
    return info


def motion_predictor(project: Project, space: PersonalizedSpace,
                     device: torch.device | str = "cpu") -> MotionPredictor:
    """The project's motion model on ``device``; ProjectError (train it) when missing or stale."""
    state = project.status("motion")
    if state != DONE or not project.has_motion_model():
        why = ("is out of date (the generator was personalized again)" if state == STALE
               else "has not been trained yet")
        raise ProjectError(f"The fast modes and live driving need the person's motion model, which {why}.",
                           "Train the motion model (a few minutes on a GPU), then try again.", TRAIN_ACTION)
    files = load_motion_model(project.motion_dir, device)
    if files.info.get("generator_id") != project.generator_id():
        raise ProjectError("The motion model was trained for another version of the personalized generator.",
                           "Train the motion model again.", TRAIN_ACTION)
    return MotionPredictor(files, space)


def check_mode(mode: str, refine_steps: int | None) -> None:
    """UserError for an unknown mode or a bad refine budget (before any work)."""
    if mode not in MODES:
        raise UserError(f"Unknown re-enactment mode '{mode}'.", f"Use {', '.join(MODES)}.")
    if refine_steps is not None and refine_steps < 1:
        raise UserError(f"Refine steps must be at least 1 (got {refine_steps}).", f"The default is {REFINE_STEPS}.")


def mode_track(project: Project, name: str, mode: str, generator: torch.nn.Module, anchors: np.ndarray,
               frames: DrivingFrames, settings: ReenactSettings, predictor: MotionPredictor, *,
               refine_steps: int | None, device: torch.device, restart: bool, progress: ProgressFn,
               cancel: CancelToken) -> ReenactResult:
    """The take's track in ``mode`` 'fast' or 'refine' (the exact mode is ``optimize.reenact``),
    with ``predictor`` from ``motion_predictor`` (the job loads it before its slow preparation)."""
    if mode == "fast":
        with RenderReader(generator, device) as reader:
            return fast_track(anchors, generator.num_ws, frames, project.track_path(name), predictor, reader,
                              settings=settings, generator_id=project.generator_id(), restart=restart,
                              progress=progress, cancel=cancel)
    return refine_track(generator, anchors, frames, project.track_path(name), predictor, settings=settings,
                        steps=refine_steps or REFINE_STEPS, generator_id=project.generator_id(),
                        device=device, restart=restart, progress=progress, cancel=cancel)


__all__ = ["train_motion_job", "motion_predictor", "mode_track", "check_mode", "scan_landmarks",
           "TRAIN_ACTION"]
