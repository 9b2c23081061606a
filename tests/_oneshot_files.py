"""The official one-shot weights files, written in their official formats with the reference filled weights.

Why real formats and full-size networks: the CLI flow must load exactly what a user imports
(``torch.save`` dicts with the official keys, Lightning checkpoints, FLAME's chumpy pickle).
The values come from ``../shared/reference/oneshot/fill_weights.py`` (random but deterministic);
FLAME's arrays are synthetic (its real model needs a registration). Files are written once per
test session into one folder that serves as ``STUDIO_CACHE_DIR`` (file names from the registry).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from studio.weights import REGISTRY
from tests._diffusionact_helpers import (filled_state, lightning_checkpoint, synthetic_embedding, synthetic_flame,
                                         write_embedding_npy, write_flame_pkl)
from tests._oneshot_helpers import filled_network


def _target(folder: Path, name: str) -> Path:
    return folder / REGISTRY[name].filename


def write_voxceleb_files(folder: Path, names: set[str]) -> None:
    """HyperReenact's and latent-directions' files among ``names`` (registry names)."""
    sd = lambda which: filled_network(which).state_dict()  # noqa: E731
    writers = {
        "stylegan2-voxceleb": lambda: {"g_ema": sd("generator")},
        "e4e-voxceleb": lambda: {"e": sd("e4e")},
        "deca": lambda: {"E_flame": sd("deca")},
        "arcface-irse50": lambda: {k.removeprefix("facenet."): v for k, v in sd("arcface").items()},
        "hyperreenact-net": lambda: {"state_dict": {f"hypernet.{k}": v for k, v in sd("hypernet").items()}},
        "directions-a": lambda: {"A_matrix": sd("a_matrix"), "learned_directions": 15, "shift_scale": 6.0,
                                 "w_plus": True, "num_layers_shift": 8, "shift_dim": 512},
    }
    for name in sorted(names & set(writers)):
        if not _target(folder, name).is_file():
            torch.save(writers[name](), _target(folder, name))


def write_diffusionact_files(folder: Path, official_landmarks: bool) -> None:
    """DiffusionAct's model file (+ with ``official_landmarks``: gaze, EMOCA, a synthetic FLAME)."""
    from optimize.nets.diffae import DiffAELitModel
    from optimize.nets.emoca import EmocaEncoders
    from optimize.nets.gaze import GazeNetwork
    from optimize.nets.reenactment_encoder import ReenactmentEncoder

    target = _target(folder, "diffusionact-net")
    if not target.is_file():
        torch.save({"state_dict_diff": filled_state(DiffAELitModel), "state_dict_net": filled_state(ReenactmentEncoder),
                    "best_val_loss": 0.1}, target)
    if not official_landmarks or _target(folder, "flame").is_file():
        return
    torch.save({"model_state": filled_state(GazeNetwork)}, _target(folder, "gaze-xgaze"))
    emoca = {f"deca.{k}": v for k, v in filled_state(lambda: EmocaEncoders("none")).items()}
    lightning_checkpoint(emoca, _target(folder, "emoca-v2"))
    rng = np.random.default_rng(0)
    write_flame_pkl(synthetic_flame(rng), _target(folder, "flame"))
    write_embedding_npy(synthetic_embedding(rng), _target(folder, "flame-landmarks"))
