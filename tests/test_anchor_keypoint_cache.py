"""The per-generator cache of the anchors' rendered keypoints, and the latent track's fingerprint,
must not outlive a keypoint definition."""
from __future__ import annotations

import numpy as np
import torch

from optimize.latent_space import PersonalizedSpace
from personalize.progress import NEVER_CANCELLED
from personalize.stylegan2 import tiny_generator


class _CountingLandmarks:
    """Stands in for the FaceMesh: fixed landmarks per image, counts how many images it saw."""

    def __init__(self) -> None:
        self.images = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.images += images.shape[0]
        g = torch.Generator().manual_seed(0)
        return torch.rand(images.shape[0], 478, 3, generator=g) * images.shape[-1]


def test_anchor_keypoint_cache_is_recomputed_when_the_keypoint_definition_changes(tmp_path, monkeypatch) -> None:
    import optimize.anchor_keypoints as module

    generator = tiny_generator(seed=0)
    anchors = np.random.default_rng(0).normal(size=(3, generator.w_dim)).astype(np.float32)
    space = PersonalizedSpace(anchors, generator.num_ws)
    landmarks = _CountingLandmarks()
    cache = tmp_path / "anchor_keypoints.npz"
    first = module.cached_anchor_keypoints(generator, space, landmarks, cache, "g1", NEVER_CANCELLED)
    assert first.shape == (3, 66, 3) and landmarks.images == 3
    again = module.cached_anchor_keypoints(generator, space, landmarks, cache, "g1", NEVER_CANCELLED)
    assert landmarks.images == 3 and np.array_equal(again, first)  # reused
    monkeypatch.setattr(module, "KEYPOINT_DEFINITION", "another-definition")
    module.cached_anchor_keypoints(generator, space, landmarks, cache, "g1", NEVER_CANCELLED)
    assert landmarks.images == 6  # a cache made for other keypoints is not reused


def test_track_fingerprint_includes_the_keypoint_definition(monkeypatch) -> None:
    import optimize.reenact_settings as settings_module
    from optimize.driving import DrivingFrames
    from optimize.reenact_settings import ReenactSettings
    from optimize.track import track_fingerprint

    frames = DrivingFrames.from_arrays([np.zeros((8, 8, 3), np.uint8)], landmarks=np.zeros((1, 478, 3)))
    anchors = np.zeros((2, 4), np.float32)
    before = track_fingerprint(frames, anchors, "g", ReenactSettings().fingerprint_dict())
    monkeypatch.setattr(settings_module, "KEYPOINT_DEFINITION", "another-definition")
    assert track_fingerprint(frames, anchors, "g", ReenactSettings().fingerprint_dict()) != before
