"""DiffusionAct one-shot re-enactment (Bounareli et al.), composed as the official inference runs it.

Per source (once; the result is cached by the caller):
  conditioning image of the source itself -> z_s = E_r(source, stickman_s)
  x_T = DDIM inversion of the source in 50 steps with the EMA UNet conditioned on z_s.
Per batch of driving frames:
  conditioning images (landmarks of the source's FLAME shape in the frame's pose, expression
  and camera, plus gaze) -> z_r = E_r(source, stickman_t) -> DDIM render from the cached x_T in
  20 steps with the fine-tuned (non-EMA) UNet conditioned on z_r.

Speed (the paper reports 1.7 s per frame): frames are batched (x_T and the source are broadcast),
the inversion is never repeated (a take caches it), and the render step count is a parameter
(``bench/oneshot.py --diffusion-steps`` measures it against quality; ``INFO.step_presets``).

Precision: the official configuration runs the UNet under CUDA fp16 autocast (``conf.fp16 =
True``; the encoders stay fp32). ``precision="auto"`` does the same on CUDA and stays fp32 on the
CPU; "fp32" and "fp16" force it (fp16 needs CUDA).

``prepare_source_official`` / ``reenact_official`` run the whole official recipe from images and
detector landmarks; ``DiffusionActModel`` alone takes ready conditioning images (e.g. drawn from
other landmarks). Images are (B,3,256,256) in [-1, 1] throughout.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Mapping

import torch
from torch import nn

from optimize.backends.base import BackendInfo, FaceBatch, OneShotBackend, SourceState as StateTensors, require_files
from optimize.ddim import DDIMSchedule, StepCallback
from optimize.face_crops import deca_crop
from optimize.nets.diffae import DiffAELitModel, DiffAEUNet
from optimize.nets.emoca import EmocaEncoders
from optimize.nets.flame import FlameLandmarks, project_to_crop
from optimize.nets.gaze import GazeNetwork
from optimize.nets.reenactment_encoder import ReenactmentEncoder
from optimize.stickman import draw_stickman, estimate_gaze, gaze_points

INVERSION_STEPS = 50
RENDER_STEPS = 20


@lru_cache(maxsize=16)
def schedule(steps: int) -> DDIMSchedule:
    """The ``steps``-step DDIM coefficients, built once per step count."""
    return DDIMSchedule(steps)


@dataclass
class SourceState:
    """The once-per-source results; ``to_tensors`` gives what a take stores.

    image (1,3,H,W) [-1,1]; x_T (1,3,H,W) its DDIM inversion; z (1,512) its reenactment code;
    shape (1,100) its EMOCA shape code (None when the conditioning does not come from FLAME).
    """

    image: torch.Tensor
    x_T: torch.Tensor
    z: torch.Tensor
    shape: torch.Tensor | None = None
    inversion_steps: int = INVERSION_STEPS

    def to_tensors(self) -> dict[str, torch.Tensor]:
        out = {"image": self.image, "x_T": self.x_T, "z": self.z,
               "inversion_steps": torch.tensor(self.inversion_steps)}
        if self.shape is not None:
            out["shape"] = self.shape
        return {k: v.detach().cpu().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], device: str | torch.device = "cpu") -> "SourceState":
        return cls(image=tensors["image"].to(device), x_T=tensors["x_T"].to(device), z=tensors["z"].to(device),
                   shape=tensors["shape"].to(device) if "shape" in tensors else None,
                   inversion_steps=int(tensors.get("inversion_steps", torch.tensor(INVERSION_STEPS))))


class EmocaConditioner(nn.Module):
    """The official conditioning path: EMOCA codes + FLAME landmarks + gaze -> stickman images.

    ``images`` (B,3,256,256) [-1,1] aligned frames; ``lm68`` (B,68,2) their detector landmarks (px).
    """

    def __init__(self, emoca: EmocaEncoders, flame: FlameLandmarks, gaze: GazeNetwork) -> None:
        super().__init__()
        self.emoca, self.flame, self.gaze = emoca, flame, gaze

    @torch.no_grad()
    def codes(self, images: torch.Tensor, lm68: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.emoca(deca_crop(images, lm68))

    @torch.no_grad()
    def landmarks(self, codes: dict[str, torch.Tensor], shape: torch.Tensor | None = None) -> torch.Tensor:
        """FLAME's 68 landmarks (B,68,2) in the frames' 224-px crops, with ``shape`` (1|B,100) if given."""
        b = codes["exp"].shape[0]
        shape = codes["shape"] if shape is None else shape.expand(b, -1)
        return project_to_crop(self.flame(shape, codes["exp"], codes["pose"]), codes["cam"])

    @torch.no_grad()
    def forward(self, images: torch.Tensor, lm68: torch.Tensor, source_shape: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(stickman images (B,3,256,256) [-1,1], EMOCA codes of the frames)."""
        codes = self.codes(images, lm68)
        lm3d = self.landmarks(codes, source_shape)
        pitch_yaw, _ = estimate_gaze(self.gaze, images, lm68)
        right, left = gaze_points(pitch_yaw, lm3d)
        return draw_stickman(lm3d, right, left).to(images.device), codes


