"""DECA's coarse encoder (``ResnetEncoder``): ResNet-50 -> 2048 -> 1024 -> FLAME/camera/light codes.

Facts (DECA ``decalib/models/encoders.py`` and HyperReenact's ``DECAEncoder``): the image is a
224 px face crop in [0, 1] (``optimize.face_crops.deca_crop``), no mean/std normalization; the
ResNet-50 is torchvision's layout (stride on the 3x3 conv, names ``encoder.conv1``, ``encoder.layerN``
...); the 7x7x2048 output of layer4 is average-pooled and regressed by Linear(2048, 1024), ReLU,
Linear(1024, outsize). ``E_flame`` has outsize 236 = shape 100, tex 50, exp 50, pose 6, cam 3,
light 27 (9x3); ``E_detail`` has outsize 128. HyperReenact also uses the layer4 map as its pose
feature (B, 2048, 7, 7).

The ResNet body is ``torchvision.models.resnet50(weights=None)`` with its classifier removed
(DECA's own ResNet copies torchvision's names), so nothing of it is written by hand.
"""
from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

DECA_PARAMS = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
E_FLAME_SIZE = sum(n for _, n in DECA_PARAMS)  # 236
E_DETAIL_SIZE = 128


class DecaResnetEncoder(nn.Module):
    """(B, 3, 224, 224) in [0, 1] -> (codes (B, outsize), layer4 features (B, 2048, 7, 7))."""

    def __init__(self, outsize: int = E_FLAME_SIZE) -> None:
        super().__init__()
        self.encoder = torchvision.models.resnet50(weights=None)
        self.encoder.fc = nn.Identity()  # DECA drops the classifier: no fc.* tensors
        self.layers = nn.Sequential(nn.Linear(2048, 1024), nn.ReLU(), nn.Linear(1024, outsize))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        net = self.encoder
        x = net.maxpool(net.relu(net.bn1(net.conv1(images))))
        features = net.layer4(net.layer3(net.layer2(net.layer1(x))))
        pooled = net.avgpool(features).flatten(1)
        return self.layers(pooled), features


def split_deca_params(codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """(B, 236) E_flame codes -> {'shape', 'tex', 'exp', 'pose', 'cam', 'light' (B, 9, 3)}.

    pose[:, :3] is the global head rotation (axis-angle, radians), pose[:, 3:] the jaw rotation.
    """
    out, start = {}, 0
    for name, size in DECA_PARAMS:
        out[name] = codes[:, start:start + size]
        start += size
    out["light"] = out["light"].reshape(codes.shape[0], 9, 3)
    return out


def axis_angle_to_euler_degrees(axis_angle: torch.Tensor) -> torch.Tensor:
    """DECA's ``rad2deg(batch_axis2euler(pose[:, :3]))``: (B, 3) axis-angle -> (B, 3) degrees.

    Order and naming as DECA's rotation converter (the directions paper calls them yaw, pitch,
    roll): axis-angle -> unit quaternion -> rotation matrix R, then yaw = asin(R20),
    pitch = atan2(R21/cos(yaw), R22/cos(yaw)), roll = atan2(R10/cos(yaw), R00/cos(yaw)); near
    gimbal lock (|R20| > 0.998) yaw = ±90 degrees, roll = 0, pitch from row 0 (DECA's branch).
    Unlike DECA's loop (which returns only the last sample), every sample is converted.
    """
    a = axis_angle
    theta_sq = (a * a).sum(-1, keepdim=True)
    theta = theta_sq.sqrt()
    half = theta * 0.5
    nonzero = theta_sq > 0
    k = torch.where(nonzero, torch.sin(half) / theta, torch.full_like(theta, 0.5))
    w = torch.where(nonzero, torch.cos(half), torch.ones_like(theta))
    q = torch.cat([w, a * k], dim=-1)
    q = q / q.norm(p=2, dim=-1, keepdim=True)
    qw, qx, qy, qz = q.unbind(-1)
    r00 = qw * qw + qx * qx - qy * qy - qz * qz
    r10 = 2 * qw * qz + 2 * qx * qy
    r20 = 2 * qx * qz - 2 * qw * qy
    r21 = 2 * qw * qx + 2 * qy * qz
    r22 = qw * qw - qx * qx - qy * qy + qz * qz
    r01 = 2 * qx * qy - 2 * qw * qz
    r02 = 2 * qw * qy + 2 * qx * qz
    yaw = torch.asin(r20.clamp(-1, 1))
    cos_yaw = torch.cos(yaw)
    pitch = torch.atan2(r21 / cos_yaw, r22 / cos_yaw)
    roll = torch.atan2(r10 / cos_yaw, r00 / cos_yaw)
    up, down = r20 > 0.998, r20 < -0.998
    lock = up | down
    yaw = torch.where(up, torch.full_like(yaw, math.pi / 2), torch.where(down, torch.full_like(yaw, -math.pi / 2), yaw))
    pitch = torch.where(up, torch.atan2(-r01, -r02), torch.where(down, torch.atan2(r01, r02), pitch))
    roll = torch.where(lock, torch.zeros_like(roll), roll)
    pi = torch.tensor(math.pi, dtype=torch.float32).to(a)
    return 180.0 * torch.stack([yaw, pitch, roll], dim=-1) / pi
