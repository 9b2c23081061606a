"""Which weights each re-enactment mode needs: one table for the CLI, the GUI and the jobs.

Why a table here and not in each backend: ``studio-cli models fetch --backend X``, the Models
dialog and the mode selector (missing weights -> the Models dialog) must all agree on the list,
and they must work without building any network.
"""
from __future__ import annotations

from typing import Literal

from personalize.errors import UserError
from studio.weights.registry import get_entry

Landmarks = Literal["flame", "mediapipe"]

_FILES: dict[str, tuple[str, ...]] = {
    "personal": ("ffhq", "lpips-alex", "e4e-ffhq"),
    "hyperreenact": ("stylegan2-voxceleb", "e4e-voxceleb", "hyperreenact-net", "arcface-irse50",
                     "deca"),
    "directions": ("stylegan2-voxceleb", "e4e-voxceleb", "deca", "directions-a"),
    "diffusionact": ("diffae-ffhq256", "diffusionact-net", "gaze-xgaze"),
}
# The official DiffusionAct draws its conditioning landmarks from EMOCA + FLAME; with
# ``--landmarks mediapipe`` it draws them from MediaPipe's landmarks instead and needs none of these.
_OFFICIAL_LANDMARK_FILES: dict[str, tuple[str, ...]] = {
    "diffusionact": ("emoca-v2", "flame", "flame-landmarks"),
}

BACKENDS: tuple[str, ...] = tuple(_FILES)


def files_for(backend: str, landmarks: Landmarks = "flame") -> tuple[str, ...]:
    """Registry names ``backend`` needs, in fetch order.

    ``personal`` is personalization: the FFHQ generator, LPIPS, and the FFHQ e4e encoder (for
    ``--anchors encoder``). ``landmarks='mediapipe'`` drops the EMOCA/FLAME files of DiffusionAct.
    """
    if backend not in _FILES:
        raise UserError(f"unknown backend {backend!r}", f"Known backends: {', '.join(BACKENDS)}.")
    if landmarks not in ("flame", "mediapipe"):
        raise UserError(f"unknown landmarks source {landmarks!r}", "Use 'flame' or 'mediapipe'.")
    extra = _OFFICIAL_LANDMARK_FILES.get(backend, ()) if landmarks == "flame" else ()
    return _FILES[backend] + extra


def backends_using(name: str) -> tuple[str, ...]:
    """The backends whose file list (with official landmarks) includes ``name``."""
    get_entry(name)  # unknown names are a UserError
    return tuple(backend for backend in BACKENDS if name in files_for(backend))
