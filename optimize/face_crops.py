"""Face crops the one-shot backends feed their networks, computed as the official code does.

``five_point_similarity_warp`` is the ArcFace-style alignment (HyperReenact's ArcFace input at
112 px, DiffusionAct's gaze input at 224 px): a similarity transform estimated FROM the fixed
112-px five-point template TO the five points of the face (least squares, Umeyama's method, as
scikit-image's ``estimate_transform('similarity', template, points)``), turned into an
``affine_grid`` theta and sampled with ``grid_sample``'s defaults (bilinear, zero padding,
align_corners=False). The theta maps the whole output grid onto the template's 112-px square, so
``out_size`` only changes the sampling density, not the field of view.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# ArcFace's 112x112 five-point template: right eye, left eye, nose tip, right and left mouth corner
# (image left/right). The official code keeps it in float32.
TEMPLATE_112 = np.array([[35.343697, 51.6963],
                         [76.453766, 51.5014],
                         [56.029396, 71.7366],
                         [39.14085, 92.3655],
                         [73.18488, 92.2041]], dtype=np.float32)
TEMPLATE_SIZE = 112


def _as_numpy32(lm68: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = lm68.detach().cpu().numpy() if isinstance(lm68, torch.Tensor) else np.asarray(lm68)
    return arr.reshape(-1, 68, 2).astype(np.float32)


def _five_points_np(lm68: np.ndarray) -> np.ndarray:
    """(B,68,2) float32 -> (B,5,2) float32: eye centres (means of 36-41 and 42-47), 30, 48, 54."""
    return np.concatenate([lm68[:, 36:42].mean(1, keepdims=True), lm68[:, 42:48].mean(1, keepdims=True),
                           lm68[:, [30]], lm68[:, [48]], lm68[:, [54]]], axis=1)


def five_points_from_68(lm68: torch.Tensor) -> torch.Tensor:
    """iBUG-68 landmarks (B,68,2) px -> the five alignment points (B,5,2) px, float32."""
    return torch.from_numpy(_five_points_np(_as_numpy32(lm68)))


def similarity_umeyama(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    (N,2), (N,2) -> (3,3) float64 homogeneous matrix. Umeyama (PAMI 1991), eqs. 38-43, in the
    operation order and precision of scikit-image (float32 points keep float32 means and a float32
    SVD). The float32 SVD's last bit depends on the LAPACK build: against the official golden crop
    theta differs by one float32 ulp (max 1.7e-5 in the 224-px crop). Degenerate points raise
    ``ValueError``.
    """
    num, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_demean, dst_demean = src - src_mean, dst - dst_mean
    a = dst_demean.T @ src_demean / num
    d = np.ones((dim,), dtype=np.float64)
    if np.linalg.det(a) < 0:
        d[dim - 1] = -1
    t = np.eye(dim + 1, dtype=np.float64)
    u, s, v = np.linalg.svd(a)
    rank = np.count_nonzero(s > s.max() * max(a.shape) * np.finfo(float).eps)
    if rank == 0:
        raise ValueError("cannot fit a similarity to coincident points")
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(v) > 0:
        t[:dim, :dim] = u @ v
    elif rank == dim - 1:
        flipped = d.copy()
        flipped[dim - 1] = -1
        t[:dim, :dim] = u @ np.diag(flipped) @ v
    else:
        t[:dim, :dim] = u @ np.diag(d) @ v
    scale = 1.0 / src_demean.var(axis=0).sum() * (s @ d)
    t[:dim, dim] = dst_mean - scale * (t[:dim, :dim] @ src_mean.T)
    t[:dim, :dim] *= scale
    return t


def five_point_theta(lm68: torch.Tensor | np.ndarray, image_hw: tuple[int, int]) -> torch.Tensor:
    """``affine_grid`` theta (B,2,3) float32 of the five-point alignment for an image of size (H, W).

    The similarity M maps template pixels to image pixels; the output grid coordinate u in [-1, 1]
    is template pixel 56*(u+1), and image pixel x is normalised as 2x/W - 1 (the official
    conversion, reproduced operation by operation in float64).
    """
    h_img, w_img = image_hw
    points = _five_points_np(_as_numpy32(lm68))
    m = np.stack([similarity_umeyama(TEMPLATE_112, p)[:2, :] for p in points])
    g = TEMPLATE_SIZE
    m[:, 0, 0] = m[:, 0, 0] * g / w_img
    m[:, 0, 1] = m[:, 0, 1] * g / w_img
    m[:, 0, 2] = m[:, 0, 2] * 2 / w_img + m[:, 0, 1] + m[:, 0, 0] - 1
    m[:, 1, 0] = m[:, 1, 0] * g / h_img
    m[:, 1, 1] = m[:, 1, 1] * g / h_img
    m[:, 1, 2] = m[:, 1, 2] * 2 / h_img + m[:, 1, 0] + m[:, 1, 1] - 1
    return torch.from_numpy(m).float()


def five_point_similarity_warp(images: torch.Tensor, lm68: torch.Tensor, out_size: int) -> torch.Tensor:
    """Align faces: images (B,3,H,W) [-1,1], landmarks (B,68,2) px -> (B,3,out,out), not clamped."""
    b, c, h, w = images.shape
    theta = five_point_theta(lm68, (h, w)).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [b, c, out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
