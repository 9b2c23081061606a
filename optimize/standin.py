"""A differentiable stand-in for a personalized generator, with a known answer (tests, benchmarks).

Why: a StyleGAN2 with random weights draws no face, so MediaPipe and the FaceMesh would see noise
and a check of the re-enactment optimizer could not tell a right answer from a wrong one.
``WarpFaceGenerator`` has the ``Generator`` interface the optimizer uses (``synthesis(ws)``,
``num_ws``, ``w_dim``, ``img_resolution``) but renders a REAL aligned face under a smooth warp
(head shift, rotation, a vertical stretch of the mouth region) and a blend towards a second face
of the same person with the mouth open, all controlled linearly by the code. Known codes
therefore give known, real faces of one identity, as a personalized generator does.

Shared by ``tests/`` and ``bench/`` (the faces come from the shared media folder they pass in);
nothing in the studio's pipeline uses it.
"""
from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optimize.driving import image_to_tensor
from personalize.video import read_image

N_CONTROLS = 5  # shift x, shift y, rotation, mouth stretch, blend
SELFSCAN_VIDEO = "selfscan_woman2_12s.mp4"
SELFSCAN_FRAMES = {"neutral": 294, "mouth-open": 330}
"""Frames of ``SELFSCAN_VIDEO`` where the woman looks ahead with the mouth nearly closed and wide
open: one person, so the stand-in's blend is an expression, not another identity (the eyes loss
compares the irises with the person's own reference)."""


def aligned_image(path: str | Path, size: int) -> np.ndarray:
    """An (already aligned) portrait file as (size, size, 3) uint8 RGB (area-resized)."""
    return cv2.resize(read_image(path), (size, size), interpolation=cv2.INTER_AREA)


@functools.lru_cache(maxsize=4)
def aligned_video_frame(video: Path, index: int, size: int) -> np.ndarray:
    """Frame ``index`` of ``video``, FFHQ-aligned by MediaPipe, as (size, size, 3) uint8 RGB."""
    from personalize.faces import detect_landmarks
    from personalize.faces.alignment import align_face
    from personalize.video import iter_frames

    for t, frame in enumerate(iter_frames(video, start=index, stop=index + 1)):
        landmarks = detect_landmarks(frame)
        if landmarks is None:
            raise ValueError(f"no face in frame {index} of {video}")
        return align_face(frame, landmarks, size=size)[0]
    raise ValueError(f"{video} has no frame {index}")


class _Synthesis(nn.Module):
    def __init__(self, owner: "WarpFaceGenerator") -> None:
        super().__init__()
        self._owner = [owner]  # no submodule cycle

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", **_: object) -> torch.Tensor:
        return self._owner[0].render(ws)


