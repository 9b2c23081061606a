"""The one interface of every re-enactment mode ("backend"): what it is, what it needs, how it runs.

Why one interface: the job, the CLI, the GUI's mode selector, rendering and export must treat the
personal generator and the one-shot systems alike. Each backend module declares a ``BackendInfo``
(name, one-line title, resolution, crop convention, the weights registry names it reads -- plain
strings, ``optimize`` never imports ``studio`` -- and whether it yields latent codes or images);
``optimize.backends`` keeps the registry.

Two kinds of output, one take format (``optimize.image_take`` and ``optimize.track``):

* ``latents``: the personal generator's per-frame optimizer (``optimize.reenact``) writes a latent
  track; frames are rendered later, so semantic edits and styles apply.
* ``images``: a one-shot backend (``OneShotBackend``) encodes its source once
  (``prepare_source``: crop, encode; the tensors it returns are cached in the take) and then
  re-enacts batches of driving frames (``reenact``); the take keeps the output crops.

Tensors: images (B,3,R,R) float32 in [-1, 1]; landmarks in the crop's pixels (pixel-index
convention: the centre of pixel 0 is 0, as the official detectors give them).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal, Mapping

import torch

from optimize.ddim import StepCallback

Output = Literal["latents", "images"]
Crop = Literal["ffhq", "landmarks68"]
"""``ffhq``: the FFHQ quad of the eyes and mouth (the studio's own alignment, ``personalize.faces``);
``landmarks68``: the official HyperReenact crop (the 68 landmarks' box, ``optimize.face_crops``)."""
SourceState = dict[str, torch.Tensor]
"""What ``prepare_source`` returns: plain tensors, so a take can cache them (safetensors)."""


@dataclass(frozen=True)
class BackendInfo:
    """What a mode is, for the job, the CLI, the mode selector and ``models fetch --backend``.

    ``weights``: registry names read at re-enactment time; ``landmark_weights``: extra names for
    the official landmark path (``landmarks='flame'``), dropped with ``landmarks='mediapipe'``;
    ``setup_weights``: files needed before the mode can run at all (personalization's).
    ``step_presets``: named render-step counts (diffusion backends), ``default_steps`` their default.
    """

    name: str
    title: str
    summary: str
    output: Output
    needs_personalization: bool
    resolution: int | None          # None: the personalized generator's own resolution
    crop: Crop
    weights: tuple[str, ...] = ()
    landmark_weights: tuple[str, ...] = ()
    setup_weights: tuple[str, ...] = ()
    landmark_sources: tuple[str, ...] = ()
    step_presets: Mapping[str, int] = field(default_factory=dict)
    default_steps: int | None = None

    def weights_for(self, landmarks: str = "flame") -> tuple[str, ...]:
        """Registry names the re-enactment itself reads with this landmark source."""
        return self.weights + (self.landmark_weights if landmarks == "flame" else ())

    @property
    def one_line(self) -> str:
        """'Title: summary' (the mode selector's line, the CLI's help)."""
        return f"{self.title}: {self.summary}"


@dataclass
class FaceBatch:
    """Face crops in a backend's crop convention, with their landmarks.

    images (B,3,R,R) [-1,1]; lm68 (B,68,2) iBUG-68 landmarks in crop pixels; mesh (B,478,3)
    MediaPipe landmarks in crop pixels (z scaled like x), for backends that read the irises;
    reference (478,3): the driving video's reference face (its most frontal frame, in that
    frame's crop pixels), for backends that transfer motion relative to it (None for a source).
    """

    images: torch.Tensor
    lm68: torch.Tensor
    mesh: torch.Tensor | None = None
    reference: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to(self, device: torch.device | str) -> "FaceBatch":
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)
        return FaceBatch(self.images.to(device), self.lm68.to(device), move(self.mesh), move(self.reference))


class OneShotBackend(ABC):
    """A backend that makes images: encode the source once, then re-enact batches of frames.

    Subclasses set ``info`` and implement ``load`` (from the official files, by registry name),
    ``prepare_source`` and ``reenact``. ``settings`` is a JSON-able dict of what changes the
    output besides the weights and the inputs (it goes into the take's fingerprint).
    """

    info: ClassVar[BackendInfo]

    @classmethod
    @abstractmethod
    def load(cls, weights: Mapping[str, Path], device: torch.device | str = "cpu",
             **options: object) -> "OneShotBackend":
        """Build the networks from the files ``weights`` maps registry names to."""

    @abstractmethod
    def prepare_source(self, source: FaceBatch, on_step: StepCallback | None = None) -> SourceState:
        """Encode the source (a batch of one) into the tensors ``reenact`` needs (cached per take)."""

    @abstractmethod
    def reenact(self, state: SourceState, frames: FaceBatch, on_step: StepCallback | None = None
                ) -> torch.Tensor:
        """Driving frames (B crops + landmarks) -> (B,3,R,R) images in about [-1, 1] (not clamped)."""

    @property
    def settings(self) -> dict[str, object]:
        return {}

    @property
    def source_settings(self) -> dict[str, object]:
        """The part of ``settings`` the source state depends on (a cached source survives the rest)."""
        return self.settings

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def batch_size(self) -> int:
        """Frames per ``reenact`` call: batching is where the speed comes from on a GPU."""
        return 8 if self.device.type == "cuda" else 2


def require_files(info: BackendInfo, weights: Mapping[str, Path], names: tuple[str, ...]) -> None:
    """A programming error (not a user's) when the job forgot to resolve a file the backend reads."""
    missing = [n for n in names if n not in weights]
    if missing:
        raise KeyError(f"{info.name} needs the weights {missing}; resolve them before loading the backend")
