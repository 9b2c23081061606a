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
