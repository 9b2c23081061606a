"""Rough, display-only pose and expression readings from MediaPipe's 478 landmarks.

Head pose comes from ``personalize.faces.quality.head_pose``. The expression strengths are simple
landmark ratios mapped to 0..1 for the meter only: it just tells the user "now smile"; nothing is
trained or saved from these numbers.
Landmarks: (478, 3) in pixels (x, y; z relative), as ``personalize.faces.detect_landmarks`` gives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe face-mesh indices used here.
EYE_R_OUT, EYE_L_OUT = 33, 263
MOUTH_R, MOUTH_L, LIP_UP, LIP_DOWN = 61, 291, 13, 14
LID_R_UP, LID_R_DOWN, LID_L_UP, LID_L_DOWN = 159, 145, 386, 374
BROW_R, BROW_L = 105, 334


@dataclass
class LiveReading:
    yaw: float          # degrees, + = head turned to the image's right
    pitch: float        # degrees, + = looking down in the image
    smile: float        # 0..1
    mouth_open: float   # 0..1
    eyes_closed: float  # 0..1
    brows_up: float     # 0..1


def _clip01(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def read_landmarks(lm: np.ndarray) -> LiveReading:
    """Approximate head direction and expression strengths from one face's landmarks.

    The ratio thresholds were set from the 5-95 % range of the shared self-scan clips.
    """
    p = np.asarray(lm, dtype=np.float64)[:, :2]
    eye_dist = float(np.linalg.norm(p[EYE_L_OUT] - p[EYE_R_OUT])) + 1e-6
    # Head direction: the faces layer's 3D head frame (degrees).
    from personalize.faces.quality import head_pose
    yaw, pitch, _roll = head_pose(np.asarray(lm, dtype=np.float64))
    mouth_w = float(np.linalg.norm(p[MOUTH_L] - p[MOUTH_R])) / eye_dist
    gap = float(np.linalg.norm(p[LIP_DOWN] - p[LIP_UP])) / eye_dist
    lids = (float(np.linalg.norm(p[LID_R_DOWN] - p[LID_R_UP]))
            + float(np.linalg.norm(p[LID_L_DOWN] - p[LID_L_UP]))) / (2 * eye_dist)
    brow = (float(np.linalg.norm(p[BROW_R] - p[LID_R_UP]))
            + float(np.linalg.norm(p[BROW_L] - p[LID_L_UP]))) / (2 * eye_dist)
    return LiveReading(yaw=yaw, pitch=pitch,
                       smile=_clip01((mouth_w - 0.50) / 0.08),
                       mouth_open=_clip01((gap - 0.05) / 0.35),
                       eyes_closed=_clip01((0.10 - lids) / 0.06),
                       brows_up=_clip01((brow - 0.31) / 0.06))
