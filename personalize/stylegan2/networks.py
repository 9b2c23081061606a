"""The StyleGAN2(-ADA) generator with NVIDIA's official parameter names, shapes and init.

Why the exact names: users bring the official FFHQ checkpoint; with identical ``state_dict`` keys
(``mapping.fc0.weight``, ``synthesis.b64.conv0.affine.bias``, ...) its tensors load by name with
``load_state_dict(strict=True)`` and any mismatch is caught instead of silently ignored.

Why the exact init: other modules' tests use randomly initialized generators
(``tiny_generator``); drawing weights from the official distributions (weights N(0,1) / lr_mult,
affine biases 1, noise strengths 0, const and noise_const N(0,1), w_avg 0) makes them behave like a
fresh official network (unit-variance activations through equalized learning rate).

Numerics: float32 by default everywhere. The ``num_fp16_res`` highest-resolution blocks are only
run in float16 when a caller passes ``fp16=True`` on CUDA (tested against float32 there), and every
block in bfloat16 when a caller passes ``bf16=True`` (live driving on CPUs with native bf16:
``optimize.live``); styles, demodulation and the RGB skip path stay float32 in both.
"""
from __future__ import annotations

import copy
import math
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from personalize.stylegan2 import ops

NoiseMode = Literal["random", "const", "none"]


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalized learning rate: stored weight N(0,1)/lr_mult, used * lr_mult/sqrt(fan_in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 activation: str = "linear", lr_multiplier: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], np.float32(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, in_features) -> (N, out_features)."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype)
            if self.bias_gain != 1:
                b = b * self.bias_gain
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return ops.bias_act(x.matmul(w.t()), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Plain (non-modulated) conv; in the generator only the resnet ``skip`` (1x1, up=2) uses it."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, resample_filter: list[int] = [1, 3, 3, 1],
                 conv_clamp: float | None = None) -> None:
        super().__init__()
        if not (kernel_size == 1 and up == 2):
            raise NotImplementedError("the generator only needs the 1x1 up-sampling skip conv")
        self.activation = activation
        self.up = up
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = ops.ACTIVATION_GAINS[activation]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """x: (N, I, H, W) -> (N, O, 2H, 2W)."""
        w = self.weight * self.weight_gain
        x = ops.conv2d_up_1x1(x, w, self.resample_filter)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return ops.bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and class c) -> w, broadcast to ``num_ws`` copies, with truncation toward ``w_avg``."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int | None, num_layers: int = 8,
                 embed_features: int | None = None, layer_features: int | None = None,
                 activation: str = "lrelu", lr_multiplier: float = 0.01, w_avg_beta: float | None = 0.995) -> None:
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: torch.Tensor | None, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, skip_w_avg_update: bool = False) -> torch.Tensor:
        """z: (N, z_dim), c: (N, c_dim) (may be None/empty when c_dim == 0) -> ws (N, num_ws, w_dim).

        In training mode the running average ``w_avg`` is updated, as officially (pass
        ``skip_w_avg_update=True`` or use eval mode to keep it fixed).
        """
        x = None
        if self.z_dim > 0:
            x = ops.normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if c is None:
                raise ValueError(f"this generator is conditional: pass c of shape (N, {self.c_dim})")
            y = ops.normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if self.num_ws is None or truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (+2x upsampling for ``conv0``), noise, bias, lrelu, optional clamp."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = "lrelu",
                 resample_filter: list[int] = [1, 3, 3, 1], conv_clamp: float | None = None,
                 channels_last: bool = False) -> None:
        super().__init__()
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = ops.ACTIVATION_GAINS[activation]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self._frozen: tuple[tuple, ops.FrozenWeight] | None = None

    def frozen_weight(self, x: torch.Tensor) -> ops.FrozenWeight | None:
        """The weight's ``FrozenWeight`` for activations like ``x`` (dtype, memory format),
        computed once per weight value; None when a gradient must reach the weight (tuning,
        NADA), which then goes through autograd."""
        weight = self.weight
        if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
            return None  # a compiled graph derives the values itself (no Python-side state)
        channels_last = x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        # The version counter moves on every in-place change (optimizer steps, load_state_dict),
        # the pointer on .to(device) or a replaced tensor: either makes the kept values stale.
        key = (weight.data_ptr(), weight._version, weight.device, x.dtype, channels_last)
        if self._frozen is None or self._frozen[0] != key:
            self._frozen = (key, ops.FrozenWeight.of(weight, x.dtype, channels_last, self.up))
        return self._frozen[1]

    @staticmethod
    def kept_weights(module: nn.Module) -> list[ops.FrozenWeight]:
        """The ``FrozenWeight`` every synthesis layer under ``module`` holds now. A CUDA graph
        captured with them reads their memory after the layers' caches move on (another dtype or
        layout), so it holds these (``optimize.live``)."""
        return [m._frozen[1] for m in module.modules() if isinstance(m, SynthesisLayer) and m._frozen is not None]

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: NoiseMode = "random",
                fused_modconv: bool | None = None, gain: float = 1.0) -> torch.Tensor:
        """x: (N, I, R/up, R/up), w: (N, w_dim) -> (N, O, R, R)."""
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        elif noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', not {noise_mode!r}")
        act_gain = self.act_gain * gain
        x = ops.modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                                 resample_filter=self.resample_filter, fused=fused_modconv,
                                 gain=act_gain, bias=self.bias, frozen=self.frozen_weight(x))
        # bias and gain are applied above (lrelu(g*a) == g*lrelu(a) for g > 0); clamp after gain.
        x = ops.activate(x, self.activation)
        if self.conv_clamp is not None:
            x = x.clamp(-self.conv_clamp * gain, self.conv_clamp * gain)
        return x


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, no demodulation."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: float | None = None, channels_last: bool = False) -> None:
        super().__init__()
        if kernel_size != 1:
            raise NotImplementedError("ToRGB is 1x1 in StyleGAN2")
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size ** 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool | None = None) -> torch.Tensor:
        """x: (N, I, R, R), w: (N, w_dim) -> (N, img_channels, R, R)."""
        styles = self.affine(w) * self.weight_gain
        x = ops.modulated_1x1(x, self.weight, styles)
        return ops.bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 up) -> conv1 -> torgb, skip/resnet/orig architectures."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = "skip", resample_filter: list[int] = [1, 3, 3, 1],
                 conv_clamp: float | None = None, use_fp16: bool = False, fp16_channels_last: bool = False,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"unknown synthesis architecture {architecture!r}")
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", ops.setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        if in_channels != 0:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                    conv_clamp=conv_clamp, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=2,
                                    resample_filter=resample_filter)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                noise_mode: NoiseMode = "random", fp16: bool = False,
                fused_modconv: bool | None = None, channels_last: bool = False,
                bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ws: (N, num_conv + num_torgb, w_dim); x: features of the previous block; img: its RGB."""
        # float32 normally; float64 only when a caller passes float64 ws (numerical gradient checks).
        dtype = torch.bfloat16 if bf16 else torch.float16 if (fp16 and self.use_fp16) else ws.dtype
        w_iter = iter(ws.unbind(dim=1))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1).contiguous(memory_format=fmt)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        elif self.architecture == "resnet":
            x = x.to(dtype).contiguous(memory_format=fmt)
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = x.to(dtype).contiguous(memory_format=fmt)
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        if img is not None:
            img = ops.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(ws.dtype)
            y = y.contiguous()
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image (N, img_channels, R, R), float32, not clamped."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 0, **block_kwargs: Any) -> None:
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = log2
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=res >= fp16_resolution,
                                   **block_kwargs)
            self.num_ws += block.num_conv
            if is_last:
                self.num_ws += block.num_torgb
            setattr(self, f"b{res}", block)

    def forward(self, ws: torch.Tensor, noise_mode: NoiseMode = "random", fp16: bool = False,
                force_fp32: bool = False, fused_modconv: bool | None = None,
                channels_last: bool | None = None, bf16: bool = False) -> torch.Tensor:
        """ws (N, num_ws, w_dim) -> image (N, C, R, R) float32 (float64 if ws is float64).

        ``fp16=True`` runs the fp16-declared blocks in half precision (CUDA only; off by default;
        ``force_fp32`` is accepted for official call sites; it also turns ``bf16`` off). ``bf16=True``
        runs every block's activations and convolutions in bfloat16 (any device; fast only where
        the hardware has bf16 kernels). ``fused_modconv`` forces an execution
        plan (None = fastest for the situation). ``channels_last`` picks the activation memory
        layout (None: channels-last in bf16, NCHW otherwise); the output is always contiguous NCHW.
        """
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        fp16 = fp16 and not force_fp32 and ws.device.type == "cuda"
        bf16 = bf16 and not force_fp32
        if channels_last is None:
            # Measured on a 2-core CPU at batch 1: in bf16, channels-last is 15-20 % faster (oneDNN's
            # transposed convolutions above all); in fp32 no consistent gain.
            channels_last = bf16
        ws = ws.to(torch.float64 if ws.dtype == torch.float64 else torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, cur, noise_mode=noise_mode, fp16=fp16, fused_modconv=fused_modconv,
                           channels_last=channels_last, bf16=bf16)
        return img


class Generator(nn.Module):
    """StyleGAN2-ADA generator: ``mapping`` (z, c -> ws) then ``synthesis`` (ws -> image).

    Constructor arguments and ``state_dict`` keys are those of the official
    ``training.networks.Generator``; ``init_kwargs`` keeps the arguments for saving.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: dict[str, Any] | None = None, synthesis_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        synthesis_kwargs = dict(synthesis_kwargs or {})
        self.init_kwargs: dict[str, Any] = copy.deepcopy(dict(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            mapping_kwargs=mapping_kwargs, synthesis_kwargs=synthesis_kwargs))
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **mapping_kwargs)

    def forward(self, z: torch.Tensor, c: torch.Tensor | None, truncation_psi: float = 1,
                truncation_cutoff: int | None = None, **synthesis_kwargs: Any) -> torch.Tensor:
        """z: (N, z_dim), c: (N, c_dim) or None -> image (N, img_channels, R, R), roughly [-1, 1]."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, **synthesis_kwargs)
