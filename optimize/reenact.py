"""Per-frame re-enactment by latent optimization in P+ (main paper Sec. 3.3, Appendices B-C).

For every aligned driving frame t, a P+ code is optimized with Adam so that the personalized
generator's image matches the frame's normalized keypoints, mouth and irises (``optimize.losses``).

Temporal consistency (Sec. 3.3.3): frame t starts from frame t-1's result plus Gaussian noise
(sigma = 0.05 on the barycentric coefficients, relative to the uniform one by default,
``PersonalizedSpace.perturbed``; frame 0 starts from the anchor whose rendered
keypoints are nearest to the frame's, or the center of P); after all frames a zero-phase Gaussian
filter (sigma = 2 frames) runs along time on the latent track (``optimize.smoothing``).

Robustness: the track (``optimize.track``) is written atomically every few frames with the number
of frames done and a fingerprint of the driving crops, landmarks, anchors, generator and
settings. An interrupted take resumes at the first unfinished frame; a track file that is
unreadable or was made from other inputs is reported, never silently reused. Frames where
MediaPipe found no face hold the previous code and are flagged.

The other pieces of a take live beside this module: ``reenact_settings`` (the one settings
object), ``driving`` (crops and their landmarks), ``track`` (the track file) and
``anchor_keypoints`` (the first frame's start).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from optimize.anchor_keypoints import cached_anchor_keypoints, first_frame_code
from optimize.driving import DrivingFrames, image_to_tensor
from optimize.latent_space import PersonalizedSpace, PPlusCode
from optimize.losses import (FrameTarget, IdentityReference, LandmarkFn, LossTerms, MeshLandmarks,
                             ReenactLoss)
from optimize.reenact_settings import ReenactSettings
from optimize.smoothing import smooth_track
from optimize.track import LatentTrack, track_fingerprint
from personalize.errors import ProjectError
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress


# ------------------------------------------------------------------------------------ optimizer
def lr_factor(step: int, steps: int, warmup: int, decay: bool) -> float:
    """Step-size multiplier at ``step`` of ``steps``: linear ramp-up, then cosine decay to 0.1."""
    factor = 1.0
    if warmup > 0 and step < warmup:
        factor = (step + 1) / (warmup + 1)
    if decay and steps > 1:
        factor *= 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * step / (steps - 1)))
    return factor


@dataclass
class FrameResult:
    code: PPlusCode
    loss_curve: list[float]
    terms: dict[str, float]
    generator_passes: int


class FrameOptimizer:
    """Optimizes one frame's P+ code with Adam and early stopping; keeps the best code seen."""

    def __init__(self, generator: torch.nn.Module, space: PersonalizedSpace, loss: ReenactLoss,
                 settings: ReenactSettings) -> None:
        self.generator = generator
        self.space = space
        self.loss = loss
        self.settings = settings

    def synthesize(self, ws: torch.Tensor) -> torch.Tensor:
        """ws (B,num_ws,w_dim) -> images (B,3,R,R) in [-1,1]; deterministic noise."""
        return self.generator.synthesis(ws, noise_mode="const")

    def optimize(self, start: PPlusCode, target: FrameTarget, reference: IdentityReference | None,
                 steps: int | None = None, lr: float | None = None, min_steps: int | None = None) -> FrameResult:
        """Adam from ``start`` for at most ``steps`` (default ``settings.steps``) at step size
        ``lr`` (default ``settings.lr``), never stopping early before ``min_steps`` (default
        ``settings.min_steps``); returns the best code seen.

        ``steps`` counts the codes rendered and scored, the start included: ``steps - 1`` Adam
        updates, each scored by the next pass (so one step returns the start, scored)."""
        s = self.settings
        steps = steps or s.steps
        lr = lr or s.lr
        min_steps = s.min_steps if min_steps is None else min_steps
        code = PPlusCode(start.alpha.detach().clone().requires_grad_(True),
                         start.delta.detach().clone().requires_grad_(True))
        self.space.clamp_to_floor_(code)
        optimizer = torch.optim.Adam([{"params": [code.alpha], "lr": lr},
                                      {"params": [code.delta], "lr": lr * s.delta_lr_scale}])
        best_total = math.inf
        best = code.detach()
        best_terms: dict[str, float] = {}
        curve: list[float] = []
        since_improved = 0
        passes = 0
        base_lrs = [group["lr"] for group in optimizer.param_groups]
        for step in range(steps):
            factor = lr_factor(step, steps, s.lr_warmup, s.lr_decay)
            for group, base_lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base_lr * factor
            optimizer.zero_grad(set_to_none=True)
            image = self.synthesize(self.space.to_ws(code))
            passes += 1
            terms: LossTerms = self.loss(image, target, reference, self.space, code)
            total = terms.total.sum()
            value = float(total.detach())
            curve.append(value)
            if not math.isfinite(value):
                break  # keep the best finite code; a NaN step would poison the warm start
            if value < best_total * (1.0 - s.min_improvement) or not math.isfinite(best_total):
                since_improved = 0
            else:
                since_improved += 1
            if value < best_total:
                best_total = value
                best = code.detach()
                best_terms = terms.scalars()
            if since_improved >= s.patience and len(curve) >= min(min_steps, steps):
                break
            if step == steps - 1:
                break  # a step from the last code would never be rendered: no backward pass for it
            total.backward()
            optimizer.step()
            self.space.clamp_to_floor_(code)  # keep every anchor reachable (see alpha_floor)
        return FrameResult(best, curve, best_terms, passes)


