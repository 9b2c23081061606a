"""Face crops the one-shot backends feed their networks, computed as the official code does.

``deca_crop`` is DECA's (and EMOCA's) 224-px input crop.

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
ARCFACE_TEMPLATE_112 = np.array([[35.343697, 51.6963],
                         [76.453766, 51.5014],
                         [56.029396, 71.7366],
                         [39.14085, 92.3655],
                         [73.18488, 92.2041]], dtype=np.float32)
TEMPLATE_SIZE = 112
DECA_SIZE = 224


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


def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping ``src`` to ``dst``.

    (N,2), (N,2) -> (2,3) float64 A with dst ~ A[:, :2] @ src + A[:, 2]. Umeyama (PAMI 1991), eqs. 38-43, in the
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
    return t[:dim]


def five_point_theta(lm68: torch.Tensor | np.ndarray, height: int, width: int) -> torch.Tensor:
    """``affine_grid`` theta (B,2,3) float32 of the five-point alignment for an image of size (H, W).

    The similarity M maps template pixels to image pixels; the output grid coordinate u in [-1, 1]
    is template pixel 56*(u+1), and image pixel x is normalised as 2x/W - 1 (the official
    conversion, reproduced operation by operation in float64).
    """
    h_img, w_img = height, width
    points = _five_points_np(_as_numpy32(lm68))
    m = np.stack([umeyama_similarity(ARCFACE_TEMPLATE_112, p) for p in points])
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
    theta = five_point_theta(lm68, h, w).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [b, c, out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def deca_box_transform(lm68: np.ndarray) -> np.ndarray:
    """(2,3) float64 similarity from image pixels to the 224-px DECA/EMOCA crop of one face.

    DECA's ``kpt68`` box: side (w + h)/2 * 1.1 of the landmarks' box, centred on it, times 1.25
    truncated to int; its corners (top-left, bottom-left, top-right) go to (0,0), (0,223), (223,0).
    """
    lm = np.asarray(lm68, dtype=np.float64)
    left, right, top, bottom = lm[:, 0].min(), lm[:, 0].max(), lm[:, 1].min(), lm[:, 1].max()
    old_size = (right - left + bottom - top) / 2 * 1.1
    cx, cy = right - (right - left) / 2.0, bottom - (bottom - top) / 2.0
    half = int(old_size * 1.25) / 2
    src = np.array([[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy - half]])
    dst = np.array([[0, 0], [0, DECA_SIZE - 1], [DECA_SIZE - 1, 0]], dtype=np.float64)
    return umeyama_similarity(src, dst)


def deca_crop(images: torch.Tensor, lm68: torch.Tensor) -> torch.Tensor:
    """DECA/EMOCA input: images (B,3,H,W) [-1,1], landmarks (B,68,2) px -> (B,3,224,224) in [0,1].

    As the official path: [-1,1] -> [0,255] by (x+1)/(2+1e-5)*255, kornia's ``warp_affine``
    (output pixel p samples input pixel M^-1 p, align_corners=True, bilinear, zeros), then /255.
    The theta is composed in float64 here (kornia inverts in float32: 1.4e-5 apart at most).
    """
    b, _, h, w = images.shape
    lm = lm68.detach().cpu().numpy().reshape(b, 68, 2)
    to_px = np.array([[(DECA_SIZE - 1) / 2, 0, (DECA_SIZE - 1) / 2], [0, (DECA_SIZE - 1) / 2, (DECA_SIZE - 1) / 2],
                      [0, 0, 1]])
    to_norm = np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
    thetas = []
    for face in lm:
        m = np.vstack([deca_box_transform(face), [0, 0, 1]])
        thetas.append((to_norm @ np.linalg.inv(m) @ to_px)[:2])   # crop coords -> image coords, normalised
    theta = torch.from_numpy(np.stack(thetas)).to(images.device, torch.float32)
    x = images.clamp(-1, 1).add(1).div(2 + 1e-5).mul(255.0)
    grid = F.affine_grid(theta, [b, 3, DECA_SIZE, DECA_SIZE], align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True) / 255.0
