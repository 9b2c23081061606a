"""Re-enactment modes ("backends") and their one registry.

``BACKENDS`` maps a name to its ``BackendInfo`` (what it is, what it needs, what it yields), in the
order the CLI and the GUI list them; ``load_backend`` builds a one-shot backend from the official
files (paths by weights registry name, resolved by the caller). See ``optimize.backends.base``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from optimize.backends import diffusionact, directions, hyperreenact, personal
from optimize.backends.base import BackendInfo, FaceBatch, OneShotBackend, SourceState
from personalize.errors import UserError

BACKENDS: dict[str, BackendInfo] = {module.INFO.name: module.INFO
                                    for module in (personal, hyperreenact, directions, diffusionact)}
_ONE_SHOT: dict[str, type[OneShotBackend]] = {
    "hyperreenact": hyperreenact.HyperReenactBackend,
    "directions": directions.DirectionsBackend,
    "diffusionact": diffusionact.DiffusionActBackend,
}


def backend_info(name: str) -> BackendInfo:
    """The registry entry of ``name``; a UserError listing the modes when it is unknown."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise UserError(f"Unknown re-enactment mode '{name}'.", f"Known modes: {', '.join(BACKENDS)}.") from None


def load_backend(name: str, weights: Mapping[str, Path], device: torch.device | str = "cpu",
                 **options: object) -> OneShotBackend:
    """A one-shot backend built from ``weights`` (registry name -> file), with its ``options``."""
    info = backend_info(name)
    if info.output != "images":
        raise ValueError(f"'{name}' is not a one-shot backend (it yields {info.output})")
    return _ONE_SHOT[name].load(weights, device, **options)


__all__ = ["BACKENDS", "BackendInfo", "FaceBatch", "OneShotBackend", "SourceState", "backend_info", "load_backend"]
