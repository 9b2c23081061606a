"""The one-shot backends' face crops, computed as the official code computes them.

Three crops, all driven by 68 landmarks in the iBUG order (the official code gets them from the
S3FD + FAN detectors; the studio maps its MediaPipe landmarks with ``mediapipe_to_ibug68``, so no
extra detector weights are needed):

* ``crop_using_landmarks``: the 256 px working crop of HyperReenact and latent-directions. Box =
  round centre of the landmarks' bounding box, half-size = the larger landmark extent, moved up by
  size//6; where the box leaves the image it is padded the FFHQ way (reflect, blur and fade to the
  median colour, weighted by the distance into the pad), cut, truncated to uint8 and resized with
  PIL bicubic.
* ``deca_crop``: DECA's 224 px input: box from the landmarks (``kpt68`` rule: mean side x 1.1,
  x 1.25, int), a similarity from 3 box corners to the 224 px corners, bilinear warp with
  ``align_corners=True`` and zeros outside (kornia ``warp_affine``), values in [0, 1].
* ``five_point_similarity_warp``: ArcFace's (and DiffusionAct gaze's) 5-point alignment: a
  least-squares similarity *from* the 112 px template *to* the 5 points (eye centres, nose tip,
  mouth corners), turned into an ``affine_grid`` theta as the official code does, then
  ``grid_sample`` with torch's defaults (bilinear, zeros, align_corners=False).

Why the exact quirks (e.g. theta's offsets use the updated scale terms, DECA's 1e-5 in the range
mapping): the goldens in ``../shared/reference/oneshot`` are reproduced to float precision only
with the same formulas (the similarities are Umeyama's estimate, as scikit-image's, in the
landmarks' own float32 precision).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import cv2
import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image

CROP_SIZE = 256
MAX_WIDTH = 1000  # the official preprocessing shrinks wider frames to this width first
DECA_SIZE = 224
ARCFACE_TEMPLATE_112 = np.array([[35.343697, 51.6963], [76.453766, 51.5014], [56.029396, 71.7366],
                                 [39.14085, 92.3655], [73.18488, 92.2041]], dtype=np.float32)
_TEMPLATE_SIZE = 112


# ----------------------------------------------------------------------------------- 256 px crop
def crop_box(lm68: np.ndarray) -> tuple[int, int, int, int]:
    """(x1, y1, x2, y2) exclusive box of ``crop_using_landmarks``; may extend past the image."""
    lm = np.asarray(lm68)
    cx, cy = np.round((lm.min(0) + lm.max(0)) / 2).astype(int)
    size = int(max(lm[:, 0].max() - lm[:, 0].min(), lm[:, 1].max() - lm[:, 1].min()))
    cy -= size // 6
    return int(cx - size), int(cy - size), int(cx + size), int(cy + size)


def _ffhq_pad(image: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
    """Reflect-pad by the given amounts, then blur and fade the pad towards the median colour.

    The weight grows from 0 at the original image's border to 1 at the pad's outer edge (per side,
    the larger of the x and y weights); the blur (sigma 5) reaches full strength a third of the way
    out, the median fill fades in linearly. Returns float32 HWC.
    """
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REFLECT)
    h, w = padded.shape[:2]
    pads = np.array([left, top, right, bottom], dtype=np.float32)
    pads[pads == 0] = 1e-10
    ys = np.arange(h, dtype=np.float32)[:, None, None]
    xs = np.arange(w, dtype=np.float32)[None, :, None]
    weight_x = np.float32(1.0) - np.minimum(xs / pads[0], (w - 1 - xs) / pads[2])
    weight_y = np.float32(1.0) - np.minimum(ys / pads[1], (h - 1 - ys) / pads[3])
    mask = np.maximum(weight_x, weight_y)
    img = padded.astype(np.float32)
    img += (scipy.ndimage.gaussian_filter(img, [5.0, 5.0, 0]) - img) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    img += (np.median(img, axis=(0, 1)) - img) * np.clip(mask, 0.0, 1.0)
    return img


def crop_using_landmarks(image: np.ndarray, lm68: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """HWC uint8 RGB image + (68, 2) landmarks in its pixels -> (size, size, 3) uint8 crop.

    Official rule (HyperReenact ``crop_using_landmarks``); see the module docstring. The official
    caller first shrinks frames wider than 1000 px: ``official_crop`` does both.
    """
    x1, y1, x2, y2 = crop_box(lm68)
    h, w = image.shape[:2]
    if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
        left, top = max(-x1, 0), max(-y1, 0)
        image = _ffhq_pad(image, left, top, max(x2 - w, 0), max(y2 - h, 0))
        x1, x2, y1, y2 = x1 + left, x2 + left, y1 + top, y2 + top
    cut = image[y1:y2, x1:x2].astype(np.uint8)
    return np.array(Image.fromarray(cut).resize((size, size), Image.BICUBIC))


def crop_transform(lm68: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(2, 3) affine from image pixels to ``crop_using_landmarks`` pixels (for mapping landmarks)."""
    x1, y1, x2, y2 = crop_box(lm68)
    s = size / (x2 - x1)
    return np.array([[s, 0.0, -s * x1], [0.0, s, -s * y1]])


