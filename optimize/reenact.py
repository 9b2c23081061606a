"""Per-frame re-enactment by latent optimization in P+ (main paper Sec. 3.3, Appendices B-C).

For every aligned driving frame t, a P+ code is optimized with Adam so that the personalized
generator's image matches the frame's normalized keypoints, mouth and irises (``optimize.losses``).

Temporal consistency (Sec. 3.3.3): frame t starts from frame t-1's result plus Gaussian noise
(sigma = 0.05 on the barycentric coefficients, relative to the uniform one by default,
``PersonalizedSpace.perturbed``; frame 0 starts from the anchor whose rendered
keypoints are nearest to the frame's, or the center of P); after all frames a zero-phase Gaussian
filter (sigma = 2 frames) runs along time on the latent track (``optimize.smoothing``).

Robustness: the track is written atomically to ``latents.npz`` every few frames with the number of
frames done and a fingerprint of the driving crops, landmarks, anchors, generator and settings. An
interrupted take resumes at the first unfinished frame; a track file that is unreadable or was made
from other inputs is reported, never silently reused. Frames where MediaPipe found no face hold the
previous code and are flagged.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from optimize.keypoints import KEYPOINT_DEFINITION
from optimize.latent_space import NOISE_UNITS, PersonalizedSpace, PPlusCode
from optimize.losses import (FrameTarget, IdentityReference, LandmarkFn, LossTerms, LossWeights,
                             ReenactLoss, keypoints_from_landmarks)
from optimize.smoothing import smooth_track
from personalize.errors import ProjectError
from personalize.fileio import atomic_save_npz
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

TRACK_FILE = "latents.npz"
TRACK_FORMAT = 1
MIN_DETECT_SIDE = 256


@dataclass
class ReenactSettings:
    """Everything that shapes a latent track (part of the track's fingerprint)."""

    steps: int = 40
    """Adam steps per frame at most (early stopping may end a frame sooner)."""
    lr: float = 0.05
    """Adam step size for alpha on warm-started frames, in unit-scale coefficients (uniform
    coefficient = 1). Why this small: the start lies within the warm-start noise (0.05) of the
    previous answer, and Adam moves every coefficient by about its step size whatever the
    gradient's size; at 0.2 the first steps threw a start that was already at the answer 4x
    further away than the noise did (measured on the known-answer test)."""
    first_lr: float = 0.2
    """Step size for the first optimized frame, which starts far from its answer."""
    delta_lr_scale: float = 0.1
    """The offsets' step size is ``lr * delta_lr_scale``. Why: L_delta is a sum of norms, whose
    gradient does not vanish near 0, so Adam makes every offset jitter by about its step size;
    at the alpha step size that jitter alone (times lambda_delta = 10) outweighs L_key."""
    noise_sigma: float = 0.05
    """Warm-start noise (Appendix C.3: sigma 0.05) on the previous frame's barycentric
    coefficients alpha; how sigma is read: ``noise_units`` (``PersonalizedSpace.perturbed``)."""
    noise_units: str = "uniform"
    """"uniform" (default): sigma relative to the uniform coefficient (std sigma / N per raw
    coefficient); "alpha": the paper's literal units (std sigma per raw coefficient). Why not
    the paper's by default: at our step sizes it is far more noise than 40 warm steps remove;
    on the known-answer clip (bench/reenact.py) it doubled the keypoint error at 250 anchors
    (0.30 vs 0.12 px at 128) and raised the frame-to-frame jitter by 60 % (docs/ARCHITECTURE.md)."""
    smooth_sigma: float = 2.0
    """Latent low-pass filter along time in frames (Appendix C.3); 0 turns it off."""
    patience: int = 20
    """Early stopping: stop after this many steps without a relative improvement of ``min_improvement``."""
    min_improvement: float = 2e-3
    min_steps: int = 15
    """Early stopping never ends a frame before this many steps (Adam's first big steps often
    overshoot, which must not read as a plateau)."""
    first_steps: int | None = None
    """Steps for the first optimized frame (it starts far from the answer); default 2 x steps."""
    lr_decay: bool = True
    """Cosine decay of the step size over the frame's step budget (down to 10 %): big steps
    first for speed, small ones last to settle."""
    lr_warmup: int = 5
    """Steps over which the step size ramps up linearly. Why: Adam's first steps move every
    coefficient by the full step size whatever the gradient's size, which throws a warm start
    (already near the answer) far off; a ramp keeps the first moves small."""
    first_frame: str = "nearest-anchor"
    """'nearest-anchor' or 'center': where the first frame starts (on the known-answer test both
    reached 0.02-0.05 px at 256 from four targets in 80 steps)."""
    mesh_input: int = 256
    """Side the generated image is resized to before the FaceMesh."""
    save_every: int = 5
    min_save_seconds: float = 10.0
    """Save the track every ``save_every`` frames but not more often than this (a long 1024 px
    track is tens of MB); a cancel, Ctrl-C or error saves at once, so only a hard kill loses
    the last few seconds of work."""
    seed: int = 0
    weights: LossWeights = field(default_factory=LossWeights)

    def validate(self) -> None:
        from personalize.errors import UserError

        if self.steps < 1:
            raise UserError(f"steps must be at least 1 (got {self.steps}).", "Use --steps 50 or more.")
        for name, value in (("learning rate", self.lr), ("first-frame learning rate", self.first_lr)):
            if not (value > 0 and math.isfinite(value)):
                raise UserError(f"{name} must be a positive number (got {value}).", "Try --lr 0.05.")
        if self.first_frame not in ("nearest-anchor", "center"):
            raise UserError(f"unknown first-frame start '{self.first_frame}'.", "Use nearest-anchor or center.")
        if self.noise_sigma < 0 or self.smooth_sigma < 0:
            raise UserError("noise and smoothing sigmas must not be negative.")
        if self.noise_units not in NOISE_UNITS:
            raise UserError(f"unknown warm-start noise units '{self.noise_units}'.", f"Use one of {', '.join(NOISE_UNITS)}.")

    def fingerprint_dict(self) -> dict[str, Any]:
        """The settings that change the optimized codes (not save_every)."""
        d = asdict(self)
        d.pop("save_every")
        d.pop("min_save_seconds")
        d.pop("smooth_sigma")  # smoothing is applied after the fact; changing it reuses the codes
        return d


@dataclass
class DrivingFrames:
    """Aligned driving crops and their MediaPipe landmarks.

    ``load_image(t)`` -> HWC uint8 RGB crop (R x R); ``landmarks`` (T,478,3) float32 in crop pixels
    (MediaPipe on the crop); ``valid`` (T,) bool, False where no face was found.
    """

    load_image: Callable[[int], np.ndarray]
    landmarks: np.ndarray
    valid: np.ndarray
    content_hash: str
    """Identifies the crops' pixels (part of the track fingerprint)."""

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], landmarks: np.ndarray | None = None,
                    valid: np.ndarray | None = None) -> "DrivingFrames":
        """In-memory crops; landmarks are detected with MediaPipe when not given."""
        images = [np.ascontiguousarray(im) for im in images]
        if landmarks is None:
            landmarks, valid = detect_crop_landmarks(images.__getitem__, len(images))
        if valid is None:
            valid = np.ones(len(images), bool)
        digest = hashlib.sha256()
        for im in images:
            digest.update(im.tobytes())
        return cls(images.__getitem__, np.asarray(landmarks, np.float32), np.asarray(valid, bool),
                   digest.hexdigest())

    @classmethod
    def from_crop_files(cls, crop_paths: Sequence[Path], cache: Path | None = None,
                        progress: ProgressFn = no_progress,
                        cancel: CancelToken = NEVER_CANCELLED) -> "DrivingFrames":
        """Crops on disk (PNG); MediaPipe landmarks computed once and cached in ``cache`` (.npz)."""
        paths = [Path(p) for p in crop_paths]
        if not paths:
            raise ProjectError("The driving take has no aligned crops.", "Prepare the driving video again.")
        digest = hashlib.sha256()
        for p in paths:
            digest.update(p.name.encode())
            digest.update(p.read_bytes())
        content_hash = digest.hexdigest()
        landmarks = valid = None
        if cache is not None and cache.is_file():
            try:
                with np.load(cache) as data:
                    if str(data["content_hash"]) == content_hash:
                        landmarks, valid = data["landmarks"], data["valid"]
            except (OSError, KeyError, ValueError, zipfile.BadZipFile):
                landmarks = valid = None  # a broken cache is just recomputed
        if landmarks is None:
            landmarks, valid = detect_crop_landmarks(lambda t: _read_rgb(paths[t]), len(paths),
                                                     progress, cancel)
            if cache is not None:
                atomic_save_npz(cache, landmarks=landmarks, valid=valid, content_hash=np.array(content_hash))
        return cls(lambda t: _read_rgb(paths[t]), np.asarray(landmarks, np.float32),
                   np.asarray(valid, bool), content_hash)


