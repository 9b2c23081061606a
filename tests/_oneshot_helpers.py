"""Shared pieces of the one-shot golden tests: goldens, key listings, filled networks (built once).

The networks are filled with ``../shared/reference/oneshot/fill_weights.py`` (imported by path,
never copied into the project) under their official names, exactly as the goldens were made. Each
network is built on the ``meta`` device and takes the filled tensors as they are (no random init,
no copy), once per test process (``lru_cache``), and shared by the HyperReenact and directions
tests (the goldens use the same filled generator, DECA and e4e for both).
"""
from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from tests.conftest import REFERENCE

ONESHOT = REFERENCE / "oneshot"


@lru_cache(maxsize=1)
def fill_weights() -> Any:
    spec = importlib.util.spec_from_file_location("oneshot_fill_weights", ONESHOT / "fill_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def golden(name: str) -> dict[str, Any]:
    """{array name: torch tensor or numpy uint8 array, 'meta': dict} of golden_<name>.npz."""
    data = np.load(ONESHOT / f"golden_{name}.npz")
    out: dict[str, Any] = {"meta": json.loads(str(data["meta_json"]))}
    for key in data.files:
        if key != "meta_json":
            arr = data[key]
            out[key] = arr if arr.dtype == np.uint8 else torch.from_numpy(arr)
    return out


@lru_cache(maxsize=None)
def key_listing(file: str, module: str) -> dict[str, Any]:
    """The block of keys/<file>.json named ``module``: {'keys': {name: shape}, 'profile': ...}."""
    spec = json.loads((ONESHOT / "keys" / f"{file}.json").read_text())
    for block in spec["modules"]:
        if block["name"] == module:
            return block
    raise KeyError(module)


def shapes_of(module: torch.nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def filled_state_dict(file: str, module: str, seed: int = 0) -> dict[str, torch.Tensor]:
    block = key_listing(file, module)
    return fill_weights().fill_state_dict({k: tuple(v) for k, v in block["keys"].items()}, seed, block["profile"])


def build_filled(factory, file: str, module: str) -> torch.nn.Module:
    """factory() built on meta, then the filled tensors assigned (strict)."""
    with torch.device("meta"):
        net = factory()
    net.load_state_dict(filled_state_dict(file, module), strict=True, assign=True)
    return net.eval().requires_grad_(False)


@lru_cache(maxsize=None)
def filled_network(which: str) -> torch.nn.Module:
    """One filled official-weights network per name, built once per process."""
    from optimize.nets.arcface import ArcFaceEncoder
    from optimize.nets.deca import DecaResnetEncoder
    from optimize.nets.direction_matrix import DirectionMatrix
    from optimize.nets.hypernet import HyperNetwork
    from optimize.nets.stylegan2_rosinality import RosinalityGenerator
    from personalize.encoders.e4e import Encoder4Editing

    table = {
        "arcface": (ArcFaceEncoder, "hyperreenact_arcface", "facenet"),
        "deca": (DecaResnetEncoder, "hyperreenact_deca_E_flame", "E_flame"),
        "e4e": (lambda: Encoder4Editing(256), "hyperreenact_e4e", "e4e"),
        "hypernet": (HyperNetwork, "hyperreenact_hypernet", "hypernet"),
        "generator": (RosinalityGenerator, "hyperreenact_generator", "g_ema"),
        "a_matrix": (DirectionMatrix, "directions", "A_matrix"),
    }
    factory, file, module = table[which]
    return build_filled(factory, file, module)


def hyperreenact_model():
    from optimize.backends.hyperreenact import HyperReenactModel

    with torch.device("meta"):
        model = HyperReenactModel()
    for part, name in (("arcface", "arcface"), ("deca", "deca"), ("e4e", "e4e"), ("hypernet", "hypernet"),
                       ("generator", "generator")):
        setattr(model, part, filled_network(name))
    model.truncation_target = golden("hyperreenact")["in_trunc"].clone()
    return model.eval()


def directions_model():
    from optimize.backends.directions import DirectionsModel

    with torch.device("meta"):
        model = DirectionsModel()
    for part, name in (("deca", "deca"), ("e4e", "e4e"), ("a_matrix", "a_matrix"), ("generator", "generator")):
        setattr(model, part, filled_network(name))
    model.truncation_target = golden("directions")["in_trunc"].clone()
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert tuple(a.shape) == tuple(b.shape), (tuple(a.shape), tuple(b.shape))
    return float((a.float() - b.float()).abs().max())


# Tolerances: README section 3 (2-thread vs 1-thread differences of the official code) x 10, and
# a floor for arrays the official code computes bit-identically but that pass through a warp whose
# float32 grid arithmetic differs from kornia's by ~1e-6 px (DECA crop).
TOL = {
    "deca_crop224": 3e-5,          # observed 0 between threads; our affine_grid vs kornia's grid: 8.5e-6
    "deca_params": 3.4e-5, "deca_f_pose": 3.4e-5, "e4e_codes": 3.4e-5,
    "hyp_f_combined": 1.5e-4, "delta": 9.2e-6,
    "g_img_plain": 3.4e-5, "g_img_trunc": 1.2e-4, "g_img_deltas": 1.2e-4, "full_img": 9.4e-5,
    "dir_deca": 8.4e-6, "angles": 2.3e-4, "shift_vec": 1.4e-4,
    "A_shift": 1.5e-5, "latents": 1.5e-5, "img_shifted": 1.1e-4, "img_src": 1.1e-4,
}