def official_shrink(width: int) -> float:
    """The factor the official preprocessing resizes a frame by first (width > 1000 px -> 1000)."""
    return MAX_WIDTH / float(width) if width > MAX_WIDTH else 1.0


def official_crop_transform(lm68: np.ndarray, width: int, size: int = CROP_SIZE) -> np.ndarray:
    """(3, 3) map from the frame's pixels to ``official_crop``'s pixels (the shrink included).

    Used for paste-back and for landmarks: the official code re-detects landmarks on the crop,
    the studio maps its own into it with this matrix.
    """
    scale = official_shrink(width)
    lm = (np.asarray(lm68, dtype=np.float64) * scale).astype(np.float32)
    m = np.eye(3)
    m[:2] = crop_transform(lm, size)
    return m @ np.diag([scale, scale, 1.0])


def official_crop(image: np.ndarray, lm68: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The official preprocessing of a frame: (size x size uint8 crop, its 68 landmarks (float32) in crop pixels).

    As the official ``preprocess_image``: frames wider than 1000 px are first resized to width
    1000 (cv2 INTER_AREA; the landmarks are scaled with them), then ``crop_using_landmarks``. The
    official code then re-detects the landmarks on the crop; here they are mapped into it
    (``official_crop_transform``), or run the landmark detector on the crop for the same effect.
    """
    lm = np.asarray(lm68, dtype=np.float64)
    h, w = image.shape[:2]
    scale = official_shrink(w)
    if scale != 1.0:
        image = cv2.resize(image, (MAX_WIDTH, int(h * scale)), interpolation=cv2.INTER_AREA)
    crop = crop_using_landmarks(image, (lm * scale).astype(np.float32), size)
    m = official_crop_transform(lm, w, size)
    return crop, (lm @ m[:2, :2].T + m[:2, 2]).astype(np.float32)


# -------------------------------------------------------------------------------- similarities
def umeyama_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src -> dst (Umeyama 1991).

    src, dst: (N, 2) point sets -> (2, 3) float64 A with dst ~ A[:, :2] @ src + A[:, 2].
    Steps of the paper: centre both sets, covariance C = dst_c^T src_c / N, SVD C = U D V^T,
    R = U S V^T with S = diag(1, sign) forcing a proper rotation, scale = trace(D S) / var(src),
    t = mean(dst) - scale R mean(src). The covariance, SVD and variance are computed in the
    inputs' precision (float32 landmarks stay float32, as in scikit-image's estimate the official
    code calls), which reproduces the reference transforms bit for bit.
    """
    src, dst = np.asarray(src), np.asarray(dst)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / n
    sign = np.ones(dim)
    if np.linalg.det(cov) < 0:
        sign[-1] = -1
    u, d, vt = np.linalg.svd(cov)
    rot = u @ np.diag(sign) @ vt
    variance = src_c.var(axis=0).sum()
    scale = np.asarray(1, dtype=variance.dtype) / variance * (d @ sign)
    out = np.empty((dim, dim + 1))
    out[:, dim] = dst_mean - scale * (rot @ src_mean)
    out[:, :dim] = rot * scale
    return out


# ------------------------------------------------------------------------------- 5-point warp
def five_points_from_68(lm68: torch.Tensor) -> torch.Tensor:
    """(B, 68, 2) -> (B, 5, 2): right-eye centre (36-41), left-eye centre (42-47), nose tip 30,
    mouth corners 48 and 54 (iBUG numbering; "right" = the subject's right, image left)."""
    lm = lm68.float()
    return torch.stack([lm[:, 36:42].mean(1), lm[:, 42:48].mean(1), lm[:, 30], lm[:, 48], lm[:, 54]], dim=1)


def five_point_theta(lm68: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``affine_grid`` theta (B, 2, 3) float32 sampling the 112 px ArcFace template region.

    A maps template pixels to image pixels; the official conversion to normalized coordinates is
    t00 = a00*112/W, t01 = a01*112/W, t02 = 2*a02/W + t00 + t01 - 1 (row 1 likewise with H), i.e.
    template pixel u = (u_n + 1) * 56 and image x_n = 2x/W - 1 (pixel-corner conventions ignored,
    as officially). Row 0 uses W for both scale terms, as the official code does.
    """
    points = five_points_from_68(lm68).detach().cpu().numpy()
    a = np.stack([umeyama_similarity(ARCFACE_TEMPLATE_112, p) for p in points])
    theta = np.empty_like(a)
    theta[:, 0, 0] = a[:, 0, 0] * _TEMPLATE_SIZE / width
    theta[:, 0, 1] = a[:, 0, 1] * _TEMPLATE_SIZE / width
    theta[:, 0, 2] = a[:, 0, 2] * 2 / width + theta[:, 0, 1] + theta[:, 0, 0] - 1
    theta[:, 1, 0] = a[:, 1, 0] * _TEMPLATE_SIZE / height
    theta[:, 1, 1] = a[:, 1, 1] * _TEMPLATE_SIZE / height
    theta[:, 1, 2] = a[:, 1, 2] * 2 / height + theta[:, 1, 0] + theta[:, 1, 1] - 1
    return torch.from_numpy(theta).float()


def five_point_similarity_warp(images: torch.Tensor, lm68: torch.Tensor, out_size: int) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1], lm68 (B, 68, 2) pixels -> (B, 3, out_size, out_size).

    The region is the 112 px template's whatever ``out_size`` is (224 samples it twice as densely).
    """
    b, c, h, w = images.shape
    theta = five_point_theta(lm68, h, w).to(images.device, images.dtype)
    grid = F.affine_grid(theta, [b, c, out_size, out_size], align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


# ---------------------------------------------------------------------------------- DECA crop
def deca_box_transform(lm68: np.ndarray) -> np.ndarray:
    """(2, 3) float64 pixel transform image -> 224 px DECA crop from one face's 68 landmarks.

    DECA's ``kpt68`` box: side = (width + height)/2 * 1.1 of the landmarks' box, centred on it,
    enlarged x1.25 and truncated to int; corners (top-left, bottom-left, top-right) map to
    (0,0), (0,223), (223,0). Computed in float64 (the reference crops are reproduced bit for bit).
    """
    lm = np.asarray(lm68, dtype=np.float64)
    left, right = lm[:, 0].min(), lm[:, 0].max()
    top, bottom = lm[:, 1].min(), lm[:, 1].max()
    old_size = (right - left + bottom - top) / 2 * 1.1
    cx, cy = right - (right - left) / 2.0, bottom - (bottom - top) / 2.0
    half = int(old_size * 1.25) / 2
    src = np.array([[cx - half, cy - half], [cx - half, cy + half], [cx + half, cy - half]])
    dst = np.array([[0, 0], [0, DECA_SIZE - 1], [DECA_SIZE - 1, 0]])
    return umeyama_similarity(src, dst)


def _pixel_to_normalized(width: int, height: int) -> torch.Tensor:
    """3x3 float32 map from pixel coordinates to [-1, 1] with align_corners=True (kornia's)."""
    return torch.tensor([[2.0 / (width - 1), 0.0, -1.0], [0.0, 2.0 / (height - 1), -1.0], [0.0, 0.0, 1.0]])


def deca_theta(lm68: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``affine_grid`` theta (B, 2, 3) float32 (align_corners=True) of the DECA crop.

    As kornia's ``warp_affine``: the float32 pixel transform M is conjugated by the normalization
    matrices and inverted, in float32: inv(N_dst @ (M @ inv(N_src))).
    """
    lms = lm68.detach().cpu().numpy()
    m = torch.zeros(len(lms), 3, 3)
    for k, lm in enumerate(lms):
        m[k, :2] = torch.from_numpy(deca_box_transform(lm)).float()
    m[:, 2, 2] = 1.0
    n_src, n_dst = _pixel_to_normalized(width, height), _pixel_to_normalized(DECA_SIZE, DECA_SIZE)
    return torch.inverse(n_dst @ (m @ torch.inverse(n_src)))[:, :2]


def deca_crop(images: torch.Tensor, lm68: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W) in [-1, 1] + lm68 (B, 68, 2) pixels -> (B, 3, 224, 224) in [0, 1].

    As the official path: clamp to [-1, 1], map to [0, 255] by (x+1)/(2+1e-5)*255, warp, /255.
    """
    b, _, h, w = images.shape
    theta = deca_theta(lm68, h, w).to(images.device, images.dtype)
    x255 = (images.clamp(-1, 1) + 1) / (2 + 1e-5) * 255.0
    grid = F.affine_grid(theta, [b, 3, DECA_SIZE, DECA_SIZE], align_corners=True)
    return F.grid_sample(x255, grid, mode="bilinear", padding_mode="zeros", align_corners=True) / 255.0


# ------------------------------------------------------------------------ MediaPipe -> iBUG-68
@lru_cache(maxsize=1)
def _ibug_table() -> np.ndarray:
    text = resources.files("assets").joinpath("ibug68_from_mediapipe.json").read_text(encoding="utf-8")
    table = json.loads(text)
    order = [i for part in table["parts"] for i in part["mediapipe"]]
    if len(order) != 68:
        raise RuntimeError("assets/ibug68_from_mediapipe.json must list 68 indices")
    return np.array(order, dtype=np.int64)


def mediapipe_to_ibug68(lm478: np.ndarray) -> np.ndarray:
    """MediaPipe FaceMesh landmarks (..., 478, 2 or 3) -> iBUG-68 layout (..., 68, 2), same units.

    A fixed index table (``assets/ibug68_from_mediapipe.json``, with the reasons for each choice);
    z is dropped. Differences from FAN are documented there and in docs/ARCHITECTURE.md.
    """
    lm = np.asarray(lm478)
    if lm.shape[-2] < 468:
        raise ValueError(f"expected MediaPipe face-mesh landmarks (..., 478, 2|3), got {lm.shape}")
    return lm[..., _ibug_table(), :2]
