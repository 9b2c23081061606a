"""The personalized latent spaces P and P+ (main paper Sec. 3.3.1, Appendix B).

Why optimize here and not in W/W+: MyStyle's tuning personalizes only the region of W around the
anchors ``{w_i}``; a slightly dilated convex hull of the anchors keeps the identity, so a code is
written in barycentric coefficients ``alpha`` over the N anchors:

    P_beta = { sum_i alpha_i w_i  |  sum_i alpha_i = 1,  alpha_i >= -beta }          (Eq. 6)

* ``alpha`` goes through the shifted softplus (Eq. 7)
  ``alpha~ = 1/s * log(1 + exp(s (alpha + beta))) - beta`` (s = 100, beta = 0.02), so every
  coefficient stays above ``-beta``;
* ``L_sum = (sum_i alpha~_i - 1)^2`` (Eq. 8) pulls the sum towards 1;
* P+ gives every generator layer ``l`` its own offset ``Delta_l`` on the coefficients
  (``alpha~ + Delta_l``, Appendix B.2, so ``Delta`` has shape (num_ws, N)) with
  ``L_delta = sum_l ||Delta_l||_2`` (Eq. 9);
* the optimization result is explicitly normalized so the coefficients sum to 1.

Parameter scale: the optimizer works on ``N * alpha`` and ``N * Delta`` ("unit scale", uniform
coefficients = 1). The map to images is the same; what changes is that Adam's step size means the
same thing for any anchor count N. The warm-start noise is specified in the paper's own units
(see ``perturbed``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

SHARPNESS = 100.0
"""s in Eq. 7."""
DILATION_BETA = 0.02
"""beta in Eqs. 6-7 (Appendix C.3)."""
NOISE_UNITS = ("alpha", "uniform")
"""How ``PersonalizedSpace.perturbed`` reads its sigma (see there)."""
REVIVABLE_SOFTPLUS_INPUT = -2.0
"""Lowest ``s (alpha + beta)`` the optimizer keeps (``PersonalizedSpace.alpha_floor``)."""


def shifted_softplus(alpha: torch.Tensor, sharpness: float = SHARPNESS,
                     beta: float = DILATION_BETA) -> torch.Tensor:
    """Eq. 7, element-wise: a smooth ``max(alpha, -beta)``; output > -beta."""
    # torch's softplus(x, beta=s) is exactly 1/s * log(1 + exp(s x)) (linear above its threshold).
    return F.softplus(alpha + beta, beta=sharpness, threshold=20.0) - beta


def inverse_shifted_softplus(alpha_tilde: torch.Tensor, sharpness: float = SHARPNESS,
                             beta: float = DILATION_BETA) -> torch.Tensor:
    """The ``alpha`` whose shifted softplus is ``alpha_tilde``; values are clamped above -beta.

    Needed to start the optimization *exactly* at a given code (an anchor, the center, a previous
    frame's normalized result): the softplus is not the identity near 0 (softplus(0) ~ +0.0013,
    which over 250 anchors would add 0.3 to the sum).
    """
    y = (alpha_tilde + beta).clamp_min(1e-6) * sharpness
    # log(exp(y) - 1) computed stably: y + log(1 - exp(-y)).
    return (y + torch.log(-torch.expm1(-y))) / sharpness - beta


def sum_loss(alpha_tilde: torch.Tensor) -> torch.Tensor:
    """Eq. 8: ``(sum_i alpha~_i - 1)^2``; alpha_tilde (B, N) -> (B,)."""
    return (alpha_tilde.sum(dim=-1) - 1.0) ** 2


def delta_loss(delta: torch.Tensor) -> torch.Tensor:
    """Eq. 9: ``sum_l ||Delta_l||_2``; delta (B, num_ws, N) -> (B,)."""
    return delta.norm(dim=-1).sum(dim=-1)


@dataclass
class PPlusCode:
    """One or more P+ codes in optimizer (unit) scale.

    ``alpha``: (B, N) pre-softplus coefficients times N; ``delta``: (B, num_ws, N) per-layer
    offsets times N. Both are leaf tensors the optimizer may update in place.
    """

    alpha: torch.Tensor
    delta: torch.Tensor

    def detach(self) -> "PPlusCode":
        return PPlusCode(self.alpha.detach().clone(), self.delta.detach().clone())

    def to(self, device: torch.device | str) -> "PPlusCode":
        return PPlusCode(self.alpha.to(device), self.delta.to(device))


class PersonalizedSpace:
    """P / P+ over fixed anchors: conversions between coefficients and generator ``ws``.

    ``anchors``: (N, w_dim) float32 W codes (``dataset/anchors.npy``); ``num_ws``: the generator's
    number of style inputs. Everything returned is on the anchors' device.
    """

    def __init__(self, anchors: torch.Tensor | np.ndarray, num_ws: int, *,
                 sharpness: float = SHARPNESS, beta: float = DILATION_BETA,
                 device: torch.device | str | None = None) -> None:
        anchors_t = torch.as_tensor(np.asarray(anchors) if not torch.is_tensor(anchors) else anchors,
                                    dtype=torch.float32)
        if anchors_t.ndim != 2 or anchors_t.shape[0] < 1:
            raise ValueError(f"anchors must be (N, w_dim), got {tuple(anchors_t.shape)}")
        if not torch.isfinite(anchors_t).all():
            raise ValueError("anchors contain NaN or inf")
        self.anchors = anchors_t.to(device) if device is not None else anchors_t
        self.num_ws = int(num_ws)
        self.sharpness = float(sharpness)
        self.beta = float(beta)

    # ---------------------------------------------------------------- sizes
    @property
    def n_anchors(self) -> int:
        return int(self.anchors.shape[0])

    @property
    def w_dim(self) -> int:
        return int(self.anchors.shape[1])

    @property
    def device(self) -> torch.device:
        return self.anchors.device

    # ---------------------------------------------------------------- coefficients
    def alpha_tilde(self, code: PPlusCode) -> torch.Tensor:
        """Softplus'd coefficients alpha~ (B, N) in true scale (uniform = 1/N)."""
        return shifted_softplus(code.alpha / self.n_anchors, self.sharpness, self.beta)

    def delta(self, code: PPlusCode) -> torch.Tensor:
        """Per-layer offsets Delta (B, num_ws, N) in true scale."""
        return code.delta / self.n_anchors

    def layer_coefficients(self, code: PPlusCode) -> torch.Tensor:
        """(B, num_ws, N): alpha~ + Delta_l for every layer (differentiable, not normalized)."""
        return self.alpha_tilde(code)[:, None, :] + self.delta(code)

    def regularizers(self, code: PPlusCode) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_sum, L_delta), each (B,)."""
        return sum_loss(self.alpha_tilde(code)), delta_loss(self.delta(code))

    def normalized_coefficients(self, code: PPlusCode) -> torch.Tensor:
        """The final code (B, num_ws, N): alpha~ explicitly normalized to sum 1, plus Delta_l."""
        alpha = self.alpha_tilde(code)
        alpha = alpha / alpha.sum(dim=-1, keepdim=True).clamp_min(1e-8)
        return alpha[:, None, :] + self.delta(code)

    # ---------------------------------------------------------------- ws
    def coefficients_to_ws(self, coefficients: torch.Tensor) -> torch.Tensor:
        """(B, N) P coefficients or (B, num_ws, N) P+ coefficients -> ws (B, num_ws, w_dim)."""
        if coefficients.ndim == 2:
            coefficients = coefficients[:, None, :].expand(-1, self.num_ws, -1)
        return coefficients @ self.anchors

    def to_ws(self, code: PPlusCode) -> torch.Tensor:
        """Differentiable ws (B, num_ws, w_dim) used during optimization (not normalized)."""
        return self.coefficients_to_ws(self.layer_coefficients(code))

    def final_ws(self, code: PPlusCode) -> torch.Tensor:
        """ws (B, num_ws, w_dim) of the normalized result (what is stored and rendered)."""
        return self.coefficients_to_ws(self.normalized_coefficients(code))

    def ws_to_coefficients(self, ws: torch.Tensor) -> torch.Tensor:
        """Least-squares coefficients (B, num_ws, N) reproducing ``ws`` (B, num_ws, w_dim).

        Exact when ``ws`` lies in the span of the anchors (e.g. came from ``to_ws``); the
        minimum-norm solution otherwise. Why: lets any W+ track (an edited one, an imported one)
        be expressed back in P+ to continue optimizing it.
        """
        b, layers, _ = ws.shape
        flat = ws.reshape(b * layers, self.w_dim).T  # (w_dim, B*L)
        solution = torch.linalg.lstsq(self.anchors.T.cpu().double(), flat.cpu().double(),
                                      driver="gelsd").solution  # (N, B*L)
        return solution.T.reshape(b, layers, self.n_anchors).to(ws.dtype).to(ws.device)

    # ---------------------------------------------------------------- starting codes
    def code_from_coefficients(self, alpha_tilde: torch.Tensor,
                               delta: torch.Tensor | None = None) -> PPlusCode:
        """A code whose alpha~ equals ``alpha_tilde`` (B, N) and Delta equals ``delta`` (true scale)."""
        alpha_tilde = alpha_tilde.to(self.device, torch.float32)
        raw = inverse_shifted_softplus(alpha_tilde, self.sharpness, self.beta) * self.n_anchors
        if delta is None:
            delta_unit = torch.zeros(alpha_tilde.shape[0], self.num_ws, self.n_anchors, device=self.device)
        else:
            delta_unit = delta.to(self.device, torch.float32) * self.n_anchors
        return PPlusCode(raw, delta_unit)

    def center_code(self, batch: int = 1) -> PPlusCode:
        """The center of P: uniform coefficients 1/N, no offsets (identity reference, fallback start)."""
        uniform = torch.full((batch, self.n_anchors), 1.0 / self.n_anchors, device=self.device)
        return self.code_from_coefficients(uniform)

    def anchor_code(self, index: int) -> PPlusCode:
        """The code of anchor ``index`` (one-hot coefficients)."""
        one_hot = torch.zeros(1, self.n_anchors, device=self.device)
        one_hot[0, index] = 1.0
        return self.code_from_coefficients(one_hot)

    def center_ws(self) -> torch.Tensor:
        """ws (1, num_ws, w_dim) of the center of P: the anchors' mean."""
        return self.anchors.mean(dim=0)[None, None, :].expand(1, self.num_ws, -1).contiguous()

    def anchor_ws(self) -> torch.Tensor:
        """ws (N, num_ws, w_dim) of every anchor."""
        return self.anchors[:, None, :].expand(-1, self.num_ws, -1).contiguous()

    @property
    def alpha_floor(self) -> float:
        """Lowest useful pre-softplus alpha, in unit scale: where the softplus still passes 12 %
        of the gradient (``s (alpha + beta) = -2``; alpha~ there is -beta + 0.0013).

        Why: below ``-beta`` the shifted softplus is flat, so a coefficient pushed there gets no
        gradient and can never come back. Within one frame that only drops an anchor; along a
        warm-started take the dropped anchors pile up frame after frame until the expression a
        later frame needs is out of reach (measured: the keypoint error of a 12-frame take grew
        from 0.03 to 0.8 px, the anchor the take moved towards stuck at -beta). Holding alpha at
        this floor changes alpha~ by at most 0.0013 and keeps every anchor reachable.
        """
        return self.n_anchors * (-self.beta + REVIVABLE_SOFTPLUS_INPUT / self.sharpness)

    def clamp_to_floor_(self, code: PPlusCode) -> None:
        """In place: lift ``code.alpha`` to ``alpha_floor`` (see there)."""
        with torch.no_grad():
            code.alpha.clamp_(min=self.alpha_floor)

    def perturbed(self, code: PPlusCode, sigma: float, generator: torch.Generator | None = None,
                  units: str = "uniform") -> PPlusCode:
        """Warm start for the next frame: ``code`` with Gaussian noise of std ``sigma`` on alpha.

        Which latent: the barycentric coefficients alpha over the anchors (before the softplus),
        i.e. the previous frame's optimization result itself. Why: the paper optimizes exactly
        these (Appendix B: "optimization is technically performed on a vector of these
        coefficients") and initializes each frame with "the result of the previous frame, with
        small additive Gaussian noise" of sigma = 0.05 (Sec. 3.3.3, Appendix C.3).

        ``units``: "alpha" (the paper's literal reading) — sigma in raw coefficient units, where
        the uniform coefficient is 1/N, so each coefficient gets noise of std sigma whatever N
        is; "uniform" (the default) — sigma relative to the uniform coefficient (std sigma / N
        per coefficient, 250x smaller at N = 250). The paper's units go with its own step sizes,
        which it does not state (MyStyle's projection takes 1000 Adam steps of 0.005 on raw
        alpha); with ours (40 steps of ~0.0002 raw) its noise is not removed within a frame, and
        on the known-answer clip it doubled the keypoint error at 250 anchors (figures in
        docs/ARCHITECTURE.md), so it is kept as a choice, not the default. Only the shared
        alpha gets noise: noise on the per-layer offsets would just be pulled back by L_delta.
        """
        if units not in NOISE_UNITS:
            raise ValueError(f"noise units must be one of {NOISE_UNITS}, got {units!r}")
        base = code.detach()
        if sigma <= 0:
            return base
        unit_sigma = sigma * self.n_anchors if units == "alpha" else sigma  # the optimizer holds N * alpha
        noise = torch.randn(base.alpha.shape, generator=generator, device="cpu").to(self.device)
        return PPlusCode(base.alpha + unit_sigma * noise, base.delta)
