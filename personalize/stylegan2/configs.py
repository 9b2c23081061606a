"""Named generator configurations and building a Generator from stored ``init_kwargs``.

Why a validating builder: ``init_kwargs`` come from files (official pickles, our JSON sidecars);
a wrong or unknown argument must become a ``CheckpointError`` that says so, not a TypeError
deep inside a constructor.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch

from personalize.errors import CheckpointError
from personalize.stylegan2.networks import Generator

#: The ``sg2_tiny64`` reference configuration: z=w=64, 2 mapping layers, 64x64, 32 channels max.
TINY64_KWARGS: dict[str, Any] = {
    "z_dim": 64, "c_dim": 0, "w_dim": 64, "img_resolution": 64, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 1024, "channel_max": 32, "num_fp16_res": 0, "conv_clamp": None},
}

#: The official FFHQ 1024x1024 StyleGAN2-ADA generator (``ffhq.pkl``).
FFHQ1024_KWARGS: dict[str, Any] = {
    "z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 1024, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 8},
    "synthesis_kwargs": {"channel_base": 32768, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
}

#: FFHQ at 256x256 as in the paper256 config (channel_base 16384).
FFHQ256_KWARGS: dict[str, Any] = {
    "z_dim": 512, "c_dim": 0, "w_dim": 512, "img_resolution": 256, "img_channels": 3,
    "mapping_kwargs": {"num_layers": 8},
    "synthesis_kwargs": {"channel_base": 16384, "channel_max": 512, "num_fp16_res": 4, "conv_clamp": 256},
}

_REQUIRED = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
_ALLOWED_TOP = set(_REQUIRED) | {"mapping_kwargs", "synthesis_kwargs"}


def _merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in overrides.items():
        if key in ("mapping_kwargs", "synthesis_kwargs") and isinstance(value, Mapping):
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


def generator_from_kwargs(init_kwargs: Mapping[str, Any], source: str = "checkpoint") -> Generator:
    """Build a Generator from official-style ``init_kwargs``; bad kwargs -> ``CheckpointError``."""
    kwargs = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(init_kwargs).items()}
    missing = [k for k in _REQUIRED if k not in kwargs]
    unknown = sorted(set(kwargs) - _ALLOWED_TOP)
    if missing or unknown:
        raise CheckpointError(
            f"The generator settings in {source} are not StyleGAN2 settings "
            f"(missing {missing or 'none'}, unknown {unknown or 'none'}).",
            "Use an official StyleGAN2-ADA checkpoint or one saved by the studio.")
    try:
        return Generator(**kwargs)
    except (TypeError, ValueError, NotImplementedError) as exc:
        raise CheckpointError(f"The generator settings in {source} are not supported: {exc}",
                              "Use an official StyleGAN2-ADA checkpoint or one saved by the studio.") from exc


def tiny_generator(seed: int = 0, **overrides: Any) -> Generator:
    """A randomly initialized ``sg2_tiny64`` generator (eval mode, CPU, parameters trainable).

    ``overrides`` replace top-level init kwargs; ``mapping_kwargs``/``synthesis_kwargs`` dicts are
    merged key by key (e.g. ``tiny_generator(img_resolution=32, synthesis_kwargs={'channel_max': 16})``).
    The same seed always gives the same weights; the global RNG state is left untouched.
    """
    kwargs = _merge(TINY64_KWARGS, overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(**kwargs)
    return G.eval()
