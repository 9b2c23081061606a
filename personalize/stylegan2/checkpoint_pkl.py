"""Reading NVIDIA's official StyleGAN2-ADA ``.pkl`` files without running any code from them.

Why not ``pickle.load``: official pickles store each network through
``torch_utils.persistence``, whose reconstruct function *executes the full Python source*
embedded in the file (``module_src``), and any pickle can name any callable (``os.system``...).
A file downloaded from the internet must never get to do that. This unpickler resolves only a
short whitelist of globals, each mapped to an inert stand-in written here:

- ``torch_utils.persistence._reconstruct_persistent_obj`` -> ``PersistentObject(meta)`` (the meta
  dict is kept as data; ``module_src`` is never compiled or executed);
- torch tensor/parameter rebuild functions and ``torch.storage._load_from_bytes`` (the storage
  bytes are read with ``torch.load(..., weights_only=True)``, itself a restricted loader);
- ``collections.OrderedDict``, ``dnnlib.util.EasyDict`` (-> a plain dict subclass), ``torch.Size``,
  numpy scalars/arrays/dtypes (rebuilt from raw bytes; object arrays refused).

Anything else -> ``CheckpointError`` naming the refused global. Then we take ``G_ema`` (else
``G``), check it is a StyleGAN2 ``Generator`` (StyleGAN3 and TensorFlow pickles are recognized and
refused with advice), and collect its tensors by official ``state_dict`` names.
"""
from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from personalize.errors import Action, CheckpointError

_HINT = ("Use the official StyleGAN2-ADA FFHQ checkpoint (the 'ffhq' weights) or a generator "
         "saved by the studio.")
_ACTION = Action("models", "ffhq")

# Synthesis arguments that StyleGAN3-repo StyleGAN2 pickles may store at the top level.
_SYNTHESIS_KEYS = {"channel_base", "channel_max", "num_fp16_res", "conv_clamp", "architecture",
                   "resample_filter", "use_noise", "activation", "fp16_channels_last",
                   "fused_modconv_default"}
_POSITIONAL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
               "synthesis_kwargs")


class UnsafePickleError(Exception):
    """Raised inside the unpickler; turned into a CheckpointError by ``read_official_pickle``."""


