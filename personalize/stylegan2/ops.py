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
from typing import NamedTuple, Sequence

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


def activate(x: torch.Tensor, act: str) -> torch.Tensor:
    """The activation alone (bias and gain already folded in by the caller)."""
    if act == "lrelu":
        return F.leaky_relu(x, LRELU_SLOPE)
    if act == "linear":
        return x
    raise ValueError(f"unsupported activation {act!r}")


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


def upconv3x3(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor, groups: int = 1,
              transposed: bool = False) -> torch.Tensor:
    """3x3 conv with 2x upsampling (official ``conv2d_resample`` up=2, padding=1, flip_weight=False).

    x: (N, I*groups... ) per torch grouping; w: (O, I_per_group, 3, 3), or already (I, O, 3, 3)
    when ``transposed`` (groups 1 only). Transposed conv with stride 2 (no zero-stuffing), then
    the 4x4 FIR blur. (N, ., H, W) -> (N, O, 2H, 2W).
    """
    if transposed:
        assert groups == 1, "a pre-transposed weight is only for the dense convolution"
        return blur_after_upconv(F.conv_transpose2d(x, w, stride=2), f)
    o, i, kh, kw = w.shape
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, o // groups, i, kh, kw).transpose(1, 2).reshape(groups * i, o // groups, kh, kw)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)
    return blur_after_upconv(x, f)


