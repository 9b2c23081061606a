"""Scalar face attributes used to label samples when learning directions.

Why landmark geometry: the personalized generator renders one person, so a classifier trained on
other faces is unnecessary; the face's own 478 MediaPipe landmarks already tell how open the mouth
and eyes are, how much the mouth corners are raised, and where the head points. Age has no
geometric cue and is scored zero-shot with CLIP ("a photo of a young person" vs "... old person").

Landmarks: (N, 478, 3) float arrays in image pixels (x right, y down, z relative depth in the
scale of x, negative = towards the camera), as ``personalize.faces.detect_landmarks`` returns;
rows of NaN mark images without a detected face. Every measure returns (N,) float64 with NaN
for those rows. All distances are divided by the inter-ocular distance, so scores do not depend on
image size or face scale.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from personalize.errors import UserError

# MediaPipe face-mesh indices (canonical topology; "first"/"second" = image left/right in a frontal face)
EYE_OUTER = (33, 263)
EYE_INNER = (133, 362)
EYE_UPPER = (159, 386)
EYE_LOWER = (145, 374)
MOUTH_CORNERS = (61, 291)
LIP_INNER_UPPER, LIP_INNER_LOWER = 13, 14
FOREHEAD, CHIN = 10, 152

LANDMARK_ATTRIBUTES = ("smile", "mouth_open", "eyes_open", "yaw", "pitch")
ATTRIBUTES = LANDMARK_ATTRIBUTES + ("age",)
AGE_PROMPTS = ("a photo of a young person", "a photo of an old person")


def _face_axes(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-plane face frame: unit x along the eye line, unit y perpendicular (down), and the iod."""
    eye_vec = lm[:, EYE_OUTER[1], :2] - lm[:, EYE_OUTER[0], :2]
    iod = np.linalg.norm(eye_vec, axis=-1)
    x_axis = eye_vec / iod[:, None]
    y_axis = np.stack([-x_axis[:, 1], x_axis[:, 0]], axis=-1)  # rotate +90°: points down for an upright face
    return x_axis, y_axis, iod


def mouth_open(lm: np.ndarray) -> np.ndarray:
    """Gap between the inner lips (13-14) / inter-ocular distance. ~0 closed, ~0.3+ wide open."""
    lm = np.asarray(lm, dtype=np.float64)
    _, _, iod = _face_axes(lm)
    return np.linalg.norm(lm[:, LIP_INNER_LOWER, :2] - lm[:, LIP_INNER_UPPER, :2], axis=-1) / iod


def smile(lm: np.ndarray) -> np.ndarray:
    """Mouth-corner geometry: how far the corners sit above the lip center, plus mouth width.

    score = (y_lip_center - y_corners) / iod + 0.5 * mouth_width / iod, with y along the face's own
    down axis (so head roll does not count). Smiling lifts and spreads the corners; both terms
    grow. A relative score, meaningful for ranking images of one person, not an absolute scale.
    """
    lm = np.asarray(lm, dtype=np.float64)
    x_axis, y_axis, iod = _face_axes(lm)
    corners = lm[:, MOUTH_CORNERS, :2]
    center = 0.5 * (lm[:, LIP_INNER_UPPER, :2] + lm[:, LIP_INNER_LOWER, :2])
    lift = np.einsum("nd,nd->n", center - corners.mean(axis=1), y_axis) / iod
    width = np.abs(np.einsum("nd,nd->n", corners[:, 1] - corners[:, 0], x_axis)) / iod
    return lift + 0.5 * width


def eyes_open(lm: np.ndarray) -> np.ndarray:
    """Mean eye aspect ratio: lid gap (159-145, 386-374) / eye width (33-133, 362-263)."""
    lm = np.asarray(lm, dtype=np.float64)
    ratios = []
    for side in range(2):
        gap = np.linalg.norm(lm[:, EYE_UPPER[side], :2] - lm[:, EYE_LOWER[side], :2], axis=-1)
        width = np.linalg.norm(lm[:, EYE_OUTER[side], :2] - lm[:, EYE_INNER[side], :2], axis=-1)
        ratios.append(gap / width)
    return 0.5 * (ratios[0] + ratios[1])


