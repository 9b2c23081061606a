"""W anchors from an e4e encoder: latent_avg added as pSp does, W+ -> W by the first style."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from personalize.encoders.e4e import E4EAnchorEncoder, encode_w_anchors
from personalize.inversion import AnchorEncoder
from tests._oneshot_helpers import golden, max_diff


class _FixedCodes(torch.nn.Module):
    """Stands in for an encoder: returns known W+ codes and records the input it was given."""

    def __init__(self, codes: torch.Tensor) -> None:
        super().__init__()
        self.codes = codes
        self.seen: list[torch.Tensor] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen.append(images)
        return self.codes[: images.shape[0]]


def test_latent_avg_and_reduction() -> None:
    codes = torch.randn(3, 18, 512)
    latent_avg = torch.randn(18, 512)
    enc = _FixedCodes(codes)
    crops = torch.rand(3, 3, 1024, 1024) * 2 - 1
    first = encode_w_anchors(enc, crops, latent_avg)
    assert torch.equal(first, codes[:, 0] + latent_avg[0])
    assert enc.seen[0].shape == (3, 3, 256, 256)               # pSp encodes 256 px inputs
    mean = encode_w_anchors(enc, crops, latent_avg, reduce="mean")
    assert max_diff(mean, (codes + latent_avg).mean(1)) < 1e-6
    flat_avg = encode_w_anchors(enc, crops, latent_avg[0])     # a (512,) latent_avg broadcasts
    assert torch.equal(flat_avg, first)
    assert torch.equal(encode_w_anchors(enc, crops, None), codes[:, 0])


def test_anchor_encoder_plugs_into_inversion_and_resizes_exactly() -> None:
    """FFHQ crops come at the generator's size (1024): they are area-averaged to e4e's 256 px input.
    A nearest x2 copy of the golden source crop averages back to the crop exactly."""
    g = golden("hyperreenact")
    enc = _FixedCodes(g["e4e_codes"])
    anchors = E4EAnchorEncoder(enc, torch.full((14, 512), 0.25))
    assert isinstance(anchors, AnchorEncoder)
    w = anchors(F.interpolate(g["src"], scale_factor=2, mode="nearest"))
    assert torch.equal(enc.seen[0], g["src"])
    assert w.shape == (1, 512) and torch.equal(w, g["e4e_codes"][:, 0] + 0.25)
