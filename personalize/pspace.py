"""MyStyle's personalized latent space P: helpers on the anchors' convex hull.

After tuning, only the region of W spanned by the anchors {w_i} reproduces the person (MyStyle;
paper App. B). Editing (learned directions, NADA styles) samples random points of the hull
(MyStyle's P0 = convex combinations with non-negative weights); re-enactment's coordinates are
``optimize.latent_space``.
"""
from __future__ import annotations

import numpy as np
import torch


def _as_tensor(anchors: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(anchors)
    if t.ndim != 2:
        raise ValueError(f"anchors must be (N, w_dim), got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError("anchors is empty")
    return t.float()


def sample_convex_coefficients(count: int, n: int, generator: torch.Generator | None = None,
                               concentration: float = 1.0) -> torch.Tensor:
    """(n, count) Dirichlet(concentration) weights: non-negative rows summing to 1.

    concentration 1 is uniform over the simplex; < 1 favours points near single anchors, > 1 points
    near the center. Sampled as normalized Gamma variables (Marsaglia–Tsang via torch's
    ``_standard_gamma``) from ``generator`` so results are reproducible.
    """
    if concentration <= 0:
        raise ValueError("concentration must be > 0")
    alpha = torch.full((n, count), float(concentration), dtype=torch.float64)
    if generator is None:
        gamma = torch._standard_gamma(alpha)
    else:
        # torch._standard_gamma takes no generator; draw through exponential/gamma identity instead
        gamma = _gamma_with_generator(alpha, generator)
    gamma = gamma.clamp_min(1e-300)
    return (gamma / gamma.sum(dim=1, keepdim=True)).float()


def _gamma_with_generator(alpha: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma(alpha, 1) samples using only ``generator`` (Marsaglia–Tsang with the alpha<1 boost)."""
    a = alpha.clone()
    boost = a < 1
    a = torch.where(boost, a + 1.0, a)
    d = a - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(a)
    pending = torch.ones_like(a, dtype=torch.bool)
    while bool(pending.any()):
        x = torch.randn(a.shape, generator=generator, dtype=torch.float64)
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u.clamp_min(1e-300)) < 0.5 * x * x + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        take = pending & ok
        out[take] = (d * v)[take]
        pending &= ~ok
    if bool(boost.any()):
        u = torch.rand(a.shape, generator=generator, dtype=torch.float64).clamp_min(1e-300)
        out = torch.where(boost, out * u ** (1.0 / alpha), out)
    return out


def sample_convex(anchors: torch.Tensor | np.ndarray, n: int, generator: torch.Generator | None = None,
                  concentration: float = 1.0) -> torch.Tensor:
    """n random points of the anchors' convex hull (MyStyle's P0): (n, w_dim) float32.

    ``anchors`` (N, w_dim); weights ~ Dirichlet(concentration), see ``sample_convex_coefficients``.
    """
    a = _as_tensor(anchors)
    weights = sample_convex_coefficients(a.shape[0], n, generator, concentration).to(a.device)
    return weights @ a
