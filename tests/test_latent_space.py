"""P / P+ latent spaces (Appendix B): softplus, regularizers, conversions, normalization."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from optimize.latent_space import (DILATION_BETA, PersonalizedSpace, PPlusCode, delta_loss,
                                   inverse_shifted_softplus, shifted_softplus, sum_loss)
from optimize.smoothing import smooth_track


def _space(n: int = 7, w_dim: int = 5, num_ws: int = 3, seed: int = 0) -> PersonalizedSpace:
    gen = torch.Generator().manual_seed(seed)
    return PersonalizedSpace(torch.randn(n, w_dim, generator=gen), num_ws)


def test_shifted_softplus_matches_eq7_and_stays_above_minus_beta() -> None:
    alpha = torch.linspace(-1.0, 1.0, 201, dtype=torch.float64)
    s, beta = 100.0, 0.02
    expected = torch.log1p(torch.exp(s * (alpha + beta))) / s - beta  # Eq. 7 written out
    got = shifted_softplus(alpha, s, beta)
    assert torch.allclose(got, expected, atol=1e-6)
    assert bool((got >= -beta).all())  # > -beta mathematically; equal once exp underflows
    assert bool((got[alpha > -0.2] > -beta).all())
    # far above -beta it is the identity, far below it saturates at -beta
    assert abs(float(shifted_softplus(torch.tensor(0.5))) - 0.5) < 1e-6
    assert abs(float(shifted_softplus(torch.tensor(-0.5))) + DILATION_BETA) < 1e-6


def test_inverse_softplus_round_trip() -> None:
    values = torch.tensor([-0.019, -0.01, 0.0, 1e-3, 0.004, 0.2, 1.0], dtype=torch.float64)
    assert torch.allclose(shifted_softplus(inverse_shifted_softplus(values)), values, atol=1e-9)


def test_regularizers_are_eq8_and_eq9() -> None:
    alpha_tilde = torch.tensor([[0.2, 0.3, 0.6], [0.5, 0.25, 0.25]])
    assert torch.allclose(sum_loss(alpha_tilde), torch.tensor([0.01, 0.0]), atol=1e-7)
    delta = torch.zeros(1, 2, 3)
    delta[0, 0] = torch.tensor([3.0, 4.0, 0.0])
    delta[0, 1] = torch.tensor([0.0, 0.0, 2.0])
    assert torch.allclose(delta_loss(delta), torch.tensor([7.0]))  # ||(3,4,0)|| + ||(0,0,2)||


def test_center_and_anchor_codes_map_to_their_ws() -> None:
    space = _space()
    center = space.center_code()
    assert torch.allclose(space.alpha_tilde(center).sum(), torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(space.final_ws(center), space.center_ws(), atol=1e-5)
    assert torch.allclose(space.to_ws(center), space.center_ws(), atol=1e-4)
    for i in (0, 3, 6):
        ws = space.final_ws(space.anchor_code(i))
        assert torch.allclose(ws, space.anchor_ws()[i:i + 1], atol=1e-5)
    sum_l, delta_l = space.regularizers(center)
    assert float(sum_l) < 1e-9 and float(delta_l) == 0.0


def test_pplus_offsets_change_layers_independently_and_normalization_sums_to_one() -> None:
    space = _space()
    code = space.center_code()
    code.alpha = code.alpha + torch.randn_like(code.alpha)  # sum no longer 1
    code.delta = code.delta.clone()
    code.delta[0, 1] = torch.randn(space.n_anchors)
    ws = space.to_ws(code)
    assert ws.shape == (1, space.num_ws, space.w_dim)
    assert torch.allclose(ws[0, 0], ws[0, 2]) and not torch.allclose(ws[0, 0], ws[0, 1])
    coeff = space.normalized_coefficients(code)
    assert torch.allclose(space.alpha_tilde(code).sum(-1) / space.alpha_tilde(code).sum(-1),
                          torch.ones(1))
    shared = coeff - space.delta(code)  # remove the offsets -> the normalized alpha~ per layer
    assert torch.allclose(shared.sum(-1), torch.ones(1, space.num_ws), atol=1e-5)
    # all coefficients stay in the dilated simplex bound (> -beta) before normalization
    assert bool((space.alpha_tilde(code) > -DILATION_BETA).all())


def test_ws_to_coefficients_recovers_codes_in_the_span() -> None:
    space = _space(n=4, w_dim=9)  # N < w_dim: coefficients are unique
    code = space.center_code()
    code.delta = torch.randn_like(code.delta) * 0.1 * space.n_anchors
    ws = space.final_ws(code)
    coeff = space.ws_to_coefficients(ws)
    assert torch.allclose(coeff, space.normalized_coefficients(code), atol=1e-4)
    assert torch.allclose(space.coefficients_to_ws(coeff), ws, atol=1e-4)


def test_gradients_reach_alpha_and_delta() -> None:
    space = _space()
    code = space.center_code()
    code = PPlusCode(code.alpha.requires_grad_(True), code.delta.requires_grad_(True))
    target = torch.randn(1, space.num_ws, space.w_dim)
    loss = ((space.to_ws(code) - target) ** 2).sum() + sum(r.sum() for r in space.regularizers(code))
    loss.backward()
    assert code.alpha.grad is not None and float(code.alpha.grad.abs().sum()) > 0
    assert code.delta.grad is not None and float(code.delta.grad.abs().sum()) > 0


def test_perturbed_is_reproducible_and_small() -> None:
    space = _space(n=250, w_dim=16, num_ws=4)
    base = space.center_code()
    a = space.perturbed(base, 0.05, torch.Generator().manual_seed(3))  # default: relative to uniform
    b = space.perturbed(base, 0.05, torch.Generator().manual_seed(3))
    assert torch.equal(a.alpha, b.alpha) and torch.equal(a.delta, base.delta)
    # sigma relative to the uniform coefficient: the code stays near the start
    moved = (space.final_ws(a) - space.final_ws(base)).norm() / space.final_ws(base).norm()
    assert 0 < float(moved) < 0.2


@pytest.mark.parametrize("n", [6, 250])
def test_warm_start_noise_has_the_papers_sigma_on_the_coefficients(n: int) -> None:
    """Appendix C.3: sigma = 0.05 on the previous result's barycentric coefficients alpha (raw units,
    uniform = 1/N), whatever the anchor count; 'uniform' units divide it by N (the earlier reading)."""
    space = _space(n=n, w_dim=16, num_ws=4)
    base = space.anchor_code(0)
    draws = torch.cat([space.perturbed(base, 0.05, torch.Generator().manual_seed(s), units="alpha").alpha
                       - base.alpha for s in range(400 // n + 4)], dim=1) / n  # unit scale -> raw alpha
    assert float(draws.std()) == pytest.approx(0.05, rel=0.1)
    before = torch.cat([space.perturbed(base, 0.05, torch.Generator().manual_seed(s), units="uniform").alpha
                        - base.alpha for s in range(400 // n + 4)], dim=1) / n
    assert float(before.std()) == pytest.approx(0.05 / n, rel=0.1)
    with pytest.raises(ValueError, match="units"):
        space.perturbed(base, 0.05, units="w")


def test_alpha_floor_keeps_anchors_reachable_and_barely_moves_the_code() -> None:
    from optimize.latent_space import shifted_softplus

    space = _space(n=6)
    code = space.anchor_code(2)  # the other five coefficients sit on the flat floor of the softplus
    code.alpha[0, 0] = -50.0      # and one far below it, as Adam leaves a dropped anchor
    dead = code.alpha.clone().requires_grad_(True)
    space.alpha_tilde(PPlusCode(dead, code.delta))[0, 0].backward()
    assert float(dead.grad[0, 0]) < 1e-6  # no gradient: without the floor it could never return
    before = space.alpha_tilde(code)
    space.clamp_to_floor_(code)
    assert float(code.alpha.min()) >= space.alpha_floor - 1e-6
    alive = code.alpha.clone().requires_grad_(True)
    space.alpha_tilde(PPlusCode(alive, code.delta))[0, 0].backward()
    slope = torch.sigmoid(torch.tensor(-2.0)) / space.n_anchors  # d alpha~ / d unit-scale alpha
    assert float(alive.grad[0, 0]) == pytest.approx(float(slope), rel=1e-3)
    assert float((space.alpha_tilde(code) - before).abs().max()) < 0.0014
    assert float(shifted_softplus(torch.tensor(space.alpha_floor / space.n_anchors))) > -space.beta


def test_space_rejects_bad_anchors() -> None:
    with pytest.raises(ValueError):
        PersonalizedSpace(np.zeros((3,), np.float32), 4)
    with pytest.raises(ValueError):
        PersonalizedSpace(np.full((3, 4), np.nan, np.float32), 4)


def test_smooth_track_is_zero_phase_and_keeps_ends() -> None:
    t = np.arange(40, dtype=np.float32)
    ramp = np.stack([t, -t], axis=1)[:, None, :]  # (T, 1, 2)
    out = smooth_track(ramp, 2.0)
    assert out.shape == ramp.shape
    np.testing.assert_allclose(out[9:-9], ramp[9:-9], atol=1e-4)  # a linear ramp is not delayed
    jitter = ramp + np.random.default_rng(0).normal(0, 1, ramp.shape).astype(np.float32)
    smoothed = smooth_track(jitter, 2.0)
    # the noise around the ramp shrinks by far (a Gaussian of sigma 2 keeps ~1/(2 sqrt(pi) 2) of it)
    assert np.abs(smoothed - ramp)[9:-9].std() < 0.5 * np.abs(jitter - ramp)[9:-9].std()
    np.testing.assert_array_equal(smooth_track(jitter, 0.0), jitter)
