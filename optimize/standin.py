"""A differentiable stand-in for a personalized generator, with a known answer (tests, benchmarks).

Why: a StyleGAN2 with random weights draws no face, so MediaPipe and the FaceMesh would see noise
and a check of the re-enactment optimizer could not tell a right answer from a wrong one.
``WarpFaceGenerator`` has the ``Generator`` interface the optimizer uses (``synthesis(ws)``,
``num_ws``, ``w_dim``, ``img_resolution``) but renders a REAL aligned face under a smooth warp
(head shift, rotation, a vertical stretch of the mouth region) and a blend towards a second face
of the same person with the mouth open, all controlled linearly by the code. Known codes
therefore give known, real faces of one identity, as a personalized generator does.

With ``gaze=True`` two more controls move the irises: a smooth, flat-topped displacement of each
eye opening (centred on the iris MediaPipe finds in the base face, fading out before the eye
corners and mostly before the lids) slides the iris between the eyelids, so the person looks
left/right or up/down while the eyelids barely move: a known answer for gaze transfer.

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

CONTROL_NAMES = ("shift x", "shift y", "rotation", "mouth stretch", "blend")
"""What each control does (``WarpFaceGenerator.render``); blend is towards the open-mouth face."""
N_CONTROLS = len(CONTROL_NAMES)
GAZE_CONTROLS = (5, 6)  # with gaze=True: iris shift x, iris shift y (image axes)
GAZE_MAX_PX = (4.0, 3.0)
"""Largest iris shift (x, y) in pixels of a 256 crop, where the eye is ~27 x 11 px and the iris ~12 px
across: far enough to read as looking left/right/down, small enough to stay inside the opening."""
EYE_BUMP_RADII = (0.4, 0.5)
"""Radii of the iris-moving bump as fractions of the eye's width and height (``eye_regions``)."""
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
                 seed: int = 0, gaze: bool = False) -> None:
        super().__init__()
        self.img_resolution = int(base.shape[-1])
        self.num_ws = num_ws
        self.w_dim = w_dim
        self.z_dim = w_dim
        self.c_dim = 0
        self.img_channels = 3
        self.n_controls = N_CONTROLS + (len(GAZE_CONTROLS) if gaze else 0)
        if w_dim < self.n_controls:
            raise ValueError(f"w_dim {w_dim} cannot drive {self.n_controls} controls")
        gen = torch.Generator().manual_seed(seed)
        mix = torch.randn(w_dim, N_CONTROLS, generator=gen)
        if gaze:  # drawn after the first five, so those stay what they are without gaze
            mix = torch.cat([mix, torch.randn(w_dim, len(GAZE_CONTROLS), generator=gen)], dim=1)
        q, _ = torch.linalg.qr(mix)  # orthonormal columns: every control is reachable
        self.register_buffer("mix", q)
        self.register_buffer("base", base)
        self.register_buffer("other", other)
        self.register_buffer("eyes", eye_regions(base) if gaze else torch.zeros(0, 4))
        self.synthesis = _Synthesis(self)

    @classmethod
    def from_media(cls, media: str | Path, size: int = 256, **kwargs: int | bool) -> "WarpFaceGenerator":
        """The stand-in on the shared media's self-scan (``SELFSCAN_FRAMES``) at ``size`` px."""
        video = Path(media) / SELFSCAN_VIDEO
        faces = [image_to_tensor(aligned_video_frame(video, SELFSCAN_FRAMES[name], size), size, "cpu")
                 for name in ("neutral", "mouth-open")]
        return cls(*faces, **kwargs)

    def controls_of(self, ws: torch.Tensor) -> torch.Tensor:
        """(B, num_ws, w_dim) -> (B, n_controls) control values (5, or 7 with gaze)."""
        return ws.mean(dim=1) @ self.mix

    def gaze_pixels(self, controls: torch.Tensor) -> torch.Tensor:
        """(B, n_controls) -> (B, 2) iris shift (x, y) in pixels of this generator's images."""
        if not len(self.eyes):
            return controls.new_zeros(controls.shape[0], 2)
        limit = torch.tensor(GAZE_MAX_PX, device=controls.device) * (self.img_resolution / 256)
        return limit * torch.tanh(controls[:, list(GAZE_CONTROLS)] / 2)

    def _move_irises(self, sx: torch.Tensor, sy: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source grid (B,H,W) x2 -> the grid that shows each iris moved by ``gaze_pixels``.

        The displacement is a flat-topped bump (exp(-r^4)) around each iris in source (face)
        coordinates, so the iris moves nearly rigidly and the eye corners not at all.
        """
        shift = self.gaze_pixels(c) * (2.0 / self.img_resolution)  # pixels -> grid units
        bump = torch.zeros_like(sx)
        for cx, cy, rx, ry in self.eyes:
            r2 = ((sx - cx) / rx) ** 2 + ((sy - cy) / ry) ** 2
            bump = bump + torch.exp(-r2 ** 2)
        return sx - shift[:, 0, None, None] * bump, sy - shift[:, 1, None, None] * bump

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
        if len(self.eyes):
            sx, sy = self._move_irises(sx, sy, c)
        grid = torch.stack([sx, sy], dim=-1)
        warped = F.grid_sample(self.base.expand(b, -1, -1, -1), grid, mode="bilinear",
                               padding_mode="border", align_corners=False)
        other = F.grid_sample(self.other.expand(b, -1, -1, -1), grid, mode="bilinear",
                              padding_mode="border", align_corners=False)
        return torch.lerp(warped, other, blend[:, None, None, None])


def warp_anchors(generator: WarpFaceGenerator, n: int = 6, seed: int = 1, spread: float = 1.2) -> np.ndarray:
    """(n, w_dim) anchors whose controls span a useful range around the neutral face (gaze too,
    when the generator has it: drawn after the others, so the first five controls do not change)."""
    gen = torch.Generator().manual_seed(seed)
    controls = spread * torch.randn(n, N_CONTROLS, generator=gen)
    controls[:, 4] = -1.0 + 0.5 * torch.randn(n, generator=gen)  # little blend by default
    if generator.n_controls > N_CONTROLS:
        gaze = spread * torch.randn(n, generator.n_controls - N_CONTROLS, generator=gen)
        controls = torch.cat([controls, gaze], dim=1)
    w = controls @ generator.mix.T  # mix has orthonormal columns: controls_of(w) == controls
    return w.numpy().astype(np.float32)


def gaze_anchors(generator: WarpFaceGenerator, amount: float = 2.5) -> np.ndarray:
    """(5, w_dim) anchors of one head pose and expression looking ahead, left, right, down, up
    (gaze controls 0 or +-``amount``): a person's space in which only the gaze varies."""
    if generator.n_controls <= N_CONTROLS:
        raise ValueError("gaze anchors need WarpFaceGenerator(..., gaze=True)")
    controls = torch.zeros(5, generator.n_controls)
    controls[:, 4] = -1.0  # little blend, as warp_anchors
    gx, gy = GAZE_CONTROLS
    controls[1, gx], controls[2, gx], controls[3, gy], controls[4, gy] = amount, -amount, amount, -amount
    return (controls @ generator.mix.T).numpy().astype(np.float32)


GAZE_DIRECTIONS = {"left": [0.3, 0.7, 0.0, 0.0, 0.0], "right": [0.3, 0.0, 0.7, 0.0, 0.0],
                   "down": [0.3, 0.0, 0.0, 0.7, 0.0]}
"""Coefficients over ``gaze_anchors`` of a face looking to the subject's left / right (the irises
move to the image's right / left: MediaPipe's left/right convention) and down."""


def eye_regions(face: torch.Tensor) -> torch.Tensor:
    """(2, 4) per eye of ``face`` (1,3,R,R) in [-1,1]: iris centre (x, y) and bump radii (x, y)
    in grid units.

    The bump's flat top covers the iris (radius ~6 px at 256); radii of 0.4 x the eye's width and
    0.5 x its height put the eye corners and most of the lids outside it.
    """
    from optimize.keypoints import KEYPOINTS
    from personalize.faces import detect_landmarks

    size = int(face.shape[-1])
    image = ((face[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    landmarks = detect_landmarks(np.ascontiguousarray(image))
    if landmarks is None:
        raise ValueError("no face found in the stand-in's base image")
    rows = []
    for side in ("right", "left"):
        lids = landmarks[list(KEYPOINTS[f"{side}_eye"]), :2]
        centre = landmarks[KEYPOINTS[f"{side}_iris"][0], :2]
        extent = lids.max(axis=0) - lids.min(axis=0)
        radii = np.array(EYE_BUMP_RADII) * extent
        rows.append([*(centre / size * 2 - 1), *(radii / size * 2)])
    return torch.tensor(rows, dtype=torch.float32)


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
