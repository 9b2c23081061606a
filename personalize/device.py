"""Choosing the compute device: CUDA, then Apple MPS, then CPU, unless the user says otherwise."""
from __future__ import annotations

import torch

from personalize.errors import UserError


def pick_device(requested: str | None = None) -> torch.device:
    """Return the device to run on. ``requested`` is 'auto'/None, 'cpu', 'cuda', 'cuda:1', 'mps'."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as exc:
        raise UserError(f"Unknown device '{requested}'.", "Use auto, cpu, cuda, cuda:N or mps.") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("CUDA was requested but no CUDA GPU is available.",
                        "Install a CUDA build of PyTorch and an NVIDIA driver, or use --device cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError("Apple MPS was requested but is not available.", "Use --device cpu.")
    return device


def describe_device(device: torch.device) -> str:
    """A one-line human description, e.g. 'CUDA: NVIDIA H100 80GB HBM3' or 'CPU (slow for training)'."""
    if device.type == "cuda":
        return f"CUDA: {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    return "CPU (works everywhere, slow for personalization)"


def render_batch(device: torch.device | str, wanted: int) -> int:
    """How many codes one inference pass of a generator should take on ``device``: ``wanted`` on
    a GPU or MPS, 1 on a CPU.

    Why: a GPU at batch 1 is mostly idle, so a batch costs little more than one code; a CPU is
    already busy, and a batch costs more an image (2-core AMX machine, FFHQ-shaped 256 px, warmed
    up: 0.16-0.17 s an image alone, 0.20 s in batches of 2 or 3, 0.21-0.22 s in batches of 4;
    ``bench/fastmode.py`` prints them side by side).
    """
    return 1 if torch.device(device).type == "cpu" else max(1, int(wanted))
