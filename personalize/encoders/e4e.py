"""Encoder4Editing (e4e, Tov et al. 2021): an IR-SE-50 image encoder into StyleGAN2's W+.

Why in ``personalize``: the main paper inverts the self-scan frames into W with an off-the-shelf
encoder of the pSp family; the FFHQ e4e does that in seconds instead of minutes of optimization.
The same class also serves the one-shot VoxCeleb backends (HyperReenact, latent directions), whose
``e4e-voxceleb.pt`` has the same names at 256 px.

Architecture (facts of the official e4e): IR-SE-50 backbone; FPN features c1 (unit 6, 128 ch),
c2 (unit 20, 256 ch), c3 (unit 23, 512 ch) of a 256 px input; ``styles[i]`` are
``GradualStyleBlock``s (stride-2 3x3 convs with LeakyReLU(0.01) down to 1 px, then an
``EqualLinear``). ``w0 = styles[0](c3)`` is the single W code; it is repeated over all
``2*log2(R)-2`` layers and layer i gets ``+ styles[i](features)`` with features c3 for i < 3,
p2 = up(c3) + latlayer1(c2) for 3 <= i < 7 and p1 = up(p2) + latlayer2(c1) after
(``up`` = bilinear, align_corners=True). 14 styles at R=256, 18 at R=1024.

``latent_avg``: the pSp wrapper of the FFHQ checkpoint adds the generator's average latent to the
encoder output (``start_from_latent_avg``); HyperReenact and latent-directions do **not** (their
inference uses the raw codes). ``Encoder4Editing.forward`` returns raw codes; callers add
``latent_avg`` where the official pipeline does (``encode_w_anchors``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from personalize.encoders.ir_se import make_body, make_input_layer, run_body
from personalize.errors import CheckpointError
from personalize.stylegan2.equalized import EqualLinear
from personalize.torch_files import load_checked, load_torch_file, plain_options, tensor_dict

COARSE_END, MIDDLE_END = 3, 7   # styles [0,3) read c3, [3,7) read p2, the rest p1
FEATURE_TAPS = (6, 20, 23)      # body units giving c1, c2, c3
INPUT_SIZE = 256                # e4e always encodes a 256 px image (pSp resizes its inputs)


def n_styles(resolution: int) -> int:
    """Number of W+ layers of a StyleGAN2 generator of this output resolution (14 at 256, 18 at 1024)."""
    return 2 * int(math.log2(resolution)) - 2


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs (+LeakyReLU 0.01) from ``spatial`` px down to 1 px, then an EqualLinear.

    (N, 512, spatial, spatial) -> (N, 512).
    """

    def __init__(self, in_channels: int, out_channels: int, spatial: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        layers: list[nn.Module] = []
        for k in range(int(math.log2(spatial))):
            layers += [nn.Conv2d(in_channels if k == 0 else out_channels, out_channels, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels, lr_mul=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_channels))


def _upsample_add(coarse: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
    return F.interpolate(coarse, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """e4e with the official ``state_dict`` names. ``resolution`` is the *generator's* (256 or 1024)."""

    def __init__(self, resolution: int = 256) -> None:
        super().__init__()
        self.resolution = resolution
        self.style_count = n_styles(resolution)
        self.input_layer = make_input_layer()
        self.body = make_body()
        spatial = [16] * COARSE_END + [32] * (MIDDLE_END - COARSE_END) + [64] * (self.style_count - MIDDLE_END)
        self.styles = nn.ModuleList(GradualStyleBlock(512, 512, s) for s in spatial)
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, 256, 256) in [-1, 1] -> raw W+ codes (N, style_count, 512), no latent_avg."""
        c1, c2, c3 = run_body(self.input_layer, self.body, images, FEATURE_TAPS)
        w0 = self.styles[0](c3)
        deltas = [w0.new_zeros(w0.shape)]
        features = c3
        p2 = None
        for i in range(1, self.style_count):
            if i == COARSE_END:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_END:
                features = _upsample_add(p2, self.latlayer2(c1))
            deltas.append(self.styles[i](features))
        return w0[:, None, :] + torch.stack(deltas, dim=1)


# ----------------------------------------------------------------------------------------- anchors
AnchorReduce = Literal["first", "mean"]


def to_encoder_input(crops: torch.Tensor) -> torch.Tensor:
    """(N,3,R,R) [-1,1] aligned crops -> (N,3,256,256), area-averaged when R > 256 (pSp resizes to 256)."""
    if crops.shape[-1] == INPUT_SIZE and crops.shape[-2] == INPUT_SIZE:
        return crops
    return F.interpolate(crops, size=(INPUT_SIZE, INPUT_SIZE), mode="area" if crops.shape[-1] > INPUT_SIZE
                         else "bilinear", align_corners=None if crops.shape[-1] > INPUT_SIZE else False)


@torch.no_grad()
def encode_w_anchors(encoder: Encoder4Editing, crops: torch.Tensor, latent_avg: torch.Tensor | None,
                     reduce: AnchorReduce = "first", batch: int = 8) -> torch.Tensor:
    """W anchors (N, 512) of FFHQ-aligned crops (N, 3, R, R) in [-1, 1], through the FFHQ e4e.

    W+ codes are ``encoder(crops) + latent_avg`` (the pSp wrapper's ``start_from_latent_avg``).
    **W+ -> W: the first style** (``reduce="first"``), i.e. ``w0 + latent_avg[0]``. Why: e4e is
    designed so that W+ stays close to W — one code ``w0`` is predicted for all layers and the
    per-layer offsets are trained with a delta-regularization loss (and a W discriminator on w0),
    so ``w0`` is the encoder's estimate of the image's W code, while the offsets of the fine layers
    carry what W cannot express. Averaging over layers (``reduce="mean"``, offered for comparison
    in ``bench/personalization.py``) mixes those fine-layer offsets into the coarse layers.
    """
    codes = []
    for s in range(0, crops.shape[0], batch):
        chunk = to_encoder_input(crops[s:s + batch].float())
        w_plus = encoder(chunk)
        if latent_avg is not None:
            w_plus = w_plus + latent_avg.to(w_plus).reshape(-1, w_plus.shape[-1]).expand(w_plus.shape[1], -1)[None]
        codes.append(w_plus[:, 0] if reduce == "first" else w_plus.mean(dim=1))
    return torch.cat(codes)


@dataclass
class E4EAnchorEncoder:
    """``personalize.inversion.AnchorEncoder``: frames (N,3,R,R) [-1,1] -> W anchors (N, 512)."""

    encoder: Encoder4Editing
    latent_avg: torch.Tensor | None
    reduce: AnchorReduce = "first"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return encode_w_anchors(self.encoder, images, self.latent_avg, self.reduce)


# ----------------------------------------------------------------------------------------- loading
E4E_HINT = ("Use the official file: e4e_ffhq_encode.pt (encoder4editing) for personalization, "
            "e4e-voxceleb.pt (HyperReenact) for the one-shot modes.")


def load_e4e(path: str | Path, device: torch.device | str = "cpu") -> tuple[Encoder4Editing, torch.Tensor | None]:
    """Load an official e4e checkpoint -> (encoder in eval mode, latent_avg or None).

    Layouts: the pSp training checkpoint (``e4e_ffhq_encode.pt``: ``state_dict`` with ``encoder.*``
    and ``decoder.*`` keys, ``latent_avg`` (n_styles, 512) or (512,), ``opts``) and HyperReenact's
    ``e4e-voxceleb.pt`` (``['e']`` = the encoder's own state_dict). The number of styles (hence 256
    or 1024) is read from the tensors.
    """
    path = Path(path)
    what = "an e4e encoder checkpoint"
    ckpt = load_torch_file(path, what, E4E_HINT)
    if isinstance(ckpt, dict) and "e" in ckpt:
        tensors = tensor_dict(ckpt, path.name, what, E4E_HINT, key="e")
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict):
        tensors = tensor_dict(ckpt, path.name, what, E4E_HINT, key="state_dict", strip_prefix="encoder.")
    else:
        raise CheckpointError(f"{path.name} has neither an 'e' nor a 'state_dict' entry; it is not {what}.", E4E_HINT)
    count = len({k.split(".")[1] for k in tensors if k.startswith("styles.")})
    resolution = {14: 256, 18: 1024}.get(count)
    if resolution is None:
        opts = plain_options(ckpt.get("opts")) if isinstance(ckpt, dict) else None
        size = opts.get("stylegan_size") if isinstance(opts, dict) else None
        raise CheckpointError(f"{path.name}: {count} style blocks (stylegan_size {size}); the studio reads e4e "
                              "encoders for 256 px (14 styles) or 1024 px (18 styles) generators.", E4E_HINT)
    with torch.device("meta"):  # the file's tensors are used as they are (no init, no copy)
        encoder = Encoder4Editing(resolution)
    load_checked(encoder, tensors, path.name, what, E4E_HINT)
    latent_avg = ckpt.get("latent_avg") if isinstance(ckpt, dict) else None
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.shape[-1] != 512 or \
                latent_avg.numel() not in (512, 512 * encoder.style_count):
            raise CheckpointError(f"{path.name}: 'latent_avg' has an unexpected shape "
                                  f"{tuple(getattr(latent_avg, 'shape', ()))}; expected (512,) or "
                                  f"({encoder.style_count}, 512).", E4E_HINT)
        latent_avg = latent_avg.float().to(device)
    return encoder.to(device).eval().requires_grad_(False), latent_avg
