"""Loading and saving generators: the studio's own format and (via ``checkpoint_pkl``) official pickles.

The studio format is ``X.safetensors`` (tensors by official ``state_dict`` names; no code can hide
in it) plus a human-readable sidecar ``X.json`` holding ``init_kwargs`` and the format version.
The same JSON is also embedded in the safetensors metadata, so a lone ``.safetensors`` still loads.

Every problem a user can cause (missing file, wrong file, truncated download, incompatible
architecture, shape mismatch, NaN weights) becomes a ``CheckpointError`` that says what to do.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from personalize.errors import Action, CheckpointError
from personalize.fileio import atomic_write_bytes, atomic_write_json
from personalize.stylegan2.configs import generator_from_kwargs
from personalize.stylegan2.networks import Generator

FORMAT_NAME = "selfscan-studio/stylegan2-generator"
FORMAT_VERSION = 1
_META_KEY = "studio_generator"

_OFFICIAL_HINT = ("Use the official StyleGAN2-ADA FFHQ checkpoint (the 'ffhq' weights) or a "
                  "generator saved by the studio (model/generator.safetensors).")
_ACTION = Action("models", "ffhq")


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``X.safetensors`` -> ``X.json``."""
    return Path(path).with_suffix(".json")


def save_generator(G: Generator, path: str | os.PathLike[str], extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``G`` as ``path`` (``.safetensors``; the suffix is added if missing) + sidecar ``.json``.

    ``extra`` (JSON-serializable) is stored alongside, e.g. the training step or the source
    checkpoint. Both files are written atomically; returns the ``.safetensors`` path.
    """
    from safetensors.torch import save as st_save

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_name(path.name + ".safetensors") if path.suffix != ".json" else path.with_suffix(".safetensors")
    init_kwargs = getattr(G, "init_kwargs", None)
    if init_kwargs is None:
        raise TypeError("save_generator expects a personalize.stylegan2.Generator (it has no init_kwargs)")
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "class_name": "Generator",
              "init_kwargs": init_kwargs, "num_ws": int(G.num_ws), "extra": dict(extra or {})}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in G.state_dict().items()}
    blob = st_save(tensors, metadata={_META_KEY: json.dumps(header)})
    atomic_write_bytes(path, blob)
    atomic_write_json(sidecar_path(path), header)
    return path


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Generator:
    """Load a generator from an official ``.pkl`` or a studio ``.safetensors`` (or its ``.json``).

    Returns the Generator in eval mode on ``device``. Never executes code from the file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointError(f"Checkpoint not found: {path}", "Check the path, or get the official "
                              "'ffhq' weights.", _ACTION)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file.",
                              "Point to the .pkl or .safetensors file inside it.")
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
        if not path.exists():
            raise CheckpointError(f"The generator tensors {path.name} are missing next to its .json.",
                                  "Copy both files (.safetensors and .json) together.")
    kind = _sniff(path)
    if kind == "safetensors":
        init_kwargs, tensors = _read_studio(path)
    elif kind == "pickle":
        from personalize.stylegan2.checkpoint_pkl import read_official_pickle
        init_kwargs, tensors = read_official_pickle(path)
    else:
        raise CheckpointError(f"{path.name} is not a generator checkpoint (unrecognized file contents).",
                              _OFFICIAL_HINT, _ACTION)
    G = generator_from_kwargs(init_kwargs, source=path.name)
    load_tensors_into(G, tensors, source=path.name)
    return G.eval().to(device)


def load_tensors_into(G: Generator, tensors: Mapping[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` (official names) into ``G`` after checking names, shapes and finiteness."""
    expected = G.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{source} does not match the generator it describes: {len(missing)} tensors missing "
            f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]}).",
            "The file is damaged or from a different architecture. " + _OFFICIAL_HINT, _ACTION)
    bad_shapes = [f"{k}: file {tuple(tensors[k].shape)} vs expected {tuple(v.shape)}"
                  for k, v in expected.items() if tuple(tensors[k].shape) != tuple(v.shape)]
    if bad_shapes:
        raise CheckpointError(f"{source} has tensors of the wrong shape ({len(bad_shapes)}), e.g. "
                              + "; ".join(bad_shapes[:3]),
                              "The file does not match its stored settings; it is damaged or edited. "
                              + _OFFICIAL_HINT, _ACTION)
    not_finite = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if not_finite:
        raise CheckpointError(f"{source} contains NaN or infinite weights (e.g. {not_finite[:3]}).",
                              "The model diverged during training or the file is damaged: use an "
                              "earlier checkpoint (model/checkpoints/) or re-run that stage.")
    state = {k: tensors[k].to(dtype=expected[k].dtype) for k in expected}
    G.load_state_dict(state, strict=True)


def _sniff(path: Path) -> str:
    """Classify by content, not by name: 'safetensors', 'pickle' or 'unknown'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            size = os.fstat(fh.fileno()).st_size
    except OSError as exc:
        raise CheckpointError(f"Cannot read {path}: {exc.strerror}.", "Check the file's permissions.") from exc
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and 8 + header_len <= size:
            return "safetensors"
        if head[8:9] == b"{":
            raise CheckpointError(f"{path.name} is truncated (the file is shorter than its header says).",
                                  "Copy or download it again.")
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def _read_studio(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    data = path.read_bytes()
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path.name} is damaged or truncated: {exc}", "Copy or save it again.") from exc
    header = _read_header(path, data)
    if header.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path.name} is a safetensors file but not a studio generator.", _OFFICIAL_HINT, _ACTION)
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path.name} was written by a newer studio (format {version}).",
                              "Update the studio to open it.")
    return header["init_kwargs"], tensors


def _read_header(path: Path, data: bytes) -> dict[str, Any]:
    """The JSON sidecar if present (human-editable source of truth), else the embedded copy."""
    side = sidecar_path(path)
    if side.exists():
        try:
            header = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{side.name} (the generator's settings) is damaged: {exc}",
                                  "Restore it from a backup, or delete it to use the copy inside "
                                  f"{path.name}.") from exc
        if isinstance(header, dict) and "init_kwargs" in header:
            return header
    header_len = int.from_bytes(data[:8], "little")
    try:
        meta = json.loads(data[8:8 + header_len]).get("__metadata__", {}) or {}
        return json.loads(meta.get(_META_KEY, "{}"))
    except ValueError as exc:
        raise CheckpointError(f"{path.name} has no readable generator settings.", _OFFICIAL_HINT, _ACTION) from exc


