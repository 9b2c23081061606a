"""DiffusionAct's conditioning image drawn from MediaPipe landmarks (``--landmarks mediapipe``).

NOT the official path. The official conditioning (``optimize.backends.diffusionact.EmocaConditioner``)
fits EMOCA + FLAME to every frame, draws FLAME's 68 landmarks with the SOURCE's face shape and the
frame's pose and expression, and adds two gaze points from a gaze network. That needs FLAME, which
users must register for. This module draws the same kind of image (``optimize.stickman``: same
parts, colours, canvas, coordinates) from what the studio already has, MediaPipe's 478 landmarks:

* **Shape transfer** (FLAME's "source shape, driving expression"): relative motion in 3D. A
  similarity S_t (Umeyama, on points that barely move with expression: forehead, nose bridge,
  eye corners, temples) maps the driving video's reference face R (its most frontal frame) onto
  frame t; another one, A, maps R onto the source face. The drawn face is
  ``D_t + L_t (A^-1(source) - R)``: the frame's landmarks D_t plus the source's difference from
  the reference face, turned and scaled like the frame (L_t the linear part of S_t). An
  expression is thus measured relative to the reference frame, which should be roughly neutral.
* **Gaze**: the official points are the eye centre moved by half the eye box along the gaze
  network's angles; here they are the iris centres MediaPipe tracks (468: the eye of landmarks
  36-41, 473: the eye of 42-47), transferred like every other point. No gaze network is needed.
* **Coordinates**: as officially, the points are drawn in the pixels of the frame's 224-px DECA
  crop (the box of its own 68 landmarks, ``optimize.face_crops.deca_box_transform``), on the
  256-px canvas, unchanged.

Inputs are (B,478,3) MediaPipe landmarks in the crop's continuous pixels (MediaPipe's convention:
pixel i spans [i, i+1)); the official rules work in pixel-index coordinates, so 0.5 is subtracted.
"""
from __future__ import annotations

import numpy as np
import torch

from optimize.face_crops import deca_box_transform, mediapipe_to_ibug68, umeyama_similarity
from optimize.stickman import draw_stickman

# MediaPipe face-mesh vertices that move little with expressions (forehead, nose bridge and tip,
# outer and inner eye corners, temples): the similarities are fitted on them.
RIGID_POINTS = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 109, 338, 67, 297, 103, 332,
                33, 133, 263, 362, 234, 454, 127, 356)
IRIS_OF_EYE_36_41, IRIS_OF_EYE_42_47 = 468, 473


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return (x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)).astype(np.float64)


def _similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(3, 4) least-squares 3D similarity mapping src (478,3) onto dst on the rigid points."""
    idx = list(RIGID_POINTS)
    return umeyama_similarity(src[idx], dst[idx])


def transfer_shape(source: torch.Tensor | np.ndarray, driving: torch.Tensor | np.ndarray,
                   reference: torch.Tensor | np.ndarray) -> np.ndarray:
    """Driving faces (B,478,3) redrawn with the source's shape (478,3); ``reference`` (478,3) is the
    driving video's reference face. Returns (B,478,3) float64 in the driving crops' pixels."""
    src, drv, ref = _as_numpy(source).reshape(478, 3), _as_numpy(driving).reshape(-1, 478, 3), \
        _as_numpy(reference).reshape(478, 3)
    to_source = _similarity(ref, src)
    linear, shift = to_source[:, :3], to_source[:, 3]
    source_in_reference = (src - shift) @ np.linalg.inv(linear).T
    offset = source_in_reference - ref                      # the source's shape minus the reference's
    out = np.empty_like(drv)
    for b, frame in enumerate(drv):
        frame_linear = _similarity(ref, frame)[:, :3]
        out[b] = frame + offset @ frame_linear.T
    return out


def conditioning_from_mesh(mesh: torch.Tensor | np.ndarray, box_lm68: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Stickman images (B,3,256,256) in [-1,1] from faces ``mesh`` (B,478,3, continuous crop
    pixels) drawn in the DECA crop of ``box_lm68`` (B,68,2, pixel-index crop pixels: the frames'
    own landmarks, as the official EMOCA crop uses the detector's)."""
    pts = _as_numpy(mesh).reshape(-1, 478, 3)[..., :2] - 0.5
    boxes = _as_numpy(box_lm68).reshape(-1, 68, 2)
    lm68 = mediapipe_to_ibug68(pts)
    irises = pts[:, [IRIS_OF_EYE_42_47, IRIS_OF_EYE_36_41]]
    in_crop68, right, left = [], [], []
    for b in range(len(pts)):
        m = deca_box_transform(boxes[b])
        in_crop68.append(lm68[b] @ m[:, :2].T + m[:, 2])
        eyes = irises[b] @ m[:, :2].T + m[:, 2]
        right.append(eyes[0])
        left.append(eyes[1])
    return draw_stickman(np.stack(in_crop68).astype(np.float32), np.stack(right).astype(np.float32),
                         np.stack(left).astype(np.float32))


def most_frontal(meshes: np.ndarray, valid: np.ndarray) -> int:
    """Index of the valid face (T,478,3) whose head turns least (yaw and pitch from the mesh):
    the reference face of ``transfer_shape``."""
    from personalize.faces.quality import head_pose

    best, best_angle = 0, np.inf
    for t in np.flatnonzero(valid):
        yaw, pitch, _ = head_pose(meshes[t])
        angle = float(np.hypot(yaw, pitch))
        if angle < best_angle:
            best, best_angle = int(t), angle
    return best
