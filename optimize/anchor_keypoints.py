"""Where a take's first frame starts: the mixture of anchors whose rendered keypoints, mixed
alike, come nearest the frame's (``keypoint_mixture``), or the single nearest anchor.

Every anchor is rendered once and its 66 normalized keypoints measured with the same landmark
function the optimizer uses. Why a cache file: rendering every anchor (250 of them at 1024 px) is
the slowest part of starting a take, and it depends only on the generator, the anchors and the
landmark function, not on the driving video, so every take of a person shares it.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch

from optimize.keypoints import KEYPOINT_DEFINITION
from optimize.latent_space import PersonalizedSpace
from optimize.losses import LandmarkFn, keypoints_from_landmarks
from personalize.fileio import atomic_save_npz
from personalize.progress import NEVER_CANCELLED, CancelToken


def anchor_keypoints(generator: torch.nn.Module, space: PersonalizedSpace, landmarks: LandmarkFn,
                     batch: int = 8, cancel: CancelToken = NEVER_CANCELLED) -> np.ndarray:
    """Render every anchor once and return its normalized keypoints (N,66,3) float32."""
    out = []
    all_ws = space.anchor_ws()
    with torch.no_grad():
        for i in range(0, space.n_anchors, batch):
            cancel.check()
            images = generator.synthesis(all_ws[i:i + batch], noise_mode="const")
            out.append(keypoints_from_landmarks(landmarks(images), images.shape[-1]).cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def cached_anchor_keypoints(generator: torch.nn.Module, space: PersonalizedSpace,
                            landmarks: LandmarkFn, cache: Path | None, key: str,
                            cancel: CancelToken = NEVER_CANCELLED) -> np.ndarray:
    """``anchor_keypoints``, read from ``cache`` (.npz) when it was made for ``key``, else
    computed and written there. ``key`` names what the keypoints depend on besides the anchors
    (the generator and the landmark function); a damaged cache is recomputed."""
    digest = hashlib.sha256(key.encode() + KEYPOINT_DEFINITION.encode())  # a new definition recomputes
    digest.update(space.anchors.detach().cpu().numpy().astype(np.float32).tobytes())
    full_key = digest.hexdigest()
    if cache is not None and cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as data:
                if str(data["key"]) == full_key:
                    return data["keypoints"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass
    keypoints = anchor_keypoints(generator, space, landmarks, cancel=cancel)
    if cache is not None:
        atomic_save_npz(cache, keypoints=keypoints, key=np.array(full_key))
    return keypoints


def nearest_anchor(anchor_kp: np.ndarray, frame_kp: np.ndarray) -> int:
    """Index of the anchor whose normalized keypoints (N,66,3) are nearest to the frame's (66,3)."""
    dist = np.linalg.norm(anchor_kp - frame_kp[None], axis=-1).sum(axis=-1)
    return int(np.argmin(dist))


SUM_ROW_WEIGHT = 10.0
"""Weight of the row that asks ``keypoint_mixture``'s coefficients to sum to 1, against normalized
keypoints of about 0.01-0.3 (fractions of the image side): the sum comes out within a fraction of
a percent of 1 (then it is normalized exactly), so the fit is a mixture, not a rescaling."""


def keypoint_mixture(anchor_kp: np.ndarray, frame_kp: np.ndarray, use_z: bool = True) -> np.ndarray:
    """Barycentric coefficients (N,) (>= 0, summing to 1) whose mix of the anchors' normalized
    keypoints (N,66,3) comes nearest the frame's (66,3) in least squares (x, y and, with ``use_z``,
    z, as ``losses.keypoint_loss`` compares them): non-negative least squares with a sum row.

    Why a mixture and not the nearest anchor: a driving face is rarely one of the self-scan's
    faces, and from a single anchor the first frame's Adam run often settles on a plateau halfway
    (the keypoint loss is not convex in P). Keypoints move only roughly linearly with the code,
    but the linear fit already lands near the answer's basin. Measured on the known-answer stand-in
    (6 anchors, 256 px, 20 targets: the bench clips' frames, pure anchors and Dirichlet mixtures;
    80 first-frame steps each, in a scratch harness; ``bench/reenact.py``'s cold-start table
    compares the starts on three targets): the final L_key was above 0.02 in none of the 20 runs
    from the mixture, 7 from the nearest anchor and 5 from the center (median 0.0045 / 0.0081 /
    0.0049, worst 0.018 / 0.075 / 0.147); the center misses targets near one anchor, the nearest
    anchor those between anchors.
    """
    from scipy.optimize import nnls

    dims = 3 if use_z else 2
    kp = np.asarray(anchor_kp, np.float64)[..., :dims].reshape(len(anchor_kp), -1).T      # (66*dims, N)
    matrix = np.vstack([kp, np.full((1, kp.shape[1]), SUM_ROW_WEIGHT)])
    wanted = np.concatenate([np.asarray(frame_kp, np.float64)[..., :dims].reshape(-1), [SUM_ROW_WEIGHT]])
    coefficients, _ = nnls(matrix, wanted)
    total = coefficients.sum()
    if not np.isfinite(total) or total <= 0:   # cannot happen with the sum row; never start from nothing
        coefficients, total = np.eye(len(anchor_kp))[nearest_anchor(anchor_kp, frame_kp)], 1.0
    return (coefficients / total).astype(np.float32)


def first_frame_code(space: PersonalizedSpace, how: str, anchor_kp: np.ndarray | None,
                     frame_kp: np.ndarray, use_z: bool = True):
    """The P+ code a take's first frame starts from (``ReenactSettings.first_frame``): 'center' (the
    center of P), 'nearest-anchor' (``nearest_anchor``) or 'keypoint-mix' (``keypoint_mixture``);
    anchor_kp (N,66,3) is only read by the last two, frame_kp (66,3) is the frame's keypoints."""
    if how == "center" or space.n_anchors == 1:
        return space.center_code()
    if how == "nearest-anchor":
        return space.anchor_code(nearest_anchor(anchor_kp, frame_kp))
    if how == "keypoint-mix":
        return space.code_from_coefficients(torch.from_numpy(keypoint_mixture(anchor_kp, frame_kp, use_z))[None])
    raise ValueError(f"unknown first-frame start {how!r}")
