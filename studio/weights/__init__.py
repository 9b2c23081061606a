"""Pretrained weights the studio needs: registry, local cache, verified downloads and imports.

Studio layer only: lower layers never import this. A studio job resolves a path with
``require_weights(name)`` and passes the path down (e.g. to ``personalize.perceptual.build_lpips``).

    from studio.weights import require_weights
    ffhq = require_weights("ffhq")   # Path, or MissingWeightsError that says how to get it
"""
from studio.weights.download import fetch_weights
from studio.weights.registry import REGISTRY, WeightsFile, get_entry
from studio.weights.store import (WeightsStatus, cache_dir, cache_path, import_weights,
                                  is_present, list_weights, read_pins, require_weights,
                                  verify_file, weights_path)

__all__ = ["REGISTRY", "WeightsFile", "WeightsStatus", "cache_dir", "cache_path", "fetch_weights",
           "get_entry", "import_weights", "is_present", "list_weights", "read_pins",
           "require_weights", "verify_file", "weights_path"]
