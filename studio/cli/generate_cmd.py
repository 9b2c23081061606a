"""``studio-cli generate``: sample images from a generator checkpoint (the first thing users try).

Seeds map to latents exactly as NVIDIA's ``generate.py`` does (``np.random.RandomState(seed)
.randn(1, z_dim)``, ``noise_mode='const'``, ``img * 127.5 + 128`` clamped to uint8), so a user can
compare the studio's output with the official tool image for image.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from personalize.errors import UserError
from personalize.fileio import atomic_path
from personalize.progress import NEVER_CANCELLED, CancelToken, ProgressFn, no_progress
from personalize.stylegan2 import Generator, load_generator
from studio.cli.common import ProgressBar, add_device_arg, resolve_device

MAX_SEED = 2 ** 32 - 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="write sample images from a generator checkpoint",
                       description="Generate images from a StyleGAN2 checkpoint (official .pkl, a studio "
                                   ".safetensors, or the weights name 'ffhq').")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file (.pkl / .safetensors) or a weights name such as 'ffhq'")
    p.add_argument("--seeds", default="0-7", help="seeds, e.g. '0-7' or '1,5,9' or '0-3,10' (default 0-7)")
    p.add_argument("--trunc", type=float, default=1.0, help="truncation psi (1 = none; 0.7 = typical)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const",
                   help="per-pixel noise (default const, reproducible)")
    p.add_argument("--class-idx", type=int, default=None, help="class label for conditional generators")
    p.add_argument("--batch", type=int, default=4, help="images per forward pass (default 4)")
    p.add_argument("--out", required=True, help="output folder for seedNNNN.png")
    add_device_arg(p)
    p.set_defaults(handler=_handle)


def parse_seeds(text: str) -> list[int]:
    """'0-7' -> [0..7]; '1,5,9'; '0-3,10'. Raises UserError on anything else."""
    seeds: list[int] = []
    for part in filter(None, (s.strip() for s in text.split(","))):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise UserError(f"Cannot read seeds '{text}'.", "Use a range like 0-7, a list like 1,5,9, or both: 0-3,10.")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo or hi > MAX_SEED:
            raise UserError(f"Bad seed range '{part}'.", f"Ranges go low-high, with seeds from 0 to {MAX_SEED}.")
        if hi - lo >= 100_000:
            raise UserError(f"Seed range '{part}' asks for {hi - lo + 1} images.", "Ask for fewer than 100000.")
        seeds.extend(range(lo, hi + 1))
    if not seeds:
        raise UserError("No seeds given.", "Use e.g. --seeds 0-7.")
    return seeds


def resolve_checkpoint(value: str) -> Path:
    """A file path as given, or a weights-manager name (e.g. 'ffhq') resolved to its cached file."""
    path = Path(value).expanduser()
    if path.exists() or path.suffix or "/" in value or "\\" in value:
        return path
    from studio.weights import require_weights  # studio layer; imported lazily (optional at import time)

    return require_weights(value)


def label_for(G: Generator, class_idx: int | None, device: torch.device) -> torch.Tensor:
    """(1, c_dim) one-hot label, or an empty (1, 0) tensor for unconditional generators."""
    c = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim == 0:
        if class_idx is not None:
            print("warning: --class-idx ignored, the generator is unconditional", file=sys.stderr)
        return c
    if class_idx is None:
        raise UserError(f"This generator is conditional ({G.c_dim} classes).", "Pass --class-idx N.")
    if not 0 <= class_idx < G.c_dim:
        raise UserError(f"--class-idx {class_idx} is out of range.", f"Use 0 to {G.c_dim - 1}.")
    c[:, class_idx] = 1
    return c


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(N, C, H, W) in ~[-1, 1] -> (N, H, W, C) uint8, the official conversion."""
    return (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def generate_images(G: Generator, seeds: list[int], out_dir: Path, truncation_psi: float = 1.0,
                    class_idx: int | None = None, noise_mode: str = "const", batch: int = 4,
                    progress: ProgressFn = no_progress, cancel: CancelToken = NEVER_CANCELLED) -> list[Path]:
    """Write ``seed%04d.png`` for each seed into ``out_dir``; skips images that already exist (resume)."""
    device = next(G.parameters()).device
    out_dir.mkdir(parents=True, exist_ok=True)
    c1 = label_for(G, class_idx, device)
    paths = [out_dir / f"seed{seed:04d}.png" for seed in seeds]
    todo = [(s, p) for s, p in zip(seeds, paths) if not p.exists()]
    done = len(seeds) - len(todo)
    progress(done, len(seeds), "generating")
    for start in range(0, len(todo), max(1, batch)):
        cancel.check()
        chunk = todo[start:start + max(1, batch)]
        z = torch.from_numpy(np.concatenate([np.random.RandomState(s).randn(1, G.z_dim) for s, _ in chunk]))
        z = z.to(device=device, dtype=torch.float32)
        img = G(z, c1.expand(len(chunk), -1), truncation_psi=truncation_psi, noise_mode=noise_mode)
        for (_, path), arr in zip(chunk, to_uint8(img)):
            with atomic_path(path, suffix=".png") as tmp:
                Image.fromarray(arr, "RGB" if arr.shape[2] == 3 else None).save(tmp, format="PNG")
        done += len(chunk)
        progress(done, len(seeds), f"seed {chunk[-1][0]}")
    return paths


def _handle(args: argparse.Namespace) -> int:
    seeds = parse_seeds(args.seeds)
    if args.batch < 1:
        raise UserError("--batch must be at least 1.")
    device = resolve_device(args)
    checkpoint = resolve_checkpoint(args.checkpoint)
    G = load_generator(checkpoint, device=device)
    print(f"generator: {checkpoint.name}, {G.img_resolution}x{G.img_resolution}, {G.num_ws} ws",
          file=sys.stderr)
    out = Path(args.out).expanduser()
    with ProgressBar("generate") as bar:
        generate_images(G, seeds, out, truncation_psi=args.trunc, class_idx=args.class_idx,
                        noise_mode=args.noise_mode, batch=args.batch, progress=bar)
    print(f"wrote {len(seeds)} images to {out}")
    return 0
