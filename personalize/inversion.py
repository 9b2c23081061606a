"""Anchors: one latent w_i in W per selected frame (MyStyle's pivots).

Default: optimization-based projection in the style of the official StyleGAN2-ADA projector,
batched over frames: start from the mean w (``G.mapping.w_avg``) plus ramped-down noise of the
size of W's spread, optimize w and the per-layer noise maps with Adam (lr warm-up and cosine
ramp-down), loss = LPIPS + lambda_pixel * MSE + noise autocorrelation regularization over scales,
noise maps re-normalized each step, early stop on a loss plateau.

Why also an encoder interface: the paper inverts with a pretrained encoder (pSp/e4e); any callable
images -> (N, w_dim) W codes can be plugged in through ``AnchorEncoder`` instead of optimization.
An encoder that works in W+ reduces its codes to W itself: the one rule for the FFHQ e4e (first
style, ``latent_avg`` added) lives in ``personalize.encoders.e4e.encode_w_anchors``; codes of
another shape are refused here rather than reduced by a second, different rule.
The noise maps are only a projection aid: the anchors are w vectors, and the reconstruction LPIPS
reported per frame is measured the way tuning will render them (the generator's own const noise).

Frames are inverted in batches of ``InversionConfig.batch``, and the anchors of every finished
batch are saved at once (``progress_path``): a stopped run keeps them and the next run redoes only
the batch that was in progress and those not started. Each batch's projection is seeded the same
way whichever process runs it, so with several processes (``personalize.distributed``) the batches
are dealt round-robin to the ranks and the anchors equal a single-process run's exactly.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from personalize.distributed import SINGLE, DistContext
from personalize.errors import Cancelled
from personalize.fileio import atomic_save_npz
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

log = logging.getLogger(__name__)
PROGRESS_FORMAT = 1


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
    resumed_batches: int = 0  # batches taken from the progress file instead of being redone
    seconds_per_step: float | None = None  # measured time per step of one batch (this run's batches)


@dataclass
class InversionProgress:
    """The anchors of the batches finished so far (the resumable state of ``invert_frames``).

    ``anchors`` (N, w_dim) float32 (rows of unfinished batches are zero); ``done`` (B,) bool per
    batch; ``steps_run`` (N,) int; ``seconds``: compute time the finished batches took (summed over
    processes); ``fingerprint``: the generator, frames, settings and method they were made with.
    """

    fingerprint: str
    anchors: np.ndarray
    done: np.ndarray
    steps_run: np.ndarray
    seconds: float = 0.0

    @classmethod
    def empty(cls, fingerprint: str, n_frames: int, n_batches: int, w_dim: int) -> "InversionProgress":
        return cls(fingerprint, np.zeros((n_frames, w_dim), np.float32), np.zeros(n_batches, bool),
                   np.zeros(n_frames, np.int64))

    def save(self, path: Path) -> None:
        atomic_save_npz(path, format=np.array(PROGRESS_FORMAT), fingerprint=np.array(self.fingerprint),
                        anchors=self.anchors, done=self.done, steps_run=self.steps_run,
                        seconds=np.array(self.seconds))

    @classmethod
    def load(cls, path: Path) -> "InversionProgress | None":
        """The saved progress, or None when the file is missing or unreadable (it is only a cache
        of finished work: a damaged one costs a re-run of those batches, never a wrong anchor)."""
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                if int(data["format"]) != PROGRESS_FORMAT:
                    return None
                return cls(str(data["fingerprint"]), data["anchors"].astype(np.float32), data["done"].astype(bool),
                           data["steps_run"].astype(np.int64), float(data["seconds"]))
        except (OSError, KeyError, ValueError, TypeError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("ignoring the unreadable inversion progress file %s (%s)", path, exc)
            return None


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


def batch_bounds(n_frames: int, batch: int) -> list[tuple[int, int]]:
    """[start, stop) of each inversion batch: consecutive frames, ``batch`` at a time."""
    return [(s, min(s + batch, n_frames)) for s in range(0, n_frames, batch)]


def invert_frames(G: torch.nn.Module, images: torch.Tensor, lpips_model: torch.nn.Module,
                  config: InversionConfig | None = None, encoder: AnchorEncoder | None = None,
                  device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                  cancel: CancelToken = NEVER_CANCELLED, *, progress_path: Path | None = None,
                  resume_key: str = "", dist: DistContext = SINGLE) -> InversionResult:
    """Anchors for ``images`` ((N,3,R,R) uint8 at G's resolution): encoder if given, else projection.

    ``encoder`` must return W codes (B, w_dim). Progress counts optimization steps over all
    batches (batches x steps). ``progress_path`` (.npz): the anchors of each finished batch are
    saved there at once (by rank 0) and a later call made with the same generator, frames,
    settings, method and ``resume_key`` (e.g. which encoder file) continues from them. A cancel
    keeps every finished batch and raises ``Cancelled`` whose ``kept`` says how many frames'
    anchors were saved; the batch in progress is redone next time. ``dist``: the batches are
    dealt round-robin to the ranks; every rank returns the whole result.
    """
    from personalize.tuning import content_digest, to_unit_range

    config = config or InversionConfig()
    device = torch.device(device)
    G.to(device).eval().requires_grad_(False)
    lpips_model.to(device).eval().requires_grad_(False)
    n = images.shape[0]
    bounds = batch_bounds(n, config.batch)
    method = "encoder" if encoder is not None else "projection"
    fingerprint = ""
    if progress_path is not None:
        fingerprint = content_digest(G.state_dict(), images, json.dumps(asdict(config), sort_keys=True),
                                     method, resume_key)

    def read_progress() -> InversionProgress | None:
        saved = InversionProgress.load(progress_path) if progress_path is not None else None
        if saved is None:
            return None
        if (saved.fingerprint != fingerprint or saved.anchors.shape != (n, G.w_dim)
                or saved.done.shape != (len(bounds),)):
            log.warning("the inversion progress was made from other frames, generator or settings; starting over")
            return None
        return saved

    state = dist.broadcast_call(read_progress) or InversionProgress.empty(fingerprint, n, len(bounds), G.w_dim)
    resumed = int(state.done.sum())
    if encoder is None:
        w_avg, w_std = w_statistics(G, config.w_avg_samples, config.seed, device)

    def run_batch(k: int, on_step) -> tuple[torch.Tensor, int]:
        start, stop = bounds[k]
        target = to_unit_range(images[start:stop]).to(device)
        if encoder is not None:
            cancel.check()
            with torch.no_grad():
                w = encoder(target)
            if w.ndim != 2 or w.shape != (stop - start, G.w_dim):
                raise ValueError(f"an AnchorEncoder must return W codes ({stop - start}, {G.w_dim}), "
                                 f"got {tuple(w.shape)}")
            return w.float(), 0
        return project_batch(G, target, lpips_model, config, w_avg, w_std, cancel, on_step)

    steps_per_batch = 1 if encoder is not None else config.steps
    total = len(bounds) * steps_per_batch
    todo = [k for k in range(len(bounds)) if not state.done[k]]
    run_seconds, run_steps = 0.0, 0  # batches finished in this run: their time and steps
    for first in range(0, len(todo), dist.world_size):
        round_batches = todo[first:first + dist.world_size]
        before = int(state.done.sum()) * steps_per_batch
        mine = round_batches[dist.rank] if dist.rank < len(round_batches) else None
        finished = None
        stopped = cancel.cancelled
        if mine is not None:
            start, stop = bounds[mine]

            def report(step: int, value: float) -> None:
                # rank 0's batch stands for the round: the ranks' batches run side by side
                progress(min(total, before + step * len(round_batches)), total,
                         f"frames {start + 1}-{stop} loss {value:.3f}")

            began = time.perf_counter()
            try:
                w, used = run_batch(mine, report)
                finished = (mine, w.detach().cpu().numpy().astype(np.float32), used,
                            time.perf_counter() - began)
            except Cancelled:
                stopped = True
        for result in dist.gather(finished):
            if result is None:
                continue
            k, w, used, seconds = result
            start, stop = bounds[k]
            state.anchors[start:stop] = w
            state.steps_run[start:stop] = used
            state.done[k] = True
            state.seconds += seconds
            run_seconds += seconds
            run_steps += used or 1  # an encoder batch counts as one step
        if progress_path is not None and dist.is_main:
            state.save(progress_path)
        if dist.any(stopped):
            frames = sum(stop - start for (start, stop), d in zip(bounds, state.done) if d)
            raise Cancelled("cancelled by the user",
                            kept=(f"the anchors of {frames} of {n} frames" if progress_path is not None
                                  else None))
        progress(int(state.done.sum()) * steps_per_batch, total, "encoded" if encoder is not None else "projected")
    anchors = torch.from_numpy(state.anchors).to(device)
    rec = dist.broadcast_call(lambda: reconstruction_lpips(G, anchors, images, lpips_model, config.batch,
                                                           config.lpips_size))
    per_step = run_seconds / run_steps if run_steps else None
    return InversionResult(state.anchors.copy(), rec, state.steps_run.copy(), resumed, per_step)
