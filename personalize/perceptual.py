"""LPIPS (AlexNet) built from files the studio controls, never from a silent download.

Why our own builder: ``lpips.LPIPS(pretrained=True)`` asks torchvision to download the AlexNet
backbone from the internet when it is not cached. The studio must work offline and must never
measure "perceptual" distances with random weights by accident. So the learned linear layers come
from the lpips wheel (they ship inside it) and the backbone comes from a file the weights manager
resolved (``studio-cli models fetch lpips-alex``). Random backbones exist only for tests that ask
explicitly (``random_backbone=True``).
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import torch

from personalize.errors import Action, MissingWeightsError

# torchvision AlexNet ``features`` index -> lpips slice holding that layer (conv layers only).
_ALEX_FEATURE_TO_SLICE = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
FETCH_HINT = "Get the LPIPS AlexNet weights ('lpips-alex') first: download or import them."
FETCH_ACTION = Action("models", "lpips-alex")


def build_lpips(backbone_weights: str | os.PathLike[str] | None, *, random_backbone: bool = False,
                seed: int = 0, device: str | torch.device = "cpu") -> "lpips.LPIPS":  # noqa: F821
    """Return an eval-mode, frozen ``lpips.LPIPS`` AlexNet metric.

    ``backbone_weights``: torchvision ``alexnet-owt-*.pth`` state dict (keys ``features.N.*``),
    loaded with ``weights_only=True``. ``random_backbone=True`` (tests/benchmarks only) builds a
    deterministic random backbone from ``seed`` instead; otherwise a missing file raises
    ``MissingWeightsError`` naming the fetch command.
    Inputs of the returned module: two (N,3,H,W) float32 images in [-1, 1]; output (N,1,1,1).
    """
    import lpips

    if not random_backbone:
        if backbone_weights is None:
            raise MissingWeightsError("The AlexNet weights for the LPIPS metric are not installed.",
                                      FETCH_HINT, FETCH_ACTION)
        path = Path(backbone_weights)
        if not path.is_file():
            raise MissingWeightsError(f"The AlexNet weights for LPIPS are missing: {path}", FETCH_HINT, FETCH_ACTION)
    # pnet_rand=True: build the backbone without torchvision's download; we fill it below.
    with torch.random.fork_rng(devices=[]), _quiet():
        torch.manual_seed(seed)
        model = lpips.LPIPS(net="alex", pretrained=True, pnet_rand=True, verbose=False)
    if not random_backbone:
        _load_alexnet_backbone(model, Path(backbone_weights))  # type: ignore[arg-type]
    model.eval().requires_grad_(False)
    return model.to(device)


def _load_alexnet_backbone(model: torch.nn.Module, path: Path) -> None:
    """Copy torchvision AlexNet conv weights into lpips' sliced backbone (safe load)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / not a state dict / pickled code
        raise MissingWeightsError(f"{path} is not a readable AlexNet weights file ({exc}).",
                                  FETCH_HINT, FETCH_ACTION) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    mapped: dict[str, torch.Tensor] = {}
    for index, slice_no in _ALEX_FEATURE_TO_SLICE.items():
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if key not in state:
                raise MissingWeightsError(f"{path} is not a torchvision AlexNet checkpoint (no {key}).",
                                          FETCH_HINT, FETCH_ACTION)
            mapped[f"slice{slice_no}.{index}.{kind}"] = state[key]
    try:
        model.net.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:
        raise MissingWeightsError(f"{path} does not match the AlexNet architecture ({exc}).",
                                  FETCH_HINT, FETCH_ACTION) from exc


@contextlib.contextmanager
def _quiet():
    """lpips prints/warns while building; keep the CLI output clean."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


def lpips_layer_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    """Per-layer channel weights w_{l,c} of the linear heads, each (C_l,) float32."""
    return [lin.model[-1].weight.detach().reshape(-1).float() for lin in model.lins]
