"""Test helpers for editing: the mouth stand-in (``editing.standin``) on a face of the shared media."""
from __future__ import annotations

import numpy as np
import torch

from editing.standin import MouthWarpGenerator, make_mouth_setup
from optimize.standin import aligned_image
from tests.conftest import MEDIA


def load_aligned_face(name: str = "stone", size: int = 192) -> np.ndarray:
    """``aligned/<name>.jpg`` of the shared media as (size, size, 3) uint8 RGB."""
    return aligned_image(MEDIA / "aligned" / f"{name}.jpg", size)


def mouth_warp_generator(anchors: torch.Tensor, axis: torch.Tensor, face: str = "stone",
                         size: int = 192) -> MouthWarpGenerator:
    return MouthWarpGenerator(anchors, axis, load_aligned_face(face, size))


__all__ = ["load_aligned_face", "make_mouth_setup", "mouth_warp_generator"]
