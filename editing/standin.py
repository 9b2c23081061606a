"""A stand-in generator whose mouth opens along one known latent axis (tests, benchmarks).

``MouthWarpGenerator`` renders a REAL aligned face whose mouth opens by an amount set by one
hidden latent axis ``true_axis``: the jaw region is warped down and the gap filled with a dark
mouth interior. MediaPipe sees a genuinely open mouth, so learning a 'mouth_open' direction on it
must recover ``true_axis``. It has the generator interface the editing code uses (w_dim, num_ws,
img_resolution, synthesis(ws, noise_mode=...)). Shared by ``tests/`` and ``bench/``; nothing in
the studio's pipeline uses it.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class MouthWarpGenerator(nn.Module):
    """``face``: (R, R, 3) uint8 RGB aligned portrait (e.g. ``optimize.standin.aligned_image``)."""

    def __init__(self, anchors: torch.Tensor, true_axis: torch.Tensor, face: np.ndarray,
                 num_ws: int = 4, max_open: float = 14.0) -> None:
        super().__init__()
        from personalize.faces.landmarks import detect_landmarks

        lm = detect_landmarks(face)
        assert lm is not None, "MediaPipe found no face in the stand-in's image"
        size = int(face.shape[0])
        self.w_dim = int(anchors.shape[1])
        self.num_ws = num_ws
        self.img_resolution = size
        self.img_channels = 3
        self.max_open = max_open
        self.register_buffer("base", torch.from_numpy(np.ascontiguousarray(face)).permute(2, 0, 1).float()[None]
                             / 127.5 - 1.0)
        axis = true_axis / true_axis.norm()
        self.register_buffer("axis", axis)
        proj = anchors @ axis
        self.center, self.spread = float(proj.mean()), float(proj.std()) + 1e-6
        nuisance = torch.randn(self.w_dim, generator=torch.Generator().manual_seed(7))
        nuisance -= (nuisance @ axis) * axis
        self.register_buffer("nuisance", nuisance / nuisance.norm())
        self.mouth_x = float((lm[61, 0] + lm[291, 0]) / 2)
        self.mouth_y = float((lm[13, 1] + lm[14, 1]) / 2)
        self.mouth_w = float(lm[291, 0] - lm[61, 0])
        self.chin_y = float(lm[152, 1])

    def open_amount(self, w: torch.Tensor) -> torch.Tensor:
        """(B, w_dim) -> (B,) pixels the jaw drops: a smooth monotone function of w . axis."""
        return self.max_open * torch.sigmoid(2.5 * (w @ self.axis - self.center) / self.spread)

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "const", **_: object) -> torch.Tensor:
        w = ws.mean(dim=1)
        amount = self.open_amount(w)                                   # (B,)
        brightness = 0.08 * torch.tanh(w @ self.nuisance)             # an unrelated change
        size = self.img_resolution
        coords = torch.arange(size, dtype=torch.float32) + 0.5
        ys, xs = torch.meshgrid(coords, coords, indexing="ij")
        wx = torch.exp(-0.5 * ((xs - self.mouth_x) / (0.45 * self.mouth_w)) ** 2)
        below = (ys > self.mouth_y).float()
        taper = torch.clamp(1 - (ys - self.chin_y) / (0.15 * size), 0, 1)
        shift = amount[:, None, None] * (wx * below * taper)[None]     # (B, H, W)
        ysrc = ys[None] - shift
        grid = torch.stack([(xs[None].expand_as(ysrc)) / size * 2 - 1, ysrc / size * 2 - 1], dim=-1)
        out = F.grid_sample(self.base.expand(len(w), -1, -1, -1), grid, align_corners=False, padding_mode="border")
        gap = (torch.clamp(self.mouth_y - ysrc, 0, 1) * below[None] * (wx > 0.3).float()[None])[:, None]
        interior = torch.tensor([-0.6, -0.85, -0.85]).view(1, 3, 1, 1)
        out = out * (1 - gap) + interior * gap
        return (out + brightness[:, None, None, None]).clamp(-1, 1)


def make_mouth_setup(n_anchors: int = 10, w_dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Anchors (n, w_dim) and a true axis inside the anchors' difference span (unit)."""
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(n_anchors, w_dim, generator=g)
    coeffs = torch.randn(n_anchors, generator=g)
    coeffs -= coeffs.mean()  # a combination of differences: inside span{w_i - w_mean}
    axis = coeffs @ anchors
    return anchors, axis / axis.norm()
