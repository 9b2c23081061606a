"""Benchmark: seconds per image of the StyleGAN2 generator, ours vs the official reference path.

Prints, for FFHQ-shaped generators at 256 px (paper256: channel_base 16384) and 1024 px
(channel_base 32768), batch 1 and 4, on CPU and on CUDA when present:
  - forward: mapping + synthesis (no grad, const noise);
  - fwd+bwd: synthesis forward + backward w.r.t. ws (as in inversion / re-enactment), weights frozen;
for our fast ops and for the plain official algorithm (``personalize.stylegan2.reference``), and
the speed-up ratio, measured in the same run on the same random weights.

    .venv/bin/python bench/generator.py            # CPU (and CUDA if present), 2 timed reps
    .venv/bin/python bench/generator.py --quick    # 1 timed rep, for a ~2-3 min CPU run
    .venv/bin/python bench/generator.py --device cuda --sizes 1024 --batches 1 4 8 --compile
Not a test: it only prints figures.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from typing import Callable

import torch

from personalize.stylegan2 import Generator
from personalize.stylegan2.configs import FFHQ256_KWARGS, FFHQ1024_KWARGS
from personalize.stylegan2.reference import use_reference_ops

CONFIGS = {256: FFHQ256_KWARGS, 1024: FFHQ1024_KWARGS}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], None], device: torch.device, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times) if len(times) > 2 else statistics.mean(times)


def bench_one(G: Generator, batch: int, device: torch.device, reference: bool, warmup: int, reps: int,
              compile_: bool) -> tuple[float, float]:
    """(forward s/img, fwd+bwd s/img)."""
    z = torch.randn(batch, G.z_dim, device=device)
    ws0 = G.mapping(z, None).detach()
    synthesis = G.synthesis
    if compile_ and not reference:
        synthesis = torch.compile(G.synthesis)

    def forward() -> None:
        with torch.no_grad():
            synthesis(G.mapping(z, None), noise_mode="const")

    def forward_backward() -> None:
        ws = ws0.clone().requires_grad_(True)
        img = synthesis(ws, noise_mode="const")
        img.square().mean().backward()

    ctx = use_reference_ops() if reference else contextlib.nullcontext()
    with ctx:
        fwd = _time(forward, device, warmup, reps)
        fb = _time(forward_backward, device, warmup, reps)
    return fwd / batch, fb / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto = CPU, plus CUDA when present")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024], choices=sorted(CONFIGS))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions (after 1 warm-up)")
    parser.add_argument("--quick", action="store_true", help="1 timed rep (CPU run ~2-3 minutes)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-reference", action="store_true", help="skip the official reference path")
    parser.add_argument("--compile", action="store_true", help="also wrap ours in torch.compile")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    reps = 1 if args.quick else args.reps
    devices = [torch.device("cpu")] if args.device in ("auto", "cpu") else []
    if args.device in ("auto", "cuda") and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if not devices:
        sys.exit("no CUDA device available")
    print(f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}; "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}")
    print(f"{'device':<6} {'size':>5} {'batch':>5} | {'ours fwd':>9} {'ours f+b':>9} | "
          f"{'ref fwd':>9} {'ref f+b':>9} | {'x fwd':>6} {'x f+b':>6}   (seconds per image)")
    torch.manual_seed(0)
    for device in devices:
        for size in args.sizes:
            G = Generator(**CONFIGS[size]).eval().requires_grad_(False).to(device)
            for batch in args.batches:
                ours = bench_one(G, batch, device, False, 1, reps, args.compile)
                if args.no_reference:
                    ref = (float("nan"), float("nan"))
                else:
                    ref = bench_one(G, batch, device, True, 1, reps, False)
                print(f"{device.type:<6} {size:>5} {batch:>5} | {ours[0]:9.4f} {ours[1]:9.4f} | "
                      f"{ref[0]:9.4f} {ref[1]:9.4f} | {ref[0] / ours[0]:6.2f} {ref[1] / ours[1]:6.2f}",
                      flush=True)
            del G
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
