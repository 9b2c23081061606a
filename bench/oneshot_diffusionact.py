"""Benchmark: DiffusionAct seconds per frame at 256 px per render step count, and LPIPS to 20 steps.

For each render step count (default 20, 10, 5, 3) it renders the same batch of driving frames
from ONE cached source inversion and prints seconds per frame (batched) and the mean LPIPS of
each frame to its 20-step render; then the fastest step count whose LPIPS stays within
``--lpips-bound``. The inversion (50 steps by default, run once per source) is timed separately.

    .venv/bin/python bench/oneshot_diffusionact.py                       # CPU, random weights
    .venv/bin/python bench/oneshot_diffusionact.py --device cuda --frames 8 --precision fp32 auto
    .venv/bin/python bench/oneshot_diffusionact.py --model-file diffusionact_model.pt --lpips alexnet.pth

Honesty: without ``--model-file`` the networks have random weights, so the LPIPS column only shows
that the plumbing works, not how much quality fewer steps cost; the timings are real (the
architecture and sizes are the official ones). The source and driving images come from
``../shared/reference/oneshot`` when present (else noise), the driving conditioning images are
stickmen of jittered reference landmarks. CPU: one 256-px UNet call takes ~10-20 s, so keep
``--frames`` and ``--inversion-steps`` small there. Not a test: it only prints figures.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optimize.backends.diffusionact import DiffusionActModel  # noqa: E402
from optimize.nets.diffae import DiffAELitModel  # noqa: E402
from optimize.nets.diffusionact_checkpoints import load_diffusionact_model  # noqa: E402
from optimize.nets.reenactment_encoder import ReenactmentEncoder  # noqa: E402
from optimize.stickman import draw_stickman  # noqa: E402
from personalize.perceptual import build_lpips  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "reference" / "oneshot" / "golden_diffusionact.npz"


def _inputs(frames: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source (1,3,256,256), source stickman (1,...), driving stickmen (frames,...)), all [-1,1]."""
    g = np.random.default_rng(seed)
    if GOLDEN.is_file():
        with np.load(GOLDEN) as z:
            source, lm = torch.from_numpy(z["in_src"]), z["in_lm3dmm_tgt"][0]
    else:
        source = torch.rand(1, 3, 256, 256) * 2 - 1
        lm = np.stack([np.linspace(60, 196, 68), 128 + 40 * np.sin(np.linspace(0, 6, 68))], 1)
    jitter = [lm + g.normal(0, 3.0, lm.shape) + g.normal(0, 6.0, (1, 2)) for _ in range(frames + 1)]
    sticks = draw_stickman(np.stack(jitter).astype(np.float32))
    return source, sticks[:1], sticks[1:]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=None, help="batch of driving frames (default 1 CPU, 8 CUDA)")
    ap.add_argument("--steps", type=int, nargs="+", default=[20, 10, 5, 3])
    ap.add_argument("--inversion-steps", type=int, default=None, help="default 50 (CUDA) / 5 (CPU)")
    ap.add_argument("--reference-steps", type=int, default=20,
                    help="the render the others are compared to (the official 20; smaller only for quick CPU runs)")
    ap.add_argument("--precision", nargs="+", default=None, choices=["fp32", "fp16", "auto"],
                    help="default: fp32 on CPU; fp32 and fp16 on CUDA")
    ap.add_argument("--model-file", type=Path, help="the real diffusionact_model.pt (else random weights)")
    ap.add_argument("--lpips", type=Path, help="torchvision AlexNet weights for LPIPS (else random backbone)")
    ap.add_argument("--lpips-bound", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    frames = args.frames or (8 if cuda else 1)
    inversion_steps = args.inversion_steps or (50 if cuda else 5)
    precisions = args.precision or (["fp32", "fp16"] if cuda else ["fp32"])
    ref_steps = args.reference_steps
    if ref_steps not in args.steps:
        args.steps = [ref_steps, *args.steps]

    t0 = time.perf_counter()
    if args.model_file:
        diffae, encoder, _ = load_diffusionact_model(args.model_file)
        weights = f"real weights ({args.model_file.name})"
    else:
        torch.manual_seed(0)
        diffae, encoder = DiffAELitModel().eval(), ReenactmentEncoder().eval()
        weights = "RANDOM weights: LPIPS below only checks the plumbing, not quality"
    diffae, encoder = diffae.to(device).requires_grad_(False), encoder.to(device).requires_grad_(False)
    lpips = build_lpips(args.lpips, random_backbone=args.lpips is None, device=device)
    print(f"# DiffusionAct 256 px on {device} ({torch.get_num_threads()} CPU threads), {weights}; "
          f"built in {time.perf_counter() - t0:.1f} s")
    source, source_stick, sticks = _inputs(frames, seed=0)
    source, source_stick, sticks = source.to(device), source_stick.to(device), sticks.to(device)

    for precision in precisions:
        model = DiffusionActModel(diffae, encoder, precision=precision)
        _sync(device)
        t0 = time.perf_counter()
        state = model.prepare_source(source, source_stick, steps=inversion_steps)
        _sync(device)
        inv = time.perf_counter() - t0
        print(f"\n## precision {precision}: source inversion {inversion_steps} steps (once per source): {inv:.2f} s")
        if cuda:                      # warm-up (kernels, cudnn autotune) outside the timings
            model.reenact(state, sticks, steps=2)
        results: dict[int, tuple[float, torch.Tensor]] = {}
        for steps in sorted(set(args.steps), reverse=True):
            _sync(device)
            t0 = time.perf_counter()
            out = model.reenact(state, sticks, steps=steps)
            _sync(device)
            results[steps] = ((time.perf_counter() - t0) / frames, out)
        ref = results[ref_steps][1]
        print(f"{'steps':>5} {'s/frame':>9} {'LPIPS to ' + str(ref_steps) + ' steps':>18}   ({frames} frames per batch)")
        best = ref_steps
        for steps, (sec, out) in sorted(results.items(), reverse=True):
            with torch.no_grad():
                dist = lpips(out.float(), ref.float()).mean().item()
            if dist <= args.lpips_bound and steps < best:
                best = steps
            print(f"{steps:>5} {sec:>9.3f} {dist:>18.4f}")
        print(f"fastest within LPIPS <= {args.lpips_bound}: {best} steps, {results[best][0]:.3f} s/frame"
              + ("" if args.model_file else "   [random weights: not a quality result]"))


if __name__ == "__main__":
    main()
