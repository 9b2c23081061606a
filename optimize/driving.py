"""Driving frames for re-enactment: aligned crops, their MediaPipe landmarks, and tensors.

Shared by every re-enactment mode (the per-frame optimizer in ``optimize.reenact`` and the
one-shot backends): each needs the same aligned driving crops and where MediaPipe found the face
in them. ``DrivingFrames.content_hash`` identifies the crops' pixels, so a track made from other
crops is noticed (``optimize.track``).
"""
from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import torch

from personalize.errors import ProjectError
from personalize.fileio import atomic_save_npz
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.video import read_image

if TYPE_CHECKING:
    from personalize.faces import LandmarkDetector

MIN_DETECT_SIDE = 256


@dataclass
class DrivingFrames:
    """Aligned driving crops and their MediaPipe landmarks.

    ``load_image(t)`` -> HWC uint8 RGB crop (R x R); ``landmarks`` (T,478,3) float32 in crop pixels
    (MediaPipe on the crop); ``valid`` (T,) bool, False where no face was found.
    """

    load_image: Callable[[int], np.ndarray]
    landmarks: np.ndarray
    valid: np.ndarray
    content_hash: str
    """Identifies the crops' pixels (part of the track fingerprint)."""

    @property
    def n_frames(self) -> int:
        return int(self.landmarks.shape[0])

    @classmethod
    def from_arrays(cls, images: Sequence[np.ndarray], landmarks: np.ndarray | None = None,
                    valid: np.ndarray | None = None) -> "DrivingFrames":
        """In-memory crops; landmarks are detected with MediaPipe when not given."""
        images = [np.ascontiguousarray(im) for im in images]
        if landmarks is None:
            landmarks, valid = detect_crop_landmarks(images.__getitem__, len(images))
        if valid is None:
            valid = np.ones(len(images), bool)
        digest = hashlib.sha256()
        for im in images:
            digest.update(im.tobytes())
        return cls(images.__getitem__, np.asarray(landmarks, np.float32), np.asarray(valid, bool),
                   digest.hexdigest())

    @classmethod
    def from_crop_files(cls, crop_paths: Sequence[Path], cache: Path | None = None,
                        progress: ProgressFn = no_progress,
                        cancel: CancelToken = NEVER_CANCELLED) -> "DrivingFrames":
        """Crops on disk (PNG); MediaPipe landmarks computed once and cached in ``cache`` (.npz)."""
        paths = [Path(p) for p in crop_paths]
        if not paths:
            raise ProjectError("The driving take has no aligned crops.", "Prepare the driving video again.")
        digest = hashlib.sha256()
        for p in paths:
            digest.update(p.name.encode())
            digest.update(p.read_bytes())
        content_hash = digest.hexdigest()
        landmarks = valid = None
        if cache is not None and cache.is_file():
            try:
                with np.load(cache) as data:
                    if str(data["content_hash"]) == content_hash:
                        landmarks, valid = data["landmarks"], data["valid"]
            except (OSError, KeyError, ValueError, zipfile.BadZipFile):
                landmarks = valid = None  # a broken cache is just recomputed
        if landmarks is None:
            landmarks, valid = detect_crop_landmarks(lambda t: read_image(paths[t]), len(paths),
                                                     progress, cancel)
            if cache is not None:
                atomic_save_npz(cache, landmarks=landmarks, valid=valid, content_hash=np.array(content_hash))
        return cls(lambda t: read_image(paths[t]), np.asarray(landmarks, np.float32),
                   np.asarray(valid, bool), content_hash)


def crop_landmarks(detector: LandmarkDetector, image: np.ndarray) -> np.ndarray | None:
    """MediaPipe (static mode, ``detector``) on one aligned crop (H,W,3) uint8 -> its landmarks
    (478,3) in crop pixels, or None without a face.

    Crops smaller than ``MIN_DETECT_SIDE`` are upscaled first (MediaPipe's detector misses faces in
    tiny images, e.g. a 64 px test generator's crops); landmarks are scaled back.
    """
    import cv2

    side = image.shape[1]
    scale = 1.0
    if side < MIN_DETECT_SIDE:
        scale = MIN_DETECT_SIDE / side
        image = cv2.resize(image, (MIN_DETECT_SIDE, int(round(image.shape[0] * scale))),
                           interpolation=cv2.INTER_CUBIC)
    found = detector.detect(image)
    return None if found is None else found / scale


def detect_crop_landmarks(load_image: Callable[[int], np.ndarray], n: int,
                          progress: ProgressFn = no_progress,
                          cancel: CancelToken = NEVER_CANCELLED) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe (static mode) on every aligned crop (``crop_landmarks``, one detector for all)
    -> landmarks (T,478,3) in crop pixels, valid (T,)."""
    from personalize.faces import LandmarkDetector

    landmarks = np.zeros((n, 478, 3), np.float32)
    valid = np.zeros(n, bool)
    with LandmarkDetector() as detector:
        for t in range(n):
            cancel.check()
            found = crop_landmarks(detector, load_image(t))
            if found is not None:
                landmarks[t] = found
                valid[t] = True
            progress(t + 1, n, "driving keypoints")
    return landmarks, valid


def image_to_tensor(image: np.ndarray, size: int, device: torch.device | str) -> torch.Tensor:
    """HWC uint8 RGB -> (1,3,size,size) float32 in [-1,1] on ``device``."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1)[None].float()
    tensor = tensor / 127.5 - 1.0
    if tensor.shape[-1] != size or tensor.shape[-2] != size:
        tensor = torch.nn.functional.interpolate(tensor, size=(size, size), mode="bilinear",
                                                 align_corners=False, antialias=True)
    return tensor


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B,3,H,W) in [-1,1] -> (B,H,W,3) uint8 RGB (the inverse of ``image_to_tensor``)."""
    return uint8_pixels(images).cpu().numpy()


def uint8_pixels(images: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) in [-1,1] -> (B,H,W,3) uint8 RGB on the same device (``tensor_to_uint8`` without
    the copy to the host, for a copy that should not wait: ``optimize.live``)."""
    images = ((images.detach().float().clamp(-1, 1) + 1.0) * 127.5).round()
    return images.to(torch.uint8).permute(0, 2, 3, 1)
