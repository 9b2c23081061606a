"""HyperReenact (Bounareli et al., ICCV 2023) per-frame composition as one module.

Per take: ``encode_source`` once (e4e W+ codes of the source crop, ArcFace appearance features of
the source with its landmarks). Per batch of driving frames: ``reenact`` = DECA pose features of
each frame (224 px DECA crop from the frame's landmarks) -> hypernetwork weight deltas -> the
VoxCeleb StyleGAN2 with the source codes, truncation 0.7 toward the (seeded) mean latent, fixed
noise and the deltas. This is the official ``Inference.forward_model`` with the source-side work
hoisted out of the frame loop (it does not depend on the frame), batched over frames: a batch of
B frames gives the same images as B calls with one frame.

Inputs are the official 256 px crops (``optimize.face_crops.crop_using_landmarks``) as
(B, 3, 256, 256) float in [-1, 1] and their 68 landmarks (B, 68, 2) in crop pixels. Outputs are
(B, 3, 256, 256), roughly [-1, 1], not clamped (as the generator returns them).
"""
from __future__ import annotations

from dataclasses import dataclass
import torch

from optimize.backends.base import BackendInfo, FaceBatch, SourceState
from optimize.backends.voxceleb_base import VoxCelebBackend, VoxCelebComposition
from optimize.face_crops import deca_crop
from optimize.nets.arcface import ArcFaceEncoder
from optimize.nets.hypernet import HyperNetwork


@dataclass
class HyperReenactSource:
    """What a take keeps about its source: e4e codes (1, 14, 512), ArcFace features (1, 512, 7, 7)
    and identity embedding (1, 512)."""

    codes: torch.Tensor
    f_app: torch.Tensor
    identity: torch.Tensor


class HyperReenactModel(VoxCelebComposition):
    """ArcFace + DECA E_flame + e4e (VoxCeleb, 256) + hypernetwork + VoxCeleb StyleGAN2."""

    def __init__(self) -> None:
        super().__init__()
        self.arcface = ArcFaceEncoder()
        self.hypernet = HyperNetwork()

    @torch.no_grad()
    def encode_source(self, image: torch.Tensor, lm68: torch.Tensor) -> HyperReenactSource:
        """image (1, 3, 256, 256) in [-1, 1], lm68 (1, 68, 2) crop pixels -> the source's codes."""
        identity, f_app = self.arcface(image, lm68)
        return HyperReenactSource(self.e4e(image), f_app, identity)

    @torch.no_grad()
    def pose_features(self, frames: torch.Tensor, lm68: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Driving frames -> (DECA codes (B, 236), layer4 pose features (B, 2048, 7, 7))."""
        return self.deca(deca_crop(frames, lm68))

    @torch.no_grad()
    def weight_deltas(self, source: HyperReenactSource, frames: torch.Tensor,
                      lm68: torch.Tensor) -> list[torch.Tensor | None]:
        _, f_pose = self.pose_features(frames, lm68)
        f_app = source.f_app.expand(f_pose.shape[0], -1, -1, -1)
        return self.hypernet(f_pose, f_app)

    @torch.no_grad()
    def reenact(self, source: HyperReenactSource, frames: torch.Tensor, lm68: torch.Tensor) -> torch.Tensor:
        """Driving frames (B, 3, 256, 256) [-1, 1] + landmarks (B, 68, 2) -> images (B, 3, 256, 256)."""
        deltas = self.weight_deltas(source, frames, lm68)
        return self.render(source.codes.expand(frames.shape[0], -1, -1), deltas)


INFO = BackendInfo(
    name="hyperreenact",
    title="HyperReenact (one-shot)",
    summary="one source photo, no personalization; fast (one network pass per frame); 256 px face; "
            "official VoxCeleb weights (research only)",
    output="images", needs_personalization=False, resolution=256, crop="landmarks68",
    weights=("stylegan2-voxceleb", "e4e-voxceleb", "hyperreenact-net", "arcface-irse50", "deca"))


class HyperReenactBackend(VoxCelebBackend):
    """``HyperReenactModel`` behind the backend interface; the source state is e4e codes + ArcFace features."""

    info = INFO
    model: HyperReenactModel

    @staticmethod
    def build(files, device: torch.device | str) -> HyperReenactModel:  # noqa: ANN001 - OneShotWeights
        from optimize.nets.official_checkpoints import build_hyperreenact

        return build_hyperreenact(files, device)

    def prepare_source(self, source: FaceBatch, on_step=None) -> SourceState:  # noqa: ANN001
        encoded = self.model.encode_source(source.images.to(self.device), source.lm68.to(self.device))
        return {"codes": encoded.codes, "f_app": encoded.f_app, "identity": encoded.identity}

    def reenact(self, state: SourceState, frames: FaceBatch, on_step=None) -> torch.Tensor:  # noqa: ANN001
        source = HyperReenactSource(**{k: state[k].to(self.device) for k in ("codes", "f_app", "identity")})
        return self.model.reenact(source, frames.images.to(self.device), frames.lm68.to(self.device))
