"""Anchors: batched projection into W improves on the mean w; encoders plug in; noise is per frame."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from personalize.inversion import (AnchorEncoder, InversionConfig, invert_frames, noise_buffers,
                                   per_sample_noise, reconstruction_lpips)
from personalize.perceptual import build_lpips
from tests._personalize_helpers import make_generator, read_face_frames


@pytest.fixture(scope="module")
def targets() -> torch.Tensor:
    frames = read_face_frames(4, size=64, step=80)
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module")
def metric() -> torch.nn.Module:
    return build_lpips(None, random_backbone=True, seed=2)


def test_projection_beats_mean_w_and_records_lpips(targets, metric):
    G = make_generator(seed=0)
    cfg = InversionConfig(steps=40, batch=4, w_avg_samples=2000, plateau_patience=1000)
    result = invert_frames(G, targets, metric, cfg)
    assert result.anchors.shape == (4, G.w_dim) and result.anchors.dtype == np.float32
    start = torch.as_tensor(G.mapping.w_avg).float()[None].repeat(4, 1)
    at_mean = reconstruction_lpips(G, start, targets, metric)
    assert result.lpips.shape == (4,)
    assert result.lpips.mean() < 0.9 * at_mean.mean(), (result.lpips, at_mean)
    again = reconstruction_lpips(G, torch.from_numpy(result.anchors), targets, metric)
    np.testing.assert_allclose(again, result.lpips, rtol=1e-5)
    assert list(result.steps_run) == [40] * 4


def test_plateau_stops_early(targets, metric):
    G = make_generator(seed=0)
    cfg = InversionConfig(steps=300, batch=2, lr=0.0, w_avg_samples=500, noise_ramp_length=0.05,
                          initial_noise_factor=0.0, optimize_noise=False, plateau_patience=5)
    result = invert_frames(G, targets[:2], metric, cfg)
    assert 0 < result.steps_run.max() < 40


def test_external_encoder_interface(targets, metric):
    G = make_generator(seed=0)
    seen = []

    def encoder(images: torch.Tensor) -> torch.Tensor:
        seen.append(images.shape)
        assert images.dtype == torch.float32 and images.min() >= -1 and images.max() <= 1
        return images.mean(dim=(2, 3)).repeat(1, G.w_dim // 3 + 1)[:, :G.w_dim]

    assert isinstance(encoder, AnchorEncoder)
    result = invert_frames(G, targets, metric, InversionConfig(batch=3), encoder=encoder)
    assert seen == [(3, 3, 64, 64), (1, 3, 64, 64)]
    assert result.anchors.shape == (4, G.w_dim) and result.steps_run.sum() == 0


def test_per_sample_noise_maps(targets):
    G = make_generator(seed=0)
    slots = noise_buffers(G)
    assert slots, "generator exposes noise_const buffers (official naming)"
    originals = [m._buffers[n].clone() for m, n in slots]
    ws = G.mapping.w_avg.detach()[None, None].repeat(2, G.num_ws, 1).float()
    for m, _ in slots:  # make the noise matter
        if hasattr(m, "noise_strength"):
            m.noise_strength.data.fill_(1.0)
    noises = [torch.stack([torch.zeros(1, *o.shape), torch.randn(1, *o.shape)]) for o in originals]
    with torch.no_grad(), per_sample_noise(G, noises):
        out = G.synthesis(ws, noise_mode="const")
    assert not torch.allclose(out[0], out[1])
    with torch.no_grad(), per_sample_noise(G, [torch.zeros(2, 1, *o.shape) for o in originals]):
        zero = G.synthesis(ws, noise_mode="const")
    assert torch.allclose(zero[0], out[0], atol=1e-5)
    assert all(torch.equal(m._buffers[n], o) for (m, n), o in zip(slots, originals))


def test_stopped_inversion_keeps_finished_batches_and_resumes_exactly(tmp_path, targets, metric):
    """Issue #17: a cancel during the inversion used to lose everything. Every finished batch is
    saved at once; the next run redoes only the rest and ends with the uninterrupted anchors."""
    from personalize.errors import Cancelled
    from personalize.inversion import InversionProgress
    from personalize.progress import CancelToken

    G = make_generator(seed=0)
    cfg = InversionConfig(steps=3, batch=1, w_avg_samples=200)
    straight = invert_frames(G, targets, metric, cfg)
    path = tmp_path / "inversion_progress.npz"
    token = CancelToken()

    def stop_in_the_third_batch(done: int, total: int, message: str = "") -> None:
        if done > 2 * cfg.steps:
            token.cancel()

    with pytest.raises(Cancelled) as stopped:
        invert_frames(G, targets, metric, cfg, progress=stop_in_the_third_batch, cancel=token, progress_path=path)
    assert stopped.value.kept == "the anchors of 2 of 4 frames"
    saved = InversionProgress.load(path)
    assert saved.done.tolist() == [True, True, False, False]
    np.testing.assert_array_equal(saved.anchors[:2], straight.anchors[:2])
    resumed = invert_frames(G, targets, metric, cfg, progress_path=path)
    assert resumed.resumed_batches == 2 and list(resumed.steps_run) == [3, 3, 3, 3]
    np.testing.assert_array_equal(resumed.anchors, straight.anchors)
    # progress made with other settings is not mixed in
    other = invert_frames(G, targets, metric, InversionConfig(steps=2, batch=1, w_avg_samples=200), progress_path=path)
    assert other.resumed_batches == 0


def test_an_encoder_must_give_w_codes(targets, metric):
    G = make_generator(seed=0)

    def w_plus(images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], G.num_ws, G.w_dim)

    with pytest.raises(ValueError, match="must return W codes"):
        invert_frames(G, targets, metric, InversionConfig(batch=2), encoder=w_plus)
