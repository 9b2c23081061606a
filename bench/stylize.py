"""Benchmark the editing stage: seconds per StyleGAN-NADA iteration, and learning one direction.

Prints figures; asserts nothing. Run from the repository root:

    OMP_NUM_THREADS=2 .venv/bin/python bench/stylize.py                 # everything, CPU
    .venv/bin/python bench/stylize.py --device cuda --res 256 1024      # on a GPU
    .venv/bin/python bench/stylize.py --skip-nada --samples 2000        # only the direction

What is timed (say so when quoting the numbers):
- NADA: RANDOM weights with the real shapes: an FFHQ-shaped StyleGAN2 generator at 256 or 1024 px
  (paper256 / official FFHQ configs) and a random CLIP ViT-B/32. The cost of an iteration does not
  depend on the weights' values. One iteration = the adaptive layer selection (one W+ step through
  the trainable generator and CLIP) + one training step (frozen and trainable forward, CLIP on both,
  backward), batch 2, as the defaults. The first (warm-up) iteration is not counted.
- Learning a direction: N codes sampled in P, rendered, scored with MediaPipe landmarks, logistic
  fit. A random-weight generator draws no face, so the sample renderer is the stand-in
  ``editing.standin.MouthWarpGenerator`` (a real aligned face whose mouth opens along one latent axis, 192 px). The
  synthesis cost of a real generator is timed separately per sample (random FFHQ-shaped, at
  --learn-res) so the total for a real project can be estimated: N * (synthesis + scoring) + fit.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MEDIA = ROOT.parent / "shared" / "media"


def ffhq_shaped_generator(resolution: int):
    from personalize.stylegan2 import Generator
    from personalize.stylegan2.configs import FFHQ256_KWARGS, FFHQ1024_KWARGS

    kwargs = {256: FFHQ256_KWARGS, 1024: FFHQ1024_KWARGS}.get(resolution)
    if kwargs is None:
        kwargs = dict(FFHQ256_KWARGS, img_resolution=resolution)
    torch.manual_seed(0)
    return Generator(**kwargs).eval()


def bench_nada(resolutions: list[int], iterations: int, device: str) -> None:
    from editing.clip_model import random_clip
    from editing.nada import seconds_per_iteration

    clip_model = random_clip("vit-b32", seed=0, device=device)
    print(f"NADA (random FFHQ-shaped generator, random CLIP ViT-B/32, batch 2, layer selection every step), "
          f"device {device}, torch threads {torch.get_num_threads()}:")
    for res in resolutions:
        G = ffhq_shaped_generator(res)
        started = time.perf_counter()
        sec = seconds_per_iteration(G, clip_model, iterations=iterations, batch_size=2, device=device)
        total = time.perf_counter() - started
        print(f"  {res:>4} px: {sec:7.2f} s / iteration  (mean of {iterations} after 1 warm-up; "
              f"300 iterations ~ {300 * sec / 60:.0f} min; run took {total:.0f} s)")
        del G


@torch.no_grad()
def synthesis_seconds(resolution: int, device: str, batch: int = 8, repeats: int = 2) -> float:
    G = ffhq_shaped_generator(resolution).to(device)
    ws = torch.randn(batch, G.num_ws, G.w_dim, device=device)
    G.synthesis(ws[:1], noise_mode="const")
    started = time.perf_counter()
    for _ in range(repeats):
        G.synthesis(ws, noise_mode="const")
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - started) / (repeats * batch)


def bench_learn(samples: int, learn_res: int, device: str) -> None:
    from editing.learn_direction import learn_direction
    from editing.standin import MouthWarpGenerator, make_mouth_setup
    from optimize.standin import aligned_image

    anchors, axis = make_mouth_setup(n_anchors=20, w_dim=512)
    G = MouthWarpGenerator(anchors, axis, aligned_image(MEDIA / "aligned" / "stone.jpg", 192))
    started = time.perf_counter()
    result = learn_direction(G, anchors, "mouth_open", n_samples=samples, batch_size=16)
    total = time.perf_counter() - started
    cosine = float(result.direction.vector[0] @ axis)
    per = total / samples
    print(f"Learn 'mouth_open' from {samples} samples (MouthWarpGenerator, real face, 192 px; "
          f"MediaPipe scoring): {total:.1f} s total = {1000 * per:.1f} ms / sample; "
          f"held-out accuracy {result.accuracy:.3f}, cos(learned, true axis) {cosine:.3f}, "
          f"scored {result.n_scored}/{samples}")
    synth = synthesis_seconds(learn_res, device)
    print(f"  + FFHQ-shaped synthesis at {learn_res} px: {synth:.3f} s / sample on {device} -> a real "
          f"{learn_res} px project needs ~{samples * (synth + per) / 60:.1f} min for {samples} samples "
          "(scoring downsamples to 256 px first)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--res", type=int, nargs="+", default=[256, 1024], help="NADA resolutions")
    parser.add_argument("--iters", type=int, default=2, help="timed NADA iterations per resolution")
    parser.add_argument("--samples", type=int, default=2000, help="samples for learning a direction")
    parser.add_argument("--learn-res", type=int, default=256, help="resolution of the synthesis timing")
    parser.add_argument("--skip-nada", action="store_true")
    parser.add_argument("--skip-learn", action="store_true")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    if not args.skip_nada:
        bench_nada(args.res, args.iters, args.device)
    if not args.skip_learn:
        bench_learn(args.samples, args.learn_res, args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
