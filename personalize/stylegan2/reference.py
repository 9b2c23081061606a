"""The official StyleGAN2-ADA algorithm written plainly, as a test oracle and benchmark baseline.

Why keep a second, slow path: it follows the official *reference* implementation step by step
(upfirdn2d by zero-stuffing + padding + a full 2-D depthwise FIR conv; modulated conv always as
one grouped conv over the batch with per-sample weights; transposed conv then FIR), so
``bench/generator.py`` can measure our fast ops against it in the same run, and tests can check
architectures the golden files do not cover (e.g. ``resnet``) against an independent path.

``use_reference_ops()`` swaps these into ``personalize.stylegan2.ops`` for the duration of a
``with`` block (process-wide; for tests and benchmarks only, not thread-safe).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F

from personalize.stylegan2 import ops


def upfirdn2d_ref(x: torch.Tensor, f: torch.Tensor, up: int = 1, down: int = 1,
                  padding: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Upsample (zero insertion), pad/crop (x0, x1, y0, y1), convolve with the 2-D FIR, downsample."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h, 1, w, 1)
    x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
    x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    k = (f * (gain ** (f.ndim / 2))).to(x.dtype).flip([0, 1])
    k = k[None, None].repeat(c, 1, 1, 1)
    x = F.conv2d(x, k, groups=c)
    return x[:, :, ::down, ::down]


def upsample2d_ref(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return upfirdn2d_ref(x, f, up=2, padding=(2, 1, 2, 1), gain=4.0)


def modulated_conv2d_ref(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                         noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                         resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                         fused: bool | None = None, gain: float = 1.0,
                         bias: torch.Tensor | None = None, frozen: object = None) -> torch.Tensor:
    """Official fused modconv: per-sample weights, one grouped conv (groups = batch).

    Returns ``(conv + noise + bias) * gain``, the contract of ``ops.modulated_conv2d``
    (``frozen``, a speed-only cache of values derived from ``weight``, is ignored).
    """
    n, in_ch, h, wd = x.shape
    out_ch, _, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        d = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
        w = w * d.reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, h, wd)
    w = w.reshape(-1, in_ch, kh, kw).to(x.dtype)
    if up == 1:
        x = F.conv2d(x, w, padding=padding, groups=n)
    else:
        wt = w.reshape(n, out_ch, in_ch, kh, kw).transpose(1, 2).reshape(n * in_ch, out_ch, kh, kw)
        x = F.conv_transpose2d(x, wt, stride=2, groups=n)
        x = upfirdn2d_ref(x, resample_filter, padding=(1, 1, 1, 1), gain=4.0)
    x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    if bias is not None:
        x = x + bias.reshape(1, -1, 1, 1)
    return x * gain if gain != 1 else x


def modulated_1x1_ref(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    return modulated_conv2d_ref(x, weight, styles, demodulate=False)


def conv2d_up_1x1_ref(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    return upsample2d_ref(F.conv2d(x, w.to(x.dtype)), f)


_SWAPS = {
    "modulated_conv2d": modulated_conv2d_ref,
    "modulated_1x1": modulated_1x1_ref,
    "upsample2d": upsample2d_ref,
    "conv2d_up_1x1": conv2d_up_1x1_ref,
}


@contextlib.contextmanager
def use_reference_ops() -> Iterator[None]:
    """Run every Generator through the plain official path inside the block."""
    saved = {name: getattr(ops, name) for name in _SWAPS}
    try:
        for name, fn in _SWAPS.items():
            setattr(ops, name, fn)
        yield
    finally:
        for name, fn in saved.items():
            setattr(ops, name, fn)
