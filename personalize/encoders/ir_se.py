"""The IR-SE-50 backbone (ResNet-50-like "improved residual" units with squeeze-excitation).

Why one module for two networks: the e4e/pSp encoders and the ArcFace identity network
(InsightFace IR-SE-50) use the same backbone with the same ``state_dict`` names
(``input_layer.{0,1,2}``, ``body.N.shortcut_layer.{0,1}``, ``body.N.res_layer.{0..5}``, SE
``fc1``/``fc2``), so the official checkpoints load by name into this one implementation.

Architecture (facts of the official IR-SE-50): a 3x3 stem (conv, BN, PReLU) at full resolution,
then 24 units in 4 stages of (3, 4, 14, 3) units with depths (64, 128, 256, 512); the first unit
of each stage has stride 2 (so a 256 px input ends at 16 px, a 112 px one at 7 px). A unit is
``res(x) + shortcut(x)`` with res = BN, 3x3 conv, PReLU, 3x3 conv (stride), BN, SE (reduction 16)
and shortcut = a 1x1-stride max-pool (plain subsampling) when the depth is unchanged, else a
strided 1x1 conv + BN. No activation after the sum.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# (in_channels, depth, stride) of the 24 units of IR-SE-50.
_STAGES_50 = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


def unit_specs_50() -> list[tuple[int, int, int]]:
    """(in_channels, depth, stride) of each of the 24 units, in order."""
    specs = []
    for in_ch, depth, count in _STAGES_50:
        specs.append((in_ch, depth, 2))
        specs.extend((depth, depth, 1) for _ in range(count - 1))
    return specs


class SqueezeExcite(nn.Module):
    """Channel gating: x * sigmoid(fc2(relu(fc1(mean over pixels)))). Names ``fc1``, ``fc2``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """One IR-SE unit (see the module docstring). (N, in, H, W) -> (N, depth, H/s, W/s)."""

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SqueezeExcite(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def make_input_layer() -> nn.Sequential:
    """The stem: 3x3 conv (3 -> 64, no bias), BatchNorm, PReLU; keeps the resolution."""
    return nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))


def make_body() -> nn.Sequential:
    """The 24 IR-SE units of IR-SE-50 as ``body.0`` ... ``body.23``."""
    return nn.Sequential(*(BottleneckIRSE(i, d, s) for i, d, s in unit_specs_50()))


def run_body(input_layer: nn.Module, body: nn.Sequential, x: torch.Tensor,
             taps: Sequence[int]) -> list[torch.Tensor]:
    """Run stem + body on x and return the outputs of the body units listed in ``taps``.

    The e4e FPN reads units 6, 20, 23 (128, 256, 512 channels); ArcFace reads unit 23.
    """
    wanted = {t: k for k, t in enumerate(taps)}
    out: list[torch.Tensor | None] = [None] * len(taps)
    x = input_layer(x)
    last = max(taps)
    for i, unit in enumerate(body):
        x = unit(x)
        if i in wanted:
            out[wanted[i]] = x
        if i == last:
            break
    return out  # type: ignore[return-value]
