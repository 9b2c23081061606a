"""Latent-directions re-enactment (Bounareli et al., IJCV 2024 / FG 2023) per-frame composition.

Per take: ``encode_source`` once (e4e W+ codes of the source crop and its DECA pose/expression).
Per batch of driving frames: DECA of each frame -> 15-entry shift vector of (target - source)
angles, jaw and 11 expression coefficients (``optimize.nets.direction_matrix.shift_vector``) ->
A -> (B, 8, 512) added to W+ layers 0..7 of the source codes **before** the truncation (psi 0.7
toward the seeded mean latent, on all 14 layers) -> VoxCeleb StyleGAN2 with fixed noise.

Not included: the official inference optionally fine-tunes the generator on the source (200 Adam
steps, on by default); here the generator is used as loaded (the reference goldens cover that
path); a personal fine-tune can be added by the backend on top.

Inputs: 256 px crops (B, 3, 256, 256) in [-1, 1] with their 68 landmarks (B, 68, 2) in crop
pixels; outputs (B, 3, 256, 256), not clamped. Batched frames give the per-frame results.
"""
from __future__ import annotations

from dataclasses import dataclass
import torch

from optimize.backends.base import BackendInfo, FaceBatch, SourceState
from optimize.backends.voxceleb_base import VoxCelebBackend, VoxCelebComposition
from optimize.face_crops import deca_crop
from optimize.nets.deca import axis_angle_to_euler_degrees, split_deca_params
from optimize.nets.direction_matrix import DirectionMatrix, add_layer_shift, shift_vector


@dataclass
class FaceParameters:
    """DECA-derived parameters of a batch: angles (B, 3) degrees [yaw, pitch, roll], pose (B, 6), exp (B, 50)."""

    angles: torch.Tensor
    pose: torch.Tensor
    exp: torch.Tensor


@dataclass
class DirectionsSource:
    codes: torch.Tensor          # (1, 14, 512) e4e W+ codes
    parameters: FaceParameters   # the source's DECA parameters


class DirectionsModel(VoxCelebComposition):
    """DECA E_flame + e4e (VoxCeleb, 256) + direction matrix A + VoxCeleb StyleGAN2."""

    def __init__(self) -> None:
        super().__init__()
        self.a_matrix = DirectionMatrix()

    @torch.no_grad()
    def face_parameters(self, images: torch.Tensor, lm68: torch.Tensor) -> FaceParameters:
        codes, _ = self.deca(deca_crop(images, lm68))
        parts = split_deca_params(codes)
        return FaceParameters(axis_angle_to_euler_degrees(parts["pose"][:, :3]), parts["pose"], parts["exp"])

    @torch.no_grad()
    def encode_source(self, image: torch.Tensor, lm68: torch.Tensor) -> DirectionsSource:
        """image (1, 3, 256, 256) in [-1, 1], lm68 (1, 68, 2) -> codes and DECA parameters."""
        return DirectionsSource(self.e4e(image), self.face_parameters(image, lm68))

    @torch.no_grad()
    def shift(self, source: DirectionsSource, target: FaceParameters) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift vectors (B, 15), A's W+ shift (B, 8, 512))."""
        s = source.parameters
        vec = shift_vector(s.angles, target.angles, s.pose[:, 3], target.pose[:, 3], s.exp, target.exp)
        return vec, self.a_matrix(vec.to(self.a_matrix.linear.weight.device))

    @torch.no_grad()
    def reenact_latents(self, source: DirectionsSource, frames: torch.Tensor, lm68: torch.Tensor) -> torch.Tensor:
        """Shifted source codes (B, 14, 512) before truncation."""
        _, shift = self.shift(source, self.face_parameters(frames, lm68))
        return add_layer_shift(source.codes.expand(frames.shape[0], -1, -1), shift)

    @torch.no_grad()
    def reenact(self, source: DirectionsSource, frames: torch.Tensor, lm68: torch.Tensor) -> torch.Tensor:
        """Driving frames (B, 3, 256, 256) [-1, 1] + landmarks (B, 68, 2) -> images (B, 3, 256, 256)."""
        return self.render(self.reenact_latents(source, frames, lm68))


INFO = BackendInfo(
    name="directions",
    title="Latent directions (one-shot)",
    summary="one source photo, no personalization; fastest (a latent shift per frame); 256 px face; "
            "official VoxCeleb weights (research only)",
    output="images", needs_personalization=False, resolution=256, crop="landmarks68",
    weights=("stylegan2-voxceleb", "e4e-voxceleb", "deca", "directions-a"))


class DirectionsBackend(VoxCelebBackend):
    """``DirectionsModel`` behind the backend interface; the source state is its e4e codes + DECA parameters."""

    info = INFO
    model: DirectionsModel

    @staticmethod
    def build(files, device: torch.device | str) -> DirectionsModel:  # noqa: ANN001 - OneShotWeights
        from optimize.nets.official_checkpoints import build_directions

        return build_directions(files, device)

    def prepare_source(self, source: FaceBatch, on_step=None) -> SourceState:  # noqa: ANN001
        encoded = self.model.encode_source(source.images.to(self.device), source.lm68.to(self.device))
        p = encoded.parameters
        return {"codes": encoded.codes, "angles": p.angles, "pose": p.pose, "exp": p.exp}

    def reenact(self, state: SourceState, frames: FaceBatch, on_step=None) -> torch.Tensor:  # noqa: ANN001
        s = {k: v.to(self.device) for k, v in state.items()}
        source = DirectionsSource(s["codes"], FaceParameters(s["angles"], s["pose"], s["exp"]))
        return self.model.reenact(source, frames.images.to(self.device), frames.lm68.to(self.device))
