"""StyleGAN2 generator in rosinality's ``stylegan2-pytorch`` layout, with HyperReenact's weight deltas.

Why this layout: the one-shot backends' VoxCeleb generator (``stylegan-voxceleb.pt['g_ema']``,
256 px, channel multiplier 1) was trained with rosinality's code; with the same ``state_dict``
names it loads by name. The numerics reuse ``personalize.stylegan2.ops`` (plain torch, no CUDA
extensions): rosinality's ``upfirdn2d`` and fused leaky ReLU compute the same functions.

Facts reproduced from the official code (HyperReenact's copy of the model):
* Mapping: PixelNorm, 8 x EqualLinear(lr_mul 0.01) + fused leaky ReLU (``style.1`` ... ``style.8``).
* Modulated conv: ``W' = scale * W * (1 + delta) * style`` where ``style = modulation(w)``
  (EqualLinear, bias init 1) and ``delta`` is the hypernetwork's per-layer output; the
  demodulation is computed on W' (so deltas change the normalization, not just the gain).
  HyperReenact's deltas are per (out, in) channel pair, the same value for every 3x3 tap: we take
  the (B, out, in) plane and broadcast it over the taps, which multiplies by the identical value the
  official 3x3 copies hold (no 3x3 copy is made).
* Delta list index j: 0 = conv1, 1 = to_rgb1, then per resolution block k = 0..5:
  2+3k = convs[2k] (2x upsampling conv), 3+3k = convs[2k+1], 4+3k = to_rgbs[k].
* The blur kernels are the stored ``blur.kernel`` / ``upsample.kernel`` buffers (4x4, already x4),
  used as stored: the transposed stride-2 conv is followed by a 4x4 FIR (pad 1) and ToRGB skips are
  FIR-upsampled (pad 2, 1), both convolutions (flipped kernel), as ``upfirdn2d``.
* Noise: the ``noises.noise_i`` buffers (``randomize_noise=False``), scaled by each layer's
  ``noise.weight``. Truncation ``w' = t + psi * (w - t)`` on every W+ layer when psi < 1.
* ``mean_latent``: the official one draws unseeded ``randn`` on every run; ours takes a seed and
  always draws z on the CPU, so the truncation target is the same on every device and every run
  (seed 2000 with n=4096 reproduces the reference target of the goldens).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from personalize.stylegan2 import ops
from personalize.stylegan2.equalized import EqualLinear

BLUR_TAPS = (1, 3, 3, 1)


def rosinality_blur_kernel(gain: float) -> torch.Tensor:
    """The stored 4x4 FIR buffer: outer([1,3,3,1]) normalized to sum 1, times ``gain`` (factor**2)."""
    return ops.setup_filter(BLUR_TAPS) * gain


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.normalize_2nd_moment(x)


class ModulatedConv2d(nn.Module):
    """Names: ``weight`` (1, O, I, k, k), ``modulation`` (EqualLinear w_dim -> I, bias init 1),
    ``blur.kernel`` (upsampling convs only)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        self.scale = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        if upsample:
            self.blur = nn.Module()
            self.blur.register_buffer("kernel", rosinality_blur_kernel(4.0))


class StyledConv(nn.Module):
    """Modulated 3x3 conv + noise (``noise.weight``) + bias and leaky ReLU x sqrt(2) (``activate.bias``)."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.noise = nn.Module()
        self.noise.weight = nn.Parameter(torch.zeros(1))
        self.activate = nn.Module()
        self.activate.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor,
                delta: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, I, H, W), w (B, w_dim), delta (B, O, I) or (B, O, I, 3, 3) -> (B, O, H', W')."""
        conv = self.conv
        styles = conv.modulation(w) * conv.scale
        y = ops.modulated_conv2d(
            x, conv.weight[0], styles, noise=noise * self.noise.weight, up=2 if conv.upsample else 1,
            padding=1, resample_filter=conv.blur.kernel / 4.0 if conv.upsample else None,
            demodulate=True, gain=ops.LRELU_GAIN, bias=self.activate.bias,
            weight_factor=None if delta is None else 1 + delta)
        return ops.activate(y, "lrelu")


