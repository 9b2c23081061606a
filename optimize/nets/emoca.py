"""EMOCA's encoders (Danecek et al. 2022) as DiffusionAct uses them: 68 3D-model landmarks per frame.

- ``E_flame``: DECA's coarse encoder, a ResNet-50 (torchvision layout, no ``fc``) -> Linear(2048,
  1024) -> ReLU -> Linear(1024, 236) = shape 100, texture 50, expression 50, pose 6 (global
  rotation + jaw, axis-angle), camera 3 (scale, tx, ty), light 27.
- ``E_expression``: EMOCA's own copy of that encoder predicting the expression (50 values, +3/+6
  when the checkpoint also predicts the jaw and/or global pose); it replaces E_flame's expression.

Input: the 224-px crop of ``emoca_crop`` (range [0, 1], no mean/std normalisation): the box of the
68 detector landmarks, enlarged 1.1 x 1.25, warped by a similarity with bilinear sampling and
align_corners=True (kornia's ``warp_affine``, which the official code calls).

DiffusionAct draws its conditioning from FLAME landmarks with the SOURCE's shape and the DRIVING
frame's expression, pose and camera, projected into the driving frame's 224-px crop. Quirk kept:
those crop coordinates are drawn unchanged on the 256-px canvas (the model was trained so).

The checkpoint is EMOCA's Lightning file (``EMOCA_v2_lr_mse_20``): ``state_dict`` keys
``deca.E_flame.*`` and ``deca.E_expression.*``; everything else in it is ignored.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from optimize.face_crops import similarity_umeyama

N_SHAPE, N_TEX, N_EXP, N_POSE, N_CAM, N_LIGHT = 100, 50, 50, 6, 3, 27
CODE_SIZES = {"shape": N_SHAPE, "tex": N_TEX, "exp": N_EXP, "pose": N_POSE, "cam": N_CAM, "light": N_LIGHT}
CROP_SIZE = 224


class ResnetEncoder(nn.Module):
    """``encoder`` (torchvision ResNet-50 without ``fc``) + ``layers`` (2048 -> 1024 -> out)."""

    def __init__(self, out_size: int) -> None:
        super().__init__()
        self.encoder = torchvision.models.resnet50(weights=None)
        self.encoder.fc = nn.Identity()       # the features are the 2048-d pooled vector
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, out_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(x))


class EmocaEncoders(nn.Module):
    """(B,3,224,224) [0,1] crops -> FLAME codes: dict of shape, tex, exp, pose, cam, light.

    ``expression_pose``: what the expression encoder's outputs beyond 50 are: "none" (EMOCA v2,
    50 outputs), "jaw" or "global" (53), "both" (56) -- EMOCA's exp_deca_*_pose settings.
    """

    def __init__(self, expression_pose: str = "none") -> None:
        super().__init__()
        extra = {"none": 0, "jaw": 3, "global": 3, "both": 6}[expression_pose]
        self.expression_pose = expression_pose
        self.E_flame = ResnetEncoder(sum(CODE_SIZES.values()))
        self.E_expression = ResnetEncoder(N_EXP + extra)

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        code = self.E_flame(crops)
        parts = dict(zip(CODE_SIZES, code.split(list(CODE_SIZES.values()), dim=1)))
        expression = self.E_expression(crops)
        parts["exp"] = expression[:, :N_EXP]
        pose_extra = expression[:, N_EXP:]
        if self.expression_pose == "both":
            parts["pose"] = pose_extra
        elif self.expression_pose == "global":
            parts["pose"] = torch.cat([pose_extra, parts["pose"][:, 3:]], dim=1)
        elif self.expression_pose == "jaw":
            parts["pose"] = torch.cat([parts["pose"][:, :3], pose_extra], dim=1)
        parts["light"] = parts["light"].reshape(-1, 9, 3)
        return parts


def _crop_matrix(lm68: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Similarity (3,3) from image pixels to 224-crop pixels for one face (DECA's kpt68 box)."""
    left, right = float(lm68[:, 0].min()), float(lm68[:, 0].max())
    top, bottom = float(lm68[:, 1].min()), float(lm68[:, 1].max())
    old_size = (right - left + bottom - top) / 2 * 1.1
    if math.isnan(old_size):                    # no landmarks: the official code takes the whole image
        h, w = image_hw
        left, right, top, bottom = 0.0, h - 1.0, 0.0, w - 1.0
        old_size = (right - left + bottom - top) / 2 * 1.1
    cx, cy = right - (right - left) / 2.0, bottom - (bottom - top) / 2.0
    size = int(old_size * 1.25)
    src = np.array([[cx - size / 2, cy - size / 2], [cx - size / 2, cy + size / 2], [cx + size / 2, cy - size / 2]])
    dst = np.array([[0, 0], [0, CROP_SIZE - 1], [CROP_SIZE - 1, 0]], dtype=np.float64)
    return similarity_umeyama(src, dst)


def emoca_crop(images: torch.Tensor, lm68: torch.Tensor) -> torch.Tensor:
    """EMOCA's input: images (B,3,H,W) [-1,1], detector landmarks (B,68,2) px -> (B,3,224,224) [0,1].

    The official path maps [-1,1] to [0,255] as ``(x+1)/(2+1e-5)*255``, warps, then divides by 255.
    The warp: output pixel p samples input pixel M^-1 p, with pixel centres at integer coordinates
    and corners aligned (align_corners=True), zeros outside.
    """
    b, _, h, w = images.shape
    lm = lm68.detach().cpu().numpy().astype(np.float32).reshape(b, 68, 2)
    thetas = []
    for i in range(b):
        inv = np.linalg.inv(_crop_matrix(lm[i], (h, w)))
        # normalised output coords u -> crop pixels -> image pixels -> normalised image coords
        to_px = np.array([[(CROP_SIZE - 1) / 2, 0, (CROP_SIZE - 1) / 2], [0, (CROP_SIZE - 1) / 2, (CROP_SIZE - 1) / 2],
                          [0, 0, 1]])
        to_norm = np.array([[2 / (w - 1), 0, -1], [0, 2 / (h - 1), -1], [0, 0, 1]])
        thetas.append((to_norm @ inv @ to_px)[:2])
    theta = torch.from_numpy(np.stack(thetas)).to(images.device, torch.float32)
    x = images.clamp(-1, 1).add(1).div(2 + 1e-5).mul(255.0)
    grid = F.affine_grid(theta, [b, 3, CROP_SIZE, CROP_SIZE], align_corners=True)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True) / 255.0
