"""CLIP (OpenAI ViT-B/32 through clip-anytorch) as a differentiable image/text encoder.

Why a wrapper: NADA and the age scorer need (1) images that are already tensors in [-1, 1] from
the generator, preprocessed *differentiably* (resize to CLIP's input size, CLIP mean/std) instead
of clip's PIL pipeline, and (2) loading that never runs code from the weights file.

Loading: OpenAI's ``ViT-B-32.pt`` is a TorchScript archive. ``clip.load`` would ``torch.jit.load``
it (compiling the archive's code); instead ``read_clip_state_dict`` reads the archive's pickle with
a restricted unpickler that only rebuilds tensors, then ``clip.model.build_model`` builds the
eager model from that state dict. A plain ``torch.save``d state dict is read with
``torch.load(weights_only=True)``. A missing file raises ``MissingWeightsError`` with the fetch
command; random weights exist only through the explicit ``random_clip`` (tests, benchmarks).
"""
from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from personalize.errors import Action, CheckpointError, MissingWeightsError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# clip.model.CLIP constructor arguments
VIT_B32_CONFIG: dict[str, Any] = dict(
    embed_dim=512, image_resolution=224, vision_layers=12, vision_width=768, vision_patch_size=32,
    context_length=77, vocab_size=49408, transformer_width=512, transformer_heads=8, transformer_layers=12)
TINY_CONFIG: dict[str, Any] = dict(
    embed_dim=32, image_resolution=32, vision_layers=2, vision_width=64, vision_patch_size=16,
    context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=2)
FETCH_HINT = "Get the CLIP ViT-B/32 weights ('clip-vit-b32') first: download or import them."
FETCH_ACTION = Action("models", "clip-vit-b32")


def _clip_modules():
    import warnings

    with warnings.catch_warnings():  # clip-anytorch imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import clip
        import clip.model
    return clip, clip.model


class ClipEncoder(nn.Module):
    """Frozen CLIP with differentiable preprocessing; embeddings are L2-normalized.

    ``encode_image(images)``: (N, 3, H, W) float in [-1, 1] -> (N, embed_dim) float32.
    ``encode_text(texts)``: list of N strings -> (N, embed_dim) float32.
    """

    def __init__(self, model: nn.Module, random_weights: bool = False) -> None:
        super().__init__()
        self.model = model.float().eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.random_weights = random_weights
        self.input_resolution = int(model.visual.input_resolution)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.exp()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images -> CLIP input: resized to input_resolution (bicubic, antialiased), normalized."""
        x = (images.float() + 1.0) * 0.5
        size = self.input_resolution
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        return (x - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Images on any device (direction learning renders to the CPU for MediaPipe's scorers)
        -> features on the encoder's."""
        feats = self.model.encode_image(self.preprocess(images.to(self.mean.device))).float()
        return feats / feats.norm(dim=-1, keepdim=True)

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> torch.Tensor:
        clip, _ = _clip_modules()
        device = next(self.model.parameters()).device
        tokens = clip.tokenize(texts, context_length=self.model.context_length, truncate=True).to(device)
        feats = self.model.encode_text(tokens).float()
        return feats / feats.norm(dim=-1, keepdim=True)


