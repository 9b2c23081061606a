"""Test helpers: write pickles in the official StyleGAN2-ADA persistence format, and hostile ones.

Why we build them ourselves: the real ``ffhq.pkl`` cannot be downloaded here, and the studio must
read it without running its code. These helpers reproduce the format described in
``../shared/reference/stylegan2/README.md``: each network is pickled as a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta`` holds ``module_src``,
``class_name`` and ``state`` (the module ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``,
``_init_args``, ``_init_kwargs``, plain attributes incl. numpy scalars), kwargs as
``dnnlib.util.EasyDict``, and tensors pickled the ordinary torch way.
"""
from __future__ import annotations

import collections
import contextlib
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

FAKE_MODULE_SRC = "# training/networks.py (stand-in text; never executed by the studio)\nclass Generator: pass\n"


def _reconstruct_persistent_obj(meta: dict) -> Any:  # pragma: no cover - never called by the studio
    """What the real persistence module would do: exec ``module_src``. Only used for its name."""
    module = types.ModuleType("_imported_module_")
    exec(meta["module_src"], module.__dict__)  # noqa: S102 - demonstrates the danger in a subprocess
    return module


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
EasyDict = type("EasyDict", (dict,), {"__module__": "dnnlib.util"})


@contextlib.contextmanager
def official_modules() -> Iterator[None]:
    """Temporarily register fake ``torch_utils.persistence`` and ``dnnlib.util`` so pickle can name them."""
    names = ["torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util"]
    saved = {n: sys.modules.get(n) for n in names}
    tu, tup = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    dn, dnu = types.ModuleType("dnnlib"), types.ModuleType("dnnlib.util")
    tup._reconstruct_persistent_obj = _reconstruct_persistent_obj
    tu.persistence = tup
    dnu.EasyDict = EasyDict
    dn.util = dnu
    sys.modules.update({"torch_utils": tu, "torch_utils.persistence": tup, "dnnlib": dn, "dnnlib.util": dnu})
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class Persistent:
    """Pickles as ``_reconstruct_persistent_obj(meta)``, exactly like a persistence-decorated module."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta

    def __reduce__(self) -> tuple:
        return (_reconstruct_persistent_obj, (self.meta,))


def _easy(value: Any) -> Any:
    if isinstance(value, dict):
        return EasyDict({k: _easy(v) for k, v in value.items()})
    return value


def persistent_tree(module: torch.nn.Module, *, module_src: str = FAKE_MODULE_SRC,
                    init_kwargs: dict | None = None, class_name: str | None = None) -> Persistent:
    """Mirror ``module`` (and children) as persistence meta dicts holding real tensors."""
    state: dict[str, Any] = {
        "training": False,
        "_parameters": collections.OrderedDict(
            (k, torch.nn.Parameter(v.detach().clone(), requires_grad=False) if v is not None else None)
            for k, v in module._parameters.items()),
        "_buffers": collections.OrderedDict((k, v.detach().clone()) for k, v in module._buffers.items()),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(
            (k, persistent_tree(m, module_src=module_src)) for k, m in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": _easy(init_kwargs or {}),
        "_orig_class_name": type(module).__name__,
    }
    for attr in ("weight_gain", "act_gain", "bias_gain"):  # official stores these as numpy float64
        if hasattr(module, attr):
            state[attr] = np.float64(getattr(module, attr))
    for attr in ("z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "resolution", "in_channels"):
        if hasattr(module, attr):
            state[attr] = getattr(module, attr)
    meta = {"type": "class", "version": 6, "module_src": module_src,
            "class_name": class_name or type(module).__name__, "state": state}
    return Persistent(meta)


def official_pickle_bytes(G: torch.nn.Module, *, keys: tuple[str, ...] = ("G", "D", "G_ema"),
                          module_src: str = FAKE_MODULE_SRC, extra: dict | None = None,
                          mutate: Callable[[Persistent], None] | None = None, class_name: str | None = None) -> bytes:
    """An official-format snapshot dict. ``D`` is a small persistent stand-in discriminator."""
    with official_modules():
        data: dict[str, Any] = {}
        for key in keys:
            if key in ("G", "G_ema"):
                tree = persistent_tree(G, module_src=module_src, init_kwargs=G.init_kwargs, class_name=class_name)
                if mutate is not None:
                    mutate(tree)
                data[key] = tree
            elif key == "D":
                disc = torch.nn.Module()
                disc.b4 = torch.nn.Linear(4, 1)
                data[key] = persistent_tree(disc, module_src=module_src, class_name="Discriminator",
                                            init_kwargs={"c_dim": 0, "img_resolution": 64, "img_channels": 3})
        data["augment_pipe"] = None
        data["training_set_kwargs"] = EasyDict(path="ffhq.zip", resolution=64)
        data.update(extra or {})
        return pickle.dumps(data)


class ShellCommand:
    """Hostile object: unpickling it with the stock machinery runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


class WriteFile:
    """Hostile object: unpickling it with the stock machinery writes a file via builtins.exec."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.path)!r}, 'w').write('pwned')",))
