"""Pretrained weights the studio needs: registry, local cache, verified downloads and imports.

Studio layer only: lower layers never import this. A studio job resolves a path with
``require_weights(name)`` and passes the path down (e.g. to ``personalize.perceptual.build_lpips``).

    from studio.weights import require_weights
    ffhq = require_weights("ffhq")   # Path, or MissingWeightsError that says how to get it

For the CLI and the Models dialog: ``list_weights()`` (status rows), ``files_for(backend)`` (what a
mode needs), ``pending_licences(names)`` / ``accept_licence(*names)`` (notes to accept once before
downloading), ``fetch_weights(name, accept_licence=...)`` and ``import_weights(name, file)``.
"""
from studio.weights.download import fetch_weights
from studio.weights.groups import BACKENDS, backends_using, files_for
from studio.weights.licences import (LicenceNotAcceptedError, accept_licence, licence_accepted,
                                     licence_note, pending_licences)
from studio.weights.listing import WeightsStatus, list_weights, status_of
from studio.weights.registry import REGISTRY, WeightsFile, get_entry
from studio.weights.store import (cache_dir, cache_path, import_weights, is_present, read_pins,
                                  require_weights, verify_file, weights_path)

__all__ = ["BACKENDS", "LicenceNotAcceptedError", "REGISTRY", "WeightsFile", "WeightsStatus",
           "accept_licence", "backends_using", "cache_dir", "cache_path", "fetch_weights",
           "files_for", "get_entry", "import_weights", "is_present", "licence_accepted",
           "licence_note", "list_weights", "pending_licences", "read_pins", "require_weights",
           "status_of", "verify_file", "weights_path"]
