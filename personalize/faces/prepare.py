"""Prepare a video for the studio: landmarks, smoothed FFHQ crops, quality flags.

Two streaming passes, so memory does not grow with the video's length:

1. landmarks: decode frames one by one, track the subject with MediaPipe (cached per source hash
   in ``.prepare/tracking.npz``, so changing the crop size or the smoothing re-uses it);
2. smoothing of the crop parameters over time (cheap, in memory: 4 numbers per frame);
3. crops: decode again, warp each frame into its crop, write ``crops/{t:06d}.png``.

Resuming and atomicity: crops are written into ``.prepare/crops-<key>/`` (one file at a time,
each by rename); a re-run with the same source and settings skips the crops already there. Only
when every output is complete are they moved into place, and the marker ``prepare.json`` is
written last: a folder without it is not prepared. If the input turns out to be unusable (no
face anywhere, too short, corrupt) everything this call created is removed again, and a previous
complete result in ``out_dir`` stays untouched.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from personalize.errors import MediaError, UserError
from personalize.faces.alignment import (Quad, alignment_anchors, quad_params_from_anchors,
                                         quad_transform, transform_points, warp_crop)
from personalize.faces.landmarks import DEFAULT_MAX_FACES, N_LANDMARKS, LandmarkTracker
from personalize.faces.quality import (BAD_FLAGS, QualityThresholds, assess, quality_report,
                                       sharpness)
from personalize.faces.smoothing import smooth_quads
from personalize.fileio import atomic_save_npz, atomic_write_json, read_json, sha256_file
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import iter_frames, probe_video, read_image

PREPARE_VERSION = 1
WORK_DIR = ".prepare"
MARKER = "prepare.json"
LANDMARKS_FILE = "landmarks.npz"
QUALITY_FILE = "quality.json"
CROPS_DIR = "crops"
# Progress reports count frames per pass (a 75-frame clip reads "30 / 75", not "105 / 150") and
# name the pass, so a progress bar can say which of the two passes over the video runs.
LANDMARKS_PASS = "finding landmarks (pass 1 of 2)"
CROPS_PASS = "writing crops (pass 2 of 2)"
PNG_COMPRESSION = 1  # fast: crops are written once per frame; level 1 is ~5x faster than 3
# Run-length strategy: about as fast as the default at level 1 and ~20 % smaller files for
# upscaled (smooth) 1024 px crops.
PNG_STRATEGY = cv2.IMWRITE_PNG_STRATEGY_RLE


@dataclass
class PrepareResult:
    """A prepared video. Arrays are indexed by frame ``t`` (T frames).

    ``landmarks`` (T, 478, 3) float32 source-frame pixels, NaN where ``valid`` (T,) is False (no
    face); ``transforms`` (T, 3, 3) float64 source->crop for *every* frame (frames without a face
    get crops from interpolated parameters, so a driving video keeps its timeline);
    ``crop_landmarks`` (T, 478, 3) float32 crop pixels (NaN where invalid); ``n_faces`` (T,).
    """

    out_dir: Path
    landmarks: np.ndarray
    valid: np.ndarray
    transforms: np.ndarray
    crop_landmarks: np.ndarray
    n_faces: np.ndarray
    fps: float
    size: int
    crop_paths: list[Path]
    quality: dict[str, Any]
    source_sha256: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    reused: bool = False

    def __len__(self) -> int:
        return len(self.valid)

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self.quality.get("summary", {}))

    @property
    def usable(self) -> np.ndarray:
        """(T,) bool: frames with a face and without quality problems (see quality.BAD_FLAGS)."""
        flags = [set(rec["flags"]) for rec in self.quality["frames"]]
        return np.array([not (f & set(BAD_FLAGS)) for f in flags], dtype=bool)

    def read_crop(self, t: int) -> np.ndarray:
        """Crop ``t`` as (size, size, 3) uint8 RGB."""
        return read_image(self.crop_paths[t])


# ------------------------------------------------------------------------------------- helpers
def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _write_png_fast(path: Path, image_rgb: np.ndarray) -> None:
    """Write a crop by temp file + rename (atomic, but without fsync: ~3 ms per file saved).

    Durability comes from the marker written (and fsynced) after all crops.
    """
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION,
                            cv2.IMWRITE_PNG_STRATEGY, PNG_STRATEGY])
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(buf.tobytes())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _check_settings(size: int, smooth_sigma: float) -> None:
    if not isinstance(size, (int, np.integer)) or not 16 <= int(size) <= 4096:
        raise UserError(f"Crop size {size!r} is not supported.",
                        "Use 1024 for the FFHQ generator (512 or 256 for quick tests).")
    if not np.isfinite(smooth_sigma) or smooth_sigma < 0:
        raise UserError(f"Smoothing sigma {smooth_sigma!r} must be >= 0 (frames).",
                        "Use about 2 (0 turns smoothing off).")


# ------------------------------------------------------------------------------ pass 1: track
def _track(video: Path, n_expected: int, max_faces: int, progress: ProgressFn,
           cancel: CancelToken) -> tuple[np.ndarray, np.ndarray]:
    """(T, 478, 3) float32 landmarks (NaN: no face) and (T,) int face counts, streaming."""
    landmarks: list[np.ndarray] = []
    n_faces: list[int] = []
    nan_face = np.full((N_LANDMARKS, 3), np.nan, dtype=np.float32)
    with LandmarkTracker(max_faces=max_faces) as tracker:
        for t, frame in enumerate(iter_frames(video)):
            cancel.check()
            faces = tracker.process(frame)
            landmarks.append(faces.landmarks if faces.landmarks is not None else nan_face)
            n_faces.append(faces.n_faces)
            if t % 10 == 0:
                progress(min(t + 1, n_expected), n_expected, LANDMARKS_PASS)
    progress(n_expected, n_expected, LANDMARKS_PASS)
    if not landmarks:
        raise MediaError(f"{video} holds no decodable frames.", "Record or export the video again.")
    return np.stack(landmarks), np.asarray(n_faces, dtype=np.int32)


def _load_tracking(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return data["landmarks"].astype(np.float32), data["n_faces"].astype(np.int32)
    except (OSError, ValueError, KeyError):
        return None


# ------------------------------------------------------------------------------ smoothing
def crop_transforms(landmarks: np.ndarray, valid: np.ndarray, size: int,
                    smooth_sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame source->crop transforms (T, 3, 3) from landmarks, smoothed over time.

    Returns (transforms, raw quad params (T, 4) [cx, cy, xx, xy] (NaN where invalid), smoothed
    quad params (T, 4)).
    """
    T = len(valid)
    raw = np.full((T, 4), np.nan)
    if valid.any():
        c, x = quad_params_from_anchors(alignment_anchors(landmarks[valid]))
        raw[valid, :2], raw[valid, 2:] = c, x
    centers, half_sides = smooth_quads(raw[:, :2], raw[:, 2:], valid, smooth_sigma)
    transforms = np.stack([quad_transform(Quad(centers[t], half_sides[t]), size)
                           for t in range(T)])
    return transforms, raw, np.concatenate([centers, half_sides], axis=1)


