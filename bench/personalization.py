"""Benchmark the personalize stage; prints figures (no asserts).

1. Frame selection on the 33 s shared self-scan (~1008 frames -> 250): wall time of the fast,
   feature-cached LPIPS selection and the number of AlexNet passes vs the naive per-pair method
   (N(N-1)/2 LPIPS calls, each running the backbone on both images). The AlexNet backbone is
   RANDOM (no pretrained weights on this machine): timing and pass counts do not depend on the
   weights. Frames are a centre-square crop resized to the working size (not FFHQ-aligned; same cost).
2. Seconds per pivotal-tuning step for random-weight FFHQ-shaped generators at 256 and 1024 px,
   batch 1 and 4, on CPU and (if present) CUDA.
3. ``--anchors``: W anchors from the FFHQ e4e encoder (W+ -> W by the first style, and by the mean
   over layers for comparison) vs today's optimization anchors, on reconstruction LPIPS of
   G(anchor) against the aligned faces in ../shared/media/aligned, and their wall time. Meaningful
   only with real weights (``--ffhq ffhq.pkl --e4e e4e_ffhq_encode.pt --lpips alexnet.pth``); without
   them a random 256 px generator, a random e4e and a random LPIPS backbone only show the plumbing
   and the relative cost, and the LPIPS numbers mean nothing.

Run it from the project root:

    OMP_NUM_THREADS=2 .venv/bin/python bench/personalization.py [--work-size 128] [--skip-tuning]
    OMP_NUM_THREADS=2 .venv/bin/python bench/personalization.py --skip-selection --skip-tuning --anchors \
        [--ffhq ffhq.pkl --e4e e4e_ffhq_encode.pt --lpips alexnet.pth] [--anchor-steps 500]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from personalize.perceptual import build_lpips
from personalize.selection import lpips_features, pairwise_lpips, select_diverse

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "media" / "selfscan_woman_33s.mp4"


def load_frames(size: int) -> torch.Tensor:
    """(N,3,size,size) float32 [-1,1]: every frame, centre square, area-resized."""
    import cv2

    from personalize.video import iter_frames

    out = []
    for frame in iter_frames(VIDEO):
        h, w = frame.shape[:2]
        s = min(h, w)
        crop = frame[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def bench_selection(work_size: int, count: int) -> None:
    t0 = time.perf_counter()
    frames = load_frames(work_size)
    t_decode = time.perf_counter() - t0
    n = frames.shape[0]
    metric = build_lpips(None, random_backbone=True)
    t0 = time.perf_counter()
    feats = lpips_features(metric, [frames[i:i + 32] for i in range(0, n, 32)])
    t_feat = time.perf_counter() - t0
    t0 = time.perf_counter()
    pairwise_lpips(feats)
    t_matrix = time.perf_counter() - t0
    del feats
    t0, c0 = time.perf_counter(), time.process_time()
    result = select_diverse(metric, frames, count)
    t_total, c_total = time.perf_counter() - t0, time.process_time() - c0
    # naive cost, extrapolated from timing a sample of real per-pair LPIPS calls
    pairs = n * (n - 1) // 2
    sample = 40
    t0 = time.perf_counter()
    with torch.no_grad():
        for k in range(sample):
            metric(frames[k:k + 1], frames[k + 1:k + 2])
    per_pair = (time.perf_counter() - t0) / sample
    naive_passes = 2 * pairs
    print(f"selection: {n} frames -> {len(result.indices)} at {work_size}px (random AlexNet backbone)")
    print(f"  decode+crop+resize        {t_decode:7.1f} s (not part of selection)")
    print(f"  features (1 pass/frame)   {t_feat:7.1f} s")
    print(f"  pairwise matrix (float64) {t_matrix:7.1f} s")
    print(f"  select_diverse total      {t_total:7.1f} s   (features + matrix + greedy; "
          f"{c_total:.1f} s CPU time over {torch.get_num_threads()} threads)")
    print(f"  AlexNet passes: fast {result.network_passes:,} vs naive {naive_passes:,} "
          f"({pairs:,} LPIPS calls x 2 images) -> {naive_passes / result.network_passes:,.0f}x fewer")
    print(f"  naive estimate: {per_pair * 1000:.1f} ms/pair x {pairs:,} = {per_pair * pairs / 3600:.1f} h")


def bench_tuning(device: torch.device, resolutions: list[int], batches: list[int], steps: int) -> None:
    from personalize.stylegan2.configs import FFHQ256_KWARGS, FFHQ1024_KWARGS, generator_from_kwargs
    from personalize.tuning import TuningConfig, tune_generator

    metric = build_lpips(None, random_backbone=True)
    for res in resolutions:
        kwargs = FFHQ1024_KWARGS if res == 1024 else FFHQ256_KWARGS
        for batch in batches:
            G = generator_from_kwargs(kwargs)
            n = max(batch, 4)
            anchors = torch.randn(n, G.w_dim) * 0.1 + G.mapping.w_avg.float()
            targets = torch.randint(0, 256, (n, 3, res, res), dtype=torch.uint8)
            times: list[float] = []
            last = [time.perf_counter()]

            def tick(done: int, total: int, message: str = "") -> None:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.perf_counter()
                times.append(now - last[0])
                last[0] = now

            try:
                tune_generator(G, anchors, targets, metric, TuningConfig(steps=steps, batch=batch),
                               device=device, progress=tick)
            except Exception as exc:  # report and go on (e.g. out of memory)
                print(f"tuning {res}px batch {batch} on {device}: failed ({exc})")
                continue
            timed = times[1:] or times  # first step includes warm-up
            print(f"tuning {res:4d}px batch {batch} on {device.type}: {np.mean(timed):6.2f} s/step "
                  f"(mean of {len(timed)} steps after 1 warm-up; first {times[0]:.2f} s)")
            del G


def aligned_faces(size: int) -> torch.Tensor:
    """(N,3,size,size) uint8: the FFHQ-aligned portraits of ../shared/media/aligned, area/cubic-resized."""
    import cv2

    from personalize.video import read_image

    out = []
    for path in sorted((ROOT.parent / "shared" / "media" / "aligned").glob("*.jpg")):
        img = read_image(path)
        interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_CUBIC
        out.append(cv2.resize(img, (size, size), interpolation=interp))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


def bench_anchors(ffhq: str | None, e4e: str | None, lpips_weights: str | None, steps: int | None,
                  frames: int) -> None:
    """Encoder anchors vs optimization anchors (reconstruction LPIPS and seconds)."""
    from personalize.encoders.e4e import E4EAnchorEncoder, Encoder4Editing, load_e4e
    from personalize.inversion import InversionConfig, invert_frames, w_statistics
    from personalize.stylegan2 import load_generator
    from personalize.stylegan2.configs import FFHQ256_KWARGS, generator_from_kwargs

    given = [f for f in (ffhq, e4e, lpips_weights) if f]
    if 0 < len(given) < 3:
        raise SystemExit("--ffhq, --e4e and --lpips go together: with a random LPIPS backbone the "
                         "optimization would fit (and the comparison would measure) a meaningless metric")
    real = len(given) == 3
    if real:
        G = load_generator(ffhq)
        t0 = time.perf_counter()
        encoder, latent_avg = load_e4e(e4e)
        print(f"loaded e4e in {time.perf_counter() - t0:.1f} s (not counted below)")
    else:
        G = generator_from_kwargs(FFHQ256_KWARGS)
        torch.manual_seed(0)
        encoder = Encoder4Editing(G.img_resolution).eval().requires_grad_(False)
        latent_avg = w_statistics(G, 2000, 0, torch.device("cpu"))[0]
    metric = build_lpips(lpips_weights, random_backbone=lpips_weights is None)
    images = aligned_faces(G.img_resolution)[:frames]
    steps = steps or (500 if real else 10)
    print(f"anchors: {images.shape[0]} aligned faces at {G.img_resolution}px; "
          + ("REAL weights (FFHQ generator, FFHQ e4e, LPIPS AlexNet)" if real else
             "RANDOM generator, e4e and LPIPS backbone (plumbing and relative cost only: the LPIPS values "
             "mean nothing)"))
    print("  'studio-cli personalize --anchors encoder' uses the first style (+ latent_avg); the mean of "
          "styles is shown for comparison only")
    rows = []
    for name, kwargs in (("e4e, first style", {"encoder": E4EAnchorEncoder(encoder, latent_avg, "first")}),
                         ("e4e, mean of styles", {"encoder": E4EAnchorEncoder(encoder, latent_avg, "mean")}),
                         (f"optimization, {steps} steps", {})):
        t0 = time.perf_counter()
        result = invert_frames(G, images, metric, InversionConfig(steps=steps, batch=4), **kwargs)
        rows.append((name, float(result.lpips.mean()), time.perf_counter() - t0))
    for name, value, seconds in rows:
        print(f"  {name:28s} reconstruction LPIPS {value:.4f}   {seconds:7.1f} s ({seconds / images.shape[0]:.2f} s/frame)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work-size", type=int, default=128)
    parser.add_argument("--count", type=int, default=250)
    parser.add_argument("--skip-selection", action="store_true")
    parser.add_argument("--skip-tuning", action="store_true")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--resolutions", default="256,1024")
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--anchors", action="store_true", help="encoder vs optimization anchors")
    parser.add_argument("--ffhq", default=None, help="official ffhq.pkl (real-weights anchor comparison)")
    parser.add_argument("--e4e", default=None, help="e4e_ffhq_encode.pt")
    parser.add_argument("--lpips", default=None, help="torchvision AlexNet weights for LPIPS")
    parser.add_argument("--anchor-steps", type=int, default=None)
    parser.add_argument("--anchor-frames", type=int, default=5)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_selection:
        bench_selection(args.work_size, args.count)
    if not args.skip_tuning:
        res = [int(r) for r in args.resolutions.split(",")]
        batches = [int(b) for b in args.batches.split(",")]
        bench_tuning(torch.device("cpu"), res, batches, args.steps)
        if torch.cuda.is_available():
            bench_tuning(torch.device("cuda"), res, batches, max(args.steps, 10))
    if args.anchors:
        bench_anchors(args.ffhq, args.e4e, args.lpips, args.anchor_steps, args.anchor_frames)


if __name__ == "__main__":
    main()
