"""Equalized-learning-rate layers in the *rosinality* ``stylegan2-pytorch`` state_dict layout.

Why a second dense layer next to ``networks.FullyConnectedLayer``: the VoxCeleb StyleGAN2 of
HyperReenact / latent-directions and the e4e encoders were trained with rosinality's code, whose
checkpoints name the tensors ``weight`` (stored ``N(0,1)/lr_mul``) and ``bias`` (used
``* lr_mul``) and apply ``lr_mul/sqrt(fan_in)`` at run time. Keeping that layout lets the official
files load by name (``strict=True``). The numerics are the same as NVIDIA's layer; only the names
and the order "linear, then bias + activation" follow rosinality.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from personalize.stylegan2 import ops


class EqualLinear(nn.Module):
    """Dense layer, ``y = x @ (W * lr_mul / sqrt(in))^T + b * lr_mul``, optional fused leaky ReLU.

    ``activation=True`` is rosinality's ``activation='fused_lrelu'``: leaky ReLU (slope 0.2) of
    ``linear + bias``, times sqrt(2). x: (N, in_dim) -> (N, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return ops.bias_act(F.linear(x, self.weight * self.scale), bias, act="lrelu")
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return (f"in_dim={self.weight.shape[1]}, out_dim={self.weight.shape[0]}, lr_mul={self.lr_mul}, "
                f"activation={self.activation}")
