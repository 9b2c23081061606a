"""Test helpers for DiffusionAct: filled official weights, fake modules for official pickles, FLAME files.

Why fakes: the official files pickle objects of classes we do not install (PyTorch-Lightning's
``AttributeDict``, chumpy's ``Ch``). To write files in those formats, the tests register stand-in
modules under the official names only while pickling (``fake_modules``), then remove them, so the
studio's reader can never import them.
"""
from __future__ import annotations

import contextlib
import io
import pickle
import struct
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import scipy.sparse
import torch

from optimize.nets.diffae import DiffAEConfig
from personalize.torch_files import build_checked
from tests._oneshot_helpers import fill_weights

TINY = DiffAEConfig(image_size=32, model_channels=32, channel_mult=(1, 2), enc_channel_mult=(1, 2, 2),
                    num_res_blocks=1, attention_resolutions=(16,), embed_channels=64, style_channels=64,
                    sample_size=2)


def names_and_shapes(factory: Callable[[], torch.nn.Module]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in factory().state_dict().items()}


def filled_state(factory: Callable[[], torch.nn.Module], seed: int = 0) -> dict[str, torch.Tensor]:
    return fill_weights().fill_state_dict(names_and_shapes(factory), seed, "plain")


def filled(factory: Callable[[], torch.nn.Module], seed: int = 0) -> torch.nn.Module:
    """``factory()`` with the reference weights of ``seed`` (official names), eval mode."""
    module, _ = build_checked(factory, filled_state(factory, seed), "filled", "the network", "")
    return module


@contextlib.contextmanager
def fake_modules(classes: dict[str, type]) -> Iterator[None]:
    """Register ``{"pkg.mod.Class": cls}`` so pickle can name them; restore ``sys.modules`` after."""
    saved = dict(sys.modules)
    for full, cls in classes.items():
        module_name, _, name = full.rpartition(".")
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
        for i in range(1, len(parts)):
            setattr(sys.modules[".".join(parts[:i])], parts[i], sys.modules[".".join(parts[:i + 1])])
        cls.__module__, cls.__qualname__ = module_name, name
        setattr(sys.modules[module_name], name, cls)
    try:
        yield
    finally:
        for key in list(sys.modules):
            if key not in saved:
                del sys.modules[key]


class AttributeDict(dict):
    """Stand-in for PyTorch-Lightning's hyper-parameter dict (registered under its real name)."""


class ChumpyCh:
    """Stand-in for ``chumpy.ch.Ch``: pickles its attribute dict, whose ``x`` is the array."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self._dirty_vars: set = set()

    def __getstate__(self) -> dict:
        return dict(self.__dict__)


def lightning_checkpoint(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    """A Lightning-style checkpoint with AttributeDict hyper-parameters and callback state."""
    with fake_modules({"pytorch_lightning.utilities.parsing.AttributeDict": AttributeDict}):
        torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.4.5",
                    "state_dict": state_dict, "hparams_name": "conf",
                    "hyper_parameters": AttributeDict(img_size=256, net_ch=128, fp16=True),
                    "callbacks": {AttributeDict: {"best_model_score": torch.tensor(0.5)}},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "params": [0]}]}]}, path)


def synthetic_flame(rng: np.random.Generator, n_vertices: int = 60, n_faces: int = 80) -> dict[str, np.ndarray]:
    """Random arrays in FLAME 2020's structure (5 joints, 400 blend shapes, 36 pose correctives)."""
    v = rng.normal(0, 0.05, (n_vertices, 3))
    jreg = np.abs(rng.normal(size=(5, n_vertices))) * (rng.random((5, n_vertices)) < 0.2)
    jreg[:, 0] += 1e-3
    jreg /= jreg.sum(1, keepdims=True)
    weights = rng.random((n_vertices, 5))
    return {"v_template": v, "shapedirs": rng.normal(0, 1e-3, (n_vertices, 3, 400)),
            "posedirs": rng.normal(0, 1e-3, (n_vertices, 3, 36)), "J_regressor": jreg,
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], dtype=np.int64),
            "weights": weights / weights.sum(1, keepdims=True),
            "f": rng.integers(0, n_vertices, (n_faces, 3)).astype(np.uint32),
            "J": rng.normal(size=(5, 3)), "bs_style": "lbs", "bs_type": "lrotmin"}


def synthetic_embedding(rng: np.random.Generator, n_faces: int = 80) -> dict[str, np.ndarray]:
    def bary(*shape: int) -> np.ndarray:
        b = rng.random((*shape, 3))
        return b / b.sum(-1, keepdims=True)

    return {"static_lmk_faces_idx": rng.integers(0, n_faces, 51), "static_lmk_bary_coords": bary(51),
            "dynamic_lmk_faces_idx": rng.integers(0, n_faces, (79, 17)), "dynamic_lmk_bary_coords": bary(79, 17),
            "full_lmk_faces_idx": rng.integers(0, n_faces, (1, 68)), "full_lmk_bary_coords": bary(1, 68)}


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes bytes as Python 2 ``str`` opcodes, as the Python-2 FLAME release did (array data,
    names): read back with ``encoding='latin1'`` they become text, which the reader must handle."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def save_bytes(self, obj: bytes) -> None:
        n = len(obj)
        self.write((pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def write_flame_pkl(arrays: dict[str, Any], path: Path) -> None:
    """FLAME's official layout: chumpy ``shapedirs``, scipy-sparse ``J_regressor``, protocol 2,
    Python-2 strings."""
    obj = dict(arrays)
    with fake_modules({"chumpy.ch.Ch": ChumpyCh}):
        obj["shapedirs"] = ChumpyCh(arrays["shapedirs"])
        obj["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
        buffer = io.BytesIO()
        _Python2Pickler(buffer, protocol=2).dump(obj)
        path.write_bytes(buffer.getvalue())


def write_embedding_npy(embedding: dict[str, np.ndarray], path: Path) -> None:
    np.save(path, np.array(embedding, dtype=object), allow_pickle=True)