class ToRGB(nn.Module):
    """Non-demodulated 1x1 modulated conv to RGB + ``bias`` (1,3,1,1) + FIR-upsampled skip."""

    def __init__(self, in_channels: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = nn.Module()
            self.upsample.register_buffer("kernel", rosinality_blur_kernel(4.0))
        self.conv = ModulatedConv2d(in_channels, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None,
                delta: torch.Tensor | None = None) -> torch.Tensor:
        styles = self.conv.modulation(w) * self.conv.scale
        factor = None if delta is None else (1 + delta).reshape(x.shape[0], 3, -1)
        out = ops.modulated_1x1(x, self.conv.weight[0], styles, weight_factor=factor) + self.bias
        if skip is not None:
            out = out + ops.upsample2d(skip, self.upsample.kernel / 4.0)
        return out


class RosinalityGenerator(nn.Module):
    """``Generator(size, style_dim, n_mlp, channel_multiplier)`` of rosinality, forward in W+ only.

    Defaults are the one-shot backends' VoxCeleb model: 256 px, 512, 8, channel multiplier 1.
    """

    def __init__(self, size: int = 256, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 1,
                 lr_mlp: float = 0.01) -> None:
        super().__init__()
        self.size, self.style_dim = size, style_dim
        self.style = nn.Sequential(PixelNorm(), *(EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation=True)
                                                  for _ in range(n_mlp)))
        cm = channel_multiplier
        self.channels = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
                         512: 32 * cm, 1024: 16 * cm}
        self.input = nn.Module()
        self.input.input = nn.Parameter(torch.randn(1, self.channels[4], 4, 4))
        self.conv1 = StyledConv(self.channels[4], self.channels[4], style_dim)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = self.channels[4]
        for i in range(3, self.log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch

    @property
    def n_deltas(self) -> int:
        """Length of the weight-delta list: every conv and every ToRGB (20 at 256 px)."""
        return len(self.convs) + len(self.to_rgbs) + 2

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_dim) -> w (N, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, seed: int = 2000) -> torch.Tensor:
        """Seeded truncation target (1, style_dim): mean of ``mapping(z)`` over n z drawn on the CPU."""
        z = torch.randn(n, self.style_dim, generator=torch.Generator().manual_seed(seed))
        dev = self.input.input.device
        return self.mapping(z.to(dev, self.input.input.dtype)).mean(0, keepdim=True)

    def forward(self, w_plus: torch.Tensor, deltas: Sequence[torch.Tensor | None] | None = None,
                truncation: float = 1.0, truncation_target: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """W+ codes (B, n_latent, style_dim) -> (image (B, 3, size, size), about [-1, 1] but not
        clamped, the W+ actually used (after truncation)).

        ``deltas``: None or a list of ``n_deltas`` entries, each None or (B, O, I[, k, k]).
        """
        if truncation < 1:
            if truncation_target is None:
                raise ValueError("truncation < 1 needs a truncation_target (see mean_latent)")
            w_plus = truncation_target + truncation * (w_plus - truncation_target)
        deltas = list(deltas) if deltas is not None else [None] * self.n_deltas
        if len(deltas) != self.n_deltas:
            raise ValueError(f"expected {self.n_deltas} weight deltas, got {len(deltas)}")
        noise = [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]
        x = self.input.input.expand(w_plus.shape[0], -1, -1, -1)
        x = self.conv1(x, w_plus[:, 0], noise[0], deltas[0])
        skip = self.to_rgb1(x, w_plus[:, 1], None, deltas[1])
        for k in range(len(self.to_rgbs)):
            i, j = 1 + 2 * k, 2 + 3 * k
            x = self.convs[2 * k](x, w_plus[:, i], noise[i], deltas[j])
            x = self.convs[2 * k + 1](x, w_plus[:, i + 1], noise[i + 1], deltas[j + 1])
            skip = self.to_rgbs[k](x, w_plus[:, i + 2], skip, deltas[j + 2])
        return skip, w_plus