def detect_crop_landmarks(load_image: Callable[[int], np.ndarray], n: int,
                          progress: ProgressFn = no_progress,
                          cancel: CancelToken = NEVER_CANCELLED) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe (static mode) on every aligned crop -> landmarks (T,478,3) in crop pixels, valid (T,).

    Crops smaller than ``MIN_DETECT_SIDE`` are upscaled first (MediaPipe's detector misses faces in
    tiny images, e.g. a 64 px test generator's crops); landmarks are scaled back.
    """
    import cv2

    from personalize.faces import detect_landmarks

    landmarks = np.zeros((n, 478, 3), np.float32)
    valid = np.zeros(n, bool)
    for t in range(n):
        cancel.check()
        image = load_image(t)
        side = image.shape[1]
        scale = 1.0
        if side < MIN_DETECT_SIDE:
            scale = MIN_DETECT_SIDE / side
            image = cv2.resize(image, (MIN_DETECT_SIDE, int(round(image.shape[0] * scale))),
                               interpolation=cv2.INTER_CUBIC)
        found = detect_landmarks(image)
        if found is not None:
            landmarks[t] = found / scale
            valid[t] = True
        progress(t + 1, n, "driving keypoints")
    return landmarks, valid


def _read_rgb(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        from personalize.errors import MediaError

        raise MediaError(f"Cannot read the aligned crop {path}.", "Prepare the driving video again.")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_to_tensor(image: np.ndarray, size: int, device: torch.device | str) -> torch.Tensor:
    """HWC uint8 RGB -> (1,3,size,size) float32 in [-1,1] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()
    tensor = tensor / 127.5 - 1.0
    if tensor.shape[-1] != size or tensor.shape[-2] != size:
        tensor = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                                 align_corners=False, antialias=True)
    return tensor


