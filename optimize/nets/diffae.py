"""The DiffAE FFHQ-256 diffusion autoencoder (Preechakul et al.), as DiffusionAct uses it.

Two networks, written here from the paper and the official layout (no official code):

- ``SemanticEncoder``: a half UNet (no time input) that maps an image in [-1, 1] to a 512-d
  semantic code ``z``. DiffusionAct's reenactment encoder is a second copy of it.
- ``DiffAEUNet``: the BeatGANs-style UNet that predicts the noise ``eps(x_t, t, z)``. Every
  residual block is modulated twice after its second GroupNorm: by the time embedding
  (scale and shift) and then by the semantic code (scale only): ``h = (h*(1+s_t)+b_t)*(1+s_z)``.
  The UNet owns its semantic encoder as ``.encoder``.

``DiffAELitModel`` is only a container whose ``state_dict`` has the keys of the official
Lightning module: ``model.*`` (the fine-tuned UNet), ``ema_model.*`` (its exponential moving
average) and the unused ``x_T`` buffer. DiffusionAct inverts the source with ``ema_model`` and
renders with ``model`` (see ``optimize.backends.diffusionact``).

Shapes: images (B, 3, 256, 256) in [-1, 1]; timesteps (B,) integer steps of the 1000-step
schedule; semantic codes (B, 512).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DiffAEConfig:
    """Architecture of a DiffAE autoencoder; the defaults are the official FFHQ-256 model."""

    image_size: int = 256
    model_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    enc_channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)
    num_heads: int = 1
    embed_channels: int = 512       # time embedding width
    style_channels: int = 512       # semantic code width
    dropout: float = 0.1            # inactive at inference (eval mode)
    sample_size: int = 32           # rows of the official x_T buffer


FFHQ256 = DiffAEConfig()


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding (B,) -> (B, dim): [cos(t*f_i), sin(t*f_i)], f_i = max_period^(-i/half)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half).to(t.device)
    args = t[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 and returned in the input dtype (stable under fp16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def group_norm(channels: int) -> GroupNorm32:
    return GroupNorm32(min(32, channels), channels)


class ResBlock(nn.Module):
    """Residual block: norm-SiLU-conv, then (if conditioned) norm, time and code modulation, SiLU, conv.

    ``resample`` ("up"/"down") resizes both paths between the first SiLU and the first conv (nearest
    upsampling / 2x2 average pooling). Unconditioned blocks (the semantic encoders) have no second
    half: they return ``skip(x) + conv(silu(norm(x)))``.
    """

    def __init__(self, channels: int, out_channels: int, *, emb_channels: int | None = None,
                 cond_channels: int | None = None, dropout: float = 0.0, resample: str | None = None) -> None:
        super().__init__()
        self.resample = resample
        self.in_layers = nn.Sequential(group_norm(channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.conditioned = emb_channels is not None
        if self.conditioned:
            self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
            self.cond_emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(cond_channels or emb_channels, out_channels))
            self.out_layers = nn.Sequential(group_norm(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
                                            nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection: nn.Module = (nn.Identity() if out_channels == channels
                                           else nn.Conv2d(channels, out_channels, 1))

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                lateral: torch.Tensor | None = None) -> torch.Tensor:
        if lateral is not None:
            x = torch.cat([x, lateral], dim=1)
        if self.resample:
            h = self.in_layers[:-1](x)
            h = self.in_layers[-1](self._resample(h))
            x = self._resample(x)
        else:
            h = self.in_layers(x)
        if self.conditioned:
            scale, shift = self.emb_layers(emb).type(h.dtype)[..., None, None].chunk(2, dim=1)
            code_scale = self.cond_emb_layers(cond).type(h.dtype)[..., None, None]
            h = self.out_layers[0](h)
            h = h * (1 + scale) + shift
            h = h * (1 + code_scale)
            h = self.out_layers[1:](h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Spatial self-attention with a residual connection (heads split before q/k/v, the "legacy" order)."""

    def __init__(self, channels: int, num_heads: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(x))
        length = qkv.shape[-1]
        ch = c // self.num_heads
        q, k, v = qkv.reshape(b * self.num_heads, 3 * ch, length).transpose(1, 2).split(ch, dim=2)
        # softmax(q k^T / sqrt(ch)) v; torch's fused kernel keeps fp16 stable (fp32 softmax).
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, c, length)
        return (x + self.proj_out(a)).reshape(b, c, *spatial)


