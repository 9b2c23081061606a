"""Which weights each re-enactment mode needs: read from the modes' own declarations.

Why here and not a second table: every mode declares the registry names it reads
(``optimize.backends``: ``BackendInfo.weights``, ``landmark_weights``, ``setup_weights``);
``studio-cli models fetch --backend X``, the Models dialog and the mode selector (missing weights
-> the Models dialog) all ask this module, so they agree with what the job will load, and none of
them builds a network.
"""
from __future__ import annotations

from typing import Literal

from optimize.backends import BACKENDS as _MODES
from personalize.errors import UserError
from studio.weights.registry import get_entry

Landmarks = Literal["flame", "mediapipe"]

BACKENDS: tuple[str, ...] = tuple(_MODES)


def files_for(backend: str, landmarks: Landmarks = "flame") -> tuple[str, ...]:
    """Registry names ``backend`` needs, in fetch order.

    ``personal`` is personalization: the FFHQ generator, LPIPS, and the FFHQ e4e encoder (for
    ``--anchors encoder``). ``landmarks='mediapipe'`` drops the files of DiffusionAct's official
    landmark path (EMOCA, FLAME, the gaze network).
    """
    if backend not in _MODES:
        raise UserError(f"unknown backend {backend!r}", f"Known backends: {', '.join(BACKENDS)}.")
    if landmarks not in ("flame", "mediapipe"):
        raise UserError(f"unknown landmarks source {landmarks!r}", "Use 'flame' or 'mediapipe'.")
    info = _MODES[backend]
    return info.setup_weights + info.weights_for(landmarks)


def backends_using(name: str) -> tuple[str, ...]:
    """The backends whose file list (with official landmarks) includes ``name``."""
    get_entry(name)  # unknown names are a UserError
    return tuple(backend for backend in BACKENDS if name in files_for(backend))
