"""Where a take's first frame starts: the anchor whose rendered keypoints are nearest the frame's.

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