# ------------------------------------------------------------------------------------ track file
@dataclass
class LatentTrack:
    """The arrays of ``latents.npz`` (T frames, N anchors, L = num_ws layers, D = w_dim).

    alpha (T,N), delta (T,L,N): optimizer codes (unit scale) for resume and warm starts;
    ws (T,L,D): each frame's normalized result; ws_smooth (T,L,D): after the temporal filter
    (empty until ``complete``); face_found (T,) bool; final_loss, key_loss (T,); steps (T,) int;
    loss_curves (T,S) float32, NaN-padded; frames_done: frames 0..frames_done-1 are final.
    """

    fingerprint: str
    alpha: np.ndarray
    delta: np.ndarray
    ws: np.ndarray
    ws_smooth: np.ndarray
    face_found: np.ndarray
    final_loss: np.ndarray
    key_loss: np.ndarray
    steps: np.ndarray
    loss_curves: np.ndarray
    frames_done: int = 0
    complete: bool = False
    smooth_sigma: float = 0.0

    @classmethod
    def empty(cls, fingerprint: str, n_frames: int, n_anchors: int, num_ws: int, w_dim: int,
              max_steps: int) -> "LatentTrack":
        return cls(fingerprint=fingerprint,
                   alpha=np.zeros((n_frames, n_anchors), np.float32),
                   delta=np.zeros((n_frames, num_ws, n_anchors), np.float32),
                   ws=np.zeros((n_frames, num_ws, w_dim), np.float32),
                   ws_smooth=np.zeros((0, num_ws, w_dim), np.float32),  # filled when complete
                   face_found=np.zeros(n_frames, bool),
                   final_loss=np.full(n_frames, np.nan, np.float32),
                   key_loss=np.full(n_frames, np.nan, np.float32),
                   steps=np.zeros(n_frames, np.int32),
                   loss_curves=np.full((n_frames, max_steps), np.nan, np.float32))

    @property
    def n_frames(self) -> int:
        return int(self.ws.shape[0])

    def best_ws(self) -> np.ndarray:
        """The track to render: smoothed when finished with smoothing, else the raw codes."""
        return self.ws_smooth if self.complete and self.smooth_sigma > 0 else self.ws

    def save(self, path: Path) -> None:
        atomic_save_npz(path, format=np.array(TRACK_FORMAT), fingerprint=np.array(self.fingerprint),
                        alpha=self.alpha, delta=self.delta, ws=self.ws, ws_smooth=self.ws_smooth,
                        face_found=self.face_found, final_loss=self.final_loss, key_loss=self.key_loss,
                        steps=self.steps, loss_curves=self.loss_curves,
                        frames_done=np.array(self.frames_done), complete=np.array(self.complete),
                        smooth_sigma=np.array(self.smooth_sigma))

    @classmethod
    def load(cls, path: Path) -> "LatentTrack":
        """Read a track file; raise ProjectError (with what to do) if it is unreadable or inconsistent."""
        hint = (f"Delete {path.parent} or re-run with --restart to optimize the take from scratch "
                "(or use another --name).")
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != TRACK_FORMAT:
                    raise ProjectError(f"{path} was written by another studio version.", hint)
                track = cls(fingerprint=str(data["fingerprint"]),
                            **{k: data[k] for k in ("alpha", "delta", "ws", "ws_smooth", "face_found",
                                                    "final_loss", "key_loss", "steps", "loss_curves")},
                            frames_done=int(data["frames_done"]), complete=bool(data["complete"]),
                            smooth_sigma=float(data["smooth_sigma"]))
        except ProjectError:
            raise
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            raise ProjectError(f"The latent track {path} is corrupt or unreadable ({exc}).", hint) from exc
        t = track.ws.shape[0]
        shapes_ok = (track.alpha.shape[0] == t and track.delta.shape[0] == t and track.ws.ndim == 3
                     and (track.ws_smooth.shape == track.ws.shape or not track.complete)
                     and track.face_found.shape == (t,)
                     and 0 <= track.frames_done <= t and np.isfinite(track.ws[:track.frames_done]).all())
        if not shapes_ok:
            raise ProjectError(f"The latent track {path} is inconsistent (corrupt).", hint)
        return track


