"""MyStyle pivotal tuning: fine-tune the synthesis network so G(w_i) reproduces frame t_i.

Loss (paper Eq. 1, as MyStyle's code): LPIPS(G(w_i), t_i) + lambda_pixel * MSE(G(w_i), t_i), with
lambda_pixel = 10, anchors w_i fixed, mapping frozen, Adam(lr 3e-4) on the synthesis weights, a
random mini-batch of frames per step, const noise (the same image for the same w every time).

Why checkpoints carry every RNG state and the batch sampler: a run killed at step k and restarted
must end with the same weights as an uninterrupted run (bit-exact on CPU), so users can stop a
multi-hour job at any time without changing its result. Checkpoints are written atomically: a
crash while writing leaves the previous checkpoint intact.

Several processes (``personalize.distributed``, started by torchrun): every rank draws the SAME
global batch from the same seeded sampler and takes its contiguous share of it
(``DistContext.share``); DistributedDataParallel averages the gradients, and each rank's loss is
scaled so the average equals the gradient of the mean over the global batch. The result therefore
equals a single-process run of the same global batch up to float summation order (measured in
``tests/test_distributed.py``: the 2-process CPU run matches within 1e-5 max-abs on every
weight). Rank 0 alone reads the checkpoint (and hands it to the others), writes checkpoints, the
log and previews; the checkpoint does not depend on the number of processes, so a run can resume
with another number of GPUs.
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from personalize.distributed import SINGLE, DistContext
from personalize.errors import Cancelled, CheckpointError, UserError
from personalize.fileio import atomic_path, atomic_write_bytes, atomic_write_json
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"
# What the tuning writes into its folder (``work_dir``: the studio's model/).
CHECKPOINTS_DIR = "checkpoints"
LOG_FILE = "log.csv"
PREVIEWS_DIR = "previews"
GENERATOR_FILE = "generator.safetensors"
ANCHORS_FILE = "anchors.npy"
CONFIG_FILE = "config.json"
CHECKPOINT_FORMAT = 1


def default_steps(resolution: int) -> int:
    """Default step count per output resolution (about 50 passes over 250 frames at batch 4 for
    1024 px; fewer at low resolution, where the generator has far fewer weights to adapt)."""
    if resolution >= 1024:
        return 3000
    if resolution >= 512:
        return 2500
    if resolution >= 256:
        return 2000
    return 1000


@dataclass
class TuningConfig:
    steps: int = 1000
    batch: int = 4
    lr: float = 3e-4
    lambda_pixel: float = 10.0
    checkpoint_every: int = 100   # K: checkpoint + preview + log flush every K steps
    seed: int = 0
    preview_count: int = 4

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint (``steps`` may grow)."""
        return {"batch": self.batch, "lr": self.lr, "lambda_pixel": self.lambda_pixel, "seed": self.seed}


@dataclass
class TuningResult:
    steps_done: int
    resumed_from: int
    log: list[dict[str, float]] = field(default_factory=list)

    @property
    def first_loss(self) -> float:
        return self.log[0]["loss"] if self.log else float("nan")

    @property
    def last_loss(self) -> float:
        return self.log[-1]["loss"] if self.log else float("nan")


# ----------------------------------------------------------------------------- targets
def prepare_targets(images: torch.Tensor, resolution: int) -> tuple[torch.Tensor, bool]:
    """Bring training frames to the generator's resolution.

    ``images``: (N,3,H,W) uint8 (0..255). Returns (N,3,R,R) uint8 and whether a resize happened
    (antialiased bilinear, so downscaling 1024 crops to a 256 base does not alias).
    Kept as uint8 because 250 frames at 1024 px would be 3 GB as float32.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError("targets must be (N,3,H,W) uint8")
    h, w = images.shape[-2:]
    if (h, w) == (resolution, resolution):
        return images, False
    out = []
    for start in range(0, images.shape[0], 16):
        part = images[start:start + 16].float()
        part = F.interpolate(part, size=(resolution, resolution), mode="bilinear",
                             align_corners=False, antialias=True)
        out.append(part.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out), True


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N,3,H,W) -> float32 [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


# ----------------------------------------------------------------------------- RNG state
def _capture_rng(sampler: torch.Generator) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
        "sampler": sampler.get_state(),
    }


def _restore_rng(state: dict[str, Any], sampler: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    sampler.set_state(state["sampler"])


# ----------------------------------------------------------------------------- checkpoints
def save_checkpoint(path: Path, G: torch.nn.Module, optimizer: torch.optim.Optimizer, step: int,
                    sampler: torch.Generator, config: TuningConfig, log_rows: list[dict[str, float]],
                    order: list[int], data: str = "") -> None:
    """Atomically write everything needed to continue bit-exactly (temp file, fsync, rename)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "synthesis": {k: v.detach().cpu() for k, v in G.synthesis.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": _capture_rng(sampler),
        "config": config.fingerprint(),
        "data": data,
        "log": [[r["step"], r["loss"], r["lpips"], r["pixel"]] for r in log_rows],
        "order": order,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``: no code from the file runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"The tuning checkpoint {path} is unreadable ({exc}).",
                              "Delete it to start tuning from the beginning.") from exc


