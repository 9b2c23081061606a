"""StyleGAN2-ADA generator (official names and numerics, pure PyTorch) and safe checkpoint I/O.

Public API:
- ``Generator`` — same constructor and ``state_dict`` keys as NVIDIA's ``training.networks.Generator``.
- ``load_generator(path, device='cpu')`` — official ``.pkl`` (read without running any pickled
  code) or the studio's own ``.safetensors`` + ``.json``; raises ``CheckpointError`` with advice.
- ``save_generator(G, path)`` — writes ``X.safetensors`` and the sidecar ``X.json`` atomically.
- ``tiny_generator(seed=0, **overrides)`` — a small random generator (64x64) for tests.
"""
from __future__ import annotations

from personalize.stylegan2.networks import Generator, MappingNetwork, SynthesisNetwork
from personalize.stylegan2.checkpoint_io import load_generator, save_generator
from personalize.stylegan2.configs import TINY64_KWARGS, generator_from_kwargs, tiny_generator

__all__ = ["Generator", "MappingNetwork", "SynthesisNetwork", "load_generator", "save_generator",
           "tiny_generator", "generator_from_kwargs", "TINY64_KWARGS"]
