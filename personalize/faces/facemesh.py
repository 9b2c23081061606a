"""Differentiable MediaPipe face mesh (478 landmarks) as a PyTorch module.

Why: re-enactment optimizes a latent code so that the *generated* image's keypoints match the
driving frame's; that needs landmarks with gradients w.r.t. the image. MediaPipe's runtime gives
none, so this module rebuilds MediaPipe's own attention face-mesh network
(`face_landmark_with_attention.tflite`, the one `FaceMesh(refine_landmarks=True)` runs) from the
installed wheel at run time (see `tflite_torch.py`) and re-implements the steps around it:

1. region of interest (ROI): a rotated square around the face, exactly as MediaPipe's static
   mode places it: the short-range BlazeFace detector (also rebuilt from the wheel,
   `face_detector.py`), box x1.5, square, rotated by the eye keypoints. If the detector finds no
   face (e.g. an early, blurry generated image) the ROI falls back to MediaPipe's tracking rule
   (`roi_from_landmarks`) iterated from a default square. ROIs are detached: as in MediaPipe,
   the ROI is a placement decision, not part of the differentiated function.
2. crop: the ROI resampled to 192x192 with bilinear interpolation and replicated borders
   (MediaPipe: cv::warpPerspective INTER_LINEAR, BORDER_REPLICATE, ROI corners -> image corners),
   values in [0, 1]. Done with `F.grid_sample`, so gradients flow into the input image.
3. network -> 468 mesh points + refined lips (80), eyes (71 each), irises (5 each), in 192-pixel
   units of the ROI crop.
4. refinement (MediaPipe LandmarksRefinementCalculator): lips/eyes overwrite x, y of their mesh
   points; irises are appended (468..472 around mesh point 33's eye (the subject's right eye),
   473..477 around 263's), their z the mean z of that eye's 16 eyelid points.
5. projection back to the input image: x, y in input pixels; z scaled like MediaPipe's pixel z
   (normalized z times the image width), i.e. z_192 / 192 * ROI size.
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .face_detector import FaceDetector
from .mediapipe_ops import MEDIAPIPE_CUSTOM_OPS
from .tflite_torch import TFLiteModule, load_graph

__all__ = ["FaceMesh", "mediapipe_model_path", "roi_from_landmarks", "crop_roi"]

MODEL_REL_PATH = ("modules", "face_landmark", "face_landmark_with_attention.tflite")
INPUT_SIZE = 192
ROI_SCALE = 1.5  # MediaPipe FaceLandmarkLandmarksToRoi: RectTransformation scale_x/scale_y
EYE_CORNERS = (33, 263)  # rotation reference (start, end) as in MediaPipe
# The 16 eyelid points of each eye (the first 16 of the model's 71-point eye outputs);
# MediaPipe gives each iris the average z of these.
RIGHT_EYELID = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173)
LEFT_EYELID = (263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
# Default ROI for an FFHQ-style aligned crop, as fractions of the crop size: centre and side.
DEFAULT_ROI = (0.5, 0.55, 0.0, 0.75)

_GRAPH_LOCK = threading.Lock()
_GRAPH_CACHE: dict[str, object] = {}


def mediapipe_model_path() -> Path:
    """The attention face-mesh model inside the installed mediapipe wheel."""
    try:
        import mediapipe
    except ImportError as exc:  # pragma: no cover - mediapipe is a hard dependency
        from personalize.errors import MissingWeightsError

        raise MissingWeightsError(
            "mediapipe is not installed, so the face-mesh model is unavailable",
            "install the project's dependencies (pip install -e .)",
        ) from exc
    path = Path(mediapipe.__file__).parent.joinpath(*MODEL_REL_PATH)
    if not path.is_file():
        from personalize.errors import MissingWeightsError

        raise MissingWeightsError(
            f"the installed mediapipe has no {path.name} (looked at {path})",
            "install mediapipe>=0.10.14,<0.10.30, whose wheel ships the face models",
        )
    return path


def _graph():
    with _GRAPH_LOCK:
        key = str(mediapipe_model_path())
        if key not in _GRAPH_CACHE:
            _GRAPH_CACHE[key] = load_graph(key)
        return _GRAPH_CACHE[key]


def roi_from_landmarks(landmarks: torch.Tensor, scale: float = ROI_SCALE) -> torch.Tensor:
    """(N,>=468,>=2) pixel landmarks -> (N,4) ROIs (cx, cy, angle_rad, side) in pixels, detached.

    MediaPipe's tracking ROI: axis-aligned bounding box of the 468 mesh points, rotation that
    makes the eye-corner line 33 -> 263 horizontal, side = scale * longer box side.
    """
    pts = landmarks[:, :468, :2].detach()
    lo, hi = pts.min(1).values, pts.max(1).values
    center = 0.5 * (lo + hi)
    d = pts[:, EYE_CORNERS[1]] - pts[:, EYE_CORNERS[0]]
    angle = torch.atan2(d[:, 1], d[:, 0])
    side = (hi - lo).max(dim=1).values * scale
    return torch.stack([center[:, 0], center[:, 1], angle, side], dim=1)


def _roi_axes(roi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Corner (top-left of the rotated square) and the two per-unit axis vectors, all (N,2)."""
    c, a, s = roi[:, 0:2], roi[:, 2], roi[:, 3]
    ex = torch.stack([torch.cos(a), torch.sin(a)], dim=1) * s[:, None]
    ey = torch.stack([-torch.sin(a), torch.cos(a)], dim=1) * s[:, None]
    corner = c - 0.5 * ex - 0.5 * ey
    return corner, ex, ey