# ------------------------------------------------------------------------------ pass 2: crops
def _crop_one(frame: np.ndarray, transform: np.ndarray, size: int, padding: str,
              path: Path) -> float:
    """Warp, write and measure one crop (runs in a worker thread: OpenCV releases the GIL)."""
    crop = warp_crop(frame, transform, size, padding)
    _write_png_fast(path, crop)
    return sharpness(crop)


def _existing_sharpness(path: Path, size: int) -> float | None:
    """Sharpness of a crop an earlier (interrupted) run wrote, or None if it must be redone."""
    try:
        crop = read_image(path)
    except MediaError:
        return None
    return sharpness(crop) if crop.shape == (size, size, 3) else None


def _write_crops(video: Path, transforms: np.ndarray, size: int, padding: str, crops_dir: Path,
                 progress: ProgressFn, cancel: CancelToken, workers: int = 2) -> np.ndarray:
    """Warp and write every crop not already in ``crops_dir``; return (T,) sharpness values.

    Frames are decoded in order (ffmpeg runs in its own process) and handed to a small thread
    pool, at most ``2 * workers`` frames in flight, so memory stays bounded.
    """
    T = len(transforms)
    crops_dir.mkdir(parents=True, exist_ok=True)
    existing = {p.name for p in crops_dir.glob("*.png")}
    values = np.full(T, np.nan)
    pending: deque[tuple[int, Future[float]]] = deque()

    def collect(block_until: int) -> None:
        while len(pending) > block_until:
            index, future = pending.popleft()
            values[index] = future.result()

    n_decoded = 0
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crops") as pool:
        try:
            for t, frame in enumerate(iter_frames(video)):
                cancel.check()
                if t >= T:
                    n_decoded = t + 1
                    break
                n_decoded = t + 1
                if t % 5 == 0 or t == T - 1:
                    progress(t + 1, T, CROPS_PASS)
                path = crops_dir / f"{t:06d}.png"
                if path.name in existing:
                    value = _existing_sharpness(path, size)
                    if value is not None:
                        values[t] = value
                        continue
                pending.append((t, pool.submit(_crop_one, frame, transforms[t], size, padding,
                                               path)))
                collect(2 * workers)
            collect(0)
        finally:
            for _, future in pending:
                future.cancel()
    if n_decoded != T:
        raise MediaError(f"{video} now has {n_decoded} frames instead of {T}; it changed while "
                         "being prepared.", "Leave the video file alone while it is prepared, "
                         "then retry.")
    return values