def load_track(path: str | Path) -> LatentTrack:
    """Public reader for renderers: the track in ``path`` (a latents.npz or a take folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / TRACK_FILE
    if not path.is_file():
        raise ProjectError(f"No latent track at {path}.",
                           "Run the re-enactment first: studio-cli reenact PROJECT --driving FILE --name TAKE")
    return LatentTrack.load(path)


def track_fingerprint(driving: DrivingFrames, anchors: np.ndarray, generator_id: str,
                      settings: ReenactSettings) -> str:
    """sha256 over everything the codes depend on (crops, landmarks, anchors, generator, settings,
    the keypoint definition)."""
    digest = hashlib.sha256()
    digest.update(driving.content_hash.encode())
    digest.update(np.ascontiguousarray(driving.landmarks, np.float32).tobytes())
    digest.update(np.ascontiguousarray(anchors, np.float32).tobytes())
    digest.update(generator_id.encode())
    digest.update(json.dumps(settings.fingerprint_dict(), sort_keys=True).encode())
    digest.update(KEYPOINT_DEFINITION.encode())  # codes fitted to other keypoints are not reused
    return digest.hexdigest()


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
                 steps: int | None = None, lr: float | None = None) -> FrameResult:
        """Adam from ``start`` for at most ``steps`` (default ``settings.steps``) at step size
        ``lr`` (default ``settings.lr``); returns the best code seen."""
        s = self.settings
        steps = steps or s.steps
        lr = lr or s.lr
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
            if since_improved >= s.patience and len(curve) >= min(s.min_steps, steps):
                break
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


def anchor_keypoints(generator: torch.nn.Module, space: PersonalizedSpace, landmarks: LandmarkFn,
                     batch: int = 8, cancel: CancelToken = NEVER_CANCELLED) -> np.ndarray:
    """Render every anchor once and return its normalized keypoints (N,66,3) (for frame 0's start)."""
    out = []
    all_ws = space.anchor_ws()
    with torch.no_grad():
        for i in range(0, space.n_anchors, batch):
            cancel.check()
            images = generator.synthesis(all_ws[i:i + batch], noise_mode="const")
            out.append(keypoints_from_landmarks(landmarks(images), images.shape[-1]).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def nearest_anchor(anchor_kp: np.ndarray, frame_kp: np.ndarray) -> int:
    """Index of the anchor whose normalized keypoints (N,66,3) are nearest to the frame's (66,3)."""
    dist = np.linalg.norm(anchor_kp - frame_kp[None], axis=-1).sum(axis=-1)
    return int(np.argmin(dist))


def reenact(generator: torch.nn.Module, anchors: np.ndarray, driving: DrivingFrames, track_path: Path,
            landmarks: LandmarkFn, *, settings: ReenactSettings | None = None, generator_id: str = "",
            device: torch.device | str = "cpu", restart: bool = False,
            anchor_kp: np.ndarray | None = None,
            progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> ReenactResult:
    """Optimize (or resume) the latent track of a driving take and save it to ``track_path``.

    generator: a StyleGAN2 ``Generator`` (uses ``synthesis``, ``num_ws``, ``img_resolution``);
    anchors (N, w_dim); landmarks: differentiable images -> (B,478,3) pixels (e.g. ``MeshLandmarks``);
    anchor_kp: precomputed ``anchor_keypoints`` (N,66,3), rendered here when needed and not given.
    Raises ProjectError if ``track_path`` holds a corrupt track or one made from other inputs
    (unless ``restart``), ``Cancelled`` after saving when cancelled.
    """
    settings = settings or ReenactSettings()
    settings.validate()
    device = torch.device(device)
    track_path = Path(track_path)
    started = time.perf_counter()
    anchors = np.asarray(anchors, np.float32)
    space = PersonalizedSpace(anchors, generator.num_ws, device=device)
    resolution = int(generator.img_resolution)
    n = driving.n_frames
    first_steps = settings.first_steps or 2 * settings.steps
    max_steps = max(settings.steps, first_steps)
    fingerprint = track_fingerprint(driving, anchors, generator_id, settings)

    track: LatentTrack | None = None
    if track_path.exists() and not restart:
        track = LatentTrack.load(track_path)
        if track.fingerprint != fingerprint or track.n_frames != n:
            raise ProjectError(
                f"The take folder {track_path.parent} holds a latent track made from another driving "
                "video, generator or settings.",
                "Re-run with --restart to discard it, or choose another --name for this take.")
    if track is None:
        track = LatentTrack.empty(fingerprint, n, space.n_anchors, space.num_ws, space.w_dim, max_steps)
        track.save(track_path)

    loss = ReenactLoss(landmarks, settings.weights)
    optimizer = FrameOptimizer(generator, space, loss, settings)
    frames_optimized = passes = 0
    if track.frames_done < n:
        reference = identity_reference(generator, space, landmarks) if settings.weights.eyes else None
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
                    if previous is None or not first_valid_done:
                        # the first frame with a face (earlier faceless frames only held a placeholder)
                        start = _first_code(settings, space, generator, landmarks, target, anchor_kp, cancel)
                        steps, lr = first_steps, settings.first_lr
                    else:
                        noise = torch.Generator().manual_seed(settings.seed * 1_000_003 + t)
                        start = space.perturbed(previous, settings.noise_sigma, noise, settings.noise_units)
                        steps, lr = settings.steps, settings.lr
                    result = optimizer.optimize(start, target, reference, steps, lr)
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


def _first_code(settings: ReenactSettings, space: PersonalizedSpace, generator: torch.nn.Module,
                landmarks: LandmarkFn, target: FrameTarget, anchor_kp: np.ndarray | None,
                cancel: CancelToken) -> PPlusCode:
    if settings.first_frame == "center" or space.n_anchors == 1:
        return space.center_code()
    if anchor_kp is None:
        anchor_kp = anchor_keypoints(generator, space, landmarks, cancel=cancel)
    index = nearest_anchor(anchor_kp, target.keypoints[0].cpu().numpy())
    return space.anchor_code(index)
