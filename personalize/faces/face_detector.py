"""MediaPipe's short-range BlazeFace detector in torch, used only to place the face-mesh ROI.

Why: `FaceMesh(static_image_mode=True)` feeds the mesh network the rotated square that the face
*detector* proposes, and the mesh output shifts by ~1 px (at 256 px) with the ROI. To agree with
MediaPipe on a single image we compute the very same ROI: this module replays
`face_detection_short_range.tflite` from the installed wheel (see `tflite_torch.py`) and applies
MediaPipe's decoding (SSD anchors, sigmoid scores, weighted non-maximum suppression) and
detection -> ROI rule (eye keypoints set the rotation, box x1.5, square). Runs without gradients:
the ROI is a placement decision, not part of the differentiated function.
"""
from __future__ import annotations

import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .tflite_torch import TFLiteModule, load_graph

__all__ = ["FaceDetector", "detector_model_path"]

INPUT = 128
STRIDES = (8, 16, 16, 16)  # SsdAnchorsCalculator options of the short-range model
MIN_SCORE = 0.5
NMS_IOU = 0.3
ROI_SCALE = 1.5

_LOCK = threading.Lock()
_CACHE: dict[str, object] = {}


def detector_model_path() -> Path:
    import mediapipe

    path = Path(mediapipe.__file__).parent / "modules" / "face_detection" / "face_detection_short_range.tflite"
    if not path.is_file():
        from personalize.errors import MissingWeightsError

        raise MissingWeightsError(f"the installed mediapipe has no {path.name}",
                                  "install mediapipe>=0.10.14,<0.10.30")
    return path


def _anchors() -> torch.Tensor:
    """(896,2) anchor centres in [0,1]; fixed anchor size 1, two anchors per cell per layer."""
    centers = []
    i = 0
    while i < len(STRIDES):
        stride = STRIDES[i]
        n_layers = 0
        while i < len(STRIDES) and STRIDES[i] == stride:
            n_layers += 1
            i += 1
        cells = INPUT // stride
        ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
        c = torch.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], -1).reshape(-1, 1, 2)
        centers.append(c.expand(-1, 2 * n_layers, 2).reshape(-1, 2))
    return torch.cat(centers).float()


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """box (4,), boxes (K,4) as (xmin, ymin, xmax, ymax) -> (K,) IoU."""
    lo = torch.maximum(box[:2], boxes[:, :2])
    hi = torch.minimum(box[2:], boxes[:, 2:])
    inter = (hi - lo).clamp_min(0).prod(-1)
    area = lambda b: (b[..., 2] - b[..., 0]).clamp_min(0) * (b[..., 3] - b[..., 1]).clamp_min(0)
    return inter / (area(box) + area(boxes) - inter).clamp_min(1e-12)


class FaceDetector(nn.Module):
    """images (N,3,H,W) in [0,1] -> (N,4) face-mesh ROIs (cx, cy, angle_rad, side) in pixels,
    plus (N,) bool `found`. The best face per image (MediaPipe FaceMesh max_num_faces=1)."""

    def __init__(self, net: TFLiteModule) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("anchors", _anchors(), persistent=False)

    @classmethod
    def from_mediapipe(cls, device: str | torch.device = "cpu") -> "FaceDetector":
        with _LOCK:
            key = str(detector_model_path())
            if key not in _CACHE:
                _CACHE[key] = load_graph(key)
            graph = _CACHE[key]
        return cls(TFLiteModule(graph)).to(device).eval()

    @torch.no_grad()
    def forward(self, images01: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images01.shape
        side = float(max(h, w))
        # letterbox to a centred square (zero border), as MediaPipe keeps the aspect ratio
        px, py = (side - w) / 2, (side - h) / 2
        t = torch.arange(INPUT, dtype=images01.dtype, device=images01.device) * (side / INPUT)
        gx = (2 * (t - px) + 1) / w - 1
        gy = (2 * (t - py) + 1) / h - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1).expand(n, -1, -1, -1)
        small = F.grid_sample(images01 * 2 - 1, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        out = self.net(small.permute(0, 2, 3, 1))
        raw = out["regressors"].reshape(n, -1, 16)
        scores = torch.sigmoid(out["classificators"].reshape(n, -1).clamp(-100, 100))
        rois = torch.zeros(n, 4, dtype=images01.dtype, device=images01.device)
        found = torch.zeros(n, dtype=torch.bool, device=images01.device)
        a = self.anchors
        for b in range(n):
            r = raw[b] / INPUT
            cx, cy = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1]
            bw, bh = r[:, 2], r[:, 3]
            boxes = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
            kps = r[:, 4:16].reshape(-1, 6, 2) + a[:, None, :]
            keep = scores[b] >= MIN_SCORE
            if not keep.any():
                continue
            s, bx, kp = scores[b][keep], boxes[keep], kps[keep]
            top = int(torch.argmax(s))
            overlap = _iou(bx[top], bx) > NMS_IOU
            wgt = s[overlap] / s[overlap].sum()
            box = (bx[overlap] * wgt[:, None]).sum(0)
            kp = (kp[overlap] * wgt[:, None, None]).sum(0)
            # back from the letterboxed square to image pixels
            box = box * side - torch.tensor([px, py, px, py], dtype=box.dtype, device=box.device)
            kp = kp * side - torch.tensor([px, py], dtype=kp.dtype, device=kp.device)
            d = kp[1] - kp[0]  # keypoint 0: right eye, 1: left eye (subject's)
            angle = torch.atan2(d[1], d[0])
            c = 0.5 * (box[:2] + box[2:])
            size = (box[2:] - box[:2]).max() * ROI_SCALE
            rois[b] = torch.stack([c[0], c[1], angle, size])
            found[b] = True
        return rois, found