# ------------------------------------------------------------------------------ entry points
def prepare_video(video: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                  size: int = 1024, smooth_sigma: float = 2.0,
                  progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED, *,
                  padding: str = "ffhq", max_faces: int = DEFAULT_MAX_FACES,
                  thresholds: QualityThresholds = QualityThresholds(),
                  min_frames: int = 2) -> PrepareResult:
    """Fill ``out_dir`` with ``landmarks.npz``, ``crops/{t:06d}.png`` (size x size RGB),
    ``quality.json`` and the marker ``prepare.json``; re-use whatever an earlier run finished.

    Raises MediaError for unusable input (not a video, corrupt, < ``min_frames`` frames, no face
    in any frame), leaving nothing behind; Cancelled keeps finished work for the next run.
    """
    video = Path(video)
    out_dir = Path(out_dir)
    _check_settings(size, smooth_sigma)
    size = int(size)
    if padding not in ("ffhq", "reflect", "black"):
        raise ValueError(f"unknown padding {padding!r}")
    info = probe_video(video)
    if info.n_frames < min_frames:
        raise MediaError(f"{video} has only {info.n_frames} frame(s).",
                         f"Use a video of at least {min_frames} frames (a self-scan should be "
                         "20-30 s long).")
    progress(0, info.n_frames, LANDMARKS_PASS)
    source_sha = sha256_file(video)
    tracking_key = _key({"v": PREPARE_VERSION, "sha": source_sha, "max_faces": max_faces})
    settings = {"size": size, "smooth_sigma": float(smooth_sigma), "padding": padding,
                "max_faces": max_faces}
    crops_key = _key({"v": PREPARE_VERSION, "sha": source_sha, **settings})
    final_key = _key({"crops": crops_key, "thresholds": asdict(thresholds)})

    marker = out_dir / MARKER
    if marker.is_file():
        try:
            if read_json(marker).get("key") == final_key:
                result = load_prepared(out_dir)
                result.reused = True
                progress(len(result), len(result), "already prepared")
                return result
        except (OSError, ValueError, MediaError):
            pass

    created_out = not out_dir.exists()
    work = out_dir / WORK_DIR
    created_work = not work.exists()
    crops_dir = work / f"crops-{crops_key[:16]}"
    created_crops = not crops_dir.exists()
    work.mkdir(parents=True, exist_ok=True)
    try:
        tracking_path = work / "tracking.npz"
        cached = _load_tracking(tracking_path, tracking_key)
        if cached is None:
            landmarks, n_faces = _track(video, info.n_frames, max_faces, progress, cancel)
        else:
            landmarks, n_faces = cached
        valid = np.isfinite(landmarks).all(axis=(1, 2))
        T = len(valid)
        if T < min_frames:
            raise MediaError(f"{video} has only {T} decodable frame(s).",
                             f"Use a video of at least {min_frames} frames.")
        if not valid.any():
            raise MediaError(f"No face was found in any of the {T} frames of {video}.",
                             "Record the video facing the camera, with your whole face in the "
                             "picture and enough light.")
        if cached is None:
            atomic_save_npz(tracking_path, key=np.array(tracking_key), landmarks=landmarks,
                            n_faces=n_faces)
        progress(0, T, CROPS_PASS)

        transforms, raw_quads, quads = crop_transforms(landmarks, valid, size, smooth_sigma)
        sharp = _write_crops(video, transforms, size, padding, crops_dir, progress, cancel)
        cancel.check()

        crop_landmarks = transform_points(transforms, landmarks).astype(np.float32)
        frames = assess(landmarks, valid, n_faces, sharp, thresholds)
        report = quality_report(frames, thresholds)
        report["summary"].update({"fps": info.fps, "size": size,
                                  "smooth_sigma": float(smooth_sigma)})
        _publish(out_dir, work, crops_dir, report, final_key, source_sha, settings, info.fps,
                 dict(landmarks=landmarks, valid=valid, transforms=transforms,
                      crop_landmarks=crop_landmarks, n_faces=n_faces, raw_quads=raw_quads,
                      quads=quads, fps=np.array(info.fps), size=np.array(size),
                      source_sha256=np.array(source_sha),
                      settings=np.array(json.dumps(settings))))
        progress(T, T, "done")
    except MediaError:
        # Unusable input: remove everything this call created, keep earlier complete results.
        if created_out:
            shutil.rmtree(out_dir, ignore_errors=True)
        elif created_work:
            shutil.rmtree(work, ignore_errors=True)
        elif created_crops:
            shutil.rmtree(crops_dir, ignore_errors=True)
        raise
    return load_prepared(out_dir)