class WarpFaceGenerator(nn.Module):
    """ws (B, num_ws, w_dim) -> (B,3,R,R) in [-1,1]: a warped, blended real portrait.

    ``base``, ``other``: (1,3,R,R) in [-1,1], the face at rest and the same person with the mouth
    open. controls = mean over layers of ws, times a fixed orthonormal (w_dim, 5) matrix;
    ``controls_of(ws)`` gives them so tests can compare codes by what they do to the image.
    """

    def __init__(self, base: torch.Tensor, other: torch.Tensor, num_ws: int = 4, w_dim: int = 8,
                 seed: int = 0) -> None:
        super().__init__()
        self.img_resolution = int(base.shape[-1])
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.z_dim = w_dim
        self.c_dim = 0
        self.img_channels = 3
        gen = torch.Generator().manual_seed(seed)
        mix = torch.randn(w_dim, N_CONTROLS, generator=gen)
        q, _ = torch.linalg.qr(mix)  # orthonormal columns: every control is reachable
        self.register_buffer("mix", q)
        self.register_buffer("base", base)
        self.register_buffer("other", other)
        self.synthesis = _Synthesis(self)

    @classmethod
    def from_media(cls, media: str | Path, size: int = 256, **kwargs: int) -> "WarpFaceGenerator":
        """The stand-in on the shared media's self-scan (``SELFSCAN_FRAMES``) at ``size`` px."""
        video = Path(media) / SELFSCAN_VIDEO
        faces = [image_to_tensor(aligned_video_frame(video, SELFSCAN_FRAMES[name], size), size, "cpu")
                 for name in ("neutral", "mouth-open")]
        return cls(*faces, **kwargs)

    def controls_of(self, ws: torch.Tensor) -> torch.Tensor:
        """(B, num_ws, w_dim) -> (B, 5) control values."""
        return ws.mean(dim=1) @ self.mix

    def render(self, ws: torch.Tensor) -> torch.Tensor:
        c = self.controls_of(ws)
        b = c.shape[0]
        shift = 0.08 * torch.tanh(c[:, :2] / 2)
        angle = 0.25 * torch.tanh(c[:, 2] / 2)
        stretch = 0.12 * torch.tanh(c[:, 3] / 2)
        blend = 0.5 * torch.sigmoid(c[:, 4] - 2.0)
        size = self.img_resolution
        lin = torch.linspace(-1 + 1 / size, 1 - 1 / size, size, device=ws.device)
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        gx = gx[None].expand(b, -1, -1)
        gy = gy[None].expand(b, -1, -1)
        # local vertical stretch around the mouth (FFHQ crops put it near y = 0.45 of the half-size)
        mouth_y, mouth_x = 0.48, 0.0
        bump = torch.exp(-(((gx - mouth_x) / 0.30) ** 2 + ((gy - mouth_y) / 0.14) ** 2))
        gy = gy - stretch[:, None, None] * (gy - mouth_y) * bump / 0.14
        cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
        sx = cos * gx - sin * gy - shift[:, 0, None, None]
        sy = sin * gx + cos * gy - shift[:, 1, None, None]
        grid = torch.stack([sx, sy], dim=-1)
        warped = F.grid_sample(self.base.expand(b, -1, -1, -1), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)
        other = F.grid_sample(self.other.expand(b, -1, -1, -1), grid, mode="bilinear",
                              padding_mode="border", align_corners=False)
        return torch.lerp(warped, other, blend[:, None, None, None])


def warp_anchors(generator: WarpFaceGenerator, n: int = 6, seed: int = 1, spread: float = 1.2) -> np.ndarray:
    """(n, w_dim) anchors whose controls span a useful range around the neutral face."""
    gen = torch.Generator().manual_seed(seed)
    controls = spread * torch.randn(n, N_CONTROLS, generator=gen)
    controls[:, 4] = -1.0 + 0.5 * torch.randn(n, generator=gen)  # little blend by default
    w = controls @ generator.mix.T  # mix has orthonormal columns: controls_of(w) == controls
    return w.numpy().astype(np.float32)


def keypoint_gradient_cosine(generator: nn.Module, space, mesh, target, exact, eps: float = 0.003) -> float:
    """Cosine between autograd's gradient of L_key w.r.t. alpha at the code ``exact`` and central
    finite differences (``target``: an ``optimize.losses.FrameTarget``; ``mesh``: ``MeshLandmarks``).

    The optimizer follows autograd: near the answer that gradient must be the loss's slope.
    """
    from optimize.latent_space import PPlusCode
    from optimize.losses import LossWeights, ReenactLoss

    key_only = ReenactLoss(mesh, LossWeights(mouth=0, eyes=0, delta=0, sum=0))

    def key(alpha: torch.Tensor) -> torch.Tensor:
        return key_only(generator.synthesis(space.to_ws(PPlusCode(alpha, exact.delta))), target, None).key.sum()

    alpha = exact.alpha.clone().requires_grad_(True)
    key(alpha).backward()
    finite = torch.zeros_like(alpha)
    with torch.no_grad():
        for i in range(space.n_anchors):
            step = torch.zeros_like(alpha)
            step[0, i] = eps
            finite[0, i] = (key(exact.alpha + step) - key(exact.alpha - step)) / (2 * eps)
    return float(F.cosine_similarity(alpha.grad, finite))
