"""478 MediaPipe face landmarks per frame (468 mesh + 10 iris), tracked through a video.

Why MediaPipe's tracking mode for videos: after the first detection it re-uses the previous
frame's face region, which is both faster (~2x) and temporally steadier than detecting on every
frame. ``max_num_faces`` is above one on purpose, so a second person walking into the shot is
*seen* (and the frame flagged) instead of silently stealing the track.

Coordinates are pixels of the frame that was processed: ``(x * W, y * H, z * W)`` with MediaPipe's
normalized ``x, y`` (so pixel ``i`` spans ``[i, i + 1)``) and ``z`` relative depth in the same
scale as ``x`` (negative = towards the camera).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from personalize.errors import MediaError

N_LANDMARKS = 478
DEFAULT_MAX_FACES = 2  # enough to notice a second person; each extra face costs detector time


def _silence_mediapipe_logs() -> None:
    # glog/absl chatter ("Created TensorFlow Lite XNNPACK delegate") on every FaceMesh.
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _new_face_mesh(static: bool, max_faces: int, min_detection: float, min_tracking: float):
    _silence_mediapipe_logs()
    try:
        from mediapipe.python.solutions import face_mesh as mp_face_mesh
    except ImportError as exc:  # pragma: no cover - the dependency is pinned
        raise MediaError("MediaPipe (with its face models) is not installed.",
                         "Install the studio's requirements: pip install 'mediapipe<0.10.30'") from exc
    return mp_face_mesh.FaceMesh(static_image_mode=static, max_num_faces=max_faces,
                                 refine_landmarks=True, min_detection_confidence=min_detection,
                                 min_tracking_confidence=min_tracking)


def _to_pixels(face, width: int, height: int) -> np.ndarray:
    """One MediaPipe NormalizedLandmarkList -> (478, 3) float32 pixel coordinates."""
    pts = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float32)
    if pts.shape != (N_LANDMARKS, 3):
        raise RuntimeError(f"MediaPipe returned {pts.shape[0]} landmarks, expected 478 "
                           "(refine_landmarks must be on)")
    pts *= np.array([width, height, width], dtype=np.float32)
    return pts


def _faces_in(results, width: int, height: int) -> list[np.ndarray]:
    faces = results.multi_face_landmarks or []
    return [_to_pixels(face, width, height) for face in faces]


def face_box_size(landmarks: np.ndarray) -> float:
    """Face size in pixels: the larger side of the mesh's 2D bounding box."""
    xy = landmarks[:N_LANDMARKS, :2]
    extent = xy.max(axis=0) - xy.min(axis=0)
    return float(extent.max())


def _center(landmarks: np.ndarray) -> np.ndarray:
    return landmarks[:, :2].mean(axis=0)


def pick_subject(faces: list[np.ndarray], previous: np.ndarray | None) -> int:
    """Index of the face that continues the track: nearest to the previous subject, else largest."""
    if previous is None:
        return int(np.argmax([face_box_size(f) for f in faces]))
    prev_center = _center(previous)
    return int(np.argmin([np.linalg.norm(_center(f) - prev_center) for f in faces]))


@dataclass
class FrameFaces:
    """The tracked subject's landmarks in one frame (None: no face) and how many faces were seen."""

    landmarks: np.ndarray | None
    n_faces: int


class LandmarkTracker:
    """MediaPipe FaceMesh in video mode that follows one subject across frames.

    Feed frames in order with ``process``; use as a context manager (or call ``close``) to free
    MediaPipe's graph. Not thread-safe (MediaPipe graphs are stateful).
    """

    def __init__(self, max_faces: int = DEFAULT_MAX_FACES, min_detection: float = 0.5,
                 min_tracking: float = 0.5) -> None:
        self._mesh = _new_face_mesh(False, max_faces, min_detection, min_tracking)
        self._previous: np.ndarray | None = None

    def process(self, frame_rgb: np.ndarray) -> FrameFaces:
        """Landmarks of the tracked subject in an (H, W, 3) uint8 RGB frame."""
        height, width = frame_rgb.shape[:2]
        faces = _faces_in(self._mesh.process(np.ascontiguousarray(frame_rgb)), width, height)
        if not faces:
            return FrameFaces(None, 0)
        chosen = faces[pick_subject(faces, self._previous)]
        self._previous = chosen
        return FrameFaces(chosen, len(faces))

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "LandmarkTracker":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track_landmarks(frames: Iterable[np.ndarray], max_faces: int = DEFAULT_MAX_FACES
                    ) -> Iterator[FrameFaces]:
    """Track the subject through a stream of frames, yielding one ``FrameFaces`` per frame."""
    with LandmarkTracker(max_faces=max_faces) as tracker:
        for frame in frames:
            yield tracker.process(frame)


class LandmarkDetector:
    """MediaPipe FaceMesh in static-image mode, kept open across images.

    Every image is detected afresh (no tracking state), so each result equals
    ``detect_landmarks``' on that image alone; what is saved is building MediaPipe's graph, which
    costs several times the detection (about 55 against 10 ms a 256 px crop on the 2-core CPU).
    Use it for many images (a take's crops, renders read back); close it, or use it as a context
    manager. Not thread-safe.
    """

    def __init__(self, max_faces: int = DEFAULT_MAX_FACES, min_detection: float = 0.5) -> None:
        self._mesh = _new_face_mesh(True, max_faces, min_detection, 0.5)

    def detect(self, image_rgb: np.ndarray) -> np.ndarray | None:
        """(478, 3) float32 pixel landmarks of the largest face in an HxWx3 uint8 RGB image, or None."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise ValueError(f"expected HxWx3 uint8 RGB, got {image_rgb.shape} {image_rgb.dtype}")
        height, width = image_rgb.shape[:2]
        faces = _faces_in(self._mesh.process(np.ascontiguousarray(image_rgb)), width, height)
        return faces[pick_subject(faces, None)] if faces else None

    def close(self) -> None:
        self._mesh.close()

    def __enter__(self) -> "LandmarkDetector":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def detect_landmarks(image_rgb: np.ndarray, max_faces: int = DEFAULT_MAX_FACES
                     ) -> np.ndarray | None:
    """(478, 3) float32 pixel landmarks of the largest face in a single image, or None.

    Static-image mode: a fresh detection, no tracking state (for photos, crops, tests). For many
    images, keep one ``LandmarkDetector``.
    """
    with LandmarkDetector(max_faces) as detector:
        return detector.detect(image_rgb)
