"""Source and driving faces for the one-shot backends, in their crop conventions, from MediaPipe only.

The official pipelines detect every frame with S3FD + FAN (68 landmarks), crop, and detect again on
the crop. The studio has MediaPipe's 478 landmarks of every frame already (``personalize.faces``:
tracked through the video) and maps them to the 68-point layout
(``optimize.face_crops.mediapipe_to_ibug68``), so no extra detector weights are needed. Where this
differs from the official path:

* **Temporal smoothing.** The official code crops each frame from its own detection. Here the
  landmarks are smoothed over time first (zero-phase Gaussian, ``personalize.faces.smoothing``):
  ``CROP_SIGMA`` (2 frames, as the studio's own alignment) for the crop box, ``LANDMARK_SIGMA``
  (1 frame: MediaPipe's jitter goes, blinks and lip motion stay) for the landmarks the networks
  read. Frames without a face get landmarks interpolated from their neighbours (flagged).
* **No re-detection on the crop**: the smoothed landmarks are mapped into the crop by its transform.
* **Coordinates**: MediaPipe gives continuous pixels (pixel i spans [i, i+1)); the official rules
  take pixel-index coordinates (the centre of pixel 0 is 0), so the 68 landmarks are shifted by
  -0.5. Transforms (for paste-back) are in continuous pixels, as ``personalize.faces`` uses them.
* ``landmarks68`` (HyperReenact, directions): the official box crop of the full frame
  (``optimize.face_crops.official_crop``). ``ffhq`` (DiffusionAct): the FFHQ quad of the eyes and
  mouth; the studio's alignment (``personalize.faces.align_face``) is the same recipe as the
  official ``align_crop_image`` but from MediaPipe's eye contours and mouth corners, with the
  smoothed quad of the driving preparation instead of one detection per frame.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from optimize.backends.base import Crop, FaceBatch
from optimize.face_crops import CROP_SIZE, mediapipe_to_ibug68, official_crop, official_crop_transform
from personalize.faces.alignment import align_face, transform_points
from personalize.faces.smoothing import smooth_series

CROP_SIGMA = 2.0
LANDMARK_SIGMA = 1.0


def lm68_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(..., 478, 2|3) continuous pixels -> (..., 68, 2) iBUG landmarks in pixel-index coordinates."""
    return mediapipe_to_ibug68(mesh) - 0.5


def to_tensor(images: np.ndarray | list[np.ndarray]) -> torch.Tensor:
    """(B,H,W,3) uint8 RGB -> (B,3,H,W) float32 in [-1, 1] (the official ``x/255*2-1``)."""
    arr = np.ascontiguousarray(np.stack(images) if isinstance(images, list) else images)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 255.0 * 2.0 - 1.0


@dataclass
class SourceFace:
    """The source in a backend's crop: ``crop`` (R,R,3) uint8, ``lm68`` (68,2) index pixels,
    ``mesh`` (478,3) continuous pixels of the crop."""

    crop: np.ndarray
    lm68: np.ndarray
    mesh: np.ndarray

    def batch(self) -> FaceBatch:
        return FaceBatch(to_tensor(self.crop[None]), torch.from_numpy(self.lm68[None]).float(),
                         torch.from_numpy(self.mesh[None]).float())


def source_face(image: np.ndarray, mesh: np.ndarray, crop: Crop, size: int = CROP_SIZE) -> SourceFace:
    """One image (H,W,3) uint8 and its MediaPipe landmarks (478,3, continuous pixels) -> its crop."""
    mesh = np.asarray(mesh, np.float64)
    if crop == "landmarks68":
        cut, lm68 = official_crop(image, lm68_from_mesh(mesh), size)
        transform = official_crop_transform(lm68_from_mesh(mesh), image.shape[1], size)
    else:
        cut, transform = align_face(image, mesh, size)
    in_crop = transform_points(transform, mesh)
    return SourceFace(cut, lm68_from_mesh(in_crop).astype(np.float32), in_crop.astype(np.float32))