def _publish(out_dir: Path, work: Path, crops_dir: Path, report: dict[str, Any], key: str,
             source_sha: str, settings: dict[str, Any], fps: float,
             arrays: dict[str, np.ndarray]) -> None:
    """Move finished outputs into place; the marker goes last (and first goes away)."""
    marker = out_dir / MARKER
    if marker.exists():
        marker.unlink()
    atomic_save_npz(out_dir / LANDMARKS_FILE, **arrays)
    atomic_write_json(out_dir / QUALITY_FILE, report)
    final_crops = out_dir / CROPS_DIR
    if final_crops.exists():
        old = work / f"old-crops-{uuid.uuid4().hex[:8]}"
        os.replace(final_crops, old)
    os.replace(crops_dir, final_crops)
    atomic_write_json(marker, {"version": PREPARE_VERSION, "key": key,
                               "source_sha256": source_sha, "settings": settings,
                               "n_frames": int(len(arrays["valid"])), "fps": fps,
                               "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "summary": report["summary"]})
    for leftover in work.iterdir():  # old crops and crops of abandoned settings
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)


def load_prepared(out_dir: str | os.PathLike[str]) -> PrepareResult:
    """Open a folder filled by ``prepare_video``; MediaError if it is missing or incomplete."""
    out_dir = Path(out_dir)
    marker = out_dir / MARKER
    hint = "Prepare the video first."
    if not marker.is_file():
        raise MediaError(f"{out_dir} holds no finished video preparation.", hint)
    try:
        meta = read_json(marker)
        with np.load(out_dir / LANDMARKS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        quality = read_json(out_dir / QUALITY_FILE)
    except (OSError, ValueError, KeyError) as exc:
        raise MediaError(f"The prepared data in {out_dir} is damaged ({exc}).",
                         "Prepare the video again.") from exc
    T = int(len(arrays["valid"]))
    crops = out_dir / CROPS_DIR
    crop_paths = [crops / f"{t:06d}.png" for t in range(T)]
    n_present = sum(1 for _ in crops.glob("*.png")) if crops.is_dir() else 0
    if n_present < T:
        raise MediaError(f"{crops} holds {n_present} of {T} crops.", "Prepare the video again.")
    return PrepareResult(
        out_dir=out_dir, landmarks=arrays["landmarks"], valid=arrays["valid"].astype(bool),
        transforms=arrays["transforms"], crop_landmarks=arrays["crop_landmarks"],
        n_faces=arrays["n_faces"], fps=float(arrays["fps"]), size=int(arrays["size"]),
        crop_paths=crop_paths, quality=quality,
        source_sha256=str(meta.get("source_sha256", "")), settings=dict(meta.get("settings", {})))


__all__ = ["PrepareResult", "prepare_video", "load_prepared", "crop_transforms"]
