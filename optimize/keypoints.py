"""The paper's 66-keypoint representation and the part crops of its pixel losses.

Why (paper Sec. 3.3.2): absolute MediaPipe landmarks encode the face's geometry, i.e. identity, so
matching them across people fails. The paper keeps only the points that carry expression
(eyelids, irises, inner lips), makes each facial part relative (zero mean per part, so distances
*between* parts, which are identity cues, vanish) and brings back four absolute "head frame"
points for pose: 16 + 16 + 5 + 5 + 20 + 4 = 66.

A facial part for the zero mean is an *eye* (its 16 eyelid points together with its iris's 5) or
the mouth: the paper's keypoint-driven optimization "reproduces the iris at the right location"
(looking right or down), which needs where the iris sits between the eyelids. Normalizing each
iris on its own leaves only its size, and gaze is never transferred.

Index tables are data (`assets/keypoints66.json`), loaded once. Naming: `left`/`right` follow
MediaPipe's FACEMESH_LEFT_* / FACEMESH_RIGHT_* sets, i.e. the *subject's* left/right.

Decisions (documented because the loss code builds on them):
* z is kept: the paper uses 3D keypoints, and MediaPipe's z (same units as x) carries yaw/pitch
  of the frame points and lid/lip depth. Callers may drop it in the loss.
* Units: whatever the landmarks are in. `normalized_keypoints(lm, image_size=S)` divides by S so
  keypoints are in crop-width units (resolution-independent losses); `optimize.losses` already
  divides by the image size before calling, so the default is no scaling.

Crops (Appendix C.2): for each region the minimal axis-aligned rectangle around the part's
keypoints in each of the two images; both rectangles are then grown about their own centres to the
larger extent on each axis, so the two crops cover the same area, and resampled to `out_size`.
Appendix C names the outer lips (mouth) and the irises as the crop parts; eyelid boxes are
offered as 'left_eye'/'right_eye'. Boxes are detached (they say *where* to compare; the pixel loss
is about content), the resampling (`torchvision.ops.roi_align`) is differentiable w.r.t. pixels.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Mapping

import torch

__all__ = [
    "KEYPOINTS", "KEYPOINT_ORDER", "NORMALIZED_PARTS", "CROP_PARTS", "N_KEYPOINTS", "KEYPOINT_DEFINITION",
    "definition_id", "keypoint_indices", "group_slices", "normalized_keypoints", "part_boxes", "part_crops",
]


@lru_cache(maxsize=1)
def _table() -> dict:
    text = resources.files("assets").joinpath("keypoints66.json").read_text(encoding="utf-8")
    return json.loads(text)


KEYPOINTS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {k: tuple(v) for k, v in _table()["groups"].items()})
KEYPOINT_ORDER: tuple[str, ...] = tuple(_table()["order"])
NORMALIZED_PARTS: tuple[tuple[str, ...], ...] = tuple(tuple(part) for part in _table()["normalized_parts"])
"""Groups shifted to zero mean *together* (one mean per part): each eye with its iris, the mouth."""
CROP_PARTS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {k: tuple(v) for k, v in _table()["crop_parts"].items()})
N_KEYPOINTS = sum(len(KEYPOINTS[g]) for g in KEYPOINT_ORDER)


def definition_id(table: Mapping) -> str:
    """A short hash of what defines the keypoints in a ``keypoints66.json`` table (not its notes)."""
    defining = {k: table[k] for k in ("groups", "order", "normalized_parts")}
    return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:16]


KEYPOINT_DEFINITION: str = definition_id(_table())
"""Identifies what ``normalized_keypoints`` computes (indices, order, normalized parts). Anything
that stores normalized keypoints or results optimized against them (anchor keypoint caches,
latent tracks) must include it in its key, or a changed definition would silently reuse them."""


def keypoint_indices() -> list[int]:
    """The 66 MediaPipe indices in output order (groups in KEYPOINT_ORDER)."""
    return [i for g in KEYPOINT_ORDER for i in KEYPOINTS[g]]


def group_slices() -> dict[str, slice]:
    """Where each group sits in the (N,66,3) output."""
    out, start = {}, 0
    for g in KEYPOINT_ORDER:
        out[g] = slice(start, start + len(KEYPOINTS[g]))
        start += len(KEYPOINTS[g])
    return out


def _check_landmarks(landmarks: torch.Tensor, what: str = "landmarks") -> None:
    if landmarks.dim() != 3 or landmarks.shape[1] < 478 or landmarks.shape[2] not in (2, 3):
        raise ValueError(f"{what} must be (N,478,3) MediaPipe refined landmarks; got {tuple(landmarks.shape)}")


def normalized_keypoints(landmarks: torch.Tensor, image_size: float | None = None) -> torch.Tensor:
    """(N,478,C) landmarks (C=3: x, y pixels, z) -> (N,66,C) keypoints.

    Each part of ``NORMALIZED_PARTS`` (right eye + right iris, left eye + left iris, mouth) is
    shifted to zero mean on every coordinate (z included), one mean per part; the 4 frame points
    keep their absolute coordinates. If `image_size` is given, everything is divided by it
    (crop-width units).
    """
    _check_landmarks(landmarks)
    if image_size is not None:
        landmarks = landmarks / float(image_size)
    keypoints = landmarks[:, keypoint_indices()]
    offsets = torch.zeros_like(keypoints)
    for rows in _part_rows():
        offsets[:, rows] = keypoints[:, rows].mean(dim=1, keepdim=True)
    return keypoints - offsets


@lru_cache(maxsize=1)
def _part_rows() -> tuple[list[int], ...]:
    """Rows of the (N,66,C) output that belong to each normalized part."""
    slices = group_slices()
    return tuple([row for g in part for row in range(slices[g].start, slices[g].stop)]
                 for part in NORMALIZED_PARTS)


def _bounds(landmarks: torch.Tensor, part: str) -> tuple[torch.Tensor, torch.Tensor]:
    if part not in CROP_PARTS:
        raise ValueError(f"unknown part {part!r}; use one of {sorted(CROP_PARTS)}")
    pts = landmarks[:, list(CROP_PARTS[part]), :2].detach()
    return pts.min(dim=1).values, pts.max(dim=1).values  # (N,2) each


def part_boxes(lm_a: torch.Tensor, lm_b: torch.Tensor, part: str,
               margin: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Appendix C boxes: (N,4) (x1, y1, x2, y2) for each image, in the landmarks' pixel units.

    Minimal rectangles around the part's keypoints, grown about their own centres to the larger
    of the two extents per axis (so both have the same size), then by `margin` (a fraction of that
    size, 0 = the paper's minimal rectangle). A degenerate extent is widened to 1 pixel.
    """
    _check_landmarks(lm_a, "lm_a")
    _check_landmarks(lm_b, "lm_b")
    lo_a, hi_a = _bounds(lm_a, part)
    lo_b, hi_b = _bounds(lm_b, part)
    size = torch.maximum(hi_a - lo_a, hi_b - lo_b).clamp_min(1.0) * (1.0 + margin)
    boxes = []
    for lo, hi in ((lo_a, hi_a), (lo_b, hi_b)):
        c = 0.5 * (lo + hi)
        boxes.append(torch.cat([c - 0.5 * size, c + 0.5 * size], dim=1))
    return boxes[0], boxes[1]