# ----------------------------------------------------------------------------- previews / log
def write_log_csv(path: Path, rows: Sequence[dict[str, float]]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", "loss", "lpips", "pixel"])
    for r in rows:
        writer.writerow([int(r["step"]), f"{r['loss']:.6f}", f"{r['lpips']:.6f}", f"{r['pixel']:.6f}"])
    atomic_write_bytes(path, buf.getvalue().encode())


@torch.no_grad()
def write_preview(path: Path, generated: torch.Tensor, targets: torch.Tensor) -> None:
    """PNG grid: one row per frame, G(w_i) on the left and t_i on the right. Inputs (B,3,R,R) [-1,1]."""
    import cv2

    pair = torch.cat([generated.float().cpu(), targets.float().cpu()], dim=3)  # side by side
    grid = torch.cat(list(pair), dim=1)  # rows stacked: (3, B*R, 2R)
    img = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    ok, data = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"could not encode preview {path}")
    atomic_write_bytes(path, data.tobytes())


# ----------------------------------------------------------------------------- training
def synthesize(G: torch.nn.Module, w: torch.Tensor, synthesis: torch.nn.Module | None = None) -> torch.Tensor:
    """G(w) for (B, w_dim) anchors, broadcast to every layer; const noise. Output (B,3,R,R) ~[-1,1].

    ``synthesis``: the module to run instead of ``G.synthesis`` (its DistributedDataParallel
    wrapper, so the backward pass averages gradients over ranks)."""
    ws = w[:, None, :].expand(-1, G.num_ws, -1)
    return (synthesis or G.synthesis)(ws, noise_mode="const")


