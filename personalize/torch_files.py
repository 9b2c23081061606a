"""Reading third-party ``torch.save`` checkpoints without running code from them, checked by name.

Why: research checkpoints (e4e, HyperReenact, DECA, ArcFace, DiffAE, EMOCA...) are pickles;
``torch.load`` with ``weights_only=False`` lets a file call any Python function. Every file is
first read with PyTorch's own restricted loader (``weights_only=True``: tensors, plain containers
and numbers). Two kinds of harmless objects sit next to the weights in official files:

- an ``argparse.Namespace`` of training options (rosinality's ``args``, pSp/e4e ``opts``): mapped
  to ``InertNamespace``, which only keeps the attribute dict as data;
- Lightning-era objects (``AttributeDict`` hyper-parameters, callback states, OmegaConf configs):
  ``weights_only`` refuses them and cannot be taught to accept a dict subclass even when
  allow-listed. For such a file (a zip archive) the caller lists module prefixes it accepts as
  inert (``inert_modules``) and ``data.pkl`` is read by the project's restricted unpickler
  (``personalize.stylegan2.checkpoint_pkl``): an inert global becomes an ``InertObject`` -- a
  dict that keeps its constructor arguments and state as data; the named class or function is
  never imported or called. Tensor storages are read from the archive as raw bytes.

Anything else (``os.system``, ``builtins.exec``...) is refused with a ``CheckpointError``.

The second half checks a tensor dict against a module before loading it (``load_checked``,
``build_checked``), so a wrong or damaged file is reported as *which file, which tensor,
expected vs found* instead of a PyTorch traceback.
"""
from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence, TypeVar

import torch
from torch import nn

from personalize.errors import CheckpointError
from personalize.stylegan2.checkpoint_pkl import UnsafePickleError, unpickle_safely

M = TypeVar("M", bound=nn.Module)


# ----------------------------------------------------------------------------- inert stand-ins
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


class InertObject(dict):
    """An object of a class the studio does not need: its name, arguments and state, as data."""

    global_name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "InertObject":
        obj = super().__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # never interpret args as a mapping
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:       # list-like objects: items kept as data
        self.setdefault("__items__", []).append(item)

    def extend(self, items: Any) -> None:
        self.setdefault("__items__", []).extend(items)

    def __repr__(self) -> str:
        return f"<inert {self.global_name}>"


@lru_cache(maxsize=None)
def inert_class(full_name: str) -> type[InertObject]:
    """One stand-in class per global name (so isinstance and repr say what the file meant)."""
    return type(f"Inert[{full_name}]", (InertObject,), {"global_name": full_name})


