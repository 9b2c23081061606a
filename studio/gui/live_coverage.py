"""Rough, display-only pose and expression readings from MediaPipe's 478 landmarks.

Why in the GUI: the coverage meter while recording only needs to tell the user "turn a bit more
left" or "now smile"; nothing is trained or saved from these numbers. (If a lower layer grows
proper measures — e.g. the landmark scores used to learn directions — use those instead.)
Landmarks: (478, 3) in pixels (x, y; z relative), as ``personalize.faces.detect_landmarks`` gives.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe face-mesh indices used here.
NOSE_TIP, CHEEK_R, CHEEK_L = 1, 234, 454
EYE_R_OUT, EYE_L_OUT = 33, 263
MOUTH_R, MOUTH_L, LIP_UP, LIP_DOWN = 61, 291, 13, 14
LID_R_UP, LID_R_DOWN, LID_L_UP, LID_L_DOWN = 159, 145, 386, 374
BROW_R, BROW_L, CHIN, FOREHEAD = 105, 334, 152, 10


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
    """Approximate head direction and expression strengths from one face's landmarks."""
    p = np.asarray(lm, dtype=np.float64)[:, :2]
    eye_dist = float(np.linalg.norm(p[EYE_L_OUT] - p[EYE_R_OUT])) + 1e-6
    face_w = float(np.linalg.norm(p[CHEEK_L] - p[CHEEK_R])) + 1e-6
    # Yaw: where the nose tip sits between the two cheeks (0.5 = frontal).
    t = float(np.dot(p[NOSE_TIP] - p[CHEEK_R], p[CHEEK_L] - p[CHEEK_R]) / face_w ** 2)
    yaw = (t - 0.5) * 2 * 60.0
    # Pitch: nose tip height between forehead and chin (about 0.55 when level).
    face_h = float(np.linalg.norm(p[CHIN] - p[FOREHEAD])) + 1e-6
    s = float(np.dot(p[NOSE_TIP] - p[FOREHEAD], p[CHIN] - p[FOREHEAD]) / face_h ** 2)
    pitch = (s - 0.55) * 2 * 60.0
    mouth_w = float(np.linalg.norm(p[MOUTH_L] - p[MOUTH_R])) / eye_dist
    gap = float(np.linalg.norm(p[LIP_DOWN] - p[LIP_UP])) / eye_dist
    lids = (float(np.linalg.norm(p[LID_R_DOWN] - p[LID_R_UP]))
            + float(np.linalg.norm(p[LID_L_DOWN] - p[LID_L_UP]))) / (2 * eye_dist)
    brow = (float(np.linalg.norm(p[BROW_R] - p[LID_R_UP]))
            + float(np.linalg.norm(p[BROW_L] - p[LID_L_UP]))) / (2 * eye_dist)
    return LiveReading(yaw=yaw, pitch=pitch,
                       smile=_clip01((mouth_w - 0.78) / 0.2),
                       mouth_open=_clip01((gap - 0.05) / 0.35),
                       eyes_closed=_clip01((0.09 - lids) / 0.07),
                       brows_up=_clip01((brow - 0.32) / 0.12))