def content_digest(*parts: Any) -> str:
    """sha1 over tensors, arrays, state dicts (names sorted) and strings, in order.

    What a resumable file records to recognise the inputs it was made from."""
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, dict):
            for name, tensor in sorted(part.items()):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        elif isinstance(part, str):
            digest.update(part.encode())
        else:
            digest.update(torch.as_tensor(part).detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(G: torch.nn.Module, anchors: torch.Tensor, targets: torch.Tensor) -> str:
    """sha1 of the starting synthesis weights, the anchors and the frames.

    A checkpoint is resumed only if it was made from the same base generator, anchors and frames;
    otherwise (a new selection, another base) tuning starts over instead of mixing runs.
    """
    return content_digest(G.synthesis.state_dict(), anchors.detach().float(), str(tuple(targets.shape)), targets)


def check_batch_shares(batch: int, processes: int) -> None:
    """UserError unless every process gets at least one frame of each global batch."""
    if batch < processes:
        raise UserError(f"A batch of {batch} frames cannot be shared by {processes} processes.",
                        f"Use a batch of at least {processes} (one frame per GPU or more).")


def _batch_order(n: int, sampler: torch.Generator) -> list[int]:
    return torch.randperm(n, generator=sampler).tolist()


def tune_generator(G: torch.nn.Module, anchors: torch.Tensor, targets: torch.Tensor,
                   lpips_model: torch.nn.Module, config: TuningConfig, work_dir: Path | None = None,
                   device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
                   cancel: CancelToken = NEVER_CANCELLED, *, dist: DistContext = SINGLE) -> TuningResult:
    """Pivotal tuning of ``G.synthesis`` in place; resumes from ``work_dir/checkpoints/last.pt``.

    ``anchors``: (N, w_dim) float32 (fixed). ``targets``: (N,3,R,R) uint8 at G's resolution.
    ``work_dir`` (the project's ``model/``) receives ``checkpoints/``, ``log.csv`` and
    ``previews/step_XXXXX.png`` every ``config.checkpoint_every`` steps and at the start and end
    of every run; None keeps it in memory.
    Progress reports (step, steps, "loss ..."); ``cancel`` is checked every step and a cancelled
    run saves a checkpoint first. A CUDA out-of-memory error becomes a ``UserError``.
    ``dist``: this process's place among several (``config.batch`` is the GLOBAL batch, shared
    by the ranks; every rank gets the same anchors, targets and base weights; only rank 0
    writes into ``work_dir``). Every rank returns the same result.
    """
    device = torch.device(device)
    n = anchors.shape[0]
    if targets.shape[0] != n:
        raise ValueError("one target per anchor is needed")
    if targets.shape[-1] != G.img_resolution:
        raise ValueError("targets must be at the generator's resolution (see prepare_targets)")
    batch = max(1, min(config.batch, n))
    check_batch_shares(batch, dist.world_size)
    G.to(device).eval()
    G.requires_grad_(False)
    G.synthesis.requires_grad_(True)
    lpips_model.to(device).eval().requires_grad_(False)
    params = [p for p in G.synthesis.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    anchors = anchors.to(device=device, dtype=torch.float32)
    sampler = torch.Generator().manual_seed(config.seed)

    ckpt_path = work_dir / CHECKPOINTS_DIR / CHECKPOINT_NAME if work_dir is not None else None
    data_id = data_fingerprint(G, anchors, targets) if ckpt_path is not None else ""
    step = 0
    log_rows: list[dict[str, float]] = []
    order: list[int] = []

    def read_resumable() -> dict[str, Any] | None:
        if ckpt_path is None or not ckpt_path.is_file():
            return None
        state = load_checkpoint(ckpt_path)
        if (state.get("config") != config.fingerprint() or state.get("format") != CHECKPOINT_FORMAT
                or state.get("data") != data_id):
            log.warning("the tuning checkpoint was made with other settings, frames or base generator; "
                        "starting over")
            return None
        return state

    state = dist.broadcast_call(read_resumable)  # rank 0 reads; every rank continues from it
    if state is not None:
        try:
            G.synthesis.load_state_dict(state["synthesis"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError(f"The tuning checkpoint {ckpt_path} does not fit this generator ({exc}).",
                                  "Delete the model/checkpoints folder to start over.") from exc
        _restore_rng(state["rng"], sampler)
        step = int(state["step"])
        order = [int(i) for i in state["order"]]
        log_rows = [{"step": r[0], "loss": r[1], "lpips": r[2], "pixel": r[3]} for r in state["log"]]
    del state
    resumed_from = step
    preview_ids = list(range(min(config.preview_count, n)))
    synthesis = dist.wrap(G.synthesis)
    writes = work_dir is not None and dist.is_main

    def preview_now() -> None:
        """A preview grid of the current step (also at the start and end of every run, so a
        short run shows one too). Rank 0 alone writes."""
        if not writes:
            return
        with torch.no_grad():
            write_preview(work_dir / PREVIEWS_DIR / f"step_{step:05d}.png",
                          synthesize(G, anchors[preview_ids]),
                          to_unit_range(targets[preview_ids].to(device)))

    def checkpoint_now() -> None:
        if ckpt_path is None or not dist.is_main:
            return
        save_checkpoint(ckpt_path, G, optimizer, step, sampler, config, log_rows, order, data_id)
        write_log_csv(work_dir / LOG_FILE, log_rows)

    if step < config.steps:
        preview_now()
    try:
        while step < config.steps:
            if dist.any(cancel.cancelled):
                raise Cancelled("cancelled by the user",
                                kept=f"tuning up to step {step} of {config.steps}" if ckpt_path else None)
            if len(order) < batch:  # a fresh epoch: every frame once before any repeats
                order = order + _batch_order(n, sampler)
            idx, order = order[:batch], order[batch:]
            mine, scale = dist.share(idx)  # every rank drew the same idx: its slice of the batch
            target = to_unit_range(targets[mine].to(device))
            image = synthesize(G, anchors[mine], synthesis)
            lp_each = lpips_model(image, target).reshape(-1)
            pix_each = (image - target).square().mean(dim=(1, 2, 3))
            lp, pix = lp_each.mean(), pix_each.mean()
            loss = lp + config.lambda_pixel * pix
            optimizer.zero_grad(set_to_none=True)
            (loss * scale).backward()
            optimizer.step()
            step += 1
            lp_sum, pix_sum = dist.sum([lp_each.detach().sum(), pix_each.detach().sum()])
            lp_all, pix_all = lp_sum / len(idx), pix_sum / len(idx)  # means over the global batch
            log_rows.append({"step": step, "loss": lp_all + config.lambda_pixel * pix_all,
                             "lpips": lp_all, "pixel": pix_all})
            if writes and step % config.checkpoint_every == 0:
                preview_now()
                checkpoint_now()
            progress(step, config.steps, f"loss {log_rows[-1]['loss']:.4f}")
    except Cancelled:
        checkpoint_now()
        if step > resumed_from and step % config.checkpoint_every != 0:
            preview_now()
        raise
    except torch.cuda.OutOfMemoryError as exc:
        raise UserError(f"The GPU ran out of memory while tuning with a batch of {batch} frames.",
                        f"Run again with a smaller batch, e.g. --batch {max(1, batch // 2)}; "
                        "progress so far is kept.") from exc
    if config.steps % config.checkpoint_every != 0 or resumed_from == step:
        checkpoint_now()
    if step > resumed_from and step % config.checkpoint_every != 0:
        preview_now()
    G.requires_grad_(False)
    return TuningResult(step, resumed_from, log_rows)


# ----------------------------------------------------------------------------- outputs
def write_personalized_model(G: torch.nn.Module, anchors: np.ndarray, model_dir: Path,
                             config: dict[str, Any]) -> Path:
    """Write ``generator.safetensors``/``.json`` (studio format), ``anchors.npy``, ``config.json``."""
    from personalize.stylegan2 import save_generator

    model_dir.mkdir(parents=True, exist_ok=True)
    target = model_dir / GENERATOR_FILE
    save_generator(G, target)
    buf = io.BytesIO()
    np.save(buf, np.asarray(anchors, dtype=np.float32))
    atomic_write_bytes(model_dir / ANCHORS_FILE, buf.getvalue())
    atomic_write_json(model_dir / CONFIG_FILE, config)
    return target

