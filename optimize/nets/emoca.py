"""EMOCA's encoders (Danecek et al. 2022) as DiffusionAct uses them: 68 3D-model landmarks per frame.

- ``E_flame``: DECA's coarse encoder (``optimize.nets.deca.DecaResnetEncoder``: a ResNet-50,
  torchvision layout, no ``fc`` -> Linear(2048, 1024) -> ReLU -> Linear(1024, 236)) = shape 100, texture 50, expression 50, pose 6 (global
  rotation + jaw, axis-angle), camera 3 (scale, tx, ty), light 27.
- ``E_expression``: EMOCA's own copy of that encoder predicting the expression (50 values, +3/+6
  when the checkpoint also predicts the jaw and/or global pose); it replaces E_flame's expression.

Input: DECA's 224-px crop (``optimize.face_crops.deca_crop``; range [0, 1], no mean/std
normalisation): the box of the 68 detector landmarks, enlarged 1.1 x 1.25.

DiffusionAct draws its conditioning from FLAME landmarks with the SOURCE's shape and the DRIVING
frame's expression, pose and camera, projected into the driving frame's 224-px crop. Quirk kept:
those crop coordinates are drawn unchanged on the 256-px canvas (the model was trained so).

The checkpoint is EMOCA's Lightning file (``EMOCA_v2_lr_mse_20``): ``state_dict`` keys
``deca.E_flame.*`` and ``deca.E_expression.*``; everything else in it is ignored.
"""
from __future__ import annotations

import torch
from torch import nn

from optimize.nets.deca import DECA_PARAMS, E_FLAME_SIZE, DecaResnetEncoder, split_deca_params

N_EXP = dict(DECA_PARAMS)["exp"]


class EmocaEncoders(nn.Module):
    """(B,3,224,224) [0,1] crops -> FLAME codes: dict of shape, tex, exp, pose, cam, light.

    ``expression_pose``: what the expression encoder's outputs beyond 50 are: "none" (EMOCA v2,
    50 outputs), "jaw" or "global" (53), "both" (56) -- EMOCA's exp_deca_*_pose settings.
    """

    def __init__(self, expression_pose: str = "none") -> None:
        super().__init__()
        extra = {"none": 0, "jaw": 3, "global": 3, "both": 6}[expression_pose]
        self.expression_pose = expression_pose
        self.E_flame = DecaResnetEncoder(E_FLAME_SIZE)
        self.E_expression = DecaResnetEncoder(N_EXP + extra)

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        code, _ = self.E_flame(crops)
        parts = split_deca_params(code)
        expression, _ = self.E_expression(crops)
        parts["exp"] = expression[:, :N_EXP]
        pose_extra = expression[:, N_EXP:]
        if self.expression_pose == "both":
            parts["pose"] = pose_extra
        elif self.expression_pose == "global":
            parts["pose"] = torch.cat([pose_extra, parts["pose"][:, 3:]], dim=1)
        elif self.expression_pose == "jaw":
            parts["pose"] = torch.cat([parts["pose"][:, :3], pose_extra], dim=1)
        return parts
