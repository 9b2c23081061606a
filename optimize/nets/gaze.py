"""The gaze network DiffusionAct uses (ETH-XGaze baseline): ResNet-50 features -> Linear(2048, 2).

The body is torchvision's ResNet-50 (the official module is the same layout under the name
``gaze_network``, including an ``fc`` layer that is stored but never used: the features are taken
after global average pooling). Output: (pitch, yaw) in radians.

Input: (B, 3, 224, 224) face crops, ImageNet-normalised (see ``optimize.stickman.estimate_gaze``).
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn


class GazeNetwork(nn.Module):
    """``gaze_network.*`` (torchvision ResNet-50) + ``gaze_fc.0`` (Linear 2048 -> 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.gaze_network = torchvision.models.resnet50(weights=None)
        self.gaze_fc = nn.Sequential(nn.Linear(2048, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.gaze_network
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        features = torch.flatten(r.avgpool(x), 1)   # r.fc is skipped, as in the official forward
        return self.gaze_fc(features)
