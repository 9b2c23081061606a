"""Anchors: one latent w_i in W per selected frame (MyStyle's pivots).

Default: optimization-based projection in the style of the official StyleGAN2-ADA projector,
batched over frames: start from the mean w (``G.mapping.w_avg``) plus ramped-down noise of the
size of W's spread, optimize w and the per-layer noise maps with Adam (lr warm-up and cosine
ramp-down), loss = LPIPS + lambda_pixel * MSE + noise autocorrelation regularization over scales,
noise maps re-normalized each step, early stop on a loss plateau.

Why also an encoder interface: the paper inverts with a pretrained encoder (pSp/e4e); any callable
images -> (N, w_dim) can be plugged in through ``AnchorEncoder`` instead of optimization.
The noise maps are only a projection aid: the anchors are w vectors, and the reconstruction LPIPS
reported per frame is measured the way tuning will render them (the generator's own const noise).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress


@runtime_checkable
class AnchorEncoder(Protocol):
    """Anything mapping frames to anchors: (N,3,R,R) float32 in [-1,1] -> (N, w_dim) float32."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


@dataclass
class InversionConfig:
    steps: int = 500
    batch: int = 8
    lr: float = 0.1
    lambda_pixel: float = 1.0
    initial_noise_factor: float = 0.05
    noise_ramp_length: float = 0.75
    lr_rampdown_length: float = 0.25
    lr_rampup_length: float = 0.05
    regularize_noise_weight: float = 1e5
    optimize_noise: bool = True
    w_avg_samples: int = 10000
    plateau_patience: int = 50      # steps without relative improvement > plateau_tol -> stop
    plateau_tol: float = 1e-3
    lpips_size: int = 256           # images larger than this are area-downsampled for LPIPS
    seed: int = 0


@dataclass
class InversionResult:
    anchors: np.ndarray       # (N, w_dim) float32
    lpips: np.ndarray         # (N,) reconstruction LPIPS of G(w_i) (const noise) vs frame i
    steps_run: np.ndarray     # (N,) optimization steps used (0 for an encoder)


# ----------------------------------------------------------------------------- helpers
def _for_lpips(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] > size:
        x = F.adaptive_avg_pool2d(x, (size, size))
    return x


def noise_buffers(G: torch.nn.Module) -> list[tuple[torch.nn.Module, str]]:
    """(module, name) of every ``noise_const`` buffer of the synthesis network (official naming)."""
    found = []
    for module in G.synthesis.modules():
        if "noise_const" in getattr(module, "_buffers", {}):
            found.append((module, "noise_const"))
    return found


@contextlib.contextmanager
def per_sample_noise(G: torch.nn.Module, noises: list[torch.Tensor]) -> Iterator[None]:
    """Temporarily replace each (r,r) ``noise_const`` by a (B,1,r,r) tensor, one map per frame.

    The official layer adds ``noise_const * noise_strength`` to (B,C,r,r) activations, so a (B,1,r,r)
    map broadcasts per sample: a batch of frames each gets its own optimized noise.
    """
    slots = noise_buffers(G)
    saved = [m._buffers[name] for m, name in slots]
    try:
        for (m, name), noise in zip(slots, noises):
            m._buffers[name] = noise
        yield
    finally:
        for (m, name), old in zip(slots, saved):
            m._buffers[name] = old


def _noise_regularization(noises: list[torch.Tensor]) -> torch.Tensor:
    """Multi-scale autocorrelation penalty of the official projector (pushes maps towards white noise)."""
    reg = noises[0].new_zeros(())
    for noise in noises:
        n = noise
        while True:
            reg = reg + (n * torch.roll(n, shifts=1, dims=3)).mean() ** 2
            reg = reg + (n * torch.roll(n, shifts=1, dims=2)).mean() ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    return reg


@torch.no_grad()
def w_statistics(G: torch.nn.Module, samples: int, seed: int, device: torch.device) -> tuple[torch.Tensor, float]:
    """(w_avg (w_dim,), w_std scalar): the start point and the scale of the start noise."""
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(samples, G.z_dim, generator=gen).to(device)
    c = torch.zeros(samples, getattr(G, "c_dim", 0), device=device)
    w = G.mapping(z, c)[:, 0, :].float()
    w_avg = G.mapping.w_avg.detach().float().to(device) if hasattr(G.mapping, "w_avg") else w.mean(0)
    w_std = float(((w - w.mean(0)) ** 2).sum() / samples) ** 0.5
    return w_avg, w_std


@torch.no_grad()
def reconstruction_lpips(G: torch.nn.Module, anchors: torch.Tensor, images: torch.Tensor,
                         lpips_model: torch.nn.Module, batch: int = 8, lpips_size: int = 256) -> np.ndarray:
    """Per-frame LPIPS(G(w_i) with const noise, t_i). ``images`` (N,3,R,R) uint8 or float [-1,1]."""
    device = anchors.device
    out = []
    for s in range(0, anchors.shape[0], batch):
        w = anchors[s:s + batch]
        img = G.synthesis(w[:, None, :].expand(-1, G.num_ws, -1), noise_mode="const")
        target = images[s:s + batch].to(device)
        if target.dtype == torch.uint8:
            target = target.float().div(127.5).sub(1.0)
        d = lpips_model(_for_lpips(img, lpips_size), _for_lpips(target, lpips_size))
        out.append(d.reshape(-1).cpu())
    return torch.cat(out).numpy().astype(np.float32)


