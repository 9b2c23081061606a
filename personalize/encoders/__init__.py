"""Image encoders with official ``state_dict`` names: the IR-SE-50 backbone and e4e (pSp family)."""
from __future__ import annotations

from personalize.encoders.e4e import E4EAnchorEncoder, Encoder4Editing, encode_w_anchors, load_e4e

__all__ = ["E4EAnchorEncoder", "Encoder4Editing", "encode_w_anchors", "load_e4e"]
