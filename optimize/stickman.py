"""DiffusionAct's conditioning image: 68 landmarks drawn as coloured lines plus two gaze points.

The reenactment encoder was trained on images drawn exactly this way, so every detail is kept:
a 256x256 uint8 canvas of ONES (not zeros), ``cv2.polylines`` of thickness 2 through landmark
coordinates truncated to int32, nine parts in fixed RGB colours, then two filled circles of radius
5 at the gaze points (truncated with ``int()``), and finally ``(x/255 - 0.5) * 2``.

Gaze: the pitch/yaw of the gaze network moves a point from each eye centre by
``(-w/2*sin(yaw)*cos(pitch), -h/2*sin(pitch))``, where w, h and the centre are the box and the
mean of that eye's six landmarks. The official code computes this in float32 numpy; so do we.

Eye naming follows the official code: the "left" eye is landmarks 36-41 (the eye on the image's
left), the "right" eye 42-47.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from optimize.face_crops import five_point_similarity_warp

CANVAS_SIZE = 256
LINE_THICKNESS = 2
GAZE_RADIUS = 5
GAZE_INPUT_SIZE = 224
LEFT_EYE = list(range(36, 42))
RIGHT_EYE = list(range(42, 48))
LEFT_GAZE_COLOR = (255, 165, 0)
RIGHT_GAZE_COLOR = (128, 0, 128)

# (landmark indices, closed, RGB colour) in drawing order.
PARTS: list[tuple[list[int], bool, tuple[int, int, int]]] = [
    (list(range(0, 17)), False, (255, 255, 255)),          # jaw
    (list(range(17, 22)), False, (255, 0, 0)),             # brow (image left)
    (list(range(22, 27)), False, (0, 255, 0)),             # brow (image right)
    (list(range(27, 31)) + [30, 33], False, (0, 0, 255)),  # nose bridge down to the tip
    (list(range(31, 36)), False, (0, 0, 255)),             # nostrils
    (LEFT_EYE, True, (255, 0, 255)),
    (RIGHT_EYE, True, (0, 255, 255)),
    (list(range(48, 60)), True, (255, 255, 0)),            # outer lips
    (list(range(60, 68)), True, (255, 255, 0)),            # inner lips
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _np32(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float32)


@torch.no_grad()
def estimate_gaze(gaze_net: torch.nn.Module, images: torch.Tensor, lm68: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaze (pitch, yaw) radians (B,2) and the aligned 224-px crop (B,3,224,224) it was read from.

    ``images`` (B,3,H,W) in [-1,1]; ``lm68`` (B,68,2) pixel landmarks of those images (the
    official code uses the face detector's landmarks here, not the 3D model's).
    """
    warped = five_point_similarity_warp(images, lm68, GAZE_INPUT_SIZE)
    x = warped.clamp(-1, 1).add(1.0).div(2.0)
    mean = torch.tensor(_IMAGENET_MEAN, device=x.device, dtype=x.dtype)[:, None, None]
    std = torch.tensor(_IMAGENET_STD, device=x.device, dtype=x.dtype)[:, None, None]
    return gaze_net((x - mean) / std), warped


def gaze_points(pitch_yaw: torch.Tensor | np.ndarray, lm68: torch.Tensor | np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Gaze points (right, left), each (B,2) float32 px, from (B,2) pitch/yaw and (B,68,2) landmarks."""
    gaze, lm = _np32(pitch_yaw), _np32(lm68)
    pitch, yaw = gaze[:, 0], gaze[:, 1]

    def point(eye: list[int]) -> np.ndarray:
        pts = lm[:, eye, :]
        width = pts[:, :, 0].max(axis=1) - pts[:, :, 0].min(axis=1)
        height = pts[:, :, 1].max(axis=1) - pts[:, :, 1].min(axis=1)
        dy = -height / 2 * np.sin(pitch)
        dx = -width / 2 * np.sin(yaw) * np.cos(pitch)
        return np.hstack((dx.reshape(-1, 1), dy.reshape(-1, 1))) + pts.mean(axis=1)

    return point(RIGHT_EYE), point(LEFT_EYE)


def draw_stickman(lm68: torch.Tensor | np.ndarray, right_eye: np.ndarray | None = None,
                  left_eye: np.ndarray | None = None, size: int = CANVAS_SIZE) -> torch.Tensor:
    """Conditioning images (B,3,size,size) float32 in [-1,1] from (B,68,2) px landmarks.

    The gaze circles are drawn only when both gaze points (B,2) are given.
    """
    lm = _np32(lm68).reshape(-1, 68, 2)
    out = []
    for b, pose in enumerate(lm):
        xy = pose[None, :, None].astype(np.int32)          # (1,68,1,2), truncated like the official code
        canvas = np.ones((size, size, 3), np.uint8)
        for edges, closed, color in PARTS:
            canvas = cv2.polylines(canvas, xy[:, edges], closed, color, thickness=LINE_THICKNESS)
        if right_eye is not None and left_eye is not None:
            left = (int(left_eye[b][0]), int(left_eye[b][1]))
            right = (int(right_eye[b][0]), int(right_eye[b][1]))
            canvas = cv2.circle(canvas, left, GAZE_RADIUS, LEFT_GAZE_COLOR, -1)
            canvas = cv2.circle(canvas, right, GAZE_RADIUS, RIGHT_GAZE_COLOR, -1)
        out.append(torch.from_numpy(canvas.transpose(2, 0, 1).astype(np.float32)) / 255.0)
    return (torch.stack(out) - 0.5) * 2.0
