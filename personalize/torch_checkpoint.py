"""Reading official ``torch.save`` checkpoints without running code from them.

Why not plain ``torch.load(weights_only=True)`` alone: it is tried first and reads most files,
but research checkpoints also pickle objects the weights are wrapped in, e.g. PyTorch-Lightning's
``AttributeDict`` hyper-parameters and callback states, OmegaConf configs, argparse namespaces.
``weights_only`` refuses those, and cannot be taught to accept a dict subclass even when
allow-listed. For such a file we unpickle the zip archive's ``data.pkl`` with the project's
restricted unpickler (``personalize.stylegan2.checkpoint_pkl``): every global the file names must
be either a tensor-rebuild function, a plain container, or come from a module prefix the caller
lists as inert (``inert_modules``). An inert global becomes an ``InertObject`` -- a dict that keeps
its constructor arguments and state as data; the named class or function is never imported or
called. Anything else (``os.system``, ``builtins.exec``...) is refused with a ``CheckpointError``.
Tensor storages are read from the archive as raw bytes.
"""
from __future__ import annotations

import pickle
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import torch

from personalize.errors import CheckpointError
from personalize.stylegan2.checkpoint_pkl import UnsafePickleError, unpickle_safely

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


def _damaged(path: Path, what: str, hint: str, exc: BaseException) -> CheckpointError:
    return CheckpointError(f"{path.name} ({what}) is truncated or damaged ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}).",
                           f"Download or copy it again. {hint}")


def load_torch_file(path: str | Path, *, what: str, hint: str, inert_modules: Sequence[str] = ()) -> Any:
    """The object a ``torch.save`` file holds (tensors on the CPU), read without executing code.

    ``what`` names the file for messages ("the DiffusionAct model file"); ``hint`` says where to
    get a good one. ``inert_modules``: module prefixes (e.g. ``"pytorch_lightning."``) whose
    objects may appear and become ``InertObject``s. Missing, empty, truncated, non-torch or
    unsafe files raise ``CheckpointError``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} was not found: {path}", hint)
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path.name} ({what}) is empty.", f"Download or copy it again. {hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refusal: BaseException = exc
    except Exception as exc:  # noqa: BLE001 - torch reports damage as RuntimeError/EOFError/ValueError...
        raise _damaged(path, what, hint, exc) from None
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"Refusing to load {path.name} ({what}): {str(refusal).splitlines()[0]}. "
                              "It may be damaged or unsafe; nothing from it was run.", hint)
    try:
        return _load_zip_restricted(path, what, inert_modules)
    except UnsafePickleError as exc:
        raise CheckpointError(f"Refusing to load {path.name} ({what}): {exc}. It may be damaged or unsafe; "
                              "nothing from it was run.", hint) from None
    except Exception as exc:  # noqa: BLE001 - damaged archive or pickle stream
        raise _damaged(path, what, hint, exc) from None


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