class DiffusionActModel(nn.Module):
    """Source inversion and batched frame rendering with DiffAE + the reenactment encoder."""

    def __init__(self, diffae: DiffAELitModel, encoder: ReenactmentEncoder, precision: str = "auto") -> None:
        super().__init__()
        if precision not in ("auto", "fp32", "fp16"):
            raise ValueError(f"precision must be auto, fp32 or fp16, not {precision!r}")
        self.diffae, self.encoder, self.precision = diffae, encoder, precision

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        fp16 = self.precision == "fp16" or (self.precision == "auto" and device.type == "cuda")
        if fp16 and device.type != "cuda":
            raise ValueError("fp16 autocast needs a CUDA device; use precision='fp32' on the CPU")
        return torch.autocast("cuda", dtype=torch.float16) if fp16 else contextlib.nullcontext()

    def _eps(self, unet: DiffAEUNet, z: torch.Tensor):  # noqa: ANN202 - an EpsFn
        def eps(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            with self._autocast(x.device):
                return unet(x, t, z)
        return eps

    @torch.no_grad()
    def prepare_source(self, image: torch.Tensor, conditioning: torch.Tensor, *, steps: int = INVERSION_STEPS,
                       shape: torch.Tensor | None = None, on_step: StepCallback | None = None) -> SourceState:
        """Invert the source (1,3,H,W) with its own conditioning image (1,3,H,W): EMA UNet, ``steps`` steps."""
        z = self.encoder(image, conditioning)
        x_t = schedule(steps).invert(self._eps(self.diffae.ema_model, z), image, on_step)
        return SourceState(image=image, x_T=x_t, z=z, shape=shape, inversion_steps=steps)

    @torch.no_grad()
    def reenact(self, source: SourceState, conditioning: torch.Tensor, *, steps: int = RENDER_STEPS,
                on_step: StepCallback | None = None) -> torch.Tensor:
        """Render B frames (B,3,H,W) [-1,1] from their conditioning images (B,3,H,W) with the fine-tuned UNet."""
        b = conditioning.shape[0]
        z = self.encoder(source.image.expand(b, -1, -1, -1), conditioning)
        return schedule(steps).sample(self._eps(self.diffae.model, z), source.x_T.expand(b, -1, -1, -1), on_step)


Conditioner = Callable[..., "tuple[torch.Tensor, dict[str, torch.Tensor]]"]


@torch.no_grad()
def prepare_source_official(model: DiffusionActModel, conditioner: Conditioner, image: torch.Tensor,
                            lm68: torch.Tensor, *, steps: int = INVERSION_STEPS,
                            on_step: StepCallback | None = None) -> SourceState:
    """The official source step: its own conditioning image (own FLAME shape), then the inversion.

    image (1,3,256,256) [-1,1], lm68 (1,68,2) its detector landmarks. The source's EMOCA shape code
    is kept in the state: every frame's landmarks are drawn with it.
    """
    stickman, codes = conditioner(image, lm68)
    return model.prepare_source(image, stickman, steps=steps, shape=codes.get("shape"), on_step=on_step)


@torch.no_grad()
def reenact_official(model: DiffusionActModel, conditioner: Conditioner, source: SourceState,
                     frames: torch.Tensor, lm68: torch.Tensor, *, steps: int = RENDER_STEPS,
                     on_step: StepCallback | None = None) -> torch.Tensor:
    """The official per-frame step for a batch: frames (B,3,256,256) [-1,1] + landmarks (B,68,2) -> (B,3,256,256)."""
    stickman, _ = conditioner(frames, lm68, source.shape)
    return model.reenact(source, stickman, steps=steps, on_step=on_step)


INFO = BackendInfo(
    name="diffusionact",
    title="DiffusionAct (one-shot)",
    summary="one source photo, no personalization; keeps hair, accessories and background; slow "
            "(a diffusion render per frame: 20 steps, 10 with the draft preset); 256 px face; "
            "FLAME (free registration) or MediaPipe landmarks; official weights (research only)",
    output="images", needs_personalization=False, resolution=256, crop="ffhq",
    weights=("diffusionact-net",),
    landmark_weights=("gaze-xgaze", "emoca-v2", "flame", "flame-landmarks"),
    landmark_sources=("flame", "mediapipe"),
    # 'draft' is chosen a priori (half the official steps), not measured with the real weights: a
    # user who has them gets the real LPIPS-to-20-steps figure per step count from bench/oneshot.py.
    step_presets={"standard": RENDER_STEPS, "draft": 10},
    default_steps=RENDER_STEPS)


class DiffusionActBackend(OneShotBackend):
    """DiffusionAct behind the backend interface.

    ``landmarks='flame'``: the official conditioning (EMOCA + FLAME + gaze network);
    ``'mediapipe'``: ``optimize.mediapipe_stickman`` (not the official path; no FLAME, no gaze
    network). The source state is the inversion (x_T), the source's code and image, its EMOCA
    shape (flame) or its MediaPipe mesh (mediapipe).
    """

    info = INFO

    def __init__(self, model: DiffusionActModel, conditioner: EmocaConditioner | None, *,
                 steps: int = RENDER_STEPS, inversion_steps: int = INVERSION_STEPS) -> None:
        schedule(steps), schedule(inversion_steps)       # refuse step counts DDIM cannot space, early
        self.model, self.conditioner = model, conditioner
        self.steps, self.inversion_steps = int(steps), int(inversion_steps)

    @classmethod
    def load(cls, weights: Mapping[str, Path], device: torch.device | str = "cpu", *,
             landmarks: str = "flame", steps: int = RENDER_STEPS, inversion_steps: int = INVERSION_STEPS,
             precision: str = "auto", **options: object) -> "DiffusionActBackend":
        from optimize.nets.diffusionact_checkpoints import load_diffusionact_model, load_emoca_encoders, load_gaze_network
        from optimize.nets.flame import FlameLandmarks, read_flame_model, read_landmark_embedding

        if landmarks not in INFO.landmark_sources:
            raise ValueError(f"landmarks must be one of {INFO.landmark_sources}, not {landmarks!r}")
        require_files(INFO, weights, INFO.weights_for(landmarks))
        diffae, encoder, _ = load_diffusionact_model(weights["diffusionact-net"])
        conditioner = None
        if landmarks == "flame":
            emoca, _ = load_emoca_encoders(weights["emoca-v2"])
            flame = FlameLandmarks(read_flame_model(weights["flame"]), read_landmark_embedding(weights["flame-landmarks"]))
            conditioner = EmocaConditioner(emoca, flame, load_gaze_network(weights["gaze-xgaze"])).to(device).eval()
        model = DiffusionActModel(diffae, encoder, precision=precision).to(device).eval()
        return cls(model, conditioner, steps=steps, inversion_steps=inversion_steps)

    @property
    def device(self) -> torch.device:
        return next(self.model.encoder.parameters()).device

    @property
    def landmarks(self) -> str:
        return "flame" if self.conditioner is not None else "mediapipe"

    @property
    def settings(self) -> dict[str, object]:
        fp16 = self.model.precision == "fp16" or (self.model.precision == "auto" and self.device.type == "cuda")
        return {"landmarks": self.landmarks, "steps": self.steps, "inversion_steps": self.inversion_steps,
                "unet_precision": "fp16" if fp16 else "fp32"}

    @property
    def source_settings(self) -> dict[str, object]:
        """The inversion does not depend on the render step count."""
        return {k: v for k, v in self.settings.items() if k != "steps"}

    def prepare_source(self, source: FaceBatch, on_step: StepCallback | None = None) -> StateTensors:
        image, lm68 = source.images.to(self.device), source.lm68.to(self.device)
        if self.conditioner is not None:
            state = prepare_source_official(self.model, self.conditioner, image, lm68, steps=self.inversion_steps,
                                            on_step=on_step)
            return state.to_tensors()
        from optimize.mediapipe_stickman import conditioning_from_mesh

        if source.mesh is None:
            raise ValueError("the MediaPipe conditioning needs the source's mesh")
        stickman = conditioning_from_mesh(source.mesh, source.lm68).to(self.device)
        state = self.model.prepare_source(image, stickman, steps=self.inversion_steps, on_step=on_step)
        return {**state.to_tensors(), "mesh": source.mesh.detach().float().cpu()}

    def reenact(self, state: StateTensors, frames: FaceBatch, on_step: StepCallback | None = None) -> torch.Tensor:
        source = SourceState.from_tensors(state, self.device)
        images, lm68 = frames.images.to(self.device), frames.lm68.to(self.device)
        if self.conditioner is not None:
            return reenact_official(self.model, self.conditioner, source, images, lm68, steps=self.steps,
                                    on_step=on_step)
        from optimize.mediapipe_stickman import conditioning_from_mesh, transfer_shape

        if frames.mesh is None or frames.reference is None:
            raise ValueError("the MediaPipe conditioning needs the frames' meshes and the driving reference face")
        faces = transfer_shape(state["mesh"], frames.mesh, frames.reference)
        stickman = conditioning_from_mesh(faces, frames.lm68).to(self.device)
        return self.model.reenact(source, stickman, steps=self.steps, on_step=on_step)

    def batch_size(self) -> int:
        """The UNet dominates: 8 frames per call on a GPU, 1 on the CPU (a 256-px call takes seconds there)."""
        return 8 if self.device.type == "cuda" else 1