# --------------------------------------------------------------------------- building
def random_clip(config: str | dict[str, Any] = "tiny", seed: int = 0,
                device: str | torch.device = "cpu") -> ClipEncoder:
    """A CLIP with RANDOM weights, for tests and timing only (never a silent fallback).

    ``config``: 'tiny' (32 px, 2+2 layers: fast tests), 'vit-b32' (the real ViT-B/32 shapes:
    timing), or a dict of ``clip.model.CLIP`` arguments.
    """
    _, clip_model = _clip_modules()
    cfg = {"tiny": TINY_CONFIG, "vit-b32": VIT_B32_CONFIG}.get(config, config) if isinstance(config, str) else config
    if not isinstance(cfg, dict):
        raise ValueError(f"unknown CLIP config {config!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = clip_model.CLIP(**cfg)
    return ClipEncoder(model, random_weights=True).to(device)


def load_clip(path: str | os.PathLike[str] | None, device: str | torch.device = "cpu") -> ClipEncoder:
    """Load OpenAI CLIP weights from a file (``ViT-B-32.pt``) without executing code from it."""
    if path is None or not Path(path).is_file():
        raise MissingWeightsError(f"CLIP weights (ViT-B/32) not found{f' at {path}' if path else ''}.", FETCH_HINT, FETCH_ACTION)
    _, clip_model = _clip_modules()
    state = read_clip_state_dict(path)
    try:
        model = clip_model.build_model(state)
    except Exception as exc:
        raise CheckpointError(f"{Path(path).name} is not a CLIP checkpoint clip-anytorch can build ({exc}).",
                              FETCH_HINT, FETCH_ACTION) from exc
    return ClipEncoder(model, random_weights=False).to(device)


def read_clip_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """State dict of a CLIP checkpoint: a TorchScript archive (OpenAI's release) or a saved state dict."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if any(n.endswith("/code/") or "/code/" in n for n in names):
                return _torchscript_state_dict(zf, names, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path.name} could not be read safely as CLIP weights ({exc}).", FETCH_HINT, FETCH_ACTION) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path.name} does not hold a CLIP state dict.", FETCH_HINT, FETCH_ACTION)
    return dict(state)


class _ScriptObject:
    """Stand-in for a TorchScript module object in data.pkl; keeps only its attribute dict."""

    def __init__(self, *args: Any) -> None:
        self.attrs: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.attrs = state
        elif isinstance(state, tuple) and state and isinstance(state[0], dict):
            self.attrs = state[0]


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage: torch.UntypedStorage | torch.Tensor, offset: int, size: tuple, stride: tuple,
                    *_: Any) -> torch.Tensor:
    base = storage if isinstance(storage, torch.Tensor) else torch.tensor([])
    return base.as_strided(size, stride, offset).clone()


def _torchscript_state_dict(zf: zipfile.ZipFile, names: list[str], path: Path) -> dict[str, torch.Tensor]:
    """Read ``<archive>/data.pkl`` with an allow-list unpickler: module objects become plain attribute
    holders, tensors are rebuilt from ``<archive>/data/<key>``; any other global is refused."""
    pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
    if pkl is None:
        raise CheckpointError(f"{path.name} is a zip but not a TorchScript archive.", FETCH_HINT, FETCH_ACTION)
    prefix = pkl[: -len("data.pkl")]
    storages: dict[str, torch.Tensor] = {}

    class Restricted(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            if module.startswith("__torch__"):
                return type(name, (_ScriptObject,), {})
            if module == "torch" and name in _STORAGE_DTYPES:
                return _STORAGE_DTYPES[name]
            if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
                return _rebuild_tensor
            if module == "collections" and name == "OrderedDict":
                import collections
                return collections.OrderedDict
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from {path.name}")

        def persistent_load(self, pid: Any) -> Any:
            # ('storage', dtype, key, location, numel)
            if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
                raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
            _, dtype, key, _location, _numel = pid[:5]
            if key not in storages:
                raw = bytearray(zf.read(f"{prefix}data/{key}"))
                storages[key] = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            return storages[key]

    try:
        root = Restricted(io.BytesIO(zf.read(pkl))).load()
    except (pickle.UnpicklingError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path.name} could not be read safely as a CLIP TorchScript archive ({exc}).",
                              FETCH_HINT, FETCH_ACTION) from exc
    state: dict[str, torch.Tensor] = {}

    def walk(obj: Any, prefix_key: str) -> None:
        if isinstance(obj, _ScriptObject):
            for key, value in obj.attrs.items():
                walk(value, f"{prefix_key}{key}.")
        elif isinstance(obj, torch.Tensor):
            state[prefix_key[:-1]] = obj

    walk(root, "")
    if "visual.proj" not in state and "visual.attnpool.positional_embedding" not in state:
        raise CheckpointError(f"{path.name} is a TorchScript archive but not a CLIP model.", FETCH_HINT, FETCH_ACTION)
    return state
