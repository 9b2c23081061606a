"""Reading third-party ``torch.save`` checkpoints without running code from them.

Why: research checkpoints (e4e, HyperReenact, DECA, ArcFace...) are pickles; ``torch.load`` with
``weights_only=False`` lets a file call any Python function. We always use PyTorch's own restricted
loader (``weights_only=True``: tensors, plain containers and numbers only). Some official files
also store their training options as an ``argparse.Namespace`` (rosinality's ``args``, pSp/e4e
``opts``), which the restricted loader refuses; that one class is mapped to ``InertNamespace``,
a stand-in that only keeps the attribute dict as data (no constructor or method of the original
class runs). Anything else outside the allowlist is refused with a ``CheckpointError``.

The second half checks a tensor dict against a module before loading it, so a wrong or damaged
file is reported as *which file, which tensor, expected vs got* instead of a PyTorch traceback.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from personalize.errors import CheckpointError


class InertNamespace:
    """What an ``argparse.Namespace`` in a checkpoint becomes: its attributes, kept as data."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        self.attributes = dict(state) if isinstance(state, dict) else {"state": state}

    def as_dict(self) -> dict[str, Any]:
        return dict(self.attributes)

    def __repr__(self) -> str:
        return f"InertNamespace({sorted(self.attributes)})"


_ALLOWED_STAND_INS = [(InertNamespace, "argparse.Namespace")]


def load_torch_file(path: str | Path, what: str, hint: str) -> Any:
    """``torch.load`` a file with the restricted unpickler; errors become ``CheckpointError``.

    ``what`` names the expected content in messages ("the HyperReenact hypernetwork"), ``hint`` says
    how to get a good copy.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} was not found at {path}.", hint)
    try:
        with torch.serialization.safe_globals(_ALLOWED_STAND_INS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text:
            detail = _refused_detail(text)
            raise CheckpointError(
                f"Refusing to load {path.name}: it asks to run or build {detail}, which {what} never "
                "needs. It may be damaged or unsafe; nothing from it was run.", hint) from None
        raise CheckpointError(f"{path.name} is not a readable PyTorch file ({text.splitlines()[0][:120]}); "
                              f"expected {what}.", hint) from None
    except (EOFError, RuntimeError, zipfile.BadZipFile, ValueError, OSError, MemoryError) as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path.name} is truncated or damaged ({first}); expected {what}.", hint) from None


def _refused_detail(message: str) -> str:
    for line in message.splitlines():
        if "Unsupported global" in line or "Unsupported class" in line or "Unsupported operand" in line:
            return f"'{line.split(':', 1)[-1].strip()[:160]}'"
    return "something other than tensors"


def plain_options(value: Any) -> Any:
    """``InertNamespace`` (and containers of it) -> plain dicts, for reading stored options."""
    if isinstance(value, InertNamespace):
        return {k: plain_options(v) for k, v in value.attributes.items()}
    if isinstance(value, dict):
        return {k: plain_options(v) for k, v in value.items()}
    return value


def tensor_dict(obj: Any, file: str, what: str, hint: str, key: str | None = None,
                strip_prefix: str | None = None) -> dict[str, torch.Tensor]:
    """Pick ``obj[key]`` (or obj itself), keep the tensors; with ``strip_prefix`` keep only keys
    starting with it and remove it. Raises ``CheckpointError`` if the layout is not the expected one."""
    if key is not None:
        if not isinstance(obj, Mapping) or key not in obj:
            found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
            raise CheckpointError(f"{file} has no '{key}' entry (found {found}); it is not {what}.", hint)
        obj = obj[key]
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{file}: expected a dict of tensors for {what}, found {type(obj).__name__}.", hint)
    out = {}
    for name, value in obj.items():
        if not isinstance(name, str):
            continue
        if strip_prefix is not None:
            if not name.startswith(strip_prefix):
                continue
            name = name[len(strip_prefix):]
        if isinstance(value, torch.Tensor):
            out[name] = value
    if not out:
        raise CheckpointError(f"{file} holds no tensors for {what}.", hint)
    return out


def _all_finite(t: torch.Tensor) -> bool:
    """Any NaN/inf makes the sum non-finite; only a non-finite sum (or an overflow) needs the
    element-wise test (the sum is one fast pass, the mask would allocate a tensor as large).
    Broadcast (stride-0) dimensions repeat the same values, so one slice of them is enough."""
    t = t[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in t.stride())]
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def load_checked(module: nn.Module, tensors: Mapping[str, torch.Tensor], file: str, what: str, hint: str,
                 defaults: Mapping[str, torch.Tensor] | None = None, ignore_unexpected: bool = False) -> list[str]:
    """Put ``tensors`` into ``module`` by name after checking names, shapes and values.

    ``defaults``: values for module keys the file may lack (official ``strict=False`` loads leave
    those at the module's own values); returns the names taken from ``defaults``.
    ``ignore_unexpected``: tolerate extra tensors in the file (also ``strict=False`` behaviour).
    A module built on the ``meta`` device gets the tensors themselves (``assign``: no copy, no
    random init wasted on a network about to be overwritten); floating tensors become float32.
    """
    expected = module.state_dict()
    defaults = dict(defaults or {})
    missing = [k for k in expected if k not in tensors and k not in defaults]
    if missing:
        share = f"{len(missing)} of {len(expected)} expected tensors are missing"
        if len(missing) > len(expected) // 2:
            raise CheckpointError(f"{file} does not look like {what}: {share} (first: '{missing[0]}').", hint)
        raise CheckpointError(f"{file}: tensor '{missing[0]}' is missing ({share}); the file is incomplete "
                              f"or is not {what}.", hint)
    unexpected = [k for k in tensors if k not in expected]
    if unexpected and not ignore_unexpected:
        raise CheckpointError(f"{file} holds {len(unexpected)} tensors that {what} does not have "
                              f"(first: '{unexpected[0]}'); it is a different network or version.", hint)
    chosen: dict[str, torch.Tensor] = {}
    from_defaults = []
    checked: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()  # aliased tensors are checked once
    for name, target in expected.items():
        got = tensors.get(name)
        if got is None:
            got = defaults[name]
            from_defaults.append(name)
        if tuple(got.shape) != tuple(target.shape):
            raise CheckpointError(f"{file}: tensor '{name}' has shape {tuple(got.shape)}, but {what} expects "
                                  f"{tuple(target.shape)}.", hint)
        if got.dtype.is_floating_point != target.dtype.is_floating_point:
            raise CheckpointError(f"{file}: tensor '{name}' is {got.dtype}, expected {target.dtype}.", hint)
        if got.is_floating_point():
            view = (got.data_ptr(), tuple(got.shape), tuple(got.stride()))
            if view not in checked and not _all_finite(got):
                raise CheckpointError(f"{file}: tensor '{name}' contains NaN or infinite values; the file is "
                                      "damaged.", hint)
            checked.add(view)
            got = got.float()
        chosen[name] = got
    on_meta = any(t.is_meta for t in expected.values())
    module.load_state_dict(chosen, strict=True, assign=on_meta)
    return from_defaults
