"""Torch versions of MediaPipe's three custom TFLite operators (attention face mesh).

`face_landmark_with_attention.tflite` refines lips, eyes and irises by re-sampling an early
feature map around each part. The part window is computed *inside* the graph by custom ops that
the stock TFLite runtime does not know:

* Landmarks2TransformMatrix: from coarse landmarks (N,468,3) -> a (N,4,4) affine matrix mapping
  output-grid coordinates (x, y) of an `output_width x output_height` window to input coordinates.
  The window is rotated so that landmarks `left_rotation_idx -> right_rotation_idx` run along +x,
  and spans the bounding box (in that rotated frame) of `subset_idxs`, scaled by scale_x/scale_y.
* TransformTensorBilinear: bilinear sampling of a feature map at matrix-mapped grid points.
* TransformLandmarks: the same affine map applied to 2-D points.

Only the matrix's [0:2, 0:2] block and [0:2, 3] column are used (a 2-D affine).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .tflite_torch import TFLiteModule, TFLiteOp

__all__ = ["MEDIAPIPE_CUSTOM_OPS", "landmarks_to_transform_matrix", "transform_tensor_bilinear",
           "transform_landmarks"]


def landmarks_to_transform_matrix(landmarks: torch.Tensor, *, left: int, right: int,
                                   subset: list[int], out_w: int, out_h: int,
                                   scale_x: float, scale_y: float) -> torch.Tensor:
    """(N,K,>=2) landmarks -> (N,4,4) matrix mapping window grid coords to landmark coords."""
    pts = landmarks[..., :2]
    delta = pts[:, right] - pts[:, left]  # (N,2)
    u = delta / delta.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # window +x axis
    v = torch.stack([-u[:, 1], u[:, 0]], dim=-1)  # window +y axis (90 degrees from u)
    sub = pts[:, subset]  # (N,S,2)
    pu = (sub * u[:, None]).sum(-1)  # coordinates in the rotated frame
    pv = (sub * v[:, None]).sum(-1)
    umin, umax = pu.min(1).values, pu.max(1).values
    vmin, vmax = pv.min(1).values, pv.max(1).values
    center = (0.5 * (umin + umax))[:, None] * u + (0.5 * (vmin + vmax))[:, None] * v
    sx = (scale_x / out_w) * (umax - umin)
    sy = (scale_y / out_h) * (vmax - vmin)
    ax = u * sx[:, None]  # step in input coords per window pixel along x
    ay = v * sy[:, None]
    t = center - 0.5 * out_w * ax - 0.5 * out_h * ay
    n = landmarks.shape[0]
    m = torch.zeros(n, 4, 4, dtype=landmarks.dtype, device=landmarks.device)
    m[:, 0:2, 0] = ax
    m[:, 0:2, 1] = ay
    m[:, 0:2, 3] = t
    m[:, 2, 2] = 1.0
    m[:, 3, 3] = 1.0
    return m


def transform_tensor_bilinear(features: torch.Tensor, mat: torch.Tensor, out_h: int,
                              out_w: int) -> torch.Tensor:
    """features (N,C,H,W) sampled through mat -> (N,C,out_h,out_w), bilinear.

    Pixel-centre convention (checked against MediaPipe's output to 0.02 px): output pixel
    (i, j) has centre (j + 0.5, i + 0.5); mat maps it to continuous input coordinates whose pixel
    k spans [k, k+1). Outside the map the nearest edge value is used.
    """
    n, _, h, w = features.shape
    ys, xs = torch.meshgrid(
        torch.arange(out_h, dtype=features.dtype, device=features.device) + 0.5,
        torch.arange(out_w, dtype=features.dtype, device=features.device) + 0.5,
        indexing="ij",
    )
    grid = torch.stack([xs, ys], dim=-1).reshape(1, -1, 2)  # (1,P,2) as (x,y)
    src = grid @ mat[:, 0:2, 0:2].transpose(1, 2) + mat[:, None, 0:2, 3]  # (N,P,2)
    norm = torch.stack([src[..., 0] / w * 2 - 1, src[..., 1] / h * 2 - 1], dim=-1)
    norm = norm.reshape(n, out_h, out_w, 2)
    return F.grid_sample(features, norm, mode="bilinear", padding_mode="border", align_corners=False)


def transform_landmarks(points: torch.Tensor, mat: torch.Tensor) -> torch.Tensor:
    """points (N,K,2) -> (N,K,2) through the 2-D affine part of mat (N,4,4)."""
    return points @ mat[:, 0:2, 0:2].transpose(1, 2) + mat[:, None, 0:2, 3]


def _op_landmarks2transform(module: TFLiteModule, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
    o = op.options
    return landmarks_to_transform_matrix(
        a[0], left=int(o["left_rotation_idx"]), right=int(o["right_rotation_idx"]),
        subset=[int(i) for i in o["subset_idxs"]], out_w=int(o["output_width"]),
        out_h=int(o["output_height"]), scale_x=float(o["scale_x"]), scale_y=float(o["scale_y"]),
    )


def _op_transform_tensor(module: TFLiteModule, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
    o = op.options
    return transform_tensor_bilinear(a[0], a[1], int(o["output_height"]), int(o["output_width"]))


def _op_transform_landmarks(module: TFLiteModule, op: TFLiteOp, a: list[torch.Tensor]) -> torch.Tensor:
    return transform_landmarks(a[0], a[1])


MEDIAPIPE_CUSTOM_OPS = {
    "CUSTOM:Landmarks2TransformMatrix": _op_landmarks2transform,
    "CUSTOM:TransformTensorBilinear": _op_transform_tensor,
    "CUSTOM:TransformLandmarks": _op_transform_landmarks,
}