@dataclass
class ReenactResult:
    track: LatentTrack
    frames_optimized: int
    generator_passes: int
    seconds: float
    flagged_frames: list[int]


def identity_reference(generator: torch.nn.Module, space: PersonalizedSpace,
                       landmarks: LandmarkFn) -> IdentityReference:
    """I_c: the image of the center of P and its landmarks (once per take)."""
    with torch.no_grad():
        image = generator.synthesis(space.center_ws(), noise_mode="const")
        lm = landmarks(image)
    return IdentityReference(image=image.detach(), landmarks=lm.detach())


def mesh_landmarks(device: torch.device | str, resolution: int, settings: ReenactSettings) -> MeshLandmarks:
    """The differentiable FaceMesh landmark function the optimizer measures images with."""
    from personalize.faces.facemesh import FaceMesh

    return MeshLandmarks(FaceMesh.from_mediapipe(device=device),
                         input_size=min(settings.mesh_input, int(resolution)))


def reenact(generator: torch.nn.Module, anchors: np.ndarray, driving: DrivingFrames, track_path: Path,
            landmarks: LandmarkFn | None = None, *, settings: ReenactSettings = ReenactSettings(),
            generator_id: str = "", anchor_cache: Path | None = None,
            device: torch.device | str = "cpu", restart: bool = False,
            first_start: Callable[[int, FrameTarget], PPlusCode | None] | None = None,
            starts: Callable[[int, PPlusCode, FrameTarget], PPlusCode] | None = None,
            first_settings: ReenactSettings | None = None,
            progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> ReenactResult:
    """Optimize (or resume) the latent track of a driving take and save it to ``track_path``.

    generator: a StyleGAN2 ``Generator`` (uses ``synthesis``, ``num_ws``, ``img_resolution``);
    anchors (N, w_dim); landmarks: differentiable images -> (B,478,3) pixels (default: the
    FaceMesh, ``mesh_landmarks``); generator_id: identifies the generator's weights (part of the
    track's fingerprint and of the anchor keypoints' cache key); anchor_cache: an .npz file
    where the anchors' rendered keypoints (the first frame's start) are kept for later takes.
    ``settings`` is read, never changed. ``first_start(t, target)``: where the first frame with a
    face (frame ``t`` of ``driving``) starts, or None for the default (``settings.first_frame``);
    a chunk of a long take (``optimize.chunks``) plugs in here. ``starts(t, previous, target)``:
    frame t's starting code given frame t-1's code and frame t's target, for refining a
    prediction (``optimize.fast_reenact``): every frame after the first with a face then runs
    ``settings.steps`` at ``settings.lr`` from it instead of from the previous frame plus noise
    (pass the predictor's id in ``generator_id``, so the fingerprint covers it).
    ``first_settings``: the optimizer settings of the first frame with a face (its steps, step
    size and schedule; default ``settings``), e.g. the exact mode's own under refine's.
    Raises ProjectError if ``track_path`` holds a corrupt track or one made from other inputs
    (unless ``restart``), ``Cancelled`` after saving when cancelled.
    """
    settings.validate()
    device = torch.device(device)
    track_path = Path(track_path)
    started = time.perf_counter()
    anchors = np.asarray(anchors, np.float32)
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    resolution = int(generator.img_resolution)
    n = driving.n_frames
    first_settings = first_settings or settings
    first_settings.validate()
    first_steps = first_settings.first_frame_steps
    max_steps = max(settings.steps, first_steps)
    fingerprint_settings = settings.fingerprint_dict()
    if first_settings is not settings:
        fingerprint_settings = {**fingerprint_settings, "first_frame_settings": first_settings.fingerprint_dict()}
    fingerprint = track_fingerprint(driving, anchors, generator_id, fingerprint_settings)

    track: LatentTrack | None = None
    if track_path.exists() and not restart:
        track = LatentTrack.load(track_path)
        if track.fingerprint != fingerprint or track.n_frames != n:
            raise ProjectError(
                f"The take folder {track_path.parent} holds a latent track made from another driving "
                "video, generator or settings.",
                "Restart the take to discard it, or give this take another name.")
    if track is None:
        track = LatentTrack.empty(fingerprint, n, space.n_anchors, space.num_ws, space.w_dim, max_steps)
        track.save(track_path)

    frames_optimized = passes = 0
    if track.frames_done < n:
        if landmarks is None:
            landmarks = mesh_landmarks(device, resolution, settings)
        loss = ReenactLoss(landmarks, settings.weights)
        optimizer = FrameOptimizer(generator, space, loss, settings)
        first_optimizer = optimizer if first_settings is settings else FrameOptimizer(generator, space, loss, first_settings)
        reference = identity_reference(generator, space, landmarks) if settings.weights.eyes else None
        cache_key = f"{generator_id}|{type(landmarks).__name__}:{getattr(landmarks, 'input_size', '')}"

        def first_code(t: int, target: FrameTarget) -> PPlusCode:
            """Frame 0's start: the caller's, or ``settings.first_frame``'s (the nearest anchor by default)."""
            given = first_start(t, target) if first_start is not None else None
            if given is not None:
                return given
            anchor_kp = (None if settings.first_frame == "center" or space.n_anchors == 1 else
                         cached_anchor_keypoints(generator, space, landmarks, anchor_cache, cache_key, cancel))
            return first_frame_code(space, settings.first_frame, anchor_kp, target.keypoints[0].cpu().numpy(),
                                    settings.weights.use_z)

        previous: PPlusCode | None = None
        if track.frames_done > 0:
            t_prev = track.frames_done - 1
            previous = PPlusCode(torch.from_numpy(track.alpha[t_prev:t_prev + 1]).to(device),
                                 torch.from_numpy(track.delta[t_prev:t_prev + 1]).to(device))
        first_valid_done = bool(track.face_found[:track.frames_done].any())
        last_save = time.perf_counter()
        unsaved = 0
        try:
            for t in range(track.frames_done, n):
                cancel.check()
                found = bool(driving.valid[t])
                if found:
                    frame = driving.load_image(t)
                    image = image_to_tensor(frame, resolution, device)
                    # landmarks are in the crop's pixels; the crop may differ from the generator's size
                    lm = torch.from_numpy(driving.landmarks[t:t + 1]).to(device) * (resolution / frame.shape[1])
                    target = loss.driving_target(image, lm)
                    frame_optimizer, min_steps = optimizer, None
                    if previous is None or not first_valid_done:
                        # the first frame with a face (earlier faceless frames only held a placeholder)
                        start = first_code(t, target)
                        steps, lr, frame_optimizer = first_steps, first_settings.first_lr, first_optimizer
                        min_steps = max(first_settings.min_steps, first_steps // 2)  # see ReenactSettings.min_steps
                    elif starts is not None:
                        start, steps, lr = starts(t, previous, target), settings.steps, settings.lr
                    else:
                        noise = torch.Generator().manual_seed(settings.seed * 1_000_003 + t)
                        start = space.perturbed(previous, settings.noise_sigma, noise, settings.noise_units)
                        steps, lr = settings.steps, settings.lr
                    result = frame_optimizer.optimize(start, target, reference, steps, lr, min_steps)
                    code = result.code
                    passes += result.generator_passes
                    frames_optimized += 1
                    first_valid_done = True
                    track.loss_curves[t, :len(result.loss_curve)] = result.loss_curve
                    track.final_loss[t] = result.terms.get("total", np.nan)
                    track.key_loss[t] = result.terms.get("key", np.nan)
                    track.steps[t] = len(result.loss_curve)
                else:
                    code = previous if previous is not None else space.center_code()
                with torch.no_grad():
                    track.ws[t] = space.final_ws(code)[0].cpu().numpy()
                track.alpha[t] = code.alpha[0].detach().cpu().numpy()
                track.delta[t] = code.delta[0].detach().cpu().numpy()
                track.face_found[t] = found
                track.frames_done = t + 1
                previous = code
                unsaved += 1
                if unsaved >= settings.save_every and time.perf_counter() - last_save >= settings.min_save_seconds:
                    track.save(track_path)
                    last_save, unsaved = time.perf_counter(), 0
                message = (f"frame {t + 1}/{n} loss {track.final_loss[t]:.4f}" if found
                           else f"frame {t + 1}/{n}: no face, holding the previous code")
                progress(t + 1, n, message)
        except BaseException:
            if unsaved:
                track.save(track_path)  # keep every finished frame (cancel, Ctrl-C, an error)
            raise
    track.smooth_sigma = float(settings.smooth_sigma)
    track.ws_smooth = smooth_track(track.ws, settings.smooth_sigma)
    track.complete = True
    track.save(track_path)
    flagged = [int(i) for i in np.flatnonzero(~track.face_found)]
    return ReenactResult(track, frames_optimized, passes, time.perf_counter() - started, flagged)