def _crop(images: torch.Tensor, boxes: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """images (N,C,H,W), boxes (N,4) continuous pixel coords (pixel k spans [k, k+1))."""
    # Imported here, not at the top: torchvision.ops pulls in torch._dynamo and triton, and
    # importing triton segfaulted the studio window's process under Xvfb (test_screenshots); the
    # window imports this module through the re-enactment job (for KEYPOINT_DEFINITION).
    from torchvision.ops import roi_align

    idx = torch.arange(images.shape[0], dtype=images.dtype, device=images.device)[:, None]
    rois = torch.cat([idx, boxes.to(images)], dim=1)
    # aligned=True: box coordinates are continuous (pixel centres at k + 0.5), as MediaPipe's
    # normalized landmarks times the image size are. sampling_ratio=2 averages 2x2 samples per
    # output pixel, which anti-aliases the usual case of shrinking a crop.
    return roi_align(images, rois, output_size=out_hw, spatial_scale=1.0, sampling_ratio=2, aligned=True)


def part_crops(img_a: torch.Tensor, lm_a: torch.Tensor, img_b: torch.Tensor, lm_b: torch.Tensor,
               part: str, out_size: int | tuple[int, int], margin: float = 0.0
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Same-size crops of `part` from two batches -> two (N,3,h,w) tensors (h = w = out_size).

    img_*: (N,3,H,W) in [-1,1]; lm_*: (N,478,3) landmarks in those images' pixels. Parts:
    'mouth' (outer lips), 'left_iris', 'right_iris', 'left_eye', 'right_eye' (eyelids).
    Differentiable w.r.t. both images (not w.r.t. the landmarks: boxes are detached).
    """
    if img_a.shape[0] != lm_a.shape[0] or img_b.shape[0] != lm_b.shape[0]:
        raise ValueError("each image batch needs one landmark set per image")
    out_hw = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
    box_a, box_b = part_boxes(lm_a, lm_b, part, margin)
    return _crop(img_a, box_a, out_hw), _crop(img_b, box_b, out_hw)
