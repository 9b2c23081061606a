"""HyperReenact's hypernetwork (``HypernetworkBlocks_edit``, mode ``delta_per_channel``).

From the target's pose features (DECA layer4, (B, 2048, 7, 7)) and the source's appearance features
(ArcFace unit 23, (B, 512, 7, 7)) it predicts weight offsets for 13 of the 20 generator layers
(0, 2, 3, 5, 6, 8, 9 through one shared weight hypernetwork, 11, 12, 14, 15, 17, 18 through
per-layer refinement blocks).

Official quirks reproduced (names ``conv_transf``, ``blend_module.spade_{pose,app}.conv_{gamma,beta}``,
``shared_weight_hypernet.{w1,b1,w2,b2}``, ``refinement_blocks.N.*``):
* The blend ``f = gamma_p @ f_pose + gamma_a @ f_app + beta_p + beta_a`` is ``torch.matmul``: a
  **matrix product of the 7x7 spatial maps** per (batch, channel), not an element-wise modulation
  (gamma/beta are 1x1 convs of their own input).
* The shared hypernet computes ``h = z @ w2 + b2`` viewed (512, 512), then ``h @ w1 + b1`` viewed
  (out, in); the 7 shared layers' blocks hold the *same* module, so a state_dict lists its 4
  tensors 8 times (as the real file does). We evaluate the 7 codes in one matmul with w2
  (reading the 512 MB matrix once instead of 7 times; the same products).
* Deltas are per (out, in) channel pair: the official code repeats each value over the 3x3 taps;
  we return the (B, out, in) plane and the generator broadcasts it over the taps (the same numbers,
  no 9x copy). Refinement blocks end in a 1x1 conv to in*out channels viewed (out, in).
* Conv stacks: 3x3 pad 1, then three 3x3 pad 0 (7 -> 1 px), LeakyReLU(0.01) after each.
"""
from __future__ import annotations

import torch
from torch import nn

SHARED_LAYERS = (0, 2, 3, 5, 6, 8, 9)
REFINED_LAYERS = (11, 12, 14, 15, 17, 18)
N_OUTPUTS = 20
# layer index -> (in_channels, out_channels) of the generator conv it modulates (256 px, multiplier 1)
LAYER_CHANNELS = {**{i: (512, 512) for i in SHARED_LAYERS}, 11: (512, 256), 12: (256, 256),
                  14: (256, 128), 15: (128, 128), 17: (128, 64), 18: (64, 64)}