def head_normal(lm: np.ndarray) -> np.ndarray:
    """(N, 3) unit normal of the face plane pointing towards the camera, from 3D landmarks.

    Face frame: x = outer eye corner 33 -> 263, y = forehead 10 -> chin 152; in the image frame
    (x right, y down, z away from the camera, right-handed) x × y points away from the camera for
    a frontal face, so the normal is its negative.
    """
    lm = np.asarray(lm, dtype=np.float64)
    x = lm[:, EYE_OUTER[1]] - lm[:, EYE_OUTER[0]]
    y = lm[:, CHIN] - lm[:, FOREHEAD]
    n = -np.cross(x, y)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def yaw(lm: np.ndarray) -> np.ndarray:
    """Head yaw in degrees; 0 frontal, positive = face turned towards the image's right side."""
    n = head_normal(lm)
    return np.degrees(np.arctan2(n[:, 0], -n[:, 2]))


def pitch(lm: np.ndarray) -> np.ndarray:
    """Head pitch in degrees; 0 frontal, positive = face tilted up (chin forward)."""
    n = head_normal(lm)
    return np.degrees(np.arctan2(-n[:, 1], -n[:, 2]))


LANDMARK_MEASURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "smile": smile, "mouth_open": mouth_open, "eyes_open": eyes_open, "yaw": yaw, "pitch": pitch,
}


def measure(attribute: str, landmarks: np.ndarray) -> np.ndarray:
    """Score (N,) of ``attribute`` (one of ``LANDMARK_ATTRIBUTES``) from (N, 478, 3) landmarks."""
    if attribute not in LANDMARK_MEASURES:
        raise UserError(f"'{attribute}' is not a landmark attribute.",
                        f"Choose one of: {', '.join(LANDMARK_MEASURES)} (or 'age', scored with CLIP).")
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (478, 3):
        raise ValueError(f"landmarks must be (N, 478, 3), got {lm.shape}")
    with np.errstate(invalid="ignore", divide="ignore"):
        return LANDMARK_MEASURES[attribute](lm)


# --------------------------------------------------------------------------- landmarks of images
def images_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [-1, 1] -> (N, H, W, 3) uint8 RGB."""
    x = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class ImageLandmarker:
    """MediaPipe face mesh in static-image mode, kept open across many images, for image batches.

    Why not ``detect_landmarks`` per image: that builds a new MediaPipe graph per call (~0.1 s),
    which dominates when thousands of generated samples are scored; the graph is reused here
    (``personalize.faces.LandmarkDetector``). Each image is detected independently (no tracking
    between unrelated samples).
    """

    def __init__(self, min_detection: float = 0.5) -> None:
        from personalize.faces import LandmarkDetector

        self._detector = LandmarkDetector(max_faces=1, min_detection=min_detection)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """(N, 3, H, W) in [-1, 1] -> (N, 478, 3) float32 pixel landmarks, NaN rows where no face."""
        frames = images_to_uint8(images)
        out = np.full((len(frames), 478, 3), np.nan, dtype=np.float32)
        for i, frame in enumerate(frames):
            found = self._detector.detect(frame)
            if found is not None:
                out[i] = found
        return out

    def close(self) -> None:
        self._detector.close()

    def __enter__(self) -> "ImageLandmarker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- age with CLIP
@torch.no_grad()
def clip_age_scores(clip_model, images: torch.Tensor) -> np.ndarray:
    """Zero-shot age score (N,) in [0, 1]: P("old") among ``AGE_PROMPTS`` under CLIP.

    ``clip_model``: an ``editing.clip_model.ClipEncoder``; ``images`` (N, 3, H, W) in [-1, 1].
    Uses CLIP's own logit scale, as in CLIP's zero-shot classification.
    """
    text = clip_model.encode_text(list(AGE_PROMPTS))
    image = clip_model.encode_image(images)
    logits = clip_model.logit_scale * image @ text.T
    return logits.softmax(dim=-1)[:, 1].double().cpu().numpy()