# ----------------------------------------------------------------------------- projection
def project_batch(G: torch.nn.Module, target: torch.Tensor, lpips_model: torch.nn.Module,
                  config: InversionConfig, w_avg: torch.Tensor, w_std: float,
                  cancel: CancelToken = NEVER_CANCELLED, on_step=None) -> tuple[torch.Tensor, int]:
    """Project a batch of frames (B,3,R,R) [-1,1] into W; returns ((B, w_dim) anchors, steps run)."""
    device = target.device
    b = target.shape[0]
    gen = torch.Generator().manual_seed(config.seed)
    w_opt = w_avg.detach().clone()[None].repeat(b, 1).requires_grad_(True)
    slots = noise_buffers(G) if config.optimize_noise else []
    noises = [torch.randn((b, 1, *m._buffers[n].shape[-2:]), generator=gen).to(device).requires_grad_(True)
              for m, n in slots]
    optimizer = torch.optim.Adam([w_opt] + noises, betas=(0.9, 0.999), lr=config.lr)
    target_lp = _for_lpips(target, config.lpips_size)
    best, since_best, steps_run = math.inf, 0, 0
    for step in range(config.steps):
        cancel.check()
        t = step / config.steps
        w_noise_scale = w_std * config.initial_noise_factor * max(0.0, 1.0 - t / config.noise_ramp_length) ** 2
        lr_ramp = min(1.0, (1.0 - t) / config.lr_rampdown_length)
        lr_ramp = 0.5 - 0.5 * math.cos(lr_ramp * math.pi)
        lr_ramp = lr_ramp * min(1.0, t / config.lr_rampup_length)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_ramp
        w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale
        ws = (w_opt + w_noise)[:, None, :].expand(-1, G.num_ws, -1)
        if slots:
            with per_sample_noise(G, noises):
                image = G.synthesis(ws, noise_mode="const")
        else:
            image = G.synthesis(ws, noise_mode="const")
        per_frame = lpips_model(_for_lpips(image, config.lpips_size), target_lp).reshape(-1) \
            + config.lambda_pixel * ((image - target) ** 2).mean(dim=(1, 2, 3))
        dist = per_frame.mean()
        reg = _noise_regularization(noises) if noises else dist.new_zeros(())
        loss = dist + config.regularize_noise_weight * reg
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            for noise in noises:
                noise -= noise.mean(dim=(1, 2, 3), keepdim=True)
                noise *= noise.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt()
        steps_run = step + 1
        value = float(dist.item())
        if on_step is not None:
            on_step(step + 1, value)
        if value < best * (1.0 - config.plateau_tol):
            best, since_best = value, 0
        else:
            since_best += 1
        # plateau: stop once the noise ramp is over and the loss stopped improving
        if since_best >= config.plateau_patience and t >= config.noise_ramp_length:
            break
    return w_opt.detach().clone(), steps_run


def invert_frames(G: torch.nn.Module, images: torch.Tensor, lpips_model: torch.nn.Module,
                  config: InversionConfig | None = None, encoder: AnchorEncoder | None = None,
                  device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                  cancel: CancelToken = NEVER_CANCELLED) -> InversionResult:
    """Anchors for ``images`` ((N,3,R,R) uint8 at G's resolution): encoder if given, else projection.

    Progress counts optimization steps over all batches (frames x steps / batch).
    """
    from personalize.tuning import to_unit_range

    config = config or InversionConfig()
    device = torch.device(device)
    G.to(device).eval().requires_grad_(False)
    lpips_model.to(device).eval().requires_grad_(False)
    n = images.shape[0]
    anchors = torch.zeros(n, G.w_dim, device=device)
    steps_run = np.zeros(n, dtype=np.int64)
    if encoder is not None:
        with torch.no_grad():
            for s in range(0, n, config.batch):
                cancel.check()
                w = encoder(to_unit_range(images[s:s + config.batch]).to(device))
                if w.ndim == 3:  # W+ encoders: keep the mean over layers (anchors live in W)
                    w = w.mean(dim=1)
                anchors[s:s + config.batch] = w.float()
                progress(min(s + config.batch, n), n, "encoding")
    else:
        w_avg, w_std = w_statistics(G, config.w_avg_samples, config.seed, device)
        batches = list(range(0, n, config.batch))
        total = len(batches) * config.steps
        for k, s in enumerate(batches):
            target = to_unit_range(images[s:s + config.batch]).to(device)

            def report(step: int, value: float, k: int = k) -> None:
                progress(k * config.steps + step, total, f"frames {s + 1}-{s + target.shape[0]} loss {value:.3f}")

            w, used = project_batch(G, target, lpips_model, config, w_avg, w_std, cancel, report)
            anchors[s:s + target.shape[0]] = w
            steps_run[s:s + target.shape[0]] = used
            progress((k + 1) * config.steps, total, "projected")
    rec = reconstruction_lpips(G, anchors, images, lpips_model, config.batch, config.lpips_size)
    return InversionResult(anchors.detach().cpu().numpy().astype(np.float32), rec, steps_run)
