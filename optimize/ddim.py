"""Deterministic DDIM (eta = 0) over DiffAE's 1000-step linear schedule, as DiffAE's code runs it.

Facts reproduced (they change the numbers):

- Betas: ``linspace(1e-4, 0.02, 1000)`` in float64; the model predicts the noise eps.
- ``steps`` sampling steps use the strided timesteps ``range(0, 1000, k)`` with the smallest
  stride k giving exactly ``steps`` of them ("ddim{steps}": 20 -> 0, 50, ..., 950; 2 -> 0, 500).
  A step count with no such stride (1, 37, 41, 43...) is refused. The spaced schedule's
  cumulative alphas are rebuilt from the spaced betas in float64, then each coefficient is
  read out as float32, as the official ``_extract_into_tensor`` does.
- Every step first predicts x0 = sqrt(1/a_t) x_t - sqrt(1/a_t - 1) eps, CLIPS it to [-1, 1],
  and re-derives eps from the clipped x0; then
  sampling:  x_prev = x0 sqrt(a_prev) + sqrt(1 - a_prev) eps      (a_prev = 1 at the last step,
             so the result is the clipped x0),
  inversion: x_next = x0 sqrt(a_next) + sqrt(1 - a_next) eps      (a_next = 0 at the last step).
- The network gets the ORIGINAL timestep (e.g. 950), not the step index.

Shapes: x (B,3,H,W) float32; ``eps_fn(x, t)`` receives t as (B,) int64 original timesteps and
returns eps like x (any float dtype; fp16 under autocast is promoted to float32 here, as in the
official code). Batches are independent frames.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

EpsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
StepCallback = Callable[[int, int], None]

NUM_TRAIN_STEPS = 1000


def linear_betas(num_train_steps: int = NUM_TRAIN_STEPS) -> np.ndarray:
    """Ho et al.'s linear schedule, rescaled for other lengths; float64 (T,)."""
    scale = 1000 / num_train_steps
    return np.linspace(scale * 0.0001, scale * 0.02, num_train_steps, dtype=np.float64)


def spaced_timesteps(steps: int, num_train_steps: int = NUM_TRAIN_STEPS) -> list[int]:
    """The "ddim{steps}" timesteps: range(0, T, k) for the smallest stride k giving ``steps`` values."""
    for stride in range(1, num_train_steps):
        if len(range(0, num_train_steps, stride)) == steps:
            return list(range(0, num_train_steps, stride))
    raise ValueError(f"{steps} DDIM steps cannot be spaced evenly over {num_train_steps} "
                     "(no integer stride gives exactly that many); choose another step count")


def valid_step_counts(num_train_steps: int = NUM_TRAIN_STEPS) -> list[int]:
    """Step counts ``spaced_timesteps`` accepts, ascending."""
    return sorted({len(range(0, num_train_steps, k)) for k in range(1, num_train_steps)})


class DDIMSchedule:
    """Coefficients of a ``steps``-step DDIM over the linear schedule (float32 tensors, CPU).

    Index i (0 = least noisy) is a position in ``timesteps``; ``timesteps[i]`` is what the
    network sees.
    """

    def __init__(self, steps: int, num_train_steps: int = NUM_TRAIN_STEPS) -> None:
        self.steps = steps
        self.timesteps = spaced_timesteps(steps, num_train_steps)
        kept = set(self.timesteps)
        base = np.cumprod(1.0 - linear_betas(num_train_steps))
        betas, last = [], 1.0
        for i, a in enumerate(base):
            if i in kept:
                betas.append(1 - a / last)
                last = a
        alphas_cumprod = np.cumprod(1.0 - np.array(betas))

        def f32(arr: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(arr).float()

        self.alphas_cumprod = f32(alphas_cumprod)
        self.alphas_cumprod_prev = f32(np.append(1.0, alphas_cumprod[:-1]))
        self.alphas_cumprod_next = f32(np.append(alphas_cumprod[1:], 0.0))
        self.sqrt_recip_alphas_cumprod = f32(np.sqrt(1.0 / alphas_cumprod))
        self.sqrt_recipm1_alphas_cumprod = f32(np.sqrt(1.0 / alphas_cumprod - 1))

    def predict_x0(self, x: torch.Tensor, i: int, eps: torch.Tensor) -> torch.Tensor:
        """Clipped x0 estimate at step index i."""
        x0 = self.sqrt_recip_alphas_cumprod[i].item() * x - self.sqrt_recipm1_alphas_cumprod[i].item() * eps.float()
        return x0.clamp(-1, 1)

    def _eps_from_x0(self, x: torch.Tensor, i: int, x0: torch.Tensor) -> torch.Tensor:
        return (self.sqrt_recip_alphas_cumprod[i].item() * x - x0) / self.sqrt_recipm1_alphas_cumprod[i].item()

    def _move(self, x: torch.Tensor, i: int, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
        x0 = self.predict_x0(x, i, eps)
        eps = self._eps_from_x0(x, i, x0)
        return x0 * torch.sqrt(alpha_bar).item() + torch.sqrt(1 - alpha_bar).item() * eps

    def step(self, x: torch.Tensor, i: int, eps: torch.Tensor) -> torch.Tensor:
        """One sampling step from index i to i-1 (to x0 when i == 0)."""
        return self._move(x, i, eps, self.alphas_cumprod_prev[i])

    def reverse_step(self, x: torch.Tensor, i: int, eps: torch.Tensor) -> torch.Tensor:
        """One inversion step from index i to i+1 (to x_T when i == steps-1)."""
        return self._move(x, i, eps, self.alphas_cumprod_next[i])

    def _t(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return torch.full((x.shape[0],), self.timesteps[i], dtype=torch.long, device=x.device)

    @torch.no_grad()
    def sample(self, eps_fn: EpsFn, x_t: torch.Tensor, on_step: StepCallback | None = None) -> torch.Tensor:
        """Denoise x_T (B,3,H,W) to an image (B,3,H,W) in [-1,1] in ``steps`` network calls."""
        x = x_t.float()
        for n, i in enumerate(reversed(range(self.steps))):
            x = self.step(x, i, eps_fn(x, self._t(x, i)))
            if on_step is not None:
                on_step(n + 1, self.steps)
        return x

    @torch.no_grad()
    def invert(self, eps_fn: EpsFn, x0: torch.Tensor, on_step: StepCallback | None = None) -> torch.Tensor:
        """Deterministic encoding of an image (B,3,H,W) [-1,1] to its x_T (DiffAE's encode_stochastic)."""
        x = x0.float()
        for i in range(self.steps):
            x = self.reverse_step(x, i, eps_fn(x, self._t(x, i)))
            if on_step is not None:
                on_step(i + 1, self.steps)
        return x
