"""Per-frame quality flags of a prepared video, and their summary (``quality.json``).

Why flags instead of dropping frames: the self-scan's frame selection should skip bad frames, but a
driving video must keep its timeline (every frame is re-enacted, bad ones from interpolated
crops). So preparation keeps every frame and records what is wrong with it; each consumer decides.

Flags: ``no_face``, ``multiple_faces`` (someone else in the shot; the tracked subject is kept),
``too_small`` (face smaller than ``min_face_px`` source pixels: upscaled crops are soft),
``blurry`` (variance of the Laplacian of the aligned crop far below the video's median; relative
because absolute sharpness depends on camera and lighting), ``extreme_pose`` (yaw or pitch beyond
what an FFHQ generator models).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

FLAGS = ("no_face", "multiple_faces", "too_small", "blurry", "extreme_pose")
# Flags that make a frame unusable as training data (multiple_faces alone does not).
BAD_FLAGS = ("no_face", "too_small", "blurry", "extreme_pose")

# Points for a head frame: left/right face edge (cheeks at the ears), forehead top, chin.
_FACE_EDGE_LEFT, _FACE_EDGE_RIGHT, _FOREHEAD, _CHIN = 234, 454, 10, 152


@dataclass(frozen=True)
class QualityThresholds:
    min_face_px: float = 96.0
    blur_relative: float = 0.35   # blurry if sharpness < blur_relative * median(valid frames)
    blur_absolute: float = 0.0    # and/or below this absolute Laplacian variance (0: off)
    max_yaw_deg: float = 45.0
    max_pitch_deg: float = 35.0


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from (478, 3) pixel landmarks; 0, 0, 0 faces the camera.

    A head frame from the 3D mesh: "right" from cheek to cheek, "down" from forehead to chin
    (orthogonalized); the face normal is their cross product. MediaPipe's z has the scale of x,
    so the geometry is metric up to scale. Signs: yaw > 0 when the face turns towards image
    right, pitch > 0 when it looks down.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    right = lm[_FACE_EDGE_RIGHT] - lm[_FACE_EDGE_LEFT]
    down = lm[_CHIN] - lm[_FOREHEAD]
    right /= np.linalg.norm(right) + 1e-12
    down = down - down.dot(right) * right
    down /= np.linalg.norm(down) + 1e-12
    normal = np.cross(right, down)  # into the head (z grows away from the camera)
    yaw = np.degrees(np.arctan2(-normal[0], normal[2]))
    pitch = np.degrees(np.arctan2(normal[1], np.hypot(normal[0], normal[2])))
    roll = np.degrees(np.arctan2(right[1], right[0]))
    return float(yaw), float(pitch), float(roll)


def sharpness(crop_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the crop's central face region at 256 px (size-independent)."""
    gray = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY)
    if gray.shape[0] != 256:
        gray = cv2.resize(gray, (256, 256), interpolation=cv2.INTER_AREA)
    face = gray[64:224, 64:192]
    return float(cv2.Laplacian(face, cv2.CV_32F).var())


@dataclass
class FrameQuality:
    n_faces: int
    face_px: float
    yaw: float
    pitch: float
    sharpness: float
    flags: list[str]


def assess(landmarks: np.ndarray, valid: np.ndarray, n_faces: np.ndarray,
           sharpness_values: np.ndarray, thresholds: QualityThresholds = QualityThresholds()
           ) -> list[FrameQuality]:
    """Flags for every frame from (T, 478, 3) landmarks, (T,) valid, (T,) face counts and
    (T,) crop sharpness (NaN where unknown)."""
    valid = np.asarray(valid, dtype=bool)
    sharp = np.asarray(sharpness_values, dtype=np.float64)
    known = valid & np.isfinite(sharp)
    median = float(np.median(sharp[known])) if known.any() else float("nan")
    frames: list[FrameQuality] = []
    for t in range(len(valid)):
        flags: list[str] = []
        face_px = yaw = pitch = float("nan")
        if not valid[t]:
            flags.append("no_face")
        else:
            if n_faces[t] > 1:
                flags.append("multiple_faces")
            lm = landmarks[t]
            xy = lm[:, :2]
            face_px = float((xy.max(axis=0) - xy.min(axis=0)).max())
            if face_px < thresholds.min_face_px:
                flags.append("too_small")
            if np.isfinite(sharp[t]) and (
                    sharp[t] < thresholds.blur_relative * median
                    or sharp[t] < thresholds.blur_absolute):
                flags.append("blurry")
            yaw, pitch, _ = head_pose(lm)
            if abs(yaw) > thresholds.max_yaw_deg or abs(pitch) > thresholds.max_pitch_deg:
                flags.append("extreme_pose")
        frames.append(FrameQuality(int(n_faces[t]), face_px, yaw, pitch, float(sharp[t]), flags))
    return frames


def sharpest_frontal(records: list[dict[str, Any]], tolerance_deg: float = 5.0) -> int | None:
    """The frame to use as a one-shot source: the sharpest of those that face the camera best.

    ``records``: ``quality.json``'s per-frame records (``t``, ``yaw``, ``pitch``, ``sharpness``,
    ``flags``). Candidates are the usable frames (no ``BAD_FLAGS``; any frame with a face if none
    is usable) whose head angle (hypot of yaw and pitch) is within ``tolerance_deg`` of the most
    frontal one; the sharpest wins. Why not the sharpest overall: a one-shot model copies the
    source's pose into every frame's identity, so a turned head costs more than a little blur.
    None when no frame has a face.
    """
    def angle(rec: dict[str, Any]) -> float:
        return float(np.hypot(rec["yaw"], rec["pitch"]))

    with_face = [r for r in records if "no_face" not in r.get("flags", []) and r.get("yaw") is not None
                 and r.get("pitch") is not None]
    usable = [r for r in with_face if not set(r.get("flags", [])) & set(BAD_FLAGS)] or with_face
    if not usable:
        return None
    best_angle = min(angle(r) for r in usable)
    near = [r for r in usable if angle(r) <= best_angle + tolerance_deg]
    return int(max(near, key=lambda r: r.get("sharpness") or 0.0)["t"])


def usable_mask(frames: list[FrameQuality]) -> np.ndarray:
    """(T,) bool: frames without any of ``BAD_FLAGS``."""
    return np.array([not any(f in BAD_FLAGS for f in fq.flags) for fq in frames], dtype=bool)


def summarize(frames: list[FrameQuality]) -> dict[str, Any]:
    counts = {flag: sum(flag in fq.flags for fq in frames) for flag in FLAGS}
    return {"n_frames": len(frames),
            "n_valid": len(frames) - counts["no_face"],
            "n_usable": int(usable_mask(frames).sum()),
            "counts": counts}


def quality_report(frames: list[FrameQuality], thresholds: QualityThresholds) -> dict[str, Any]:
    """The ``quality.json`` document: thresholds, summary and one record per frame."""
    def clean(value: float) -> float | None:
        return None if not np.isfinite(value) else round(float(value), 3)

    records = []
    for t, fq in enumerate(frames):
        record = asdict(fq)
        for key in ("face_px", "yaw", "pitch", "sharpness"):
            record[key] = clean(record[key])
        records.append({"t": t, **record})
    return {"version": 1, "thresholds": asdict(thresholds), "summary": summarize(frames),
            "frames": records}
