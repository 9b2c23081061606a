"""Faces: MediaPipe landmarks, smoothed FFHQ alignment, paste-back, quality flags, preparation.

Public API (see each module for details):

- ``detect_landmarks(image)`` -> (478, 3) | None, ``LandmarkDetector`` (the same for many images),
  ``LandmarkTracker`` (video mode)
- ``quad_from_landmarks``, ``quad_transform``, ``align_face``, ``warp_crop``, ``paste_back``,
  ``face_mask``, ``transform_points``
- ``smooth_series``, ``smooth_quads``
- ``prepare_video(video, out_dir, size, smooth_sigma, progress, cancel)`` -> ``PrepareResult``,
  ``load_prepared(out_dir)``
- ``facemesh.FaceMesh``: the differentiable MediaPipe face mesh in torch (import it from its
  module; it brings torch, which the rest of this package does not need)
"""
from __future__ import annotations

from personalize.faces.alignment import (Quad, align_face, alignment_anchors, face_mask,
                                         paste_back, quad_from_landmarks, quad_transform,
                                         transform_points, warp_crop)
from personalize.faces.landmarks import LandmarkDetector, LandmarkTracker, detect_landmarks, track_landmarks
from personalize.faces.prepare import PrepareResult, load_prepared, prepare_video
from personalize.faces.quality import QualityThresholds, head_pose
from personalize.faces.smoothing import smooth_quads, smooth_series

__all__ = ["Quad", "align_face", "alignment_anchors", "face_mask", "paste_back",
           "quad_from_landmarks", "quad_transform", "transform_points", "warp_crop",
           "LandmarkDetector", "LandmarkTracker", "detect_landmarks", "track_landmarks", "PrepareResult",
           "load_prepared", "prepare_video", "QualityThresholds", "head_pose", "smooth_quads",
           "smooth_series"]