def crop_roi(images: torch.Tensor, roi: torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """Resample rotated square ROIs of images (N,C,H,W) to (N,C,size,size), differentiably.

    Output pixel (u, v) samples the input at corner + (u/size)*ex + (v/size)*ey (pixel-centre
    integer coordinates, as OpenCV's warp), bilinear, edge pixels replicated outside the image.
    """
    n, _, h, w = images.shape
    corner, ex, ey = _roi_axes(roi.to(images.dtype))
    t = torch.arange(size, dtype=images.dtype, device=images.device) / size
    src = (corner[:, None, None, :] + t[None, None, :, None] * ex[:, None, None, :]
           + t[None, :, None, None] * ey[:, None, None, :])  # (N,size,size,2) (x,y)
    gx = (2 * src[..., 0] + 1) / w - 1
    gy = (2 * src[..., 1] + 1) / h - 1
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FaceMesh(nn.Module):
    """MediaPipe's 478-point attention face mesh, differentiable, batched, CPU or CUDA.

    forward(images (N,3,H,W) float in [-1,1], aligned face crops) -> (N,478,3) landmarks:
    x, y in input pixels, z relative (MediaPipe pixel-z convention: roughly the same scale as x,
    negative towards the camera). Order and meaning of indices equal MediaPipe's
    `refine_landmarks=True` output.
    """

    def __init__(self, net: TFLiteModule, detector: FaceDetector | None = None, passes: int = 2) -> None:
        super().__init__()
        self.net = net
        self.detector = detector
        self.passes = passes
        self._mesh = "output_mesh_identity"
        self._lips_idx = [int(i) for i in self._subset_for("left_rotation_idx", 61)]
        self._reye_idx = [int(i) for i in self._subset_for("left_rotation_idx", 33)]
        self._leye_idx = [int(i) for i in self._subset_for("left_rotation_idx", 362)]
        for p in self.parameters():
            p.requires_grad_(False)

    def _subset_for(self, key: str, value: int) -> list[int]:
        for op in self.net.graph.ops:
            if op.name == "CUSTOM:Landmarks2TransformMatrix" and int(op.options[key]) == value:
                return list(op.options["subset_idxs"])
        raise RuntimeError(f"face-mesh graph has no part window with {key}={value}")

    @classmethod
    def from_mediapipe(cls, device: str | torch.device = "cpu", use_detector: bool = True,
                       passes: int = 2) -> "FaceMesh":
        """Build from the installed mediapipe wheel (parsed once per process, then cached).

        use_detector=False skips the face detector and always places the ROI by `passes`
        rounds of the landmark rule (slightly less MediaPipe-exact, ~0.4 % of the crop size).
        """
        net = TFLiteModule(_graph(), custom_ops=MEDIAPIPE_CUSTOM_OPS)
        det = FaceDetector.from_mediapipe() if use_detector else None
        return cls(net, detector=det, passes=passes).to(device).eval()

    # -----------------------------------------------------------------------------------
    def default_roi(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        cx, cy, ang, side = DEFAULT_ROI
        roi = torch.tensor([cx * w, cy * h, ang, side * max(h, w)], dtype=images.dtype,
                           device=images.device)
        return roi.expand(n, 4).clone()

    def landmarks_in_roi(self, images01: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        """images in [0,1] (N,3,H,W), ROIs (N,4) -> (N,478,3) landmarks in 192-pixel ROI units."""
        crop = crop_roi(images01, roi, INPUT_SIZE)
        out = self.net(crop.permute(0, 2, 3, 1))
        n = images01.shape[0]
        mesh = out[self._mesh].reshape(n, 468, 3)
        lips = out["output_lips"].reshape(n, 80, 2)
        reye = out["output_left_eye"].reshape(n, 71, 2)
        leye = out["output_right_eye"].reshape(n, 71, 2)
        riris = out["output_left_iris"].reshape(n, 5, 2)
        liris = out["output_right_iris"].reshape(n, 5, 2)
        xy = mesh[..., :2].clone()
        xy[:, self._lips_idx] = lips
        xy[:, self._reye_idx] = reye
        xy[:, self._leye_idx] = leye
        z = mesh[..., 2:]
        z_r = z[:, list(RIGHT_EYELID)].mean(1, keepdim=True).expand(n, 5, 1)
        z_l = z[:, list(LEFT_EYELID)].mean(1, keepdim=True).expand(n, 5, 1)
        full = torch.cat([torch.cat([xy, z], -1), torch.cat([riris, z_r], -1),
                          torch.cat([liris, z_l], -1)], dim=1)
        return full

    @torch.no_grad()
    def find_roi(self, images01: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) in [0,1] -> (N,4) ROIs: the detector's where it finds a face, else the
        landmark rule iterated from DEFAULT_ROI."""
        x = images01.detach()
        fallback = self.default_roi(x)
        found = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        roi = fallback
        if self.detector is not None:
            roi, found = self.detector(x)
        if not bool(found.all()):
            for _ in range(self.passes):
                fallback = roi_from_landmarks(self.project(self.landmarks_in_roi(x, fallback), fallback))
            roi = torch.where(found[:, None], roi, fallback)
        return roi

    @staticmethod
    def project(lm192: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
        """ROI-crop landmarks (192 units) -> input-image pixels (z scaled by the ROI size)."""
        corner, ex, ey = _roi_axes(roi.to(lm192.dtype))
        u = lm192[..., 0:1] / INPUT_SIZE
        v = lm192[..., 1:2] / INPUT_SIZE
        xy = corner[:, None] + u * ex[:, None] + v * ey[:, None]
        z = lm192[..., 2:3] / INPUT_SIZE * roi[:, None, 3:4].to(lm192.dtype)
        return torch.cat([xy, z], dim=-1)

    def forward(self, images: torch.Tensor, roi: torch.Tensor | None = None) -> torch.Tensor:
        """images (N,3,H,W) in [-1,1] -> (N,478,3) landmarks in input pixels (see class doc).

        roi: optional (N,4) (cx, cy, angle, side) in pixels; by default `self.find_roi`.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"FaceMesh expects images (N,3,H,W); got {tuple(images.shape)}")
        x01 = (images.float() + 1.0) * 0.5
        if roi is None:
            roi = self.find_roi(x01)
        roi = roi.detach().to(x01)
        return self.project(self.landmarks_in_roi(x01, roi), roi)