@dataclass
class DrivingPlan:
    """Where each driving frame's crop is and where its face is in it (T frames).

    transforms (T,3,3) frame -> crop (continuous pixels; paste-back inverts them); mesh (T,478,3)
    smoothed MediaPipe landmarks in crop pixels; lm68 (T,68,2) their iBUG-68 (index pixels); valid
    (T,) MediaPipe found the face (else interpolated); box68 (T,68,2) the frame-pixel landmarks the
    ``landmarks68`` crop is cut from (None for ``ffhq``); reference: the most frontal valid frame.
    """

    crop: Crop
    size: int
    transforms: np.ndarray
    mesh: np.ndarray
    lm68: np.ndarray
    valid: np.ndarray
    reference: int
    box68: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(len(self.valid))

    def arrays(self) -> dict[str, np.ndarray]:
        """What a take stores (and fingerprints) of the plan."""
        out = {"transforms": self.transforms, "mesh": self.mesh, "lm68": self.lm68, "valid": self.valid,
               "reference": np.array(self.reference), "size": np.array(self.size), "crop": np.array(self.crop)}
        if self.box68 is not None:
            out["box68"] = self.box68
        return out

    def batch(self, crops: list[np.ndarray], start: int) -> FaceBatch:
        """The FaceBatch of frames ``start .. start+len(crops)-1`` from their crops (R,R,3) uint8."""
        stop = start + len(crops)
        return FaceBatch(to_tensor(crops), torch.from_numpy(self.lm68[start:stop]).float(),
                         torch.from_numpy(self.mesh[start:stop]).float(),
                         torch.from_numpy(self.mesh[self.reference]).float())


def plan_driving(crop: Crop, landmarks: np.ndarray, valid: np.ndarray, frame_width: int,
                 ffhq_transforms: np.ndarray | None = None, size: int = CROP_SIZE) -> DrivingPlan:
    """The driving take's crops from its MediaPipe landmarks (T,478,3, frame pixels, NaN where no face).

    ``ffhq`` takes the preparation's smoothed FFHQ transforms (``ffhq_transforms`` (T,3,3), at
    ``size``); ``landmarks68`` computes the official box crops from the landmarks smoothed with
    ``CROP_SIGMA`` (``frame_width`` for the official >1000 px shrink).
    """
    from optimize.mediapipe_stickman import most_frontal

    valid = np.asarray(valid, bool)
    smooth = smooth_series(landmarks, valid, LANDMARK_SIGMA)
    box68 = None
    if crop == "ffhq":
        if ffhq_transforms is None:
            raise ValueError("the ffhq crop needs the preparation's transforms")
        transforms = np.asarray(ffhq_transforms, np.float64)
    else:
        box68 = lm68_from_mesh(smooth_series(landmarks, valid, CROP_SIGMA)).astype(np.float32)
        transforms = np.stack([official_crop_transform(lm, frame_width, size) for lm in box68])
    mesh = transform_points(transforms, smooth).astype(np.float32)
    return DrivingPlan(crop, size, transforms, mesh, lm68_from_mesh(mesh).astype(np.float32), valid,
                       most_frontal(mesh, valid), box68)


def driving_crops(plan: DrivingPlan, frames: Iterator[np.ndarray] | None = None,
                  read_crop: Callable[[int], np.ndarray] | None = None, start: int = 0) -> Iterator[np.ndarray]:
    """The crops (R,R,3) uint8 of frames ``start..`` in order.

    ``landmarks68``: cut from the full frames ``frames`` (an iterator starting at ``start``);
    ``ffhq``: the preparation's crops, ``read_crop(t)``.
    """
    for t in range(start, plan.n_frames):
        if plan.crop == "ffhq":
            if read_crop is None:
                raise ValueError("the ffhq crop reads the prepared crops")
            yield read_crop(t)
        else:
            if frames is None or plan.box68 is None:
                raise ValueError("the landmarks68 crop cuts the full frames")
            yield official_crop(next(frames), plan.box68[t], plan.size)[0]

