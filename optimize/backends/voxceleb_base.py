"""What HyperReenact and latent-directions share: the VoxCeleb StyleGAN2, e4e, DECA and truncation.

Both official pipelines invert the source with the 256 px VoxCeleb e4e (raw codes, no latent_avg),
read DECA's E_flame on 224 px crops, and render with truncation psi 0.7 toward the generator's mean
latent, with the stored noise. The official mean latent is drawn unseeded on every run; ours is
``mean_latent(4096, seed=2000)`` (the reference goldens' target).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from optimize.backends.base import OneShotBackend, require_files
from optimize.nets.deca import DecaResnetEncoder
from optimize.nets.stylegan2_rosinality import RosinalityGenerator
from personalize.encoders.e4e import Encoder4Editing

TRUNCATION = 0.7
TRUNCATION_SAMPLES = 4096
TRUNCATION_SEED = 2000


class VoxCelebComposition(nn.Module):
    """Base of the one-shot compositions: ``deca``, ``e4e``, ``generator``, ``truncation_target``."""

    def __init__(self) -> None:
        super().__init__()
        self.deca = DecaResnetEncoder()
        self.e4e = Encoder4Editing(256)
        self.generator = RosinalityGenerator(256, 512, 8, channel_multiplier=1)
        self.register_buffer("truncation_target", torch.zeros(1, 512))
        self.truncation = TRUNCATION

    @torch.no_grad()
    def init_truncation_target(self, n: int = TRUNCATION_SAMPLES, seed: int = TRUNCATION_SEED) -> None:
        """Set the truncation target to the generator's seeded mean latent (call after loading weights)."""
        self.truncation_target.copy_(self.generator.mean_latent(n, seed))

    @torch.no_grad()
    def render(self, codes: torch.Tensor, deltas: list[torch.Tensor | None] | None = None) -> torch.Tensor:
        """W+ codes (B, 14, 512) (+ weight deltas) -> images (B, 3, 256, 256), truncated, fixed noise."""
        images, _ = self.generator(codes, deltas, self.truncation, self.truncation_target)
        return images


class VoxCelebBackend(OneShotBackend):
    """What the HyperReenact and directions backends share: one composition (``model``), loaded from
    the official files by registry name; subclasses set ``info`` and ``build`` (the composition
    builder of ``optimize.nets.official_checkpoints``)."""

    def __init__(self, model: VoxCelebComposition) -> None:
        self.model = model

    @staticmethod
    def build(files, device: torch.device | str) -> VoxCelebComposition:  # noqa: ANN001 - OneShotWeights
        raise NotImplementedError

    @classmethod
    def load(cls, weights: Mapping[str, Path], device: torch.device | str = "cpu",
             **options: object) -> "VoxCelebBackend":
        from optimize.nets.official_checkpoints import OneShotWeights

        require_files(cls.info, weights, cls.info.weights)
        files = OneShotWeights(generator=weights["stylegan2-voxceleb"], e4e=weights["e4e-voxceleb"],
                               deca=weights["deca"], arcface=weights.get("arcface-irse50"),
                               hypernetwork=weights.get("hyperreenact-net"), a_matrix=weights.get("directions-a"))
        return cls(cls.build(files, device))

    @property
    def device(self) -> torch.device:
        return self.model.truncation_target.device