class PersistentObject:
    """What a ``torch_utils.persistence`` object becomes here: its meta dict, as inert data."""

    def __init__(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            raise UnsafePickleError("a persistent object without a metadata dict")
        self.meta = meta

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name", ""))

    @property
    def module_src(self) -> str:
        src = self.meta.get("module_src", "")
        return src if isinstance(src, str) else ""

    @property
    def state(self) -> dict:
        state = self.meta.get("state")
        if not isinstance(state, dict):
            raise UnsafePickleError(f"persistent object {self.class_name!r} has no state dict")
        return state


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access not needed)."""


def _load_storage_bytes(data: Any) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("a tensor storage that is not bytes")
    try:
        return torch.load(io.BytesIO(bytes(data)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means corrupt or unsafe storage
        raise UnsafePickleError(f"unreadable tensor storage ({type(exc).__name__}: {exc})") from exc


def _check_storage(storage: Any) -> None:
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f"a tensor built from {type(storage).__name__}, not a storage")


def _rebuild_tensor_v2(storage: Any, storage_offset: int, size: Any, stride: Any, requires_grad: bool = False,
                       backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    _check_storage(storage)
    return torch._utils._rebuild_tensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, requires_grad: bool = True, backward_hooks: Any = None,
                       state: Any = None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError("a parameter without tensor data")
    return torch.nn.Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: tuple, state: Any) -> torch.Tensor:
    if func not in (_rebuild_tensor_v2, _rebuild_parameter) or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafePickleError("an unexpected tensor subclass")
    return func(*args)


def _numpy_scalar(dtype: Any, data: Any = b"") -> Any:
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, (bytes, bytearray)):
        raise UnsafePickleError("a numpy scalar that is not plain numeric data")
    return np.frombuffer(bytes(data), dtype=dtype, count=1)[0]


def _numpy_dtype(obj: Any, align: bool = False, copy: bool = False) -> np.dtype:
    if not isinstance(obj, str):
        raise UnsafePickleError("a numpy dtype that is not named by a string")
    return np.dtype(obj, align, copy)


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise UnsafePickleError("a numpy array subclass")
    return np.ndarray.__new__(np.ndarray, shape, dtype)


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    return PersistentObject(meta)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("dnnlib", "EasyDict"): EasyDict,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch", "Size"): torch.Size,
    ("torch", "Tensor"): torch.Tensor,
    ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only ``_SAFE_GLOBALS`` plus the caller's ``extra_globals``.

    Other official formats reuse this machinery: ``extra_globals`` maps ``(module, name)`` to inert
    stand-ins written by the caller (never to the named callable itself), ``persistent_load`` reads
    the storages of torch zip checkpoints; without it persistent ids are refused (plain official
    pickles have none). ``what`` names the file kind in the refusal message.
    """

    def __init__(self, file: Any, *, extra_globals: dict[tuple[str, str], Any] | None = None,
                 persistent_load: Callable[[Any], Any] | None = None, encoding: str = "ASCII",
                 what: str = "a StyleGAN2 checkpoint") -> None:
        super().__init__(file, encoding=encoding)
        self._extra = extra_globals or {}
        self._persistent = persistent_load
        self._what = what

    def find_class(self, module: str, name: str) -> Any:
        for table in (self._extra, _SAFE_GLOBALS):
            if (module, name) in table:
                return table[(module, name)]
        if module.startswith("dnnlib.tflib") or module.startswith("tensorflow"):
            raise UnsafePickleError("TENSORFLOW")
        raise UnsafePickleError(f"the file asks to run or build '{module}.{name}', which {self._what} "
                                "never needs")

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise UnsafePickleError("a persistent reference (this is not a plain official pickle)")
        return self._persistent(pid)


def unpickle_safely(data: bytes | io.BufferedIOBase, **options: Any) -> Any:
    """Unpickle with the whitelist; raises ``UnsafePickleError`` or pickle/EOF errors.

    ``options`` go to ``_RestrictedUnpickler`` (extra inert globals, persistent_load, encoding, what).
    """
    stream = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    return _RestrictedUnpickler(stream, **options).load()


