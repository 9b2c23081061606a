"""DiffusionAct's reenactment encoder (the official ``ControlNet(method='controlnet_no_shift')``).

A copy of DiffAE's semantic encoder, initialised from it and fine-tuned, that reads the source
image plus a 1x1 convolution of the conditioning image (the drawn landmarks and gaze of the
driving frame): ``z_r = E_r(source + zero_conv_1(stickman))``. The convolution starts at zero in
training, so the encoder starts as DiffAE's own; its learned weights come from the DiffusionAct
model file (``state_dict_net``).

Shapes: source and stickman (B, 3, 256, 256) in [-1, 1]; output (B, 512) semantic code.
"""
from __future__ import annotations

import torch
from torch import nn

from optimize.nets.diffae import FFHQ256, DiffAEConfig, SemanticEncoder


class ReenactmentEncoder(nn.Module):
    """``controlnet.*`` (a ``SemanticEncoder``) and ``zero_conv_1`` (Conv2d 3->3, 1x1)."""

    def __init__(self, config: DiffAEConfig = FFHQ256) -> None:
        super().__init__()
        self.controlnet = SemanticEncoder(config)
        self.zero_conv_1 = nn.Conv2d(3, 3, 1)

    def forward(self, image: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        return self.controlnet(image + self.zero_conv_1(conditioning))