def _conv_stack(in_channels: int, inner: int, out_channels: int) -> nn.Sequential:
    """7x7 -> 1x1: 3x3 pad 1, three 3x3 pad 0, each followed by LeakyReLU(0.01)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, inner, 3, 1, 1), nn.LeakyReLU(),
        nn.Conv2d(inner, inner, 3, 1, 0), nn.LeakyReLU(),
        nn.Conv2d(inner, inner, 3, 1, 0), nn.LeakyReLU(),
        nn.Conv2d(inner, out_channels, 3, 1, 0), nn.LeakyReLU())


class Spade(nn.Module):
    """gamma and beta: 1x1 convs of the input (names ``conv_gamma``, ``conv_beta``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_gamma = nn.Conv2d(channels, channels, 1)
        self.conv_beta = nn.Conv2d(channels, channels, 1)


class BlendModule(nn.Module):
    """f_combined = gamma_p @ f_p + gamma_a @ f_a + beta_p + beta_a, ``@`` over the 7x7 maps."""

    def __init__(self, channels: int = 512) -> None:
        super().__init__()
        self.spade_pose = Spade(channels)
        self.spade_app = Spade(channels)

    def forward(self, f_pose: torch.Tensor, f_app: torch.Tensor) -> torch.Tensor:
        gp, bp = self.spade_pose.conv_gamma(f_pose), self.spade_pose.conv_beta(f_pose)
        ga, ba = self.spade_app.conv_gamma(f_app), self.spade_app.conv_beta(f_app)
        return torch.matmul(gp, f_pose) + torch.matmul(ga, f_app) + bp + ba


class SharedWeightHypernet(nn.Module):
    """code z (N, 512) -> delta plane (N, 512, 512): (z @ w2 + b2).view(512, 512) @ w1 + b1."""

    def __init__(self, z_dim: int = 512, size: int = 512) -> None:
        super().__init__()
        self.z_dim, self.size = z_dim, size
        self.w1 = nn.Parameter(torch.fmod(torch.randn(z_dim, size) / 40, 2))
        self.b1 = nn.Parameter(torch.fmod(torch.randn(size) / 40, 2))
        self.w2 = nn.Parameter(torch.zeros(z_dim, size * z_dim).normal_(0, 1 / 40).fmod_(2))
        self.b2 = nn.Parameter(torch.fmod(torch.randn(size * z_dim) / 40, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.matmul(z, self.w2) + self.b2
        h = h.view(z.shape[0], self.size, self.z_dim)
        return (torch.matmul(h, self.w1) + self.b1).view(z.shape[0], self.size, self.size)


class HyperRefinementBlock(nn.Module):
    """Shared-hypernet layer: conv stack (inner 128) -> Linear(512, 512) -> shared hypernet."""

    def __init__(self, hypernet: SharedWeightHypernet, channels: int = 512, inner: int = 128) -> None:
        super().__init__()
        self.convs = _conv_stack(channels, inner, 512)
        self.linear = nn.Linear(512, 512)
        self.hypernet = hypernet

    def code(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(features).reshape(-1, 512))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.hypernet(self.code(features))


class RefinementBlock(nn.Module):
    """Own-weights layer: conv stack (inner 256) -> 1x1 conv to in*out -> (B, out, in)."""

    def __init__(self, layer: int, channels: int = 512, inner: int = 256) -> None:
        super().__init__()
        self.in_channels, self.out_channels = LAYER_CHANNELS[layer]
        self.convs = _conv_stack(channels, inner, 512)
        self.output = nn.Conv2d(512, self.in_channels * self.out_channels, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.output(self.convs(features)).view(-1, self.out_channels, self.in_channels)


class HyperNetwork(nn.Module):
    """(f_pose (B, 2048, 7, 7), f_app (B, 512, 7, 7)) -> 20 entries, (B, out, in) planes or None."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_transf = nn.Conv2d(2048, 512, 1)
        self.blend_module = BlendModule(512)
        self.shared_weight_hypernet = SharedWeightHypernet()
        blocks: list[nn.Module | None] = []
        for layer in range(N_OUTPUTS):
            if layer in SHARED_LAYERS:
                blocks.append(HyperRefinementBlock(self.shared_weight_hypernet))
            elif layer in REFINED_LAYERS:
                blocks.append(RefinementBlock(layer))
            else:
                blocks.append(None)
        self.refinement_blocks = nn.ModuleList(blocks)

    def combined_features(self, f_pose: torch.Tensor, f_app: torch.Tensor) -> torch.Tensor:
        """The blended (B, 512, 7, 7) map the refinement blocks read."""
        return self.blend_module(self.conv_transf(f_pose), f_app)

    def forward(self, f_pose: torch.Tensor, f_app: torch.Tensor) -> list[torch.Tensor | None]:
        features = self.combined_features(f_pose, f_app)
        b = features.shape[0]
        deltas: list[torch.Tensor | None] = [None] * N_OUTPUTS
        codes = torch.cat([self.refinement_blocks[i].code(features) for i in SHARED_LAYERS])  # (7B, 512)
        planes = self.shared_weight_hypernet(codes)
        for k, layer in enumerate(SHARED_LAYERS):
            deltas[layer] = planes[k * b:(k + 1) * b]
        for layer in REFINED_LAYERS:
            deltas[layer] = self.refinement_blocks[layer](features)
        return deltas
