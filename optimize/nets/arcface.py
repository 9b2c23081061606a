"""ArcFace IR-SE-50 (InsightFace ``Backbone(50, 0.6, 'ir_se')``) as HyperReenact's appearance encoder.

HyperReenact's ``ArcFaceEncoder`` warps the source face to the 112 px ArcFace template with a
5-point similarity (``optimize.face_crops.five_point_similarity_warp``), feeds the **[-1, 1]**
image as is (no further normalization), and keeps the output of the last IR-SE unit (body child
index 23, (B, 512, 7, 7)) as the appearance feature map; the identity embedding is the
L2-normalized ``output_layer`` (BN, dropout, flatten, Linear(25088, 512), BN1d).

Names: ``facenet.input_layer.*``, ``facenet.body.N.*``, ``facenet.output_layer.{0,3,4}.*``
(the real ``insight_face.pth`` is the flat ``Backbone`` dict; the loader adds ``facenet.``).
"""
from __future__ import annotations

import torch
from torch import nn

from optimize.face_crops import five_point_similarity_warp
from personalize.encoders.ir_se import make_body, make_input_layer, run_body

APPEARANCE_UNIT = 23
ARCFACE_SIZE = 112


class ArcFaceBackbone(nn.Module):
    """IR-SE-50 + the embedding head, the official ``Backbone`` names."""

    def __init__(self, drop_ratio: float = 0.6) -> None:
        super().__init__()
        self.input_layer = make_input_layer()
        self.body = make_body()
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
                                          nn.Linear(512 * 7 * 7, 512), nn.BatchNorm1d(512))


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / torch.norm(x, 2, 1, True)


class ArcFaceEncoder(nn.Module):
    """Source image + its 68 landmarks -> (identity (B, 512) unit norm, f_app (B, 512, 7, 7))."""

    def __init__(self) -> None:
        super().__init__()
        self.facenet = ArcFaceBackbone()

    def forward(self, images: torch.Tensor, lm68: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1]; lm68 (B, 68, 2) pixels of ``images`` (iBUG order)."""
        warped = five_point_similarity_warp(images, lm68, ARCFACE_SIZE)
        return self.embed_warped(warped)

    def embed_warped(self, warped: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, 112, 112) template-aligned faces -> (identity, f_app)."""
        (f_app,) = run_body(self.facenet.input_layer, self.facenet.body, warped, (APPEARANCE_UNIT,))
        return l2_normalize(self.facenet.output_layer(f_app)), f_app