class Block(nn.Sequential):
    """A UNet stage entry (conv, or res block [+ attention] [+ resampling block]).

    Time embedding and semantic code go to every residual block; the skip ("lateral") feature
    only to the first one, which is the only block that concatenates it.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None, cond: torch.Tensor | None = None,
                lateral: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        for i, layer in enumerate(self):
            if isinstance(layer, ResBlock):
                x = layer(x, emb, cond, lateral if i == 0 else None)
            else:
                x = layer(x)
        return x


class SemanticEncoder(nn.Module):
    """Image (B,3,H,W) [-1,1] -> semantic code (B, style_channels). No time input."""

    def __init__(self, config: DiffAEConfig = FFHQ256) -> None:
        super().__init__()
        c = config
        ch = c.enc_channel_mult[0] * c.model_channels
        self.input_blocks = nn.ModuleList([Block(nn.Conv2d(3, ch, 3, padding=1))])
        resolution = c.image_size
        for level, mult in enumerate(c.enc_channel_mult):
            for _ in range(c.num_res_blocks):
                out = mult * c.model_channels
                layers: list[nn.Module] = [ResBlock(ch, out, dropout=c.dropout)]
                ch = out
                if resolution in c.attention_resolutions:
                    layers.append(AttentionBlock(ch, c.num_heads))
                self.input_blocks.append(Block(*layers))
            if level != len(c.enc_channel_mult) - 1:
                resolution //= 2
                self.input_blocks.append(Block(ResBlock(ch, ch, dropout=c.dropout, resample="down")))
        self.middle_block = Block(ResBlock(ch, ch, dropout=c.dropout), AttentionBlock(ch, c.num_heads),
                                  ResBlock(ch, ch, dropout=c.dropout))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.AdaptiveAvgPool2d((1, 1)),
                                 nn.Conv2d(ch, c.style_channels, 1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        for block in self.input_blocks:
            h = block(h)
        h = self.middle_block(h)
        return self.out(h.type(x.dtype))


class _TimeEmbed(nn.Module):
    """Holds the time MLP under the official name ``time_embed.time_embed``."""

    def __init__(self, channels: int, out_channels: int) -> None:
        super().__init__()
        self.time_embed = nn.Sequential(nn.Linear(channels, out_channels), nn.SiLU(),
                                        nn.Linear(out_channels, out_channels))


class DiffAEUNet(nn.Module):
    """Noise predictor eps(x_t, t, z): (B,3,H,W), (B,) int steps, (B,512) -> (B,3,H,W).

    Encoder stages keep their outputs per resolution level; each decoder block pops the latest
    one of its level (last in, first out) and concatenates it to its input.
    """

    def __init__(self, config: DiffAEConfig = FFHQ256) -> None:
        super().__init__()
        c = config
        self.config = c
        self.time_embed = _TimeEmbed(c.model_channels, c.embed_channels)
        res = dict(emb_channels=c.embed_channels, cond_channels=c.style_channels, dropout=c.dropout)
        ch = input_ch = c.channel_mult[0] * c.model_channels
        self.input_blocks = nn.ModuleList([Block(nn.Conv2d(3, ch, 3, padding=1))])
        skip_channels: list[list[int]] = [[] for _ in c.channel_mult]
        skip_channels[0].append(ch)
        self.input_num_blocks = [0] * len(c.channel_mult)
        self.input_num_blocks[0] = 1
        resolution = c.image_size
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                out = mult * c.model_channels
                layers: list[nn.Module] = [ResBlock(ch, out, **res)]
                ch = out
                if resolution in c.attention_resolutions:
                    layers.append(AttentionBlock(ch, c.num_heads))
                self.input_blocks.append(Block(*layers))
                skip_channels[level].append(ch)
                self.input_num_blocks[level] += 1
            if level != len(c.channel_mult) - 1:
                resolution //= 2
                self.input_blocks.append(Block(ResBlock(ch, ch, resample="down", **res)))
                skip_channels[level + 1].append(ch)
                self.input_num_blocks[level + 1] += 1
        self.middle_block = Block(ResBlock(ch, ch, **res), AttentionBlock(ch, c.num_heads), ResBlock(ch, ch, **res))
        self.output_blocks = nn.ModuleList()
        self.output_num_blocks = [0] * len(c.channel_mult)
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                skip = skip_channels[level].pop() if skip_channels[level] else 0
                out = mult * c.model_channels
                layers = [ResBlock(ch + skip, out, **res)]
                ch = out
                if resolution in c.attention_resolutions:
                    layers.append(AttentionBlock(ch, c.num_heads))
                if level and i == c.num_res_blocks:
                    resolution *= 2
                    layers.append(ResBlock(ch, ch, resample="up", **res))
                self.output_blocks.append(Block(*layers))
                self.output_num_blocks[level] += 1
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(input_ch, 3, 3, padding=1))
        self.encoder = SemanticEncoder(c)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        emb = self.time_embed.time_embed(timestep_embedding(t, self.config.model_channels))
        skips: list[list[torch.Tensor]] = [[] for _ in self.input_num_blocks]
        h = x.float()
        k = 0
        for level, count in enumerate(self.input_num_blocks):
            for _ in range(count):
                h = self.input_blocks[k](h, emb, cond)
                skips[level].append(h)
                k += 1
        h = self.middle_block(h, emb, cond)
        k = 0
        for i, count in enumerate(self.output_num_blocks):
            for _ in range(count):
                level_skips = skips[-i - 1]
                h = self.output_blocks[k](h, emb, cond, level_skips.pop() if level_skips else None)
                k += 1
        return self.out(h)


class DiffAELitModel(nn.Module):
    """Container with the official Lightning keys: ``model.*``, ``ema_model.*``, ``x_T``."""

    def __init__(self, config: DiffAEConfig = FFHQ256) -> None:
        super().__init__()
        self.model = DiffAEUNet(config)
        self.ema_model = DiffAEUNet(config)
        self.register_buffer("x_T", torch.zeros(config.sample_size, 3, config.image_size, config.image_size))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Semantic code of the EMA encoder (the official ``LitModel.encode``): (B,3,H,W) -> (B,512)."""
        return self.ema_model.encoder(x)
