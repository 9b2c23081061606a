"""Frame selection (paper Alg. 1): the fast feature-cache LPIPS equals the naive per-pair LPIPS."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from personalize.errors import Action, MissingWeightsError, UserError
from personalize.perceptual import build_lpips
from personalize.selection import (coverage_report, face_measures, greedy_max_min, lpips_features,
                                   pairwise_lpips, select_diverse)
from tests._personalize_helpers import read_face_frames, to_tensor


def naive_selection(model: torch.nn.Module, images: torch.Tensor, count: int) -> tuple[list[int], np.ndarray]:
    """The oracle: ``lpips.LPIPS.forward`` on every pair (N(N-1)/2 calls), then the same greedy pick."""
    n = images.shape[0]
    dist = np.zeros((n, n), dtype=np.float64)
    with torch.no_grad():
        for i in range(n):
            for j in range(i + 1, n):
                d = float(model(images[i:i + 1], images[j:j + 1]).item())
                dist[i, j] = dist[j, i] = d
    return greedy_max_min(dist, count), dist


@pytest.fixture(scope="module")
def frames() -> torch.Tensor:
    # 26 real frames spread over the 12 s self-scan, 64 px.
    return to_tensor(read_face_frames(26, size=64, step=13))


@pytest.fixture(scope="module")
def metric() -> torch.nn.Module:
    return build_lpips(None, random_backbone=True, seed=3)


def test_fast_selection_equals_naive_pairwise_lpips(frames, metric):
    fast = select_diverse(metric, frames, 12, batch=7, minimum=5)
    naive_order, naive_dist = naive_selection(metric, frames, 12)
    fast_dist = pairwise_lpips(lpips_features(metric, [frames[:11], frames[11:]]), chunk=8, depth_chunk=1000)
    assert naive_dist.max() > 0.01  # real, different frames
    np.testing.assert_allclose(fast_dist, naive_dist, rtol=1e-4, atol=1e-6)
    assert fast.indices == naive_order
    assert fast.network_passes == len(frames)  # vs 26*25/2 pairs (x2 images) for the naive method
    assert len(set(fast.indices)) == 12


def test_pairwise_exact_with_negative_linear_weights(frames, metric):
    """Signed weights (e.g. a user-trained head) still give exact distances."""
    m = build_lpips(None, random_backbone=True, seed=4)
    with torch.no_grad():
        m.lins[1].model[-1].weight[:, ::3] *= -1
    x = frames[:6]
    dist = pairwise_lpips(lpips_features(m, [x]))
    for i in range(6):
        for j in range(6):
            if i != j:
                ref = float(m(x[i:i + 1], x[j:j + 1]))
                assert dist[i, j] == pytest.approx(ref, rel=1e-4, abs=1e-6)


def test_greedy_max_min_follows_algorithm_1():
    rng = np.random.default_rng(1)
    pts = rng.normal(size=(40, 3))
    dist = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    order = greedy_max_min(dist, 10)
    i, j = np.unravel_index(np.argmax(dist), dist.shape)
    assert set(order[:2]) == {i, j}
    for k in range(2, 10):
        rest = [s for s in range(40) if s not in order[:k]]
        best = max(rest, key=lambda s: dist[s, order[:k]].min())
        assert order[k] == best
    assert greedy_max_min(dist, 100) == greedy_max_min(dist, 40)  # capped at N


def test_too_few_frames(frames, metric):
    with pytest.raises(UserError, match="at least 10"):
        select_diverse(metric, frames[:8], 5)
    result = select_diverse(metric, frames[:12], 250)
    assert sorted(result.indices) == list(range(12))
    assert result.warnings and "using all" in result.warnings[0]


def test_build_lpips_loads_backbone_file_and_never_falls_back(tmp_path):
    import torchvision

    with pytest.raises(MissingWeightsError, match="lpips-alex") as err:
        build_lpips(None)
    assert err.value.action == Action("models", "lpips-alex")
    with pytest.raises(MissingWeightsError):
        build_lpips(tmp_path / "absent.pth")
    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(1)}, bad)
    with pytest.raises(MissingWeightsError, match="not a torchvision AlexNet"):
        build_lpips(bad)
    alex = torchvision.models.alexnet(weights=None)
    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save(alex.state_dict(), path)
    model = build_lpips(path)
    for k, index in enumerate((0, 3, 6, 8, 10)):
        conv = getattr(model.net, f"slice{k + 1}")._modules[str(index)]
        assert torch.equal(conv.weight, alex.features[index].weight)
        assert torch.equal(conv.bias, alex.features[index].bias)
    assert not any(p.requires_grad for p in model.parameters())


def test_coverage_report_compares_chosen_with_all():
    rng = np.random.default_rng(0)
    lm = np.tile(rng.uniform(100, 200, size=(1, 478, 3)), (20, 1, 1))
    # open the mouth progressively: move the lower inner lip (14) down
    lm[:, 14, 1] = lm[:, 13, 1] + np.linspace(0, 30, 20)
    measures = face_measures(lm)
    assert np.all(np.diff(measures["mouth_open"]) > 0)
    report = coverage_report(lm, [0, 19])
    assert report["mouth_open"]["chosen_std"] > report["mouth_open"]["all_std"]
    assert report["mouth_open"]["chosen_max"] == pytest.approx(measures["mouth_open"].max())
    assert set(report) == {"yaw", "pitch", "mouth_open", "eye_open"}