def read_official_pickle(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Return (init_kwargs, tensors by official name) of the generator in an official ``.pkl``.

    Prefers ``G_ema`` (the averaged weights everyone samples from), else ``G``.
    """
    path = Path(path)
    name = path.name
    try:
        with open(path, "rb") as fh:
            data = unpickle_safely(fh)
    except UnsafePickleError as exc:
        if str(exc) == "TENSORFLOW":
            raise CheckpointError(f"{name} is a TensorFlow StyleGAN2 pickle; the studio reads the PyTorch "
                                  "StyleGAN2-ADA format.",
                                  "Convert it with NVIDIA's stylegan2-ada-pytorch legacy.py, or " + _HINT, _ACTION) from None
        raise CheckpointError(f"Refusing to load {name}: {exc}. It may be damaged or unsafe; nothing from it "
                              "was run.", _HINT, _ACTION) from None
    except (EOFError, pickle.UnpicklingError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, MemoryError, RecursionError, OverflowError) as exc:
        raise CheckpointError(f"{name} is truncated or damaged ({type(exc).__name__}: {exc}).",
                              "Download or copy it again (the weights manager resumes and verifies "
                              "downloads).", _ACTION) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{name} holds a {type(data).__name__}, not a StyleGAN2-ADA checkpoint dict.", _HINT, _ACTION)
    key = "G_ema" if "G_ema" in data else "G" if "G" in data else None
    if key is None:
        raise CheckpointError(f"{name} contains no generator (found only {sorted(map(str, data))[:6]}).",
                              "A discriminator-only or other pickle cannot be used. " + _HINT, _ACTION)
    net = data[key]
    if not isinstance(net, PersistentObject):
        raise CheckpointError(f"{name}: '{key}' is not a StyleGAN2-ADA network object.", _HINT, _ACTION)
    try:
        _check_architecture(net, name)
        init_kwargs = _init_kwargs(net)
        tensors = collect_tensors(net)
    except UnsafePickleError as exc:
        raise CheckpointError(f"{name}: the generator is malformed ({exc}).", _HINT, _ACTION) from None
    return init_kwargs, tensors


def _check_architecture(net: PersistentObject, name: str) -> None:
    src = net.module_src
    modules = net.state.get("_modules", {}) if isinstance(net.meta.get("state"), dict) else {}
    synth = modules.get("synthesis") if isinstance(modules, dict) else None
    synth_children = []
    if isinstance(synth, PersistentObject) and isinstance(synth.state.get("_modules"), dict):
        synth_children = list(synth.state["_modules"])
    looks_sg3 = ("class SynthesisInput" in src or "sampling_rate" in src
                 or any(str(c).startswith("L") or str(c) == "input" for c in synth_children))
    if looks_sg3:
        raise CheckpointError(f"{name} is a StyleGAN3 generator; the studio needs a StyleGAN2(-ADA) one.",
                              _HINT, _ACTION)
    if net.class_name != "Generator":
        raise CheckpointError(f"{name}: the generator entry is a '{net.class_name}', not a StyleGAN2 'Generator'.",
                              _HINT, _ACTION)
    if synth_children and not all(str(c).startswith("b") and str(c)[1:].isdigit() for c in synth_children):
        raise CheckpointError(f"{name}: unrecognized synthesis layers {synth_children[:4]}; not StyleGAN2.", _HINT, _ACTION)


def _plain(value: Any) -> Any:
    """EasyDict/OrderedDict/tuples -> plain JSON-able values; refuse anything else."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise UnsafePickleError(f"an init argument of type {type(value).__name__}")


def _init_kwargs(net: PersistentObject) -> dict[str, Any]:
    state = net.state
    args = state.get("_init_args", ()) or ()
    kwargs = state.get("_init_kwargs", {}) or {}
    if not isinstance(kwargs, dict) or not isinstance(args, (tuple, list)):
        raise UnsafePickleError("no init arguments")
    out = {k: v for k, v in zip(_POSITIONAL, args)}
    out.update(_plain(kwargs))
    out = _plain(out)
    synthesis = dict(out.get("synthesis_kwargs") or {})
    for key in list(out):
        if key in _SYNTHESIS_KEYS:
            synthesis[key] = out.pop(key)
    synthesis.pop("fused_modconv_default", None)  # an execution hint; our plan is chosen per layer
    out["synthesis_kwargs"] = synthesis
    out["mapping_kwargs"] = dict(out.get("mapping_kwargs") or {})
    return out


def collect_tensors(net: PersistentObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Parameters and persistent buffers of ``net`` and its children, by ``state_dict`` name."""
    state = net.state
    out: dict[str, torch.Tensor] = {}
    skip = state.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        entries = state.get(group, {}) or {}
        if not isinstance(entries, dict):
            raise UnsafePickleError(f"{prefix or 'the network'} has a malformed {group}")
        for key, value in entries.items():
            if value is None or (group == "_buffers" and key in skip):
                continue
            if not isinstance(value, torch.Tensor):
                raise UnsafePickleError(f"{prefix}{key} is not a tensor")
            out[prefix + str(key)] = value.detach()
    children = state.get("_modules", {}) or {}
    if not isinstance(children, dict):
        raise UnsafePickleError(f"{prefix or 'the network'} has malformed children")
    for key, child in children.items():
        if child is None:
            continue
        if not isinstance(child, PersistentObject):
            raise UnsafePickleError(f"{prefix}{key} is not a StyleGAN2-ADA layer")
        out.update(collect_tensors(child, prefix=f"{prefix}{key}."))
    return out