class FrozenWeight(NamedTuple):
    """What a modulated conv derives from its weight alone, kept by a layer between passes that
    need no weight gradient (``SynthesisLayer.frozen_weight``): the weight ready for the
    convolution (in the activations' dtype and memory format; (I, O, k, k) for the transposed
    convolution of ``up=2``) and sum_k w^2 per (out, in) channel pair, float32 (the
    demodulation's matmul operand).

    Why keep them: at batch 1 and low resolution the weights are larger than the activations,
    and re-reading a 512x512x3x3 float32 weight to square, sum, cast and re-lay it out costs as
    much as the convolution's arithmetic on a memory-bound CPU."""

    conv_weight: torch.Tensor
    square_sum: torch.Tensor

    @staticmethod
    def of(weight: torch.Tensor, dtype: torch.dtype, channels_last: bool = False, up: int = 1) -> "FrozenWeight":
        weight = weight.detach()
        ready = weight.to(dtype)
        if up != 1:
            ready = ready.transpose(0, 1)
        ready = ready.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        return FrozenWeight(ready, weight.float().square().sum(dim=[2, 3]))


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: torch.Tensor | None = None, up: int = 1, padding: int = 0,
                     resample_filter: torch.Tensor | None = None, demodulate: bool = True,
                     fused: bool | None = None, gain: float = 1.0,
                     bias: torch.Tensor | None = None,
                     weight_factor: torch.Tensor | None = None,
                     frozen: FrozenWeight | None = None) -> torch.Tensor:
    """StyleGAN2 modulated convolution (weight demodulation), same result as the official one.

    x: (N, I, H, W); weight: (O, I, k, k); styles: (N, I); noise broadcastable to (N, O, H', W');
    bias: (O,) or None. Returns ``gain * (conv + noise + bias)``, (N, O, H*up, W*up), i.e. the
    input of the activation with the (positive) activation gain already applied, since
    lrelu(g*a) == g*lrelu(a): the epilogue is one fused multiply-add instead of five passes.

    Two equivalent execution plans (chosen by ``fused``; None = pick the faster):
    - fused: build per-sample weights w*s*d*gain and run one grouped conv (best for inference with
      batch 1 or small images);
    - scaled: multiply activations by s before and by d after a conv with the shared weight (one
      dense conv for the whole batch). The demodulation coefficients come from a matmul
      (styles² @ Σ_k w²) instead of N weight copies. When gradients flow to the styles or the
      weight this plan avoids the per-sample weight-gradient convolution (~1/3 of the backward).

    ``weight_factor``: optional per-sample multiplier of the weight *before* modulation and
    demodulation, (N, O, I) (broadcast over the k x k taps, no k x k copies) or (N, O, I, k, k).
    HyperReenact's hypernetwork passes ``1 + delta`` here. The weights then differ per sample, so
    the fused plan is used.

    ``frozen``: ``FrozenWeight.of(weight, x.dtype, channels_last, up)`` kept by the caller, for
    passes without gradients to the weight (ignored with ``weight_factor`` or fp16's
    pre-normalization).
    """
    n, in_ch, h, wid = x.shape
    out_ch, _, kh, kw = weight.shape
    if x.dtype == torch.float16 and demodulate:
        # Official pre-normalization that keeps fp16 from overflowing (cancels under demod).
        weight = weight * (1 / math.sqrt(in_ch * kh * kw) / weight.norm(float("inf"), dim=[1, 2, 3], keepdim=True))
        styles = styles / styles.norm(float("inf"), dim=1, keepdim=True)
        frozen = None
    if weight_factor is not None:
        fused, frozen = True, None
    elif fused is None:
        fused = choose_fused(n, in_ch, out_ch, kh * kw, h * wid,
                             torch.is_grad_enabled() and (styles.requires_grad or weight.requires_grad),
                             frozen is not None)
    square_sum = frozen.square_sum if frozen is not None else None
    bias_g = None if bias is None else (bias.to(x.dtype) * gain).reshape(1, -1, 1, 1)
    noise_g = None if noise is None else noise.to(x.dtype) * gain
    if fused:
        if weight_factor is None:
            # One pass over the weights: the (N, O, I) scale s_i * d_o, with d from the same
            # matmul as the scaled plan, instead of modulating, squaring, summing and rescaling
            # per-sample weight copies (most of a batch-1 pass's non-conv time at low resolution).
            scale = styles.reshape(n, 1, in_ch)
            if demodulate:
                scale = scale * _demodulation(weight, styles, gain, square_sum).reshape(n, out_ch, 1)
            elif gain != 1:
                scale = scale * gain
            w = weight.unsqueeze(0) * scale[..., None, None]
        else:
            w = weight.unsqueeze(0) * (weight_factor if weight_factor.ndim == 5 else weight_factor[..., None, None])
            w = w * styles.reshape(n, 1, in_ch, 1, 1)  # (N, O, I, k, k)
            if demodulate:
                w = w * ((w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() * gain).reshape(n, out_ch, 1, 1, 1)
            elif gain != 1:
                w = w * gain
        w = w.reshape(n * out_ch, in_ch, kh, kw).to(x.dtype)
        # At batch 1, x itself: oneDNN reads a reshaped view of a channels_last tensor as NCHW
        # (and answers in NCHW), which costs a layout copy around every layer.
        xg = x if n == 1 else x.reshape(1, n * in_ch, h, wid)
        if up == 1:
            y = F.conv2d(xg, w, padding=padding, groups=n)
        else:
            y = upconv3x3(xg, w, resample_filter, groups=n)
        if n != 1:
            y = y.reshape(n, out_ch, *y.shape[2:])
        return _add_epilogue(y, bias_g, noise_g)
    # Scaled-activations plan.
    y = x * styles.to(x.dtype).reshape(n, in_ch, 1, 1)
    wx = frozen.conv_weight if frozen is not None else weight.to(x.dtype)
    if up == 1:
        y = F.conv2d(y, wx, padding=padding)
    else:
        y = upconv3x3(y, wx, resample_filter, transposed=frozen is not None)
    if demodulate:
        d = _demodulation(weight, styles, gain, square_sum).to(y.dtype).reshape(n, out_ch, 1, 1)
        y = y * d if bias_g is None else torch.addcmul(bias_g, y, d)
        return _add_epilogue(y, None, noise_g)
    if gain != 1:
        y = y * gain
    return _add_epilogue(y, bias_g, noise_g)


def _demodulation(weight: torch.Tensor, styles: torch.Tensor, gain: float,
                  square_sum: torch.Tensor | None = None) -> torch.Tensor:
    """gain / ||w * s||_2 per sample and output channel, (N, O): sum_i s_i^2 sum_k w_oik^2 as one
    matmul (equal to the norm of the modulated weights, without building them); ``square_sum``
    is sum_k w^2 when the caller keeps it (``FrozenWeight``)."""
    if square_sum is None:
        square_sum = weight.square().sum(dim=[2, 3])
    return (styles.square() @ square_sum.t() + 1e-8).rsqrt() * gain


def _add_epilogue(y: torch.Tensor, bias_g: torch.Tensor | None, noise_g: torch.Tensor | None) -> torch.Tensor:
    """y + bias + noise, keeping y's memory layout (the addends broadcast); in place when no
    autograd graph needs y."""
    inplace = not (torch.is_grad_enabled() and y.requires_grad)
    for term in (bias_g, noise_g):
        if term is not None:
            y = y.add_(term) if inplace else y + term
    return y


def choose_fused(n: int, in_ch: int, out_ch: int, taps: int, pixels: int, needs_grad: bool,
                 frozen: bool = False) -> bool:
    """Pick the modulated-conv plan (measured on CPU; both give the same result).

    With gradients to styles/weights the scaled plan wins (no per-sample weight gradient).
    Without gradients, batch 1 favours the fused plan (one conv, no activation passes) unless
    the layer keeps its ``FrozenWeight``: then the scaled plan reads nothing but the kept weight,
    which wins wherever the weights are larger than the activations (the low resolutions). With
    a batch, the grouped conv of the fused plan is slower than one dense conv except when the
    per-sample weights are smaller than the activations they would otherwise scale.
    """
    if needs_grad:
        return False
    if n == 1 and not frozen:
        return True
    return out_ch * in_ch * taps < in_ch * pixels


def modulated_1x1(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                  weight_factor: torch.Tensor | None = None) -> torch.Tensor:
    """Non-demodulated 1x1 modulated conv (ToRGB) as a batched matmul, in x's memory format.

    x: (N, I, H, W); weight: (O, I, 1, 1); styles: (N, I); optional per-sample weight multiplier
    ``weight_factor`` (N, O, I) (as in ``modulated_conv2d``) -> (N, O, H, W).
    """
    n, in_ch, h, wid = x.shape
    out_ch = weight.shape[0]
    w = weight.reshape(1, out_ch, in_ch)
    if weight_factor is not None:
        w = w * weight_factor.reshape(n, out_ch, in_ch)
    w = (w * styles.reshape(n, 1, in_ch)).to(x.dtype)  # (N, O, I)
    if x.is_contiguous():
        return torch.bmm(w, x.reshape(n, in_ch, h * wid)).reshape(n, out_ch, h, wid)
    # channels_last: pixels are rows of an (N, H*W, I) matrix; no layout copy needed.
    rows = x.permute(0, 2, 3, 1).reshape(n, h * wid, in_ch)
    return torch.bmm(rows, w.transpose(1, 2)).reshape(n, h, wid, out_ch).permute(0, 3, 1, 2)


def conv2d_up_1x1(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """1x1 conv followed by 2x FIR upsampling (the resnet ``skip`` path; official fast path)."""
    y = F.conv2d(x, w.to(x.dtype))
    return upsample2d(y, f)
