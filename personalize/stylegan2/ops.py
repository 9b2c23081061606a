"""Low-level StyleGAN2 operations in plain PyTorch (no custom CUDA), tuned for speed.

Why our own versions: the official implementation builds CUDA extensions at run time (a compiler
on the user's machine, slow first start, no CPU speed-ups). These functions compute the same
mathematics with stock ``torch`` ops, work on CPU / CUDA / MPS, differentiate with autograd and
trace with ``torch.compile``. The numerics match the official reference path to ~1e-6 relative.

Conventions: activations are NCHW; ``styles`` are (N, in_channels); filters are the 2-D
``[1,3,3,1]`` outer product normalized to sum 1, shape (4, 4), as the official ``setup_filter``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": LRELU_GAIN}


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """The separable FIR filter as a (k, k) float32 tensor summing to 1 (official layout)."""
    f = torch.as_tensor(list(taps), dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale each row to unit mean square (z and the class embedding are normalized this way)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def bias_act(x: torch.Tensor, b: torch.Tensor | None, act: str = "linear", gain: float | None = None,
             clamp: float | None = None) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by ``gain``, clamp to ±clamp.

    ``gain=None`` means the activation's default gain (sqrt(2) for lrelu), as officially.
    """
    if b is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + b.reshape(shape).to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    elif act != "linear":
        raise ValueError(f"unsupported activation {act!r}")
    if gain is None:
        gain = ACTIVATION_GAINS[act]
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _depthwise(f: torch.Tensor, channels: int, gain: float, dtype: torch.dtype) -> torch.Tensor:
    """(C, 1, k, k) depthwise kernel; flipped because conv2d correlates and upfirdn2d convolves."""
    k = (f * gain).flip([0, 1]).to(dtype)
    return k.reshape(1, 1, *k.shape).expand(channels, 1, *k.shape)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling (official ``upsample2d`` with gain 4, padding [2,1,2,1]).

    Done as one depthwise transposed convolution with stride 2: each output pixel reads the 2x2
    input pixels its polyphase branch needs, instead of zero-stuffing to 4x the pixels first.
    (N, C, H, W) -> (N, C, 2H, 2W).
    """
    c = x.shape[1]
    kh, kw = f.shape
    assert kh == kw == 4, "only the 4-tap filter is supported"
    # The transposed conv scatters with the kernel unflipped: pass the flipped filter flipped back.
    k = (f * 4.0).to(x.dtype)
    k = k.reshape(1, 1, kh, kw).expand(c, 1, kh, kw)
    return F.conv_transpose2d(x, k, stride=2, padding=1, groups=c)


def blur_after_upconv(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """The FIR step that follows the stride-2 transposed conv (padding 1, gain 4).

    (N, C, 2H+1, 2W+1) -> (N, C, 2H, 2W). One depthwise conv with built-in padding.
    """
    c = x.shape[1]
    return F.conv2d(x, _depthwise(f, c, 4.0, x.dtype), padding=1, groups=c)


def upconv3x3(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """3x3 conv with 2x upsampling (official ``conv2d_resample`` up=2, padding=1, flip_weight=False).

    x: (N, I*groups... ) per torch grouping; w: (O, I_per_group, 3, 3). Transposed conv with
    stride 2 (no zero-stuffing), then the 4x4 FIR blur. (N, ., H, W) -> (N, O, 2H, 2W).
    """
    o, i, kh, kw = w.shape
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, o // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, o // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)
    return blur_after_upconv(x, f)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     fused: bool | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution (weight demodulation), same result as the official one.

    x: (N, I, H, W); weight: (O, I, k, k); styles: (N, I); noise broadcastable to (N, O, H', W').
    Returns (N, O, H*up, W*up) before bias/activation.

    Two equivalent execution plans (chosen by ``fused``; None = pick the faster):
    - fused: build per-sample weights w*s*d and run one grouped conv (cheap when the image is
      small and channels are wide, i.e. the low-resolution blocks, or batch 1);
    - scaled: multiply activations by s before and by d after a conv with the shared weight
      (one dense conv for the whole batch; cheap when pixels dominate). The demodulation
      coefficients come from a matmul (styles² @ Σ_k w²) instead of materializing N weight copies.
    """
    n, in_ch, h, wid = x.shape
    out_ch, _, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Official pre-normalization that keeps fp16 from overflowing (cancels under demod).
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
    if fused is None:
        # Cost of scaling the weights per sample vs scaling the activations per sample.
        fused = n == 1 or (out_ch * in_ch * kh * kw) < (in_ch * h * wid)
    if fused:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # (N, O, I, k, k)
        if demodulate:
            d = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()
            w = w * d.reshape(n, out_ch, 1, 1, 1)
        w = w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype)
        xg = x.reshape(1, n * in_ch, h, wid)
        if up == 1:
            y = F.conv2d(xg, w, padding=padding, groups=n)
        else:
            y = upconv3x3(xg, w, resample_filter, groups=n)
        y = y.reshape(n, out_ch, *y.shape[2:])
        if noise is not None:
            y = y + noise.to(y.dtype)
        return y
    # Scaled-activations plan.
    y = x * styles.to(x.dtype).reshape(n, in_ch, 1, 1)
    wx = weight.to(x.dtype)
    if up == 1:
        y = F.conv2d(y, wx, padding=padding)
    else:
        y = upconv3x3(y, wx, resample_filter)
    if demodulate:
        d = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()  # (N, O)
        y = y * d.to(y.dtype).reshape(n, out_ch, 1, 1)
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y


def modulated_1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Non-demodulated 1x1 modulated conv (ToRGB) as a batched matmul.

    x: (N, I, H, W); weight: (O, I, 1, 1); styles: (N, I) -> (N, O, H, W).
    """
    n, in_ch, h, wid = x.shape
    out_ch = weight.shape[0]
    w = weight.reshape(1, out_ch, in_ch) * styles.reshape(n, 1, in_ch)
    y = torch.bmm(w.to(x.dtype), x.reshape(n, in_ch, h * wid))
    return y.reshape(n, out_ch, h, wid)


def conv2d_up_1x1(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """1x1 conv followed by 2x FIR upsampling (the resnet ``skip`` path; official fast path)."""
    y = F.conv2d(x, w.to(x.dtype))
    return upsample2d(y, f)