_ALLOWED_STAND_INS = [(InertNamespace, "argparse.Namespace")]
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
# Builtin types that objects of inert classes carry as data (e.g. OmegaConf's element types).
# Constructing them from pickled arguments runs no code from the file.
_HARMLESS_BUILTINS = {name: getattr(__import__("builtins"), name) for name in (
    "int", "float", "str", "bool", "bytes", "tuple", "list", "dict", "set", "frozenset", "complex",
    "object", "slice", "range")}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _encode(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes: latin-1 text only."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError("an unexpected codecs.encode call")
    return text.encode("latin1")


SAFE_DATA_GLOBALS: dict[tuple[str, str], Any] = {("_codecs", "encode"): _encode}
SAFE_DATA_GLOBALS.update({("builtins", k): v for k, v in _HARMLESS_BUILTINS.items()})
SAFE_DATA_GLOBALS.update({("__builtin__", k): v for k, v in _HARMLESS_BUILTINS.items()})
SAFE_DATA_GLOBALS[("argparse", "Namespace")] = InertNamespace


# ----------------------------------------------------------------------------- reading a file
def load_torch_file(path: str | Path, what: str, hint: str, inert_modules: Sequence[str] = ()) -> Any:
    """The object a ``torch.save`` file holds (tensors on the CPU), read without executing code.

    ``what`` names the expected content in messages ("the HyperReenact hypernetwork"), ``hint``
    says how to get a good copy (words, never a command). ``inert_modules``: module prefixes (e.g.
    ``"pytorch_lightning."``) whose objects may appear and become ``InertObject``s. Missing,
    empty, truncated, non-torch or unsafe files raise ``CheckpointError``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} was not found at {path}.", hint)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} is empty; expected {what}.", hint)
    try:
        with torch.serialization.safe_globals(_ALLOWED_STAND_INS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refusal = str(exc)
    except Exception as exc:  # noqa: BLE001 - torch reports damage as RuntimeError/EOFError/ValueError...
        raise _damaged(path, what, hint, exc) from None
    if "Weights only load failed" not in refusal:
        raise CheckpointError(f"{path.name} is not a readable PyTorch file ({refusal.splitlines()[0][:120]}); "
                              f"expected {what}.", hint)
    if inert_modules and zipfile.is_zipfile(path):
        try:
            return _load_zip_restricted(path, what, inert_modules)
        except UnsafePickleError as exc:   # its message names the refused global and ``what``
            raise CheckpointError(f"Refusing to load {path.name}: {exc}. It may be damaged or unsafe; nothing "
                                  "from it was run.", hint) from None
        except Exception as exc:  # noqa: BLE001 - damaged archive or pickle stream
            raise _damaged(path, what, hint, exc) from None
    raise _refused(path, what, hint, _refused_detail(refusal))


def _damaged(path: Path, what: str, hint: str, exc: BaseException) -> CheckpointError:
    first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return CheckpointError(f"{path.name} is truncated or damaged ({first}); expected {what}.", hint)


def _refused(path: Path, what: str, hint: str, detail: str) -> CheckpointError:
    """A file ``weights_only`` refused (``detail``: the global it named)."""
    return CheckpointError(f"Refusing to load {path.name}: it asks to run or build {detail}, which {what} "
                           "never needs. It may be damaged or unsafe; nothing from it was run.", hint)


def _refused_detail(message: str) -> str:
    for line in message.splitlines():
        if "Unsupported global" in line or "Unsupported class" in line or "Unsupported operand" in line:
            return f"'{line.split(':', 1)[-1].strip()[:160]}'"
    return "something other than tensors"


def _load_zip_restricted(path: Path, what: str, inert_modules: Sequence[str]) -> Any:
    extra: dict[tuple[str, str], Any] = dict(SAFE_DATA_GLOBALS)
    extra.update({("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()})
    for full in torch.serialization.get_unsafe_globals_in_checkpoint(str(path)):
        module, _, name = full.rpartition(".")
        if any(full.startswith(prefix) for prefix in inert_modules):
            extra[(module, name)] = inert_class(full)
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise UnsafePickleError("not a torch.save archive (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        storages: dict[str, Any] = {}

        def persistent_load(pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                    and isinstance(pid[1], _StorageType)):
                raise UnsafePickleError("an unexpected persistent reference")
            key = str(pid[2])
            if key not in storages:
                raw = archive.read(f"{prefix}data/{key}")
                untyped = torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
                storages[key] = torch.storage.TypedStorage(wrap_storage=untyped, dtype=pid[1].dtype, _internal=True)
            return storages[key]

        with archive.open(pickles[0]) as stream:
            return unpickle_safely(stream.read(), extra_globals=extra, persistent_load=persistent_load,
                                   encoding="utf-8", what=what)


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


# ----------------------------------------------------------------------------- checked loading
@dataclass
class LoadReport:
    """``filled_in``: module tensors the file lacked (given defaults); ``extra``: file tensors the
    module does not have (ignored)."""

    filled_in: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)


def _all_finite(t: torch.Tensor) -> bool:
    """Any NaN/inf makes the sum non-finite; only a non-finite sum (or an overflow) needs the
    element-wise test (the sum is one fast pass, the mask would allocate a tensor as large).
    Broadcast (stride-0) dimensions repeat the same values, so one slice of them is enough."""
    t = t[tuple(slice(0, 1) if stride == 0 else slice(None) for stride in t.stride())]
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def load_checked(module: nn.Module, tensors: Mapping[str, torch.Tensor], file: str, what: str, hint: str,
                 defaults: Mapping[str, torch.Tensor] | None = None, ignore_unexpected: bool = False) -> LoadReport:
    """Put ``tensors`` into ``module`` by name after checking names, shapes and values.

    ``defaults``: values for module keys the file may lack (official ``strict=False`` loads leave
    those at the module's own values). ``ignore_unexpected``: tolerate extra tensors in the file
    (also ``strict=False`` behaviour); they are listed in the report. A module built on the
    ``meta`` device gets the tensors themselves (``assign``: no copy, no random init wasted on a
    network about to be overwritten); floating tensors become float32.
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
    unexpected = sorted(k for k in tensors if k not in expected)
    if unexpected and not ignore_unexpected:
        raise CheckpointError(f"{file} holds {len(unexpected)} tensors that {what} does not have "
                              f"(first: '{unexpected[0]}'); it is a different network or version.", hint)
    chosen: dict[str, torch.Tensor] = {}
    report = LoadReport(extra=unexpected)
    checked: set[tuple[int, tuple[int, ...], tuple[int, ...]]] = set()  # aliased tensors are checked once
    for name, target in expected.items():
        got = tensors.get(name)
        if got is None:
            got = defaults[name]
            report.filled_in.append(name)
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{file}: '{name}' is a {type(got).__name__}, not a tensor.", hint)
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
        else:
            got = got.to(target.dtype)
        chosen[name] = got
    on_meta = any(t.is_meta for t in expected.values())
    module.load_state_dict(chosen, strict=True, assign=on_meta)
    return report


def build_checked(factory: Callable[[], M], tensors: Mapping[str, torch.Tensor], file: str, what: str,
                  hint: str, *, optional: Collection[str] = (), ignore_unexpected: bool = False
                  ) -> tuple[M, LoadReport]:
    """``factory()`` built on the meta device, given ``tensors`` by ``load_checked``; eval, frozen.

    ``optional``: module tensors the file may lack (zero-filled, e.g. an unused sample buffer).
    """
    with torch.device("meta"):
        module = factory()
    shapes = module.state_dict()
    defaults = {name: torch.zeros(shapes[name].shape, dtype=shapes[name].dtype) for name in optional}
    report = load_checked(module, tensors, file, what, hint, defaults=defaults, ignore_unexpected=ignore_unexpected)
    return module.eval().requires_grad_(False), report
